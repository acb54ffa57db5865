"""The payment loop: a booked posting is watched in the ERP until it is paid, then an
ErpFeedback PAID (amount, date, payment reference) goes back upstream.

The watcher of an ERP reads that ERP's answers (the ``erp_feedback`` topic): each BOOKED or
ALREADY_BOOKED posting is watched until a PAID of it is on the topic. Every ``poll_s`` it asks
the ERP's writer which watched postings are paid (one lookup per ``batch`` references,
:meth:`connectors.erp.base.PaymentLookup.payments`) and publishes a PAID for each, acknowledged
by the broker before the posting stops being watched. The feedback webhook delivers PAID like
any other answer.

Each PAID is published once. What is watched and what is paid are rebuilt from the topic
itself at start (read from the beginning to its end before the first lookup), so a restart
publishes no second PAID for a posting whose PAID is on the topic. One watcher runs per ERP (it
reads every partition; a Deployment of one replica, recreated rather than rolled).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from connectors.erp.base import Payment, PaymentLookup
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import admin_when_broker_answers, durable_producer
from erpbridge.kafka_security import client_options
from erpbridge.metrics import PAYMENTS_PAID, PAYMENTS_WATCHED, readiness_check

log = logging.getLogger(__name__)
BOOKED = frozenset({"BOOKED", "ALREADY_BOOKED"})


@dataclass
class _Booked:
    feedback: dict[str, Any]  # the booking's answer, PAID copies it


class PaymentWatcher:
    def __init__(self, settings: Settings, lookup: PaymentLookup, codecs: TopicCodecs, *,
                 poll_s: float | None = None, batch: int = 200) -> None:  # fmt: skip
        self.settings, self.lookup, self.codecs = settings, lookup, codecs
        self.name = lookup.name
        self.poll_s = settings.payments_poll_s if poll_s is None else poll_s
        self.batch = batch
        self.topic = codecs.topic("erp_feedback")
        self.stop = threading.Event()
        self.watched: dict[str, _Booked] = {}  # posting id -> its booking
        self.paid: set[str] = set()
        self.caught_up = False
        self._decode = codecs.deserializer("erp_feedback")
        self._encode = codecs.serializer("erp_feedback")

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        admin_when_broker_answers(self.settings).close()
        consumer = KafkaConsumer(**client_options(self.settings), enable_auto_commit=False,
                                 isolation_level="read_committed")  # fmt: skip
        producer = durable_producer(self.settings)
        readiness_check(f"payments:{self.name}", self._not_ready)
        try:
            self._catch_up(consumer)
            log.info("payment watcher erp=%s watching %d bookings (%d paid before)", self.name,
                     len(self.watched), len(self.paid))  # fmt: skip
            next_lookup = 0.0
            while not self.stop.is_set():
                self._read(consumer.poll(timeout_ms=500))
                if time.monotonic() >= next_lookup:
                    self.look_up(producer)
                    next_lookup = time.monotonic() + self.poll_s
        finally:
            consumer.close(autocommit=False)
            producer.close()

    def _not_ready(self) -> str | None:
        return None if self.caught_up else "reading the ERP's answers so far"

    def _catch_up(self, consumer: KafkaConsumer) -> None:
        """Read the topic from its beginning to its end as of now."""
        partitions = consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        while not self.stop.is_set() and any(consumer.position(tp) < end[tp] for tp in tps):
            self._read(consumer.poll(timeout_ms=500))
        self.caught_up = True

    def _read(self, batches: dict[Any, list[Any]]) -> None:
        for records in batches.values():
            for record in records:
                self.note(self._decode(record.value))
        PAYMENTS_WATCHED.labels(self.name).set(len(self.watched))

    def note(self, feedback: dict[str, Any]) -> None:
        """One answer of the topic: a booking of ours starts being watched, a PAID ends it."""
        if feedback["erp"] != self.name:
            return
        posting_id, status = feedback["posting_id"], feedback["status"]
        if status == "PAID":
            self.paid.add(posting_id)
            self.watched.pop(posting_id, None)
        elif status in BOOKED and posting_id not in self.paid:
            self.watched[posting_id] = _Booked(feedback)

    def look_up(self, producer: Any) -> int:
        """Ask the ERP about every watched booking; publish a PAID for each paid one. Returns
        how many were published."""
        published = 0
        for chunk in _chunks(sorted(self.watched), self.batch):
            try:
                found = self.lookup.payments(chunk)
            except Exception as exc:  # noqa: BLE001  the ERP is down: asked again next round
                log.warning("payment lookup failed erp=%s error=%s", self.name, exc)
                PAYMENTS_PAID.labels(self.name, "lookup_failed").inc()
                return published
            for posting_id, payment in sorted(found.items()):
                booked = self.watched.get(posting_id)
                if booked is None:
                    continue
                value = paid_feedback(booked.feedback, payment)
                producer.send(self.topic, key=value["claim_id"].encode(),
                              value=self._encode(value)).get(timeout=30)  # fmt: skip
                self.note(value)
                published += 1
                PAYMENTS_PAID.labels(self.name, "paid").inc()
                log.info("paid claim_id=%s posting_id=%s amount_minor=%d paid_on=%s "
                         "payment_reference=%s", value["claim_id"], posting_id,
                         payment.paid_minor, payment.paid_on,
                         payment.payment_reference)  # fmt: skip
        PAYMENTS_WATCHED.labels(self.name).set(len(self.watched))
        return published


def paid_feedback(booked: dict[str, Any], payment: Payment) -> dict[str, Any]:
    """The PAID answer of a booking: its booking's fields, the payment's, and now."""
    return {**booked, "status": "PAID", "message": None,
            "answered_at": datetime.datetime.now(datetime.UTC),
            "paid_minor": payment.paid_minor, "paid_on": payment.paid_on,
            "payment_reference": payment.payment_reference}  # fmt: skip


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
