"""``erpbridge source masterdata --from ERP``: the reference data the processors map, kept in
step with the ERP instead of files loaded by hand.

One sync:

1. reads what the ERP lists (:meth:`connectors.erp.base.MasterDataSource.master_data`), whole
   for each kind it covers;
2. reads the reference topic whole (read_committed): what the processors hold now;
3. plans the difference. A listed entry that is new or differs is published, marked with its
   ``source`` (the ERP's name) and ``source_ref`` (the ERP's record). An entry of a covered kind
   that this source published and the ERP no longer lists is removed with a tombstone. Entries
   loaded from files (no ``source``) are never removed by a sync; an entry the ERP lists
   replaces a file's entry of the same key: **for what it lists, the ERP wins; files keep what
   it does not list**;
4. guards the removals: a plan that removes every entry of a kind this source published, or
   more than ``max_removal_share`` of them (one is always allowed), is refused whole and
   nothing is published: an empty export or a wrong filter must not empty the mappings;
5. publishes the plan in one Kafka transaction (the processors read read_committed: they see
   the whole sync or none of it), each record's headers naming the sync, its source and time.

Unchanged entries are not published again, so a sync that finds nothing new writes nothing.
"""

from __future__ import annotations

import datetime
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.erp.base import MasterData
from erpbridge.config import Settings
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.metrics import MASTERDATA_CHANGES, MASTERDATA_LAST_SYNC, MASTERDATA_SYNCS
from erpbridge.topic_reader import read_all
from erpbridge.topics import Topics

Entries = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Change:
    op: str  # "add", "change" or "remove"
    key: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class KindCounts:
    listed: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    owned_before: int = 0  # entries of this kind the source had published before the sync


@dataclass
class SyncReport:
    sync_id: str
    source: str
    dry_run: bool
    outcome: str = "unchanged"  # published, unchanged, refused, dry_run
    kinds: dict[str, KindCounts] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why the guard stopped it
    skipped: list[str] = field(default_factory=list)  # what the ERP has but cannot be mapped
    published: int = 0
    took_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Flat counts for the audit trail: ``employee.added`` and so on."""
        return {f"{kind}.{name}": value for kind, counts in self.kinds.items()
                for name, value in asdict(counts).items()}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "sync_id": self.sync_id, "source": self.source, "dry_run": self.dry_run,
            "outcome": self.outcome, "published": self.published, "took_s": round(self.took_s, 3),
            "kinds": {kind: asdict(counts) for kind, counts in self.kinds.items()},
            "refused": self.refused, "skipped": self.skipped,
            "changes": [asdict(change) for change in self.changes],
        }  # fmt: skip


def current_entries(settings: Settings) -> Entries:
    """The reference topic folded to its latest value per key (a tombstone removes the key)."""
    entries: Entries = {}
    for record in read_all(settings, Topics(settings.topic_prefix).reference, timeout_s=120):
        key = (record.key or b"").decode()
        if record.value is None:
            entries.pop(key, None)
        else:
            try:
                entries[key] = json.loads(record.value)
            except ValueError:
                continue  # the processors skip it too (and log it)
    return entries


def plan(current: Mapping[str, Mapping[str, Any]], listed: MasterData, source: str,
         max_removal_share: float, report: SyncReport) -> None:  # fmt: skip
    """Fill ``report`` with the changes from ``current`` to what ``listed`` says, and refuse
    them (``report.refused``) when they remove too much."""
    for kind in sorted(listed.kinds):
        counts = report.kinds.setdefault(kind, KindCounts())
        prefix = f"{kind}:"
        wanted = {k: dict(v, source=source) for k, v in listed.entries.items()
                  if k.startswith(prefix)}  # fmt: skip
        counts.listed = len(wanted)
        owned = {k for k, v in current.items() if k.startswith(prefix)
                 and isinstance(v, Mapping) and v.get("source") == source}  # fmt: skip
        counts.owned_before = len(owned)
        for key, value in sorted(wanted.items()):
            before = current.get(key)
            if before is None:
                report.changes.append(Change("add", key, None, value))
                counts.added += 1
            elif dict(before) != value:
                report.changes.append(Change("change", key, dict(before), value))
                counts.changed += 1
            else:
                counts.unchanged += 1
        for key in sorted(owned - wanted.keys()):
            report.changes.append(Change("remove", key, dict(current[key]), None))
            counts.removed += 1
        allowed = max(1, math.floor(max_removal_share * counts.owned_before))
        if counts.removed and not wanted:
            report.refused.append(f"{kind}: the ERP listed none, which would remove all "
                                  f"{counts.removed} this sync published before")  # fmt: skip
        elif counts.removed > allowed:
            report.refused.append(
                f"{kind}: {counts.removed} of {counts.owned_before} would be removed at once, "
                f"more than the {max_removal_share:.0%} allowed ({allowed}); check the ERP's "
                "answer, or sync with a larger --max-removal-share")  # fmt: skip
    report.refused.extend(listed.problems)
    report.skipped = list(listed.skipped)


def publish(settings: Settings, report: SyncReport) -> int:
    """The report's changes in one transaction; returns how many records went out."""
    if not report.changes:
        return 0
    topic = Topics(settings.topic_prefix).reference
    producer = durable_producer(settings, transactional_id=f"{settings.topic_prefix}.masterdata."
                                                           f"{report.source}")  # fmt: skip
    headers = [("erpbridge.masterdata.sync", report.sync_id.encode()),
               ("erpbridge.masterdata.source", report.source.encode()),
               ("erpbridge.masterdata.at", _now().isoformat().encode())]  # fmt: skip
    try:
        producer.init_transactions()  # fences a sync of this source still running elsewhere
        producer.begin_transaction()
        try:
            for change in report.changes:
                value = None if change.after is None else json.dumps(change.after).encode()
                producer.send(topic, key=change.key.encode(), value=value, headers=headers)
            producer.commit_transaction()
        except BaseException:
            producer.abort_transaction()
            raise
    finally:
        producer.close()
    return len(report.changes)


def sync(settings: Settings, listed: MasterData, source: str, *, dry_run: bool = False,
         max_removal_share: float | None = None) -> SyncReport:  # fmt: skip
    """One sync of ``listed`` (what the ERP called ``source`` has) into the reference topic."""
    started = time.monotonic()
    report = SyncReport(uuid.uuid4().hex[:12], source, dry_run)
    ensure_topics(settings)
    share = (settings.masterdata_max_removal_share if max_removal_share is None
             else max_removal_share)  # fmt: skip
    plan(current_entries(settings), listed, source, share, report)
    if report.refused:
        report.outcome = "refused"
    elif dry_run:
        report.outcome = "dry_run"
    elif report.changes:
        report.published = publish(settings, report)
        report.outcome = "published"
        for change in report.changes:
            MASTERDATA_CHANGES.labels(source, change.key.partition(":")[0], change.op).inc()
    if report.outcome in ("published", "unchanged"):
        MASTERDATA_LAST_SYNC.labels(source).set(time.time())
    MASTERDATA_SYNCS.labels(source, report.outcome).inc()
    report.took_s = time.monotonic() - started
    return report


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
