"""Audit: every input the processors have consumed is still in their tables.

The processors commit each input's offset in the same transaction as the table write it caused,
so a read_committed reader that first takes the group's committed offsets and then reads the
tables' changelogs to their end must find, for every claim, approval and invoice below those
offsets, a case that holds it. A claim consumed but absent from the ``claims`` table (or a case
that has its approval but lost the claim), or an invoice absent from the ``invoices`` table, was
forgotten silently: later inputs can never post its claim. The audit names each one, with its
source partition and offset, so an operator can re-send it (and a change that loses state fails
the repeated-kill test).

Also reported: cases complete (claim, final approval, every invoice valid) but never posted.

``erpbridge streams audit`` runs it once (exit status 1 when anything is lost) or every N
seconds with Prometheus metrics. It reads Kafka only; it does not need the workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import committed_offsets, end_offsets
from erpbridge.metrics import (
    STREAM_AUDIT_COMPLETE_NOT_POSTED,
    STREAM_AUDIT_LOST,
    STREAM_AUDIT_RUNS,
)
from erpbridge.model import invoice_key
from erpbridge.topic_reader import read_all, read_rejections
from erpbridge.topics import table_changelog
from streams.claim_case import ClaimCase, Policy, complete

Case = Mapping[str, Any] | None
Origin = tuple[str, str, str]  # topic, partition, offset, as a DeadLetter's origin says them


def _has_content(case: Case) -> bool:
    return case is not None and case.get("hash") is not None


@dataclass(frozen=True)
class Source:
    """An input topic, the table its records land in, their key there, and whether a case
    still holds what a consumed record put there."""

    role: str
    table: str
    key: Callable[[Mapping[str, Any]], str]
    kept: Callable[[Case], bool]


SOURCES = (
    Source("claims_raw", "claims", lambda r: r["claim_id"], _has_content),
    # an approval (any decision, even a stale one) leaves its claim's case behind
    Source("approvals_raw", "claims", lambda r: r["claim_id"], lambda case: case is not None),
    Source("invoices_raw", "invoices", lambda r: invoice_key(r["invoice_code"],
                                                             r["invoice_number"]), _has_content),
)  # fmt: skip


@dataclass
class PartitionAudit:
    topic: str
    partition: int
    committed: int  # the processors' committed offset (records below it were processed)
    end: int = 0  # the topic's end: records from committed to end still wait (lag)
    records: int = 0
    table: str = "claims"
    keys: int = 0  # distinct claim ids (invoice keys) below the committed offset
    lost: list[tuple[str, int]] = field(default_factory=list)  # (key, offset first seen)
    unrefused: list[int] = field(default_factory=list)  # undecodable, yet not refused: offsets


@dataclass
class AuditReport:
    partitions: list[PartitionAudit]
    cases: dict[str, int]  # live cases per table
    purged: int  # claim cases forgotten after the retention window (tombstones)
    unreadable: int  # undecodable inputs, each refused on the rejection topic (not cases)
    complete_not_posted: list[str]

    @property
    def lost(self) -> list[str]:
        """Claim ids and invoice keys whose consumed input their table no longer holds."""
        lost = {key for p in self.partitions for key, _ in p.lost}
        lost |= {f"{p.topic}[{p.partition}]@{o}" for p in self.partitions for o in p.unrefused}
        return sorted(lost)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.complete_not_posted

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost, "ok": self.ok}


def latest_by_key(records: Iterable[Any]) -> dict[bytes, Any]:
    """A compacted changelog's current content: the last value per key (None: deleted)."""
    table: dict[bytes, Any] = {}
    for record in records:
        table[record.key] = None if record.value is None else json.loads(record.value)
    return table


def audit(settings: Settings) -> AuditReport:
    codecs = TopicCodecs(settings)
    try:
        # Offsets first, then the tables: the changelogs hold at least what they committed.
        committed = {source.role: committed_offsets(settings, settings.streams_app_id,
                                                    codecs.topic(source.role))
                     for source in SOURCES}  # fmt: skip
        tables = {
            name: latest_by_key(
                read_all(settings, table_changelog(settings.streams_app_id, name), timeout_s=120)
            )
            for name in ("claims", "invoices")
        }
        refused = _refused_as_undecodable(settings)
        partitions, unreadable = [], 0
        for source in SOURCES:
            parts, skipped = _audit_source(settings, codecs, source, committed[source.role],
                                           tables[source.table], refused)  # fmt: skip
            partitions += parts
            unreadable += skipped
        claims = tables["claims"]
        cases = {name: sum(1 for case in table.values() if case is not None)
                 for name, table in tables.items()}  # fmt: skip
        policy = Policy(require_approval=settings.streams_require_approval)
        live = [ClaimCase(**case) for case in claims.values() if case is not None]
        stuck = sorted(case.claim_id for case in live if complete(case, policy))
        purged = sum(1 for case in claims.values() if case is None)
        return AuditReport(partitions, cases, purged, unreadable, stuck)
    finally:
        codecs.close()


def _refused_as_undecodable(settings: Settings) -> set[Origin]:
    """(topic, partition, offset) of every input the processors refused as undecodable."""
    return {(r.origin.get("topic", ""), r.origin.get("partition", ""),
             r.origin.get("offset", "")) for r in read_rejections(settings)
            if r.reason == "undecodable"}  # fmt: skip


def _audit_source(settings: Settings, codecs: TopicCodecs, source: Source,
                  committed: Mapping[int, int], table: Mapping[bytes, Any],
                  refused: set[Origin]) -> tuple[list[PartitionAudit], int]:  # fmt: skip
    topic = codecs.topic(source.role)
    ends = end_offsets(settings, topic)
    parts = {p: PartitionAudit(topic, p, committed.get(p, 0), end, table=source.table)
             for p, end in ends.items()}  # fmt: skip
    first_seen: dict[tuple[int, str], int] = {}
    unreadable = 0
    until = {p: part.committed for p, part in parts.items()}  # only what they consumed
    for record in read_all(settings, topic, timeout_s=120, until=until):
        parts[record.partition].records += 1
        try:
            key = source.key(codecs.deserializer(source.role)(record.value))
        except DecodeError:
            # The processors refuse it; unless that refusal is on the rejection topic, it is
            # lost (and a registry that knows none of the inputs' schemas is no "all well").
            if (topic, str(record.partition), str(record.offset)) in refused:
                unreadable += 1
            else:
                parts[record.partition].unrefused.append(record.offset)
            continue
        first_seen.setdefault((record.partition, key), record.offset)
    for (partition, key), offset in sorted(first_seen.items()):
        part = parts[partition]
        part.keys += 1
        stored = key.encode()
        if stored in table and table[stored] is None:
            continue  # purged after the retention window
        if not source.kept(table.get(stored)):
            part.lost.append((key, offset))
    return sorted(parts.values(), key=lambda p: p.partition), unreadable


def render(report: AuditReport) -> str:
    """A table per source partition, then what is lost or stuck."""
    rows = [f"{'topic':<40} {'part':>4} {'committed':>9} {'lag':>6} {'records':>8} {'keys':>7} "
            f"{'lost':>5}"]  # fmt: skip
    for p in report.partitions:
        rows.append(f"{p.topic:<40} {p.partition:>4} {p.committed:>9} {p.end - p.committed:>6} "
                    f"{p.records:>8} {p.keys:>7} {len(p.lost) + len(p.unrefused):>5}")  # fmt: skip
    tables = ", ".join(f"{name} {count}" for name, count in report.cases.items())
    rows.append(f"cases: {tables}; {report.purged} claims purged after retention; "
                f"{report.unreadable} undecodable inputs (on the rejection topic)")  # fmt: skip
    for p in report.partitions:
        for key, offset in p.lost:
            rows.append(f"LOST {key}: consumed at {p.topic}[{p.partition}]@{offset}, not in the "
                        f"{p.table} table: send it again")  # fmt: skip
        for offset in p.unrefused:
            rows.append(f"LOST {p.topic}[{p.partition}]@{offset}: undecodable here and not on the "
                        "rejection topic (is this the processors' schema registry?)")  # fmt: skip
    for claim_id in report.complete_not_posted:
        rows.append(f"STUCK {claim_id}: every input in and valid, no posting yet")
    rows.append("ok: every consumed input is in its table" if report.ok else
                f"{len(report.lost)} lost, {len(report.complete_not_posted)} stuck")  # fmt: skip
    return "\n".join(rows)


def record_metrics(report: AuditReport) -> None:
    STREAM_AUDIT_LOST.set(len(report.lost))
    STREAM_AUDIT_COMPLETE_NOT_POSTED.set(len(report.complete_not_posted))
    STREAM_AUDIT_RUNS.labels("ok" if report.ok else "differences").inc()
