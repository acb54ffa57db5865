"""Replay failure records: back to the topic they came from (or one you name), safely.

- **Where to.** Each record goes back to the topic in its origin (``__connect.errors.topic``),
  with its original key and headers, plus replay headers: ``erpbridge.replay.count`` (how many
  times this input was replayed), ``erpbridge.replay.action``, ``.by`` and ``.at``. Refusals of a
  source (a bad file row, a refused request) have no topic to go back to: they are counted as
  not replayable (send them again from the source once fixed).
- **Never booked twice.** A replayed input keeps its event id and posting id: the processors
  judge a claim again (a fixed mapping lets it through) and dedupe a repeat, and the sink looks
  every posting up in the ERP before creating it, so a second replay books nothing.
- **Fix-up.** ``set`` changes fields of the decoded record (``lines.0.account_code=5.2.2``)
  and re-encodes it with its contract.
- **Safe to run.** ``dry_run`` writes nothing and says where each record would go; ``rate``
  caps records per second; a record replayed ``max_replays`` times already goes to
  ``<prefix>.dlq.quarantine`` instead of looping; one replay per failure topic at a time (a lock).
- **Resumable, and counted whole.** Republished records and the progress (the committed offset
  of the action's own consumer group on the failure topic) go out together in Kafka
  transactions, at most 100 records or 1 s each: a replay killed anywhere, even by SIGKILL, has
  written exactly what its progress says. Before its first republish a run appends a
  ``dlq.replay.start`` record to the audit trail, so a run that never finishes is still seen.
  Run again with the same action id (a resume), it takes over the topic's lock at once (the
  killed run holds it for up to 30 s otherwise) and fences any earlier run still alive (its
  transactional id is the action's), redoes only what was not committed, and audits what the
  earlier runs of the action did (``*_earlier`` counts) beside its own.
- **A fix-up that does not fit** a record (no such field, a value of another type) leaves that
  record where it is, counted as ``unfixable`` with the reason in the plan; the others go.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.kafka_security import client_options
from erpbridge.topics import CONTRACTS, Topics
from ops.audit import Actor, AuditTrail, new_action_id
from ops.dlq import Failed, Selection, matches, read_failed
from ops.locks import held

REPLAY_COUNT = "erpbridge.replay.count"


@dataclass(frozen=True)
class ReplayPlan:
    selection: Selection
    action_id: str = field(default_factory=new_action_id)
    target: str | None = None  # a topic name; default: each record's origin topic
    set_fields: Mapping[str, str] = field(default_factory=dict)  # dotted path -> new value
    dry_run: bool = False
    rate: float | None = None  # records per second
    max_replays: int = 3
    # auto-replay: is this record due (its back-off over)? A partition stops at the first one
    # that is not, uncommitted, and goes on from it at the next pass.
    due: Callable[[Failed], bool] | None = None
    audit_when_idle: bool = True  # False: a pass that selected nothing leaves no audit record
    resume: bool = False  # run again an action that was interrupted (see the module's text)


@dataclass
class ReplayReport:
    action_id: str
    selected: int = 0
    replayed: int = 0
    quarantined: int = 0
    not_replayable: int = 0
    unfixable: int = 0
    destinations: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    plan: list[dict[str, Any]] = field(default_factory=list)  # dry run: where each would go
    earlier: ReplayReport | None = None  # a resume: what earlier runs of the action committed

    def counts(self) -> dict[str, int]:
        counts = {"selected": self.selected, "replayed": self.replayed,
                  "quarantined": self.quarantined, "not_replayable": self.not_replayable,
                  "unfixable": self.unfixable}  # fmt: skip
        if self.earlier is not None:
            counts.update({f"{k}_earlier": v for k, v in self.earlier.counts().items()})
        return counts

    def add(self, other: ReplayReport) -> None:
        """Count in what ``other`` (one committed transaction's worth) did."""
        for name in ("selected", "replayed", "quarantined", "not_replayable", "unfixable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.destinations.update(other.destinations)
        self.reasons.update(other.reasons)
        self.plan.extend(other.plan)


def replay(settings: Settings, plan: ReplayPlan, actor: Actor,
           progress: Callable[[int, int], None] | None = None) -> ReplayReport:  # fmt: skip
    """Replay the plan's selection; audited (also when it fails or is interrupted)."""
    report = ReplayReport(plan.action_id, earlier=ReplayReport(plan.action_id) if plan.resume
                          else None)  # fmt: skip
    trail = AuditTrail(settings)
    selection = {**plan.selection.describe(), "target": plan.target or "(origin)",
                 "max_replays": plan.max_replays,
                 **{f"set.{k}": v for k, v in plan.set_fields.items()}}  # fmt: skip
    started: list[bool] = []

    def before_first_write() -> None:
        if not started:
            trail.append(actor, "dlq.replay.start", action_id=plan.action_id,
                         selection=selection,
                         detail="resumed" if plan.resume else None)  # fmt: skip
            started.append(True)

    outcome, detail = "ok", None
    try:
        topics = Topics(settings.topic_prefix)
        if why := not_a_target(topics, plan.target):
            raise ValueError(why)
        for role in plan.selection.roles(topics):
            if role == "quarantine" and plan.selection.topic != "quarantine":
                continue  # quarantined records go back only when asked for by name
            topic = str(getattr(topics, role))
            lock = f"erpbridge:lock:{settings.topic_prefix}:replay:{topic}"
            with held(settings.redis_url, lock, owner=plan.action_id, take_over=plan.resume):
                run = _TopicRun(settings, plan, actor, role, topic, before_first_write)
                run.replay(report, progress)
    except KeyboardInterrupt:
        outcome, detail = "interrupted", "stopped by the operator; run again with --action-id"
        raise
    except Exception as exc:
        outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if report.selected or plan.audit_when_idle or outcome != "ok" or report.earlier:
            trail.append(actor, "dlq.replay", action_id=plan.action_id, dry_run=plan.dry_run,
                         selection=selection, counts=report.counts(), outcome=outcome,
                         detail=detail)  # fmt: skip
    return report


def not_a_target(topics: Topics, target: str | None) -> str | None:
    """Why a replay may not send to ``target``; None when it may (or sends to each record's
    origin): only the inputs of a stage are replay targets."""
    targets = sorted(topics.replay_targets().values())
    if target is None or target in targets:
        return None
    return f"{target!r} is not a topic this pipeline replays to ({', '.join(targets)})"


TRANSACTION_RECORDS, TRANSACTION_SECONDS = 100, 1.0


class _TopicRun:
    """One failure topic's part of a replay: its consumer group is the action's progress."""

    def __init__(self, settings: Settings, plan: ReplayPlan, actor: Actor, role: str, topic: str,
                 before_first_write: Callable[[], None]) -> None:  # fmt: skip
        self.settings, self.plan, self.actor, self.role, self.topic = (
            settings, plan, actor, role, topic)  # fmt: skip
        self.group = f"{settings.topic_prefix}-dlq-replay-{plan.action_id}"
        self.before_first_write = before_first_write
        self.quarantine = Topics(settings.topic_prefix).quarantine

    def replay(self, report: ReplayReport,
               progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
        consumer = KafkaConsumer(**client_options(self.settings), group_id=self.group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 isolation_level="read_committed")  # fmt: skip
        codecs = TopicCodecs(self.settings)
        producer = None
        try:
            tps = [TopicPartition(self.topic, p)
                   for p in consumer.partitions_for_topic(self.topic) or ()]  # fmt: skip
            consumer.assign(tps)
            end = consumer.end_offsets(tps)  # a snapshot: what failed later is not included
            if report.earlier is not None:
                self._count_earlier(consumer, tps, codecs, report.earlier)
            if not self.plan.dry_run:
                producer = durable_producer(self.settings, transactional_id=f"{self.group}-"
                                            f"{self.topic}")  # fmt: skip
                producer.init_transactions()  # fences an earlier run of this action, if alive
            self._run(consumer, producer, codecs, tps, end, report, progress)
        finally:
            consumer.close(autocommit=False)
            codecs.close()
            if producer is not None:
                producer.close()

    def _run(self, consumer: KafkaConsumer, producer: Any, codecs: TopicCodecs,
             tps: list[TopicPartition], end: Mapping[TopicPartition, int], report: ReplayReport,
             progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
        total = sum(end.values())
        pending = {tp for tp in tps if consumer.position(tp) < end[tp]}
        pace = _Pace(self.plan.rate)
        waiting: set[TopicPartition] = set()  # stopped at a record not due yet
        while pending:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                batch = _Batch(self.plan.action_id, producer)
                for record in records:
                    if record.offset >= end[tp] or tp in waiting:
                        pending.discard(tp)
                        break
                    found = read_failed(self.role, record, codecs)
                    selected = matches(found, self.plan.selection)
                    if selected:
                        if self.plan.due is not None and not self.plan.due(found):
                            waiting.add(tp)  # later ones failed later still: next pass
                            pending.discard(tp)
                            break
                        if pace.due_in() > TRANSACTION_SECONDS:  # no long wait in a transaction
                            self._commit(batch, tp, report)
                            batch = _Batch(self.plan.action_id, producer)
                        pace.wait()
                        if producer is not None:
                            self.before_first_write()
                    batch.open()  # selected or not, the record moves the progress
                    if selected:
                        _one(found, self.plan, self.actor, codecs, producer, self.quarantine,
                             batch.report)  # fmt: skip
                    batch.last = record.offset
                    if progress is not None:
                        progress(record.offset + 1, total)
                    if batch.full():
                        self._commit(batch, tp, report)
                        batch = _Batch(self.plan.action_id, producer)
                self._commit(batch, tp, report)
            pending = {tp for tp in pending
                       if tp not in waiting and consumer.position(tp) < end[tp]}  # fmt: skip

    def _commit(self, batch: _Batch, tp: TopicPartition, report: ReplayReport) -> None:
        """The batch's republished records and the progress past them, in one transaction;
        then (and only then) counted."""
        producer = batch.producer
        if producer is not None and batch.opened_at is not None and batch.last is not None:
            try:
                producer.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(batch.last + 1, "", -1)}, self.group
                )
                producer.commit_transaction()
            except BaseException:
                with contextlib.suppress(Exception):
                    producer.abort_transaction()
                raise
        report.add(batch.report)

    def _count_earlier(self, consumer: KafkaConsumer, tps: list[TopicPartition],
                       codecs: TopicCodecs, earlier: ReplayReport) -> None:  # fmt: skip
        """What earlier runs of this action committed: the records before its progress that
        the plan selects, judged again as the earlier run judged them."""
        committed = {tp: consumer.committed(tp) or 0 for tp in tps}
        if not any(committed.values()):
            return
        reader = KafkaConsumer(**client_options(self.settings), enable_auto_commit=False,
                               isolation_level="read_committed")  # fmt: skip
        try:
            for tp in tps:
                if not committed[tp]:
                    continue
                reader.assign([tp])
                reader.seek_to_beginning(tp)
                while reader.position(tp) < committed[tp]:
                    for record in reader.poll(timeout_ms=1000).get(tp, []):
                        if record.offset >= committed[tp]:
                            break
                        found = read_failed(self.role, record, codecs)
                        if matches(found, self.plan.selection):
                            _one(found, self.plan, self.actor, codecs, None, self.quarantine,
                                 earlier, would_send=True)  # fmt: skip
        finally:
            reader.close()


def _one(found: Failed, plan: ReplayPlan, actor: Actor, codecs: TopicCodecs, producer: Any,
         quarantine: str, report: ReplayReport, would_send: bool = False) -> None:  # fmt: skip
    """Judge one selected record and (with a producer, inside its transaction) republish it;
    ``would_send``: count it as a run with a producer would have, sending nothing."""
    failure = found.failure
    report.selected += 1
    report.reasons[failure.reason] += 1
    destination = plan.target or failure.origin.get("topic")
    count = int(dict((k, v.decode()) for k, v in failure.headers).get(REPLAY_COUNT, "0") or 0)
    if not destination:
        report.not_replayable += 1
        report.plan.append({"where": found.where, "to": None, "why": "a source's refusal: "
                            "send it again from its source"})  # fmt: skip
        return
    if count >= plan.max_replays:
        destination = quarantine
    value = failure.value
    if destination != quarantine:
        try:
            value = _fixed(failure.value, destination, plan.set_fields, codecs)
        except ValueError as exc:
            report.unfixable += 1
            report.plan.append({"where": found.where, "to": None, "why": f"the fix-up does not "
                                f"fit this record: {exc}", "claim_id": found.claim_id})  # fmt: skip
            return
    report.destinations[destination] += 1
    report.plan.append({"where": found.where, "to": destination, "replays": count + 1,
                        "reason": failure.reason, "claim_id": found.claim_id})  # fmt: skip
    sending = producer is not None or would_send
    if destination == quarantine:
        if producer is not None:
            producer.send(quarantine, key=found.record.key, value=found.record.value,
                          headers=list(found.record.headers or ()))  # fmt: skip
        report.quarantined += int(sending)
        return
    now = datetime.datetime.now(datetime.UTC).isoformat()
    headers = [(k, v) for k, v in failure.headers if not k.startswith("erpbridge.replay.")]
    headers += [(REPLAY_COUNT, str(count + 1).encode()),
                ("erpbridge.replay.action", plan.action_id.encode()),
                ("erpbridge.replay.by", actor.name.encode()), ("erpbridge.replay.at", now.encode()),
                ("erpbridge.replay.from", found.where.encode())]  # fmt: skip
    if producer is not None:
        producer.send(destination, key=failure.key, value=value, headers=headers)
    report.replayed += int(sending)


def _fixed(value: bytes | None, topic: str, changes: Mapping[str, str],
           codecs: TopicCodecs) -> bytes | None:  # fmt: skip
    """The original bytes, or the decoded record with ``changes`` applied, re-encoded; a
    ValueError says why a change does not fit the record."""
    if not changes or value is None:
        return value
    role = next((r for r in CONTRACTS if codecs.topic(r) == topic), None)
    if role is None:
        raise ValueError(f"{topic} has no contract: --set needs a topic with one")
    try:
        record = codecs.deserializer(role)(value)
    except DecodeError as exc:
        raise ValueError(f"the record does not decode with its contract: {exc}") from None
    for path, text in changes.items():
        _set(record, path, text)
    try:
        return codecs.serializer(role)(record)
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise ValueError(f"the fixed record does not fit {role}'s contract: {exc}") from None


def _set(record: dict[str, Any], path: str, text: str) -> None:
    *parents, last = path.split(".")
    node: Any = record
    try:
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if not isinstance(node, list | dict):
            raise TypeError(f"{type(node).__name__} has no fields")
        old = node[key] if (isinstance(node, list) or key in node) else None
        node[key] = _like(old, text)
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from None


def _like(old: Any, text: str) -> Any:
    """``text`` as the type the field had (int, bool, decimal...), so it re-encodes."""
    if isinstance(old, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(old, int):
        return int(text)
    if isinstance(old, Decimal):
        return Decimal(text)
    return None if text == "null" else text


class _Batch:
    """Records of one partition on their way out in one transaction (begun at the first)."""

    def __init__(self, action_id: str, producer: Any) -> None:
        self.report, self.producer = ReplayReport(action_id), producer
        self.last: int | None = None
        self.opened_at: float | None = None

    def open(self) -> None:
        if self.opened_at is None:
            self.opened_at = time.monotonic()
            if self.producer is not None:
                self.producer.begin_transaction()

    def full(self) -> bool:
        return self.opened_at is not None and (
            len(self.report.plan) >= TRANSACTION_RECORDS
            or time.monotonic() - self.opened_at >= TRANSACTION_SECONDS)  # fmt: skip


class _Pace:
    def __init__(self, rate: float | None) -> None:
        self.gap = 1.0 / rate if rate else 0.0
        self.next = time.monotonic()

    def due_in(self) -> float:
        """Seconds until the next record may go."""
        return max(0.0, self.next - time.monotonic()) if self.gap else 0.0

    def wait(self) -> None:
        if self.gap:
            now = time.monotonic()
            if now < self.next:
                time.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap
