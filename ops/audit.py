"""The audit trail: every operator action, appended to ``<prefix>.audit``, hash-chained.

Each :class:`AuditEvent` record carries ``seq`` (1, 2, 3... without gaps), the hash of the record
before it, and its own hash: sha256 of the previous hash and its other fields as canonical JSON.
:func:`verify` walks a trail and names the first record that was changed (its hash does not
match its content), inserted or reordered (its ``prev_hash`` is not the hash before it) or
removed (``seq`` skips). The topic has one partition, so the trail has one order; appends are
serialised by a lock, so two writers never fork it.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.topic_reader import read_all, read_last
from ops.locks import held

GENESIS = "0" * 64


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
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = TopicCodecs(settings).topic("audit")

    def append(self, actor: Actor, action: str, *, action_id: str | None = None,
               dry_run: bool = False, selection: Mapping[str, Any] | None = None,
               counts: Mapping[str, int] | None = None, outcome: str = "ok",
               detail: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Append one record (acknowledged before returning) and return it."""
        codecs = TopicCodecs(self.settings)
        producer = durable_producer(self.settings)
        lock = f"erpbridge:lock:{self.settings.topic_prefix}:audit"
        try:
            with held(self.settings.redis_url, lock, wait_s=30):
                last = read_last(self.settings, self.topic)
                before = codecs.deserializer("audit")(last.value) if last is not None else None
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
                producer.send(self.topic, key=record["action_id"].encode(),
                              value=codecs.serializer("audit")(record)).get(timeout=30)  # fmt: skip
            return record
        finally:
            producer.close()
            codecs.close()

    def records(self) -> list[dict[str, Any]]:
        codecs = TopicCodecs(self.settings)
        try:
            return [
                codecs.deserializer("audit")(r.value) for r in read_all(self.settings, self.topic)
            ]
        finally:
            codecs.close()


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


def to_json_lines(records: Iterable[Mapping[str, Any]]) -> str:
    """The trail as JSON Lines (an export for auditors; :func:`from_json_lines` reads it)."""
    return "".join(json.dumps(dict(r), ensure_ascii=False, default=_iso) + "\n" for r in records)


def from_json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            record["at"] = datetime.datetime.fromisoformat(record["at"])
            records.append(record)
    return records


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else str(value)
