"""Sink runner: postings (ErpPosting) -> ERP writer.

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
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, manual_commit_consumer
from erpbridge.metrics import SINK_ERP_SECONDS, SINK_RECORDS
from erpbridge.model import Posting
from erpbridge.registry.client import RegistryUnavailable
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
        if self.topics.erp_dead_letter == self.topics.postings:
            raise ValueError("the dead-letter topic must not be the sink's input topic")
        self.policy = RetryPolicy(
            self.settings.sink_retry_initial_s, self.settings.sink_retry_max_s
        )
        self._retrying: dict[TopicPartition, _Retrying] = {}
        self.codecs = TopicCodecs(self.settings)

    def run(self) -> None:
        consumer = manual_commit_consumer(
            self.settings, self.settings.sink_group_id, self.topics.postings
        )
        producer = durable_producer(self.settings)
        log.info(
            "sink started erp=%s topic=%s group=%s",
            self.writer.name,
            self.topics.postings,
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
            self.codecs.close()

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
        # Every record of the batch is done: commit the position, which also steps over the
        # transaction markers after them (else the group shows a lag that is not there).
        position = consumer.position(tp)
        if records and position is not None and position > records[-1].offset + 1:
            consumer.commit({tp: OffsetAndMetadata(position, "", -1)})

    def _handle(self, producer: KafkaProducer, record: ConsumerRecord) -> bool:
        """True when the record is done with (booked, or dead-lettered); False to retry it."""
        tp = TopicPartition(record.topic, record.partition)
        attempts = self._attempts(tp, record.offset) + 1
        try:
            posting = Posting.from_record(self.codecs.deserializer("postings")(record.value))
        except RegistryUnavailable as exc:
            return self._retry(tp, record, attempts, exc, None)
        except DecodeError as exc:
            self._dead_letter(producer, record, "convert", exc, attempts)
            return True
        started = time.perf_counter()
        try:
            booking = self.writer.book(posting)
        except RetryableErpError as exc:
            return self._retry(tp, record, attempts, exc, posting.claim_id)
        except PermanentErpError as exc:
            self._dead_letter(producer, record, "put", exc, attempts)
            return True
        SINK_ERP_SECONDS.labels(self.writer.name).observe(time.perf_counter() - started)
        self._booked(record, booking)
        return True

    def _retry(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        attempts: int,
        error: Exception,
        claim_id: str | None,
    ) -> bool:
        """Remember the attempt; the caller rewinds the partition and backs off."""
        self._retrying[tp] = _Retrying(record.offset, attempts)
        SINK_RECORDS.labels(self.writer.name, "retried").inc()
        log.warning("erp retry stage=put topic=%s partition=%d offset=%d claim_id=%s attempt=%d "
                    "error=%s", record.topic, record.partition, record.offset, claim_id,
                    attempts, error)  # fmt: skip
        return False

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
