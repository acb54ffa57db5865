"""The audit trail: every operator action, appended to ``<prefix>.audit``, hash-chained.

Each :class:`AuditEvent` record carries ``seq`` (1, 2, 3... without gaps), the hash of the record
before it, and its own hash: sha256 of the previous hash and its other fields as canonical JSON.
:func:`verify` walks a trail and names the first record that was changed (its hash does not
match its content), inserted or reordered (its ``prev_hash`` is not the hash before it) or
removed (``seq`` skips). The topic has one partition, so the trail has one order; appends are
serialised by a lock, so two writers never fork it.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kafka import KafkaConsumer

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.kafka_security import client_options
from erpbridge.topic_reader import read_all, read_last
from erpbridge.topics import Topics
from ops.locks import held

GENESIS = "0" * 64
ANCHOR = "anchor"  # an export's last line: {"anchor": {count, head_seq, head_hash, exported_at}}


class Role(StrEnum):
    NONE = "none"  # not signed in (refusals are audited under it)
    VIEWER = "viewer"  # list and show, masked
    OPERATOR = "operator"  # and dry runs and replays
    ADMIN = "admin"  # and purge, archive, unmasked views

    def allows(self, needed: Role) -> bool:
        order = [Role.NONE, Role.VIEWER, Role.OPERATOR, Role.ADMIN]
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role

    @classmethod
    def local(cls, role: Role = Role.ADMIN) -> Actor:
        """Whoever runs the command line on this machine (its access is the machine's)."""
        return cls(f"cli:{getpass.getuser()}", role)


ANONYMOUS = Actor("anonymous", Role.NONE)  # not signed in: refusals are audited as it


def new_action_id() -> str:
    return uuid.uuid4().hex[:16]


def digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    content = {k: v for k, v in fields.items() if k not in ("hash", "prev_hash")}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=_jsonable)
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)  # millisecond precision, as the contract keeps it
    return str(value)


class AuditTrail:
    """The trail of one pipeline. ``keep_clients``: hold one producer, reader and codecs for the
    trail's life (a server appending often; :meth:`close` lets them go) instead of making them
    anew for each append (a command that appends once)."""

    def __init__(self, settings: Settings, keep_clients: bool = False) -> None:
        self.settings, self.keep_clients = settings, keep_clients
        self.topic = Topics(settings.topic_prefix).audit
        self._local = threading.Lock()  # this process's appends, one at a time
        self._clients: _Clients | None = None

    def append(self, actor: Actor, action: str, *, action_id: str | None = None,
               dry_run: bool = False, selection: Mapping[str, Any] | None = None,
               counts: Mapping[str, int] | None = None, outcome: str = "ok",
               detail: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Append one record (acknowledged before returning) and return it."""
        lock = f"erpbridge:lock:{self.settings.topic_prefix}:audit"
        with self._local:
            clients = self._clients or _Clients(self.settings)
            failed = True
            try:
                with held(self.settings.redis_url, lock, wait_s=30):
                    last = read_last(self.settings, self.topic, reader=clients.reader)
                    before = clients.codecs.deserializer("audit")(last.value) if last else None
                    record: dict[str, Any] = {
                        "seq": (before["seq"] + 1) if before else 1,
                        "action_id": action_id or new_action_id(),
                        "action": action, "actor": actor.name, "role": str(actor.role),
                        "at": datetime.datetime.now(datetime.UTC).replace(microsecond=0),
                        "dry_run": dry_run,
                        "selection": {str(k): str(v) for k, v in (selection or {}).items()
                                      if v is not None},
                        "counts": {str(k): int(v) for k, v in (counts or {}).items()},
                        "outcome": outcome, "detail": detail,
                        "prev_hash": before["hash"] if before else GENESIS,
                    }  # fmt: skip
                    record["hash"] = digest(record["prev_hash"], record)
                    clients.producer.send(self.topic, key=record["action_id"].encode(),
                                          value=clients.codecs.serializer("audit")(record)
                                          ).get(timeout=30)  # fmt: skip
                failed = False
                return record
            finally:
                if self.keep_clients and not failed:
                    self._clients = clients
                else:  # one append only, or clients that failed: made anew next time
                    self._clients = None
                    clients.close()

    def close(self) -> None:
        with self._local:
            if self._clients is not None:
                self._clients.close()
                self._clients = None

    def records(self) -> list[dict[str, Any]]:
        codecs = TopicCodecs(self.settings)
        try:
            return [
                codecs.deserializer("audit")(r.value) for r in read_all(self.settings, self.topic)
            ]
        finally:
            codecs.close()


class _Clients:
    def __init__(self, settings: Settings) -> None:
        self.codecs = TopicCodecs(settings)
        self.producer = durable_producer(settings)
        self.reader = KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                                    isolation_level="read_committed")  # fmt: skip

    def close(self) -> None:
        for close in (self.producer.close, self.reader.close, self.codecs.close):
            with contextlib.suppress(Exception):
                close()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.checked} record(s), hash chain and sequence hold"
        return f"audit trail broken at seq {self.first_bad_seq}: {self.reason}"


def verify(records: Iterable[Mapping[str, Any]]) -> Verdict:
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    for record in records:
        seq = int(record["seq"])
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "repeated or out of order"
            return Verdict(False, checked, seq, f"expected seq {expected_seq}: record(s) {what}")
        if record["prev_hash"] != prev_hash:
            return Verdict(False, checked, seq, "prev_hash is not the hash of the record before "
                           "(a record before it was changed, inserted or removed)")  # fmt: skip
        if digest(record["prev_hash"], record) != record["hash"]:
            return Verdict(False, checked, seq, "its content does not match its hash (changed)")
        prev_hash, expected_seq, checked = record["hash"], seq + 1, checked + 1
    return Verdict(True, checked)


def to_json_lines(records: Sequence[Mapping[str, Any]],
                  anchored_at: datetime.datetime | None = None) -> str:  # fmt: skip
    """The trail as JSON Lines (an export for auditors; :func:`read_export` reads it). With
    ``anchored_at`` (an export), a last line anchors its end: how many records, the head's seq
    and hash, and when it was made, so that records cut from the end are caught."""
    text = "".join(json.dumps(dict(r), ensure_ascii=False, default=_iso) + "\n" for r in records)
    if anchored_at is not None:
        head_seq, head_hash = (int(records[-1]["seq"]), records[-1]["hash"]) if records else (
            0, GENESIS)  # fmt: skip
        anchor = {"count": len(records), "head_seq": head_seq, "head_hash": head_hash,
                  "exported_at": anchored_at.isoformat()}  # fmt: skip
        text += json.dumps({ANCHOR: anchor}) + "\n"
    return text


def read_export(text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """An export's records and its end anchor (None: it has none)."""
    records, anchor = [], None
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            if ANCHOR in record and len(record) == 1:
                anchor = record[ANCHOR]
                continue
            record["at"] = datetime.datetime.fromisoformat(record["at"])
            records.append(record)
    return records, anchor


def from_json_lines(text: str) -> list[dict[str, Any]]:
    return read_export(text)[0]


def verify_export(records: Sequence[Mapping[str, Any]], anchor: Mapping[str, Any] | None,
                  live: Sequence[Mapping[str, Any]] | None) -> Verdict:  # fmt: skip
    """An export's chain, its end anchor, and (``live``: the trail's records now) that it holds
    every record the trail had when it was made, each as the trail has it. The chain alone
    cannot see records cut from its end: the anchor (count and head) and the live trail can."""
    verdict = verify(records)
    if not verdict.ok:
        return verdict
    last_seq = int(records[-1]["seq"]) if records else 0
    last_hash = records[-1]["hash"] if records else GENESIS
    if anchor is None:
        return Verdict(False, verdict.checked, last_seq + 1, "the export has no end anchor: "
                       "records may have been cut from its end")  # fmt: skip
    if (anchor.get("count"), anchor.get("head_seq"), anchor.get("head_hash")) != (
            len(records), last_seq, last_hash):  # fmt: skip
        return Verdict(False, verdict.checked, last_seq + 1, f"the export ends at seq "
                       f"{last_seq} with {len(records)} record(s), its anchor says "
                       f"{anchor.get('count')} ending at seq {anchor.get('head_seq')}: "
                       "records were cut from its end")  # fmt: skip
    if live is None:
        return verdict
    made = datetime.datetime.fromisoformat(str(anchor["exported_at"])).replace(microsecond=0)
    exported = {int(r["seq"]): r["hash"] for r in records}
    for record in live:
        seq = int(record["seq"])
        if seq in exported and exported[seq] != record["hash"]:
            return Verdict(False, verdict.checked, seq, "differs from the live trail")
        if seq > last_seq and record["at"] < made:
            return Verdict(False, verdict.checked, seq, f"the live trail had this record "
                           f"({record['at'].isoformat()}) before the export was made "
                           f"({anchor['exported_at']}), and the export ends at seq "
                           f"{last_seq}: it was cut short")  # fmt: skip
    if live and int(live[-1]["seq"]) < last_seq or not live and last_seq:
        return Verdict(False, verdict.checked, last_seq, "the export holds records the live "
                       "trail does not")  # fmt: skip
    return verdict


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else str(value)
