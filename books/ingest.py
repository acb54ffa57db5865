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

from books.store import BooksSettings, Store
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_security import client_options
from erpbridge.metrics import BOOKS_RECORDS

log = logging.getLogger(__name__)
ROLES = ("postings", "erp_feedback", "claim_status")


@dataclass
class SyncReport:
    read: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)


def _rows(role: str, record: ConsumerRecord, value: dict[str, Any]) -> dict[str, list[tuple]]:
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
    """Read every role's topic from where the store left off to its end (or on, ``follow``)."""
    report = SyncReport()
    codecs = TopicCodecs(settings)
    try:
        for role in ROLES:
            report.read[role], report.unreadable[role] = _sync_topic(
                settings, config, store, codecs, role, stop, follow and role == ROLES[-1],
                progress)  # fmt: skip
    finally:
        codecs.close()
    return report


def _sync_topic(settings: Settings, config: BooksSettings, store: Store, codecs: TopicCodecs,
                role: str, stop: threading.Event | None, follow: bool,
                progress: Callable[[str, int], None] | None) -> tuple[int, int]:  # fmt: skip
    topic = codecs.topic(role)
    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False,
                             isolation_level="read_committed",
                             max_poll_records=config.batch_records)  # fmt: skip
    read = unreadable = 0
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        known = store.positions(topic)
        for tp in partitions:
            if tp.partition in known:
                consumer.seek(tp, known[tp.partition])
            else:
                consumer.seek_to_beginning(tp)
        end = consumer.end_offsets(partitions)
        while not (stop and stop.is_set()):
            if not follow and all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            batches = consumer.poll(timeout_ms=500)
            if not batches:
                continue
            rows: dict[str, list[tuple]] = {}
            for records in batches.values():
                for record in records:
                    try:
                        value = codecs.deserializer(role)(record.value)
                    except DecodeError:
                        unreadable += 1
                        BOOKS_RECORDS.labels(role, "unreadable").inc()
                        continue
                    for table, found in _rows(role, record, value).items():
                        rows.setdefault(table, []).extend(found)
                    read += 1
            with store.transaction():
                for table, found in rows.items():
                    store.upsert(table, found)
                store.upsert("progress", [(topic, tp.partition, consumer.position(tp))
                                          for tp in batches])  # fmt: skip
            BOOKS_RECORDS.labels(role, "stored").inc(sum(len(r) for r in batches.values()))
            if progress is not None:
                progress(role, read)
    finally:
        consumer.close()
    log.info("books synced role=%s read=%d unreadable=%d", role, read, unreadable)
    return read, unreadable
