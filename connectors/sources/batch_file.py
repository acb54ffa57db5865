"""Batch-file source: exported files -> Kafka, validated by the shared models.

CSV claims, JSON Lines of claims, approvals or invoices, and 数电票 e-invoice XML (see
:mod:`connectors.sources.file_formats`). Each valid entity is published to its topic keyed by
its id; an invalid one becomes a failure record on the rejection topic with its file and line (or
entry) and every reason; a file that cannot be read as a whole is recorded there too (name, size,
checksum), after whatever valid entries preceded the fault. The file is streamed in acknowledged
batches (memory stays bounded), and an import ledger makes a re-import of the same file publish
nothing twice.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from pydantic import ValidationError
from tqdm import tqdm

from connectors.sources.file_formats import Entry, FileFormatError, entries, kind_for
from connectors.sources.kinds import KINDS, Kind
from connectors.sources.ledger import ImportLedger, file_checksum, row_identity
from connectors.sources.models import problems_of
from connectors.sources.originals import keep_original
from erpbridge.archive import Archive
from erpbridge.codec import encode_key
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.contracts.serde import SerializationError
from erpbridge.failures import FailureRecord, Stage
from erpbridge.kafka_io import durable_producer
from erpbridge.metrics import SOURCE_PUBLISH_SECONDS, SOURCE_RECORDS

SOURCE = "batch_file"
BATCH_ROWS = 2000
log = logging.getLogger(__name__)
_READ = SOURCE_RECORDS.labels(SOURCE, "read")
_PUBLISHED = SOURCE_RECORDS.labels(SOURCE, "published")
_REJECTED = SOURCE_RECORDS.labels(SOURCE, "rejected")


@dataclass
class ImportReport:
    path: str
    kind: str
    rows: int = 0
    published: int = 0
    rejected: int = 0
    already_imported: int = 0
    ids: list[str] = field(default_factory=list)
    previous_import: str | None = None  # the summary of an earlier import of the same bytes

    def summary(self) -> str:
        text = (
            f"{self.path} ({self.kind}): {self.rows} rows, {self.published} published, "
            f"{self.rejected} rejected, {self.already_imported} already imported"
        )
        return (
            f"{text} (the same file was imported before: {self.previous_import})"
            if (self.previous_import)
            else text
        )


def import_file(
    path: Path,
    settings: Settings,
    source_system: str = "batch_file",
    *,
    kind: str | None = None,
    keep_ids: bool = True,
    progress: bool | None = None,
) -> ImportReport:
    """Publish every valid, not yet imported entity and reject every invalid one; return once
    the broker acknowledged every record."""
    chosen = KINDS[kind_for(path, kind)]
    with path.open("rb") as handle:
        checksum = file_checksum(iter(lambda: handle.read(1 << 20), b""))
    ledger = ImportLedger(settings.redis_url, source_system, settings.topic_prefix)
    report = ImportReport(
        path=path.name, kind=chosen.name, previous_import=ledger.file_done(checksum)
    )
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    started = time.perf_counter()
    try:
        tz, archive = settings.time_zone_for(source_system), Archive(settings.archive_dir)
        batch = _Batch(producer, ledger, codecs, chosen, source_system, report, keep_ids, tz,
                       archive)  # fmt: skip
        try:
            for entry in tqdm(
                entries(path, chosen.name),
                unit=" rows",
                desc=path.name,
                leave=False,
                disable=True if progress is False else None,
            ):
                batch.add(entry)
                if len(batch) >= BATCH_ROWS:
                    batch.flush()
        except FileFormatError as exc:  # what was read before stays good; the file is refused
            batch.flush()
            _refuse_file(producer, codecs, path, checksum, exc)
            raise
        batch.flush()
        if report.previous_import is None:
            ledger.mark_file_done(checksum, report.summary())
    finally:
        producer.close()
        codecs.close()
        ledger.close()
    SOURCE_PUBLISH_SECONDS.labels(SOURCE).observe(time.perf_counter() - started)
    log.info("imported %s checksum=%s", report.summary(), checksum[:12])
    return report


class _Batch:
    """Entries read but not yet acknowledged by the broker."""

    def __init__(
        self,
        producer: KafkaProducer,
        ledger: ImportLedger,
        codecs: TopicCodecs,
        kind: Kind,
        source_system: str,
        report: ImportReport,
        keep_ids: bool,
        tz: datetime.tzinfo,
        archive: Archive,
    ) -> None:
        self.producer, self.ledger, self.codecs, self.kind = producer, ledger, codecs, kind
        self.tz, self.archive = tz, archive
        self.source_system, self.report, self.keep_ids = source_system, report, keep_ids
        self.entries: list[tuple[Entry, str]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> None:
        content = entry.payload if entry.payload is not None else entry.raw.decode(errors="replace")
        self.entries.append((entry, row_identity(self.source_system, self.kind.name, content)))

    def flush(self) -> None:
        if not self.entries:
            return
        known = self.ledger.known([identity for _, identity in self.entries])
        futures, sent = [], []
        for entry, identity in self.entries:
            self.report.rows += 1
            _READ.inc()
            if identity in known:
                self.report.already_imported += 1
                continue
            futures.append(self._send(entry))
            sent.append(identity)
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge
        self.ledger.record(sent)
        self.entries.clear()

    def _send(self, entry: Entry) -> Any:
        problems = list(entry.problems)
        model = None
        if entry.payload is not None:
            try:
                model = self.kind.validate(entry.payload, self.tz)
            except ValidationError as exc:
                problems += [f"{p['field']}: {p['message']}" for p in problems_of(exc)]
        entity_id = _entity_id(entry.payload)
        if problems or model is None:
            return self._refuse(entry, problems, entity_id)
        record = model.to_record(self.source_system, entry.location)
        keep_original(self.archive, model, entry.raw, _content_type(entry), self.source_system,
                      entry.location, record)  # fmt: skip
        key = self.kind.key(model)
        try:
            value = self.codecs.serializer(self.kind.role)(record)
        except (SerializationError, ValueError, OverflowError) as exc:  # beyond the contract
            return self._refuse(
                entry,
                [f"record: does not fit its contract: {type(exc).__name__}: {exc}"],
                key,
                "unencodable",
            )
        self.report.published += 1
        _PUBLISHED.inc()
        if self.keep_ids:
            self.report.ids.append(key)
        return self.producer.send(self.codecs.topic(self.kind.role), key=encode_key(key),
                                  value=value)  # fmt: skip

    def _refuse(self, entry: Entry, problems: list[str], entity_id: str | None,
                reason: str = "invalid_row") -> Any:  # fmt: skip
        self.report.rejected += 1
        _REJECTED.inc()
        failure = FailureRecord.refused(
            stage=Stage.SOURCE_BATCH_FILE, reason=reason, connector=SOURCE, problems=problems,
            original=entry.raw, content_type=_content_type(entry), origin=entry.location,
            entity_id=entity_id, key=encode_key(entity_id) if entity_id else None)  # fmt: skip
        return self.producer.send(self.codecs.topic("rejected"), **failure.to_message())


def _refuse_file(producer: KafkaProducer, codecs: TopicCodecs, path: Path, checksum: str,
                 error: FileFormatError) -> None:  # fmt: skip
    """A file that cannot be read as a whole: on the rejection topic with its name, size and
    checksum (not its bytes), acknowledged before the import reports the error."""
    size = path.stat().st_size
    failure = FailureRecord.refused(
        stage=Stage.SOURCE_BATCH_FILE, reason="unreadable_file", connector=SOURCE,
        problems=[str(error)], original=None, content_type=None,
        origin={"file": path.name, "size": size, "sha256": checksum},
        key=path.name.encode())  # fmt: skip
    producer.send(codecs.topic("rejected"), **failure.to_message()).get(timeout=30)
    _REJECTED.inc()
    log.error("refused file=%s size=%d sha256=%s error=%s", path.name, size, checksum[:12], error)


def _entity_id(payload: dict[str, Any] | None) -> str | None:
    if not payload:
        return None
    for name in ("claim_id", "invoice_number"):
        value = str(payload.get(name) or "").strip()
        if value:
            return value
    return None


def _content_type(entry: Entry) -> str:
    return "application/xml" if "entry" in entry.location else "application/json"
