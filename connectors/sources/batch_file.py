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

from connectors.sources.claims import ClaimInvalid, expense_claim
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
    claim_ids: list[str] = field(default_factory=list)


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


def import_file(path: Path, settings: Settings, source_system: str = "batch_file") -> ImportReport:
    """Publish every valid row as an ExpenseClaim; every invalid one as a DeadLetter with its
    line number. Returns once the broker acknowledged every record."""
    codecs = TopicCodecs(settings)
    claims, rejected = codecs.serializer("claims_raw"), codecs.serializer("rejected")
    report = ImportReport(path=path.name)
    producer = durable_producer(settings)
    futures = []
    started = time.perf_counter()
    try:
        for line, row in read_rows(path):
            report.rows += 1
            SOURCE_RECORDS.labels(SOURCE, "read").inc()
            origin = {"file": path.name, "line": str(line)}
            claim_id = row.get("claim_id", "").strip()
            try:
                if "_column_count" in row:
                    raise ClaimInvalid([f"row: {row['_column_count']}"])
                record = expense_claim(row, source_system, origin)
            except ClaimInvalid as exc:
                envelope = dead_letter(
                    stage="source.batch_file",
                    reason="invalid_row",
                    problems=exc.problems,
                    original=json.dumps(row, ensure_ascii=False).encode(),
                    content_type="application/json",
                    origin=origin,
                    entity_id=claim_id or None,
                )
                futures.append(
                    producer.send(
                        codecs.topic("rejected"),
                        value=rejected(envelope),
                        key=encode_key(claim_id) if claim_id else None,
                    )
                )
                report.rejected += 1
                SOURCE_RECORDS.labels(SOURCE, "rejected").inc()
                continue
            futures.append(
                producer.send(
                    codecs.topic("claims_raw"),
                    value=claims(record),
                    key=encode_key(record["claim_id"]),
                )
            )
            report.claim_ids.append(record["claim_id"])
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not acknowledge
    finally:
        producer.close()
        codecs.close()
    report.published = len(report.claim_ids)
    SOURCE_RECORDS.labels(SOURCE, "published").inc(report.published)
    SOURCE_PUBLISH_SECONDS.labels(SOURCE).observe(time.perf_counter() - started)
    log.info(
        "imported file=%s rows=%d published=%d rejected=%d",
        path.name,
        report.rows,
        report.published,
        report.rejected,
    )
    return report
