"""Audit: every claim the processors have consumed is still in their ``claims`` table.

The processors commit each input's offset in the same transaction as the table write it caused,
so a read_committed reader that first takes the group's committed offsets and then reads the
table's changelog to its end must find, for every claim id (and every approval) below those
offsets, a case that holds it. A claim id consumed but absent from the table, or a case that
has an approval but lost the claim it consumed, is a claim forgotten silently: its later inputs
can never post it. The audit names each one, per source partition and offset, so an operator
can re-send it (and a change that loses state fails the repeated-kill test).

Also reported: cases complete (claim, final approval, every invoice valid) but never posted.

``erpbridge streams audit`` runs it once (exit status 1 when anything is lost) or every N
seconds with Prometheus metrics. It reads Kafka only; it does not need the workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka import KafkaAdminClient

from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.topic_reader import read_all
from erpbridge.topics import table_changelog
from streams.claim_case import ClaimCase, Policy, complete

SOURCES = ("claims_raw", "approvals_raw")


@dataclass
class PartitionAudit:
    topic: str
    partition: int
    committed: int  # the processors' committed offset (records below it were processed)
    records: int = 0
    claims: int = 0  # distinct claim ids below the committed offset
    lost: list[tuple[str, int]] = field(default_factory=list)  # (claim id, offset first seen)


@dataclass
class AuditReport:
    partitions: list[PartitionAudit]
    cases: int  # live cases in the table
    purged: int  # cases forgotten after the retention window (tombstones)
    unreadable: int  # input records the processors refuse as undecodable (not cases)
    complete_not_posted: list[str]

    @property
    def lost(self) -> list[str]:
        return sorted({claim for p in self.partitions for claim, _ in p.lost})

    @property
    def ok(self) -> bool:
        return not self.lost and not self.complete_not_posted

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost, "ok": self.ok}


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == topic and meta.offset >= 0}  # fmt: skip


def latest_by_key(records: Iterable[Any]) -> dict[bytes, Any]:
    """A compacted changelog's current content: the last value per key (None: deleted)."""
    table: dict[bytes, Any] = {}
    for record in records:
        table[record.key] = None if record.value is None else json.loads(record.value)
    return table


def judge(role: str, claim_id: str, case: Mapping[str, Any] | None) -> bool:
    """Does the table still hold what this consumed input put there?"""
    if case is None:
        return False
    if role == "claims_raw":
        return case.get("claim_b64") is not None or case.get("hash") is not None
    return True  # an approval (any decision, even a stale one) leaves its case behind


def audit(settings: Settings) -> AuditReport:
    codecs = TopicCodecs(settings)
    try:
        # Offsets first, then the table: the changelog holds at least what they committed.
        committed = {role: committed_offsets(settings, settings.streams_app_id,
                                             codecs.topic(role)) for role in SOURCES}  # fmt: skip
        changelog = read_all(settings, table_changelog(settings.streams_app_id, "claims"),
                             timeout_s=120)  # fmt: skip
        table = latest_by_key(changelog)
        partitions, unreadable = [], 0
        for role in SOURCES:
            topic = codecs.topic(role)
            by_partition: dict[int, PartitionAudit] = {
                p: PartitionAudit(topic, p, offset) for p, offset in committed[role].items()
            }
            seen: dict[tuple[int, str], int] = {}
            for record in read_all(settings, topic, timeout_s=120, until=committed[role]):
                part = by_partition.get(record.partition)
                if part is None:
                    continue  # nothing committed there yet
                part.records += 1
                try:
                    claim_id = codecs.deserializer(role)(record.value)["claim_id"]
                except DecodeError:
                    unreadable += 1  # refused by the processors, on the rejection topic
                    continue
                seen.setdefault((record.partition, claim_id), record.offset)
            for (partition, claim_id), offset in sorted(seen.items()):
                part = by_partition[partition]
                part.claims += 1
                key = claim_id.encode()
                if key in table and table[key] is None:
                    continue  # purged after the retention window
                if not judge(role, claim_id, table.get(key)):
                    part.lost.append((claim_id, offset))
            partitions += sorted(by_partition.values(), key=lambda p: p.partition)
        cases = [case for case in table.values() if case is not None]
        policy = Policy(require_approval=settings.streams_require_approval)
        stuck = sorted(case["claim_id"] for case in cases
                       if complete(ClaimCase.from_json(case), policy))  # fmt: skip
        return AuditReport(partitions, len(cases), len(table) - len(cases), unreadable, stuck)
    finally:
        codecs.close()


def render(report: AuditReport) -> str:
    """A table per source partition, then what is lost or stuck."""
    rows = [f"{'topic':<40} {'part':>4} {'committed':>9} {'records':>8} {'claims':>7} {'lost':>5}"]
    for p in report.partitions:
        rows.append(f"{p.topic:<40} {p.partition:>4} {p.committed:>9} {p.records:>8} "
                    f"{p.claims:>7} {len(p.lost):>5}")  # fmt: skip
    rows.append(f"claims table: {report.cases} cases, {report.purged} purged after retention; "
                f"{report.unreadable} undecodable inputs (on the rejection topic)")  # fmt: skip
    for p in report.partitions:
        for claim_id, offset in p.lost:
            rows.append(f"LOST {claim_id}: consumed at {p.topic}[{p.partition}]@{offset}, "
                        "not in the claims table: re-send its claim and approvals")  # fmt: skip
    for claim_id in report.complete_not_posted:
        rows.append(f"STUCK {claim_id}: every input in and valid, no posting yet")
    rows.append("ok: every consumed claim is in the table" if report.ok else
                f"{len(report.lost)} lost, {len(report.complete_not_posted)} stuck")  # fmt: skip
    return "\n".join(rows)


def record_metrics(report: AuditReport) -> None:
    from erpbridge.metrics import (
        STREAM_AUDIT_COMPLETE_NOT_POSTED,
        STREAM_AUDIT_LOST,
        STREAM_AUDIT_RUNS,
    )

    STREAM_AUDIT_LOST.set(len(report.lost))
    STREAM_AUDIT_COMPLETE_NOT_POSTED.set(len(report.complete_not_posted))
    STREAM_AUDIT_RUNS.labels("ok" if report.ok else "differences").inc()
