"""Materialize the topics into the store: postings (and their lines), the ERP's feedback, claim
statuses. Batch by batch, each batch's rows and the read position after it in one transaction:
re-reading changes nothing, a crash loses nothing. ``erpbridge books sync`` catches up and stops;
``--follow`` keeps going."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from books.journey import FAILURE_ROLES, INPUT_ROLES, rows_of
from books.store import BooksSettings, Store
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures.record import FailureRecord
from erpbridge.kafka_security import client_options
from erpbridge.metrics import BOOKS_RECORDS

log = logging.getLogger(__name__)
# the topics read, by role: the booking's (postings, answers, statuses), and for the journeys
# (books.journey) the inputs and every failure topic
ROLES = ("postings", "erp_feedback", "claim_status", *INPUT_ROLES, *FAILURE_ROLES)


@dataclass
class SyncReport:
    read: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)


def _rows(role: str, record: ConsumerRecord, value: Any) -> dict[str, list[tuple]]:
    rows = _booking_rows(role, record, value)
    rows["journey"] = rows_of(role, record, value)
    return rows


def _booking_rows(role: str, record: ConsumerRecord, value: Any) -> dict[str, list[tuple]]:
    if role in INPUT_ROLES or role in FAILURE_ROLES:
        return {}
    if role == "postings":
        posting = (value["posting_id"], value["claim_id"], value["claim_version"],
                   value["source_system"], value["employee_id"], value["employee_name"],
                   value.get("department"), value.get("cost_centre"), value["posting_date"],
                   value["currency"], value["total_minor"], value.get("tax_minor", 0),
                   value["created_at"], record.topic, record.partition, record.offset)  # fmt: skip
        lines = [(value["posting_id"], n, line["account_code"],
                  line["description"].split(":", 1)[0].strip() or None, line["description"],
                  line["amount_minor"], sum(v["tax_minor"] for v in line.get("input_vat", [])))
                 for n, line in enumerate(value["lines"], 1)]  # fmt: skip
        return {"postings": [posting], "posting_lines": lines}
    if role == "erp_feedback" and value["status"] == "PAID":  # the booking's answer stays
        return {"payments": [(value["posting_id"], value["erp"], value.get("paid_minor"),
                              value.get("paid_on"), value.get("payment_reference"),
                              value["answered_at"])]}  # fmt: skip
    if role == "erp_feedback":
        return {"feedback": [(value["posting_id"], value["erp"], value["status"],
                              value.get("document_number"), value.get("document_id"),
                              value.get("voucher_number"), value.get("total_minor"),
                              value.get("message"), value["answered_at"])]}  # fmt: skip
    return {"claim_status": [(value["claim_id"], value["claim_version"], value["status"],
                              value.get("reason"), value["occurred_at"])]}  # fmt: skip


def sync(settings: Settings, config: BooksSettings, store: Store,
         stop: threading.Event | None = None, follow: bool = False,
         progress: Callable[[str, int], None] | None = None) -> SyncReport:  # fmt: skip
    """Read every role's topic from where the store left off to its end (or on, ``follow``:
    every topic, for as long as it runs)."""
    report = SyncReport(dict.fromkeys(ROLES, 0), dict.fromkeys(ROLES, 0))
    codecs = TopicCodecs(settings)
    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                             isolation_level="read_committed",
                             max_poll_records=config.batch_records)  # fmt: skip
    try:
        role_of = {codecs.topic(role): role for role in ROLES}
        partitions = [TopicPartition(topic, p) for topic in role_of
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]  # fmt: skip
        consumer.assign(partitions)
        for topic in role_of:
            known = store.positions(topic)
            for tp in (tp for tp in partitions if tp.topic == topic):
                if tp.partition in known:
                    consumer.seek(tp, known[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
        end = consumer.end_offsets(partitions)
        while not (stop and stop.is_set()):
            if not follow and all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            batches = consumer.poll(timeout_ms=500)
            if batches:
                _store_batches(store, codecs, role_of, consumer, batches, report, progress)
    finally:
        consumer.close()
        codecs.close()
    for role in ROLES:
        log.info("books synced role=%s read=%d unreadable=%d", role, report.read[role],
                 report.unreadable[role])  # fmt: skip
    return report


def _store_batches(store: Store, codecs: TopicCodecs, role_of: dict[str, str],
                   consumer: KafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]],
                   report: SyncReport,
                   progress: Callable[[str, int], None] | None) -> None:  # fmt: skip
    """One poll's records and the read positions after them, in one transaction."""
    rows: dict[str, list[tuple]] = {}
    for tp, records in batches.items():
        role = role_of[tp.topic]
        for record in records:
            try:
                value = (FailureRecord.read_any(record) if role in FAILURE_ROLES
                         else codecs.deserializer(role)(record.value))  # fmt: skip
            except DecodeError:
                report.unreadable[role] += 1
                BOOKS_RECORDS.labels(role, "unreadable").inc()
                continue
            for table, found in _rows(role, record, value).items():
                rows.setdefault(table, []).extend(found)
            report.read[role] += 1
            BOOKS_RECORDS.labels(role, "stored").inc()
    with store.transaction():
        for table, found in rows.items():
            store.upsert(table, found)
        store.upsert("progress", [(tp.topic, tp.partition, consumer.position(tp))
                                  for tp in batches])  # fmt: skip
    if progress is not None:
        for role in sorted({role_of[tp.topic] for tp in batches}):
            progress(role, report.read[role])
