"""Sink runner: records of one topic -> a target (an ERP writer, the feedback webhook), with
Kafka Connect's error semantics. The target says how to decode and write; the runner does the rest.

- Offsets are committed only after the write succeeded or the dead-letter write was
  acknowledged (and what the target sends after it, such as feedback events), up to the first
  record not done yet.
- Records are written in batches (``sink_batch_size``, one target call each), batches
  concurrently (``sink_concurrency``), each key's records in order; every record gets its own
  outcome.
- Failures go through the one retry operator (:class:`erpbridge.failures.RetryWithTolerance`):
  a retryable one rewinds the partition to the failed record and pauses it for the back-off it
  gives; the other partitions go on. What fails for good (a permanent error, a spent budget, an
  undecodable record) goes to the target's dead-letter topic as a
  :class:`erpbridge.failures.FailureRecord` (``errors.tolerance=all``), or stops the sink
  (``none``).
- While the operator's circuit breaker is open all partitions are paused (the consumer keeps
  polling, so no rebalance), the target is probed, and they resume when it answers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from connectors.sinks.target import Target
from erpbridge import tracing
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.failures import (
    Attempts,
    FailureRecord,
    RetriesExhausted,
    RetryWithTolerance,
    Stage,
    ToleranceExceeded,
    is_retryable,
)
from erpbridge.kafka_io import (
    admin_when_broker_answers,
    durable_producer,
    manual_commit_consumer,
)
from erpbridge.metrics import (
    SINK_ERP_SECONDS,
    SINK_IN_FLIGHT,
    SINK_LAG,
    SINK_RECORD_AGE_SECONDS,
    SINK_RECORDS,
    readiness_check,
)
from erpbridge.topics import Topics

log = logging.getLogger(__name__)
SinkStopped = ToleranceExceeded  # what ``errors.tolerance=none`` stops a sink with
LAG_EVERY_S = 5.0


@dataclass
class _Result:
    record: ConsumerRecord
    done: bool  # written, or dead-lettered (final); False: retry later


@dataclass
class SinkRunner:
    settings: Settings
    target: Target
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        config = self.settings
        topics = Topics(config.topic_prefix)
        self.input_topic = str(getattr(topics, self.target.input_role))
        self.dead_letter_topic = str(getattr(topics, self.target.dead_letter_role))
        if self.input_topic == self.dead_letter_topic:
            raise ValueError("the dead-letter topic must not be the sink's input")
        self.name = self.target.name
        self.group = config.sink_group(self.name)
        self.retry = RetryWithTolerance.for_sink(self.name, self.target.stage, config)
        self._failing: dict[tuple[TopicPartition, int], Attempts] = {}
        self._waits: dict[tuple[TopicPartition, int], float] = {}  # this poll's back-offs
        self._done: dict[TopicPartition, set[int]] = {}
        self._backoff_until: dict[TopicPartition, float] = {}
        self._pool = ThreadPoolExecutor(config.sink_concurrency, thread_name_prefix="write")
        self._writes = 0
        self._writes_lock = threading.Lock()
        self._exit_after_writes = config.sink_test_exit_after_writes

    @property
    def breaker(self) -> Any:
        return self.retry.breaker

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        admin_when_broker_answers(self.settings).close()  # started before the broker: waits
        consumer = manual_commit_consumer(
            self.settings,
            self.group,
            self.input_topic,
            max_poll_records=self.settings.sink_max_poll_records,
        )
        self.producer = durable_producer(self.settings)
        self.target.start(self.producer)
        self.polled = False  # a first poll returned: the consumer joined its group
        readiness_check(f"sink:{self.name}", self.not_ready)
        log.info("sink started target=%s topic=%s group=%s concurrency=%d", self.name,
                 self.input_topic, self.group, self.settings.sink_concurrency)  # fmt: skip
        try:
            while not self.stop.is_set():
                self._flow_control(consumer)
                batches = consumer.poll(timeout_ms=500)
                self.polled = True
                if batches:
                    self._process(consumer, batches)
                self._measure_lag(consumer)
        finally:
            consumer.close(autocommit=False)
            self._pool.shutdown(wait=True)
            self.producer.close()
            self.target.close()

    _lag_due = 0.0

    def _measure_lag(self, consumer: KafkaConsumer) -> None:
        """Every 5 s: the records of the assigned partitions not written yet (the end offsets,
        read_committed, less the consumer's positions, which a retry rewinds)."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_EVERY_S
        assigned = list(consumer.assignment())
        try:
            ends = consumer.end_offsets(assigned) if assigned else {}
            lag = sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned)
        except KafkaError as exc:  # measured again next time
            log.debug("lag not measured: %s", exc)
            return
        SINK_LAG.labels(self.name).set(lag)

    def not_ready(self) -> str | None:
        """Why the sink is not writing: not yet in its group, or the target is unreachable."""
        if not getattr(self, "polled", False):
            return "joining its consumer group"
        if self.retry.open():
            return f"the circuit breaker is open: {self.name} does not answer"
        return None

    def _flow_control(self, consumer: KafkaConsumer) -> None:
        """Pause everything while the breaker is open; resume partitions whose back-off ended."""
        assigned = consumer.assignment()
        if self.retry.open():
            consumer.pause(*assigned)
            if self.retry.probe_due():
                answered = self._probe()
                self.retry.probed(answered)
                log.warning("circuit breaker probe target=%s answered=%s", self.name, answered)
            if self.retry.open():
                return
        now = time.monotonic()
        ready = [tp for tp in assigned if self._backoff_until.get(tp, 0.0) <= now]
        for tp in ready:
            self._backoff_until.pop(tp, None)
        consumer.resume(*ready)

    def _probe(self) -> bool:
        try:
            return bool(self.target.probe())
        except Exception as exc:  # noqa: BLE001  any failure means "not answering yet"
            log.info("probe failed target=%s error=%s", self.name, exc)
            return False

    # -- one poll's records ---------------------------------------------------------------------
    def _process(
        self, consumer: KafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """One poll's records, all partitions at once: write, then commit per partition."""
        if self.retry.open() or self.stop.is_set():
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
            (r.record.partition, r.record.topic, r.record.offset): r for r in self._write_all(todo)
        }
        self.producer.flush()  # what the target sent is acknowledged before any commit
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
        wait = self._waits.pop((tp, first_open), None)
        if not self.retry.open() and wait is not None:
            consumer.pause(tp)
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

    def _write_all(self, records: list[ConsumerRecord]) -> list[_Result]:
        """Write the records in waves: wave i holds the i-th record of every key, so each key's
        records go in order; a wave is cut into batches of ``sink_batch_size`` written
        concurrently (``sink_concurrency``). A key whose record must be retried stops there:
        its later records wait for it."""
        self._waits.clear()
        results: list[_Result] = []
        chains: dict[bytes | None, list[tuple[ConsumerRecord, Any]]] = {}
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
            for future in [self._pool.submit(self._write_batch, batch) for batch in batches]:
                for result in future.result():
                    results.append(result)
                    if not result.done:
                        stopped.add(result.record.key)
        return results

    def _decode(self, record: ConsumerRecord) -> Any:
        try:
            return self.target.decode(record.value)
        except Exception as exc:  # noqa: BLE001  bad bytes (for good) or a registry outage
            return self._failed(record, exc, None, Stage.CONVERT)

    def _write_batch(self, batch: list[tuple[ConsumerRecord, Any]]) -> list[_Result]:
        """One target call for the batch; each record gets its own outcome."""
        items = [item for _, item in batch]
        started = time.perf_counter()
        SINK_IN_FLIGHT.labels(self.name).inc(len(batch))
        # a span per record, in its trace (its headers'); the target's own spans (a delivery)
        # are children of these, and what follows a record (its feedback) continues its span
        spans = [tracing.start_span("sink.write", tracing.context_from(record.headers),
                                    sink=self.name, topic=record.topic,
                                    partition=record.partition, offset=record.offset,
                                    key=(record.key or b"").decode("utf-8", "replace"))
                 for record, _ in batch]  # fmt: skip
        try:
            with tracing.item_spans(spans):
                answers: list[Any] = list(self.target.write_many(items))
        except Exception as exc:  # noqa: BLE001  the whole call failed (e.g. unreachable)
            answers = self._narrowed(items, exc)
        finally:
            SINK_IN_FLIGHT.labels(self.name).dec(len(batch))
        SINK_ERP_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        results = []
        for (record, item), answer, span in zip(batch, answers, spans, strict=True):
            with tracing.ending(span, answer):
                results.append(self._outcome(record, item, answer))
        return results

    def _outcome(self, record: ConsumerRecord, item: Any, answer: Any) -> _Result:
        if isinstance(answer, BaseException):
            return self._failed(record, answer, item, self.target.stage)
        self.retry.succeeded()
        self._failing.pop((TopicPartition(record.topic, record.partition), record.offset), None)
        self._after_write()
        SINK_RECORDS.labels(self.name, self.target.written(item, answer)).inc()
        if record.timestamp is not None and record.timestamp >= 0:
            waited = max(0.0, time.time() - record.timestamp / 1000)
            SINK_RECORD_AGE_SECONDS.labels(self.name).observe(waited)
        return _Result(record, done=True)

    def _narrowed(self, items: list[Any], error: Exception) -> list[Any]:
        """The outcomes of a batch whose call failed as a whole. A retryable failure (the
        target is down) is every record's. One that is not may be a single record's (an ERP
        refusing a batch for one bad item, a record that breaks the batch call): each record
        is written alone, so that only what is refused on its own is dead-lettered."""
        if len(items) < 2 or is_retryable(error):
            return [error] * len(items)
        log.warning("a batch of %d was refused as a whole (%s): writing each record alone",
                    len(items), error)  # fmt: skip
        answers: list[Any] = []
        for item in items:
            try:
                answers += list(self.target.write_many([item]))
            except Exception as exc:  # noqa: BLE001  this record's own outcome
                answers.append(exc)
        return answers

    def _after_write(self) -> None:
        """Test hook (``sink_test_exit_after_writes`` = N): die right after the Nth write,
        before its offset is committed, as a crash there would."""
        if not self._exit_after_writes:
            return
        with self._writes_lock:
            self._writes += 1
            if self._writes >= self._exit_after_writes:
                log.error("test hook: exiting after write %d, before the commit", self._writes)
                os._exit(137)

    # -- failures ------------------------------------------------------------------------------
    def _failed(self, record: ConsumerRecord, error: BaseException, item: Any,
                stage: Stage) -> _Result:  # fmt: skip
        """Ask the retry operator: back off and retry, or dead-letter the record for good."""
        where = TopicPartition(record.topic, record.partition), record.offset
        attempts = self._failing.setdefault(where, self.retry.start())
        wait = self.retry.failed(attempts, error, stage)
        if wait is not None:
            SINK_RECORDS.labels(self.name, "retried").inc()
            log.warning("retry stage=%s topic=%s partition=%d offset=%d attempt=%d wait=%.1fs "
                        "error=%s", stage, record.topic, record.partition, record.offset,
                        attempts.count, wait, error)  # fmt: skip
            self._waits[where] = wait
            return _Result(record, done=False)
        del self._failing[where]
        try:
            final = self.retry.final(attempts, f"{record.topic}[{record.partition}]@"
                                               f"{record.offset}")  # fmt: skip
        except ToleranceExceeded:
            self.stop.set()
            raise
        reason = ("undecodable" if isinstance(final, DecodeError) else "retries_exhausted"
                  if isinstance(final, RetriesExhausted) else "refused")  # fmt: skip
        failure = FailureRecord.of_record(record, stage=stage, reason=reason,
                                          connector=self.name, error=final,
                                          attempts=attempts)  # fmt: skip
        self.producer.send(self.dead_letter_topic, **failure.to_message()).get(timeout=30)
        SINK_RECORDS.labels(self.name, "dead_lettered").inc()
        log.error("dead-lettered stage=%s topic=%s partition=%d offset=%d reason=%s error=%s",
                  stage, record.topic, record.partition, record.offset, reason,
                  final)  # fmt: skip
        if item is not None:
            self.target.given_up(item, final)
        return _Result(record, done=True)
