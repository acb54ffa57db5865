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
- **Resumable.** Progress is the committed offset of the action's own consumer group on the
  failure topic, committed only after the republished record was acknowledged: an interrupted
  replay, run again with the same action id, redoes only what was not acknowledged.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

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


@dataclass
class ReplayReport:
    action_id: str
    selected: int = 0
    replayed: int = 0
    quarantined: int = 0
    not_replayable: int = 0
    destinations: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    plan: list[dict[str, Any]] = field(default_factory=list)  # dry run: where each would go

    def counts(self) -> dict[str, int]:
        return {"selected": self.selected, "replayed": self.replayed,
                "quarantined": self.quarantined, "not_replayable": self.not_replayable}  # fmt: skip


def replay(settings: Settings, plan: ReplayPlan, actor: Actor,
           progress: Callable[[int, int], None] | None = None) -> ReplayReport:  # fmt: skip
    """Replay the plan's selection; audited (also when it fails or is interrupted)."""
    report = ReplayReport(plan.action_id)
    trail = AuditTrail(settings)
    selection = {**plan.selection.describe(), "target": plan.target or "(origin)",
                 "max_replays": plan.max_replays,
                 **{f"set.{k}": v for k, v in plan.set_fields.items()}}  # fmt: skip
    outcome, detail = "ok", None
    try:
        topics = Topics(settings.topic_prefix)
        for role in plan.selection.roles(topics):
            if role == "quarantine" and plan.selection.topic != "quarantine":
                continue  # quarantined records go back only when asked for by name
            topic = str(getattr(topics, role))
            lock = f"erpbridge:lock:{settings.topic_prefix}:replay:{topic}"
            with held(settings.redis_url, lock):
                _replay_topic(settings, plan, actor, role, topic, report, progress)
    except KeyboardInterrupt:
        outcome, detail = "interrupted", "stopped by the operator; run again with --action-id"
        raise
    except Exception as exc:
        outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if report.selected or plan.audit_when_idle or outcome != "ok":
            trail.append(actor, "dlq.replay", action_id=plan.action_id, dry_run=plan.dry_run,
                         selection=selection, counts=report.counts(), outcome=outcome,
                         detail=detail)  # fmt: skip
    return report


def _replay_topic(settings: Settings, plan: ReplayPlan, actor: Actor, role: str, topic: str,
                  report: ReplayReport,
                  progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    group = f"{settings.topic_prefix}-dlq-replay-{plan.action_id}"
    consumer = KafkaConsumer(**client_options(settings), group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed")  # fmt: skip
    codecs = TopicCodecs(settings)
    producer = None if plan.dry_run else durable_producer(settings)
    quarantine = Topics(settings.topic_prefix).quarantine
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)  # a snapshot: what failed later is not included
        total = sum(end.values())
        pending = {tp for tp in partitions if consumer.position(tp) < end[tp]}
        pace = _Pace(plan.rate)
        waiting: set[TopicPartition] = set()  # stopped at a record not due yet
        while pending:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset >= end[tp] or tp in waiting:
                        pending.discard(tp)
                        break
                    found = read_failed(role, record, codecs)
                    if matches(found, plan.selection):
                        if plan.due is not None and not plan.due(found):
                            waiting.add(tp)  # later ones failed later still: next pass
                            pending.discard(tp)
                            break
                        pace.wait()
                        _one(found, plan, actor, codecs, producer, quarantine, report)
                    if producer is not None:  # acknowledged above: commit past it
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                    if progress is not None:
                        progress(record.offset + 1, total)
            pending = {
                tp for tp in pending if tp not in waiting and consumer.position(tp) < end[tp]
            }
    finally:
        consumer.close(autocommit=False)
        codecs.close()
        if producer is not None:
            producer.close()


def _one(found: Failed, plan: ReplayPlan, actor: Actor, codecs: TopicCodecs, producer: Any,
         quarantine: str, report: ReplayReport) -> None:  # fmt: skip
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
    report.destinations[destination] += 1
    report.plan.append({"where": found.where, "to": destination, "replays": count + 1,
                        "reason": failure.reason, "claim_id": found.claim_id})  # fmt: skip
    if producer is None:
        return
    if destination == quarantine:
        producer.send(quarantine, key=found.record.key, value=found.record.value,
                      headers=list(found.record.headers or ())).get(timeout=30)  # fmt: skip
        report.quarantined += 1
        return
    value = _fixed(failure.value, destination, plan.set_fields, codecs)
    now = datetime.datetime.now(datetime.UTC).isoformat()
    headers = [(k, v) for k, v in failure.headers if not k.startswith("erpbridge.replay.")]
    headers += [(REPLAY_COUNT, str(count + 1).encode()),
                ("erpbridge.replay.action", plan.action_id.encode()),
                ("erpbridge.replay.by", actor.name.encode()), ("erpbridge.replay.at", now.encode()),
                ("erpbridge.replay.from", found.where.encode())]  # fmt: skip
    producer.send(destination, key=failure.key, value=value, headers=headers).get(timeout=30)
    report.replayed += 1


def _fixed(value: bytes | None, topic: str, changes: Mapping[str, str],
           codecs: TopicCodecs) -> bytes | None:  # fmt: skip
    """The original bytes, or the decoded record with ``changes`` applied, re-encoded."""
    if not changes or value is None:
        return value
    role = next((r for r in CONTRACTS if codecs.topic(r) == topic), None)
    if role is None:
        raise ValueError(f"{topic} has no contract: --set needs a topic with one")
    record = codecs.deserializer(role)(value)
    for path, text in changes.items():
        _set(record, path, text)
    return codecs.serializer(role)(record)


def _set(record: dict[str, Any], path: str, text: str) -> None:
    *parents, last = path.split(".")
    node: Any = record
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    old = node[key] if (isinstance(node, list) or key in node) else None
    node[key] = _like(old, text)


def _like(old: Any, text: str) -> Any:
    """``text`` as the type the field had (int, bool, decimal...), so it re-encodes."""
    from decimal import Decimal

    if isinstance(old, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(old, int):
        return int(text)
    if isinstance(old, Decimal):
        return Decimal(text)
    return None if text == "null" else text


class _Pace:
    def __init__(self, rate: float | None) -> None:
        self.gap = 1.0 / rate if rate else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        if self.gap:
            now = time.monotonic()
            if now < self.next:
                time.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap
