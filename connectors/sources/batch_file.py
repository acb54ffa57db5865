"""Batch-file source: a CSV export of expense claims -> the raw claims topic, one record per row.

Each row is validated into an ExpenseClaim (contract ``expense_claim``) keyed by claim id, with
its provenance (file name, line). A row that is not a valid claim goes to the rejection topic as
a DeadLetter with every reason and its line number. The file is streamed, never loaded whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from pydantic import ValidationError
from tqdm import tqdm

from connectors.sources.ledger import ImportLedger, file_checksum, row_identity
from connectors.sources.models import problems_of
from connectors.sources.rows import claim_from_row
from erpbridge.codec import encode_key
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.metrics import SOURCE_PUBLISH_SECONDS, SOURCE_RECORDS
from erpbridge.rejections import dead_letter

SOURCE = "batch_file"
log = logging.getLogger(__name__)

# Column names as upstream systems export them (English and Chinese) -> our raw field names.
HEADER_ALIASES: dict[str, str] = {
    "claim_id": "claim_id",
    "报销单号": "claim_id",
    "单据编号": "claim_id",
    "employee_id": "employee_id",
    "工号": "employee_id",
    "员工编号": "employee_id",
    "employee_name": "employee_name",
    "姓名": "employee_name",
    "员工姓名": "employee_name",
    "expense_date": "expense_date",
    "日期": "expense_date",
    "费用日期": "expense_date",
    "category": "category",
    "费用类别": "category",
    "类别": "category",
    "description": "description",
    "摘要": "description",
    "说明": "description",
    "amount": "amount",
    "金额": "amount",
    "currency": "currency",
    "币种": "currency",
}
REQUIRED_COLUMNS = ("claim_id", "amount")


class FileFormatError(ValueError):
    """The file as a whole cannot be read (encoding, missing columns)."""


@dataclass
class ImportReport:
    path: str
    rows: int = 0
    published: int = 0
    rejected: int = 0
    already_imported: int = 0
    claim_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.path}: {self.rows} rows, {self.published} published, "
            f"{self.rejected} rejected, {self.already_imported} already imported"
        )


def open_text(path: Path) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM), else GBK (GB18030), as exported by Chinese finance software."""
    with path.open("rb") as probe:
        head = probe.read(64 * 1024)
        complete = not probe.read(1)
    return open(path, encoding=detect_encoding(head, complete, path.name), newline="")


def detect_encoding(head: bytes, complete: bool, name: str) -> str:
    # An incremental decoder does not fail on a multi-byte character cut by the probe window.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
            return encoding
        except UnicodeDecodeError:
            continue
    raise FileFormatError(f"{name}: neither UTF-8 nor GBK text")


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row with canonical field names)."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise FileFormatError(f"{path.name}: empty file") from None
        names = [
            HEADER_ALIASES.get(column.strip().lower(), HEADER_ALIASES.get(column.strip(), ""))
            for column in header
        ]
        missing = [column for column in REQUIRED_COLUMNS if column not in names]
        if missing:
            raise FileFormatError(f"{path.name}: missing column(s) {missing}; header was {header}")
        for values in reader:
            if not any(value.strip() for value in values):
                continue
            row = {name: value for name, value in zip(names, values, strict=False) if name}
            if len(values) != len(header):
                row["_column_count"] = f"{len(values)} values for {len(header)} columns"
            yield reader.line_num, row


def import_file(
    path: Path,
    settings: Settings,
    source_system: str = "batch_file",
    *,
    keep_ids: bool = True,
    progress: bool | None = None,
) -> ImportReport:
    """Publish every valid, not yet imported row as an ExpenseClaim and every invalid one as a
    DeadLetter with its line number; return once the broker acknowledged every record.

    Memory stays bounded: rows go out in batches, each acknowledged before the next is read.
    """
    with path.open("rb") as handle:
        checksum = file_checksum(iter(lambda: handle.read(1 << 20), b""))
    ledger = ImportLedger(settings.redis_url, source_system)
    report = ImportReport(path=path.name)
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    started = time.perf_counter()
    try:
        batch = _Batch(producer, ledger, codecs, source_system, report, keep_ids)
        for line, row in tqdm(read_rows(path), unit=" rows", desc=path.name, disable=progress
                              is False or None, leave=False):  # fmt: skip
            batch.add(path.name, line, row)
            if len(batch) >= BATCH_ROWS:
                batch.flush()
        batch.flush()
        ledger.mark_file_done(checksum, report.summary())
    finally:
        producer.close()
        codecs.close()
        ledger.close()
    SOURCE_PUBLISH_SECONDS.labels(SOURCE).observe(time.perf_counter() - started)
    log.info("imported %s checksum=%s", report.summary(), checksum[:12])
    return report


BATCH_ROWS = 2000


class _Batch:
    """Rows read but not yet acknowledged by the broker."""

    def __init__(
        self,
        producer: KafkaProducer,
        ledger: ImportLedger,
        codecs: TopicCodecs,
        source_system: str,
        report: ImportReport,
        keep_ids: bool,
    ) -> None:
        self.producer, self.ledger, self.codecs = producer, ledger, codecs
        self.source_system, self.report, self.keep_ids = source_system, report, keep_ids
        self.rows: list[tuple[str, int, dict[str, str], str, str]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, file_name: str, line: int, row: dict[str, str]) -> None:
        claim_id = row.get("claim_id", "").strip()
        content = {k: v for k, v in row.items() if k != "_column_count"}
        identity = row_identity(self.source_system, claim_id, content)
        self.rows.append((file_name, line, row, claim_id, identity))

    def flush(self) -> None:
        if not self.rows:
            return
        known = self.ledger.known([identity for *_, identity in self.rows])
        futures, sent = [], []
        for file_name, line, row, claim_id, identity in self.rows:
            self.report.rows += 1
            SOURCE_RECORDS.labels(SOURCE, "read").inc()
            if identity in known:
                self.report.already_imported += 1
                continue
            future, published = self._send(file_name, line, row, claim_id)
            futures.append(future)
            sent.append(identity)
            if published:
                self.report.published += 1
                if self.keep_ids:
                    self.report.claim_ids.append(claim_id)
            else:
                self.report.rejected += 1
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge
        self.ledger.record(sent)
        self.rows.clear()

    def _send(
        self, file_name: str, line: int, row: dict[str, str], claim_id: str
    ) -> tuple[Any, bool]:
        origin = {"file": file_name, "line": str(line)}
        problems = [f"row: {row['_column_count']}"] if "_column_count" in row else []
        try:
            claim = claim_from_row(row)
        except ValidationError as exc:
            problems += [f"{p['field']}: {p['message']}" for p in problems_of(exc)]
        if problems:
            SOURCE_RECORDS.labels(SOURCE, "rejected").inc()
            envelope = dead_letter(
                stage="source.batch_file",
                reason="invalid_row",
                problems=problems,
                original=json.dumps(row, ensure_ascii=False).encode(),
                content_type="application/json",
                origin=origin,
                entity_id=claim_id or None,
            )
            return self.producer.send(
                self.codecs.topic("rejected"),
                value=self.codecs.serializer("rejected")(envelope),
                key=encode_key(claim_id) if claim_id else None,
            ), False
        record = claim.to_record(self.source_system, origin)
        SOURCE_RECORDS.labels(SOURCE, "published").inc()
        return self.producer.send(
            self.codecs.topic("claims_raw"),
            value=self.codecs.serializer("claims_raw")(record),
            key=encode_key(record["claim_id"]),
        ), True
