"""Sink runner: postings (ErpPosting) -> an ErpWriter, with Kafka Connect's error semantics.

- Offsets are committed only after the ERP write succeeded or the dead-letter write was
  acknowledged (and the feedback event, when enabled), up to the first record not done yet.
- Postings are booked in batches (``sink_batch_size``, one ERP call each), batches concurrently
  (``sink_concurrency``), each claim's postings in order; every posting gets its own outcome.
- Retryable errors (timeouts, 429/5xx, locks) rewind the partition to the failed record and
  pause it for a full-jitter back-off; the other partitions go on. A record failing longer than
  ``sink_errors_retry_timeout_s`` or more than ``sink_errors_retry_max_attempts`` times counts as
  failed for good.
- Permanent errors (validation, unknown account, 4xx) and failed-for-good records go to the
  dead-letter topic with Connect-style headers (``errors.tolerance=all``), or stop the sink
  (``none``).
- After ``sink_breaker_threshold`` consecutive retryable failures the circuit breaker opens: all
  partitions are paused (the consumer keeps polling, so no rebalance), the ERP is probed, and
  they resume when it answers.
- Each final outcome is published as an ErpFeedback event (booked, already booked, refused,
  failed) for the expense platform.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from connectors.erp.base import Booking, ErpWriter
from connectors.erp.errors import ErpError, PermanentErpError, RetryableErpError
from connectors.sinks.breaker import CircuitBreaker, State
from connectors.sinks.dead_letter import Failure, SinkStopped, dead_letter_headers
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, manual_commit_consumer
from erpbridge.metrics import SINK_ERP_SECONDS, SINK_IN_FLIGHT, SINK_RECORDS
from erpbridge.model import Posting
from erpbridge.registry.client import RegistryUnavailable
from erpbridge.rejections import Stage
from erpbridge.retry import RetryPolicy
from erpbridge.topics import Topics

log = logging.getLogger(__name__)


class RetriesExhausted(RetryableErpError):
    """A retryable error that went on past the record's retry budget."""


@dataclass
class _Result:
    record: ConsumerRecord
    done: bool  # booked, already booked, or dead-lettered (final); False: retry later
    retryable: bool = False  # a retryable ERP failure (counts for the breaker)
    erp_answered: bool = False  # the ERP answered (success or a permanent refusal)


@dataclass
class SinkRunner:
    settings: Settings
    writer: ErpWriter
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        config = self.settings
        self.topics = Topics(config.topic_prefix)
        if self.topics.postings in (self.topics.erp_dead_letter, self.topics.erp_feedback):
            raise ValueError("the dead-letter and feedback topics must not be the sink's input")
        self.policy = RetryPolicy(config.sink_retry_initial_s, config.sink_retry_max_s)
        self.breaker = CircuitBreaker(
            self.writer.name, config.sink_breaker_threshold, config.sink_breaker_probe_interval_s
        )
        self.codecs = TopicCodecs(config)
        self._failing: dict[tuple[TopicPartition, int], Failure] = {}
        self._done: dict[TopicPartition, set[int]] = {}
        self._backoff_until: dict[TopicPartition, float] = {}
        self._pool = ThreadPoolExecutor(config.sink_concurrency, thread_name_prefix="book")
        self._writes = 0
        self._writes_lock = threading.Lock()
        self._exit_after_writes = config.sink_test_exit_after_writes

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        consumer = manual_commit_consumer(
            self.settings,
            self.settings.sink_group(self.writer.name),
            self.topics.postings,
            max_poll_records=self.settings.sink_max_poll_records,
        )
        self.producer = durable_producer(self.settings)
        log.info(
            "sink started erp=%s topic=%s group=%s concurrency=%d",
            self.writer.name,
            self.topics.postings,
            self.settings.sink_group(self.writer.name),
            self.settings.sink_concurrency,
        )
        try:
            while not self.stop.is_set():
                self._flow_control(consumer)
                batches = consumer.poll(timeout_ms=500)
                if batches:
                    self._process(consumer, batches)
        finally:
            consumer.close(autocommit=False)
            self._pool.shutdown(wait=True)
            self.producer.close()
            self.writer.close()
            self.codecs.close()

    def _flow_control(self, consumer: KafkaConsumer) -> None:
        """Pause everything while the breaker is open; resume partitions whose back-off ended."""
        assigned = consumer.assignment()
        if self.breaker.state is State.OPEN:
            consumer.pause(*assigned)
            if self.breaker.probe_due():
                answered = self._probe()
                self.breaker.probed(answered)
                log.warning("circuit breaker probe erp=%s answered=%s", self.writer.name, answered)
            if self.breaker.state is State.OPEN:
                return
        now = time.monotonic()
        ready = [tp for tp in assigned if self._backoff_until.get(tp, 0.0) <= now]
        for tp in ready:
            self._backoff_until.pop(tp, None)
        consumer.resume(*ready)

    def _probe(self) -> bool:
        try:
            return bool(self.writer.probe())
        except Exception as exc:  # noqa: BLE001  any failure means "not answering yet"
            log.info("probe failed erp=%s error=%s", self.writer.name, exc)
            return False

    # -- one partition's batch ------------------------------------------------------------------
    def _process(
        self, consumer: KafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """One poll's records, all partitions at once: book, then commit per partition."""
        if self.breaker.state is State.OPEN or self.stop.is_set():
            for tp, records in batches.items():
                consumer.seek(tp, records[0].offset)  # fetched before the breaker opened: later
            return
        todo = [
            r
            for tp, records in batches.items()
            for r in records
            if r.offset not in self._done.setdefault(tp, set())
        ]
        results = {
            (r.record.partition, r.record.topic, r.record.offset): r for r in self._book_all(todo)
        }
        for result in results.values():
            if result.retryable:
                self.breaker.failure()
            elif result.erp_answered:
                self.breaker.success()
        self.producer.flush()  # the feedback events are acknowledged before any commit
        for tp, records in batches.items():
            done = {
                r.offset
                for r in records
                if (tp.partition, tp.topic, r.offset) in results
                and results[(tp.partition, tp.topic, r.offset)].done
            }
            self._settle(consumer, tp, records, done)

    def _settle(
        self,
        consumer: KafkaConsumer,
        tp: TopicPartition,
        records: list[ConsumerRecord],
        done_now: set[int],
    ) -> None:
        """Commit up to the first record not done; remember the done ones after it; back off."""
        done_before = self._done.setdefault(tp, set())
        first_open = next(
            (r.offset for r in records if r.offset not in done_before and r.offset not in done_now),
            None,
        )
        if first_open is None:
            self._commit_all(consumer, tp, records)
            return
        consumer.commit({tp: OffsetAndMetadata(first_open, "", -1)})
        done_before.update(offset for offset in done_now if offset > first_open)
        done_before.difference_update(o for o in list(done_before) if o < first_open)
        consumer.seek(tp, first_open)
        failure = self._failing.get((tp, first_open))
        if self.breaker.state is not State.OPEN and failure is not None:
            consumer.pause(tp)
            wait = max(self.policy.delay(failure.attempts), failure.retry_after_s or 0.0)
            self._backoff_until[tp] = time.monotonic() + wait

    def _commit_all(
        self, consumer: KafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> None:
        # Commit the position, which also steps over transaction markers after the last record
        # (else the group shows a lag that is not there).
        position = consumer.position(tp)
        end = max(records[-1].offset + 1, position or 0)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1)})
        self._done[tp] = set()

    def _book_all(self, records: list[ConsumerRecord]) -> list[_Result]:
        """Book the records in waves: wave i holds the i-th posting of every claim (key), so each
        claim's postings go in order; a wave is cut into batches of ``sink_batch_size`` booked
        concurrently (``sink_concurrency``). A claim whose posting must be retried stops there:
        its later postings wait for it."""
        results: list[_Result] = []
        chains: dict[bytes | None, list[tuple[ConsumerRecord, Posting]]] = {}
        stopped: set[bytes | None] = set()
        for record in records:
            if record.key in stopped:
                results.append(_Result(record, done=False))
                continue
            decoded = self._decode(record)
            if isinstance(decoded, _Result):
                results.append(decoded)
                if not decoded.done:
                    stopped.add(record.key)
            else:
                chains.setdefault(record.key, []).append((record, decoded))
        size = self.settings.sink_batch_size
        for wave_no in range(max((len(chain) for chain in chains.values()), default=0)):
            wave = []
            for key, chain in chains.items():
                if len(chain) > wave_no:
                    if key in stopped:
                        results.append(_Result(chain[wave_no][0], done=False))
                    else:
                        wave.append(chain[wave_no])
            batches = [wave[n : n + size] for n in range(0, len(wave), size)]
            for future in [self._pool.submit(self._book_batch, batch) for batch in batches]:
                for result in future.result():
                    results.append(result)
                    if not result.done:
                        stopped.add(result.record.key)
        return results

    def _decode(self, record: ConsumerRecord) -> Posting | _Result:
        tp = TopicPartition(record.topic, record.partition)
        try:
            return Posting.from_record(self.codecs.deserializer("postings")(record.value))
        except RegistryUnavailable as exc:
            return self._retry(tp, record, exc, None, erp=False)
        except DecodeError as exc:
            self._give_up(tp, record, Stage.CONVERT, exc, None)
            return _Result(record, done=True)

    def _book_batch(self, batch: list[tuple[ConsumerRecord, Posting]]) -> list[_Result]:
        """One ERP call for the batch; each posting gets its own outcome."""
        postings = [posting for _, posting in batch]
        started = time.perf_counter()
        SINK_IN_FLIGHT.labels(self.writer.name).inc(len(batch))
        try:
            answers: list[Booking | ErpError] = list(self.writer.book_many(postings))
        except ErpError as exc:  # the whole call failed (e.g. the ERP is unreachable)
            answers = [exc] * len(batch)
        finally:
            SINK_IN_FLIGHT.labels(self.writer.name).dec(len(batch))
        SINK_ERP_SECONDS.labels(self.writer.name).observe(time.perf_counter() - started)
        results = []
        for (record, posting), answer in zip(batch, answers, strict=True):
            tp = TopicPartition(record.topic, record.partition)
            if isinstance(answer, RetryableErpError):
                results.append(self._retry(tp, record, answer, posting, erp=True))
            elif isinstance(answer, ErpError):
                self._give_up(tp, record, Stage.PUT, answer, posting)
                results.append(_Result(record, done=True, erp_answered=True))
            else:
                self._failing.pop((tp, record.offset), None)
                self._after_write()
                self._booked(record, posting, answer)
                results.append(_Result(record, done=True, erp_answered=True))
        return results

    def _after_write(self) -> None:
        """Test hook (``sink_test_exit_after_writes`` = N): die right after the Nth ERP write,
        before its offset is committed, as a crash there would."""
        if not self._exit_after_writes:
            return
        with self._writes_lock:
            self._writes += 1
            if self._writes >= self._exit_after_writes:
                log.error("test hook: exiting after ERP write %d, before the commit", self._writes)
                os._exit(137)

    def _retry(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        error: Exception,
        posting: Posting | None,
        erp: bool,
    ) -> _Result:
        failure = self._failing.setdefault((tp, record.offset), Failure.first(self.breaker))
        failure.again(getattr(error, "retry_after", None))
        SINK_RECORDS.labels(self.writer.name, "retried").inc()
        stage = Stage.PUT if erp else Stage.CONVERT  # the ERP, or the registry to decode with
        log.warning(
            "retry stage=%s topic=%s partition=%d offset=%d claim_id=%s attempt=%d error=%s",
            stage,
            record.topic,
            record.partition,
            record.offset,
            posting.claim_id if posting else None,
            failure.attempts,
            error,
        )
        if failure.exhausted(self.settings, self.breaker):
            exhausted = RetriesExhausted(f"gave up after {failure.attempts} attempts: {error}")
            exhausted.__cause__ = error
            self._give_up(tp, record, stage, exhausted, posting)
            return _Result(record, done=True, retryable=erp)
        return _Result(record, done=False, retryable=erp)

    def _give_up(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        stage: Stage,
        error: BaseException,
        posting: Posting | None,
    ) -> None:
        """Dead-letter the record (acknowledged before returning), or stop the sink."""
        failure = self._failing.pop((tp, record.offset), None) or Failure.first(self.breaker)
        if failure.attempts == 0:
            failure.again()
        if self.settings.sink_errors_tolerance == "none":
            self.stop.set()
            raise SinkStopped(
                f"errors.tolerance=none: {record.topic}[{record.partition}]@"
                f"{record.offset} failed for good: {error}"
            ) from error
        headers = dead_letter_headers(record, stage, error, failure, self.writer.name)
        self.producer.send(
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
        if posting is not None:
            status = "REFUSED" if isinstance(error, PermanentErpError) else "FAILED"
            self._feedback(posting, status, None, str(error))

    def _booked(self, record: ConsumerRecord, posting: Posting, booking: Booking) -> None:
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
        self._feedback(posting, outcome.upper(), booking, None)

    def _feedback(
        self, posting: Posting, status: str, booking: Booking | None, message: str | None
    ) -> None:
        if not self.settings.sink_feedback:
            return
        value: dict[str, Any] = {
            "claim_id": posting.claim_id,
            "posting_id": posting.posting_id,
            "erp": self.writer.name,
            "status": status,
            "document_number": booking.number if booking else None,
            "document_id": booking.document_id if booking else None,
            "total_minor": posting.total_minor,
            "voucher_number": booking.voucher if booking else None,
            "message": message,
            "answered_at": datetime.datetime.now(datetime.UTC),
        }
        self.producer.send(
            self.topics.erp_feedback,
            key=posting.claim_id.encode(),
            value=self.codecs.serializer("erp_feedback")(value),
        )
        SINK_RECORDS.labels(self.writer.name, "feedback").inc()
