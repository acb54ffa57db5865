"""One view over every failure topic: select failure records, decode them, count them.

A selection names a failure topic (``rejected``, ``erp_dead_letter``, ``feedback_dead_letter``,
``quarantine``, or ``all``) and filters: reason, stage, claim id (the record's entity id or key),
employee, source system, a time range of the last failure, and header matches. Employee and
source system are read from the decoded original, with its contract (from the topic it came
from), or from its JSON.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord
from erpbridge.kafka_security import client_options
from erpbridge.registry.client import RegistryUnavailable
from erpbridge.topic_reader import read_all
from erpbridge.topics import CONTRACTS, Topics
from ops.masking import mask


@dataclass(frozen=True)
class Selection:
    topic: str = "all"  # a failure topic's role, or all of them
    reason: str | None = None
    stage: str | None = None
    claim_id: str | None = None
    employee: str | None = None
    source_system: str | None = None
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> value, all must match

    def roles(self, topics: Topics) -> list[str]:
        known = topics.failure_topics()
        if self.topic == "all":
            return list(known)
        if self.topic not in known:
            raise ValueError(f"unknown failure topic {self.topic!r} (known: {', '.join(known)}, "
                             "all)")  # fmt: skip
        return [self.topic]

    def describe(self) -> dict[str, str]:
        chosen = {"topic": self.topic, "reason": self.reason, "stage": self.stage,
                  "claim_id": self.claim_id, "employee": self.employee,
                  "source_system": self.source_system,
                  "since": self.since.isoformat() if self.since else None,
                  "until": self.until.isoformat() if self.until else None}  # fmt: skip
        chosen.update({f"header.{k}": v for k, v in self.headers.items()})
        return {k: v for k, v in chosen.items() if v is not None}


@dataclass
class Failed:
    """One failure record where it lies, with its original decoded when it can be."""

    role: str  # the failure topic's role
    record: ConsumerRecord
    failure: FailureRecord
    original: dict[str, Any] | None = None  # decoded with its contract, or its JSON

    @property
    def where(self) -> str:
        return f"{self.record.topic}[{self.record.partition}]@{self.record.offset}"

    @property
    def claim_id(self) -> str | None:
        if self.failure.entity_id:
            return self.failure.entity_id
        original = self.original or {}
        return original.get("claim_id") or (self.failure.key or b"").decode("utf-8", "replace")

    @property
    def employee(self) -> str | None:
        original = self.original or {}
        employee = original.get("employee")
        if isinstance(employee, dict):
            return str(employee.get("id") or "") or None
        return str(original.get("employee_id") or "") or None

    @property
    def source_system(self) -> str | None:
        original = self.original or {}
        return original.get("source_system") or self.failure.origin.get("source")


def decode_original(failure: FailureRecord, codecs: TopicCodecs) -> dict[str, Any] | None:
    """The failed input as a record: with the contract of the topic it came from, else as JSON."""
    value = failure.value
    if value is None:
        return None
    topic = failure.origin.get("topic")
    role = next((r for r in CONTRACTS if topic and codecs.topic(r) == topic), None)
    if role is not None and value[:1] == b"\x00":
        try:
            return codecs.deserializer(role)(value)
        except (DecodeError, RegistryUnavailable):
            return None
    try:
        decoded = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def failures(settings: Settings, selection: Selection,
             codecs: TopicCodecs | None = None) -> Iterator[Failed]:  # fmt: skip
    """Every failure record the selection picks, topic by topic, in offset order."""
    topics = Topics(settings.topic_prefix)
    own = codecs is None
    codecs = codecs or TopicCodecs(settings)
    try:
        for role in selection.roles(topics):
            for record in read_all(settings, str(getattr(topics, role))):
                found = read_failed(role, record, codecs)
                if matches(found, selection):
                    yield found
    finally:
        if own:
            codecs.close()


def read_failed(role: str, record: ConsumerRecord, codecs: TopicCodecs) -> Failed:
    """A failure topic's record, read (an unreadable one becomes a failure of its own)."""
    failure = FailureRecord.read_any(record)
    return Failed(role, record, failure, decode_original(failure, codecs))


def matches(found: Failed, selection: Selection) -> bool:
    """Does the selection pick this failure?"""
    failure = found.failure
    checks = [
        selection.reason is None or failure.reason == selection.reason,
        selection.stage is None or failure.stage == selection.stage,
        selection.claim_id is None or found.claim_id == selection.claim_id,
        selection.employee is None or found.employee == selection.employee,
        selection.source_system is None or found.source_system == selection.source_system,
        selection.since is None or failure.last_failed_at >= selection.since,
        selection.until is None or failure.last_failed_at < selection.until,
    ]
    headers = {k: v.decode("utf-8", "replace") for k, v in found.record.headers or ()}
    checks += [headers.get(name) == value for name, value in selection.headers.items()]
    return all(checks)


def age_bucket(at: datetime.datetime, now: datetime.datetime) -> str:
    hours = (now - at).total_seconds() / 3600
    return next(label for limit, label in ((1, "<1h"), (24, "<1d"), (24 * 7, "<7d"),
                                           (float("inf"), ">=7d")) if hours < limit)  # fmt: skip


@dataclass
class Summary:
    total: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_source_topic: Counter[str] = field(default_factory=Counter)
    by_age: Counter[str] = field(default_factory=Counter)
    by_failure_topic: Counter[str] = field(default_factory=Counter)

    def add(self, found: Failed, now: datetime.datetime) -> None:
        self.total += 1
        self.by_stage[str(found.failure.stage)] += 1
        self.by_reason[found.failure.reason] += 1
        self.by_source_topic[found.failure.origin.get("topic") or
                             found.failure.origin.get("file") or "(request)"] += 1  # fmt: skip
        self.by_age[age_bucket(found.failure.last_failed_at, now)] += 1
        self.by_failure_topic[found.role] += 1

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "by_failure_topic": dict(self.by_failure_topic),
                "by_stage": dict(self.by_stage), "by_reason": dict(self.by_reason),
                "by_source_topic": dict(self.by_source_topic),
                "by_age": dict(self.by_age)}  # fmt: skip


def row(found: Failed) -> dict[str, Any]:
    """One failure as a table row (``--json``: the same keys)."""
    failure = found.failure
    return {"where": found.where, "failure_topic": found.role, "stage": str(failure.stage),
            "reason": failure.reason, "claim_id": found.claim_id, "employee": found.employee,
            "source_system": found.source_system, "attempts": failure.attempts,
            "last_failed_at": failure.last_failed_at.isoformat(),
            "from": failure.origin.get("topic") or failure.origin.get("file") or "(request)",
            "replays": int(_header(found.record, "erpbridge.replay.count") or 0),
            "problem": failure.describe()[:200]}  # fmt: skip


def _header(record: ConsumerRecord, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


_WHERE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\[(?P<partition>\d+)\]@(?P<offset>\d+)$")


def find(settings: Settings, where: str) -> Failed | None:
    """The failure record at ``topic[partition]@offset`` (as :attr:`Failed.where` writes it)."""
    match = _WHERE.match(where.strip())
    if match is None:
        raise ValueError(f"expected topic[partition]@offset, got {where!r}")
    topics = Topics(settings.topic_prefix)
    role = next((r for r, name in topics.failure_topics().items() if name == match["topic"]),
                None)  # fmt: skip
    if role is None:
        raise ValueError(f"{match['topic']} is not a failure topic")
    partition, offset = int(match["partition"]), int(match["offset"])
    codecs = TopicCodecs(settings)
    try:
        for record in read_all(settings, match["topic"], until={partition: offset + 1}):
            if record.partition == partition and record.offset == offset:
                return read_failed(role, record, codecs)
        return None
    finally:
        codecs.close()


def describe(found: Failed, unmask: bool = False) -> dict[str, Any]:
    """Everything about one failure: context, headers, the error and trace, the original."""
    failure = found.failure
    shown: dict[str, Any] = {
        "where": found.where, "failure_topic": found.role, "stage": str(failure.stage),
        "reason": failure.reason, "connector": failure.connector,
        "error": f"{failure.error_class}: {failure.message}", "problems": list(failure.problems),
        "attempts": failure.attempts, "first_failed_at": failure.first_failed_at.isoformat(),
        "last_failed_at": failure.last_failed_at.isoformat(), "origin": dict(failure.origin),
        "entity_id": failure.entity_id, "key": _text(failure.key),
        "headers": {k: _text(v) for k, v in failure.headers},
        "content_type": failure.content_type,
        "original": found.original if found.original is not None else _text(failure.value),
        "original_bytes_base64": base64.b64encode(failure.value or b"").decode(),
        "stacktrace": failure.stacktrace,
    }  # fmt: skip
    if unmask:
        return shown
    masked = mask({k: v for k, v in shown.items() if k != "original_bytes_base64"})
    masked["original_bytes_base64"] = "(masked: --unmask shows it)"
    return dict(masked)


def archive_line(found: Failed) -> str:
    """One JSON line: where it was, its context, and the record's bytes (base64), unmasked."""
    record = found.record
    line = {"where": found.where, **row(found),
            "key_base64": base64.b64encode(record.key or b"").decode(),
            "value_base64": base64.b64encode(record.value or b"").decode(),
            "headers": [[k, base64.b64encode(v).decode()] for k, v in record.headers or ()],
            "timestamp_ms": record.timestamp}  # fmt: skip
    return json.dumps(line, ensure_ascii=False, default=str) + "\n"


def purge(settings: Settings, role: str) -> int:
    """Delete every record of a failure topic up to its current end; return how many."""
    from kafka import KafkaAdminClient, TopicPartition

    from erpbridge.kafka_io import end_offsets

    topic = Topics(settings.topic_prefix).failure_topics()[role]
    ends = end_offsets(settings, topic)
    admin = KafkaAdminClient(**client_options(settings))
    try:
        starts = _start_offsets(settings, topic)
        admin.delete_records({TopicPartition(topic, p): end for p, end in ends.items()})
    finally:
        admin.close()
    return sum(end - starts.get(p, 0) for p, end in ends.items())


def _start_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**client_options(settings))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {
            tp.partition: offset for tp, offset in consumer.beginning_offsets(partitions).items()
        }
    finally:
        consumer.close()


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")
