"""Sink runner: normalized claims -> ERP writer.

Each offset is committed only after the ERP (or the dead-letter topic) acknowledged the record.

Retryable ERP errors do not block the consumer: the partition is rewound to the failed record and
retried after a full-jitter back-off, so nothing is skipped. Permanent errors and undecodable
records go to the dead-letter topic; the offset is committed once the DLQ write is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from connectors.erp.base import Booking, ErpWriter
from connectors.erp.errors import PermanentErpError, RetryableErpError
from connectors.sinks.dead_letter import dead_letter_headers
from erpbridge import codec
from erpbridge.config import Settings
from erpbridge.kafka_io import durable_producer, manual_commit_consumer
from erpbridge.metrics import SINK_ERP_SECONDS, SINK_RECORDS
from erpbridge.model import NormalizedClaim
from erpbridge.retry import RetryPolicy
from erpbridge.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class _Retrying:
    offset: int
    attempts: int = 0


@dataclass
class SinkRunner:
    settings: Settings
    writer: ErpWriter
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.topics = Topics(self.settings.topic_prefix)
        if self.topics.erp_dead_letter == self.topics.claims_normalized:
            raise ValueError("the dead-letter topic must not be the sink's input topic")
        self.policy = RetryPolicy(
            self.settings.sink_retry_initial_s, self.settings.sink_retry_max_s
        )
        self._retrying: dict[TopicPartition, _Retrying] = {}

    def run(self) -> None:
        consumer = manual_commit_consumer(
            self.settings, self.settings.sink_group_id, self.topics.claims_normalized
        )
        producer = durable_producer(self.settings)
        log.info(
            "sink started erp=%s topic=%s group=%s",
            self.writer.name,
            self.topics.claims_normalized,
            self.settings.sink_group_id,
        )
        try:
            while not self.stop.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    self._process(consumer, producer, tp, records)
        finally:
            consumer.close(autocommit=False)
            producer.close()
            self.writer.close()

    def _process(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        tp: TopicPartition,
        records: list[ConsumerRecord],
    ) -> None:
        for record in records:
            if self.stop.is_set():
                return
            if not self._handle(producer, record):
                consumer.seek(tp, record.offset)
                self.stop.wait(self.policy.delay(self._retrying[tp].attempts))
                return
            self._retrying.pop(tp, None)
            consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})

    def _handle(self, producer: KafkaProducer, record: ConsumerRecord) -> bool:
        """True when the record is done with (booked, or dead-lettered); False to retry it."""
        tp = TopicPartition(record.topic, record.partition)
        attempts = self._attempts(tp, record.offset) + 1
        try:
            claim = NormalizedClaim.from_record(codec.decode(record.value))
        except (codec.DecodeError, ValueError, TypeError) as exc:
            self._dead_letter(producer, record, "convert", exc, attempts)
            return True
        started = time.perf_counter()
        try:
            booking = self.writer.book_claim(claim)
        except RetryableErpError as exc:
            self._retrying[tp] = _Retrying(record.offset, attempts)
            SINK_RECORDS.labels(self.writer.name, "retried").inc()
            log.warning(
                "erp retry stage=put topic=%s partition=%d offset=%d claim_id=%s "
                "attempt=%d error=%s",
                record.topic,
                record.partition,
                record.offset,
                claim.claim_id,
                attempts,
                exc,
            )
            return False
        except PermanentErpError as exc:
            self._dead_letter(producer, record, "put", exc, attempts)
            return True
        SINK_ERP_SECONDS.labels(self.writer.name).observe(time.perf_counter() - started)
        self._booked(record, booking)
        return True

    def _attempts(self, tp: TopicPartition, offset: int) -> int:
        retry = self._retrying.get(tp)
        return retry.attempts if retry and retry.offset == offset else 0

    def _booked(self, record: ConsumerRecord, booking: Booking) -> None:
        outcome = "already_booked" if booking.already_booked else "booked"
        SINK_RECORDS.labels(self.writer.name, outcome).inc()
        log.info(
            "%s topic=%s partition=%d offset=%d claim_id=%s erp_number=%s state=%s",
            outcome,
            record.topic,
            record.partition,
            record.offset,
            booking.reference,
            booking.number,
            booking.state,
        )

    def _dead_letter(
        self,
        producer: KafkaProducer,
        record: ConsumerRecord,
        stage: str,
        error: BaseException,
        attempts: int,
    ) -> None:
        headers = dead_letter_headers(record, stage, error, attempts, self.writer.name)
        producer.send(
            self.topics.erp_dead_letter,
            key=record.key,
            value=record.value,
            headers=headers,
            timestamp_ms=record.timestamp,
        ).get(timeout=30)
        SINK_RECORDS.labels(self.writer.name, "dead_lettered").inc()
        log.error(
            "dead-lettered stage=%s topic=%s partition=%d offset=%d error=%s",
            stage,
            record.topic,
            record.partition,
            record.offset,
            error,
        )
