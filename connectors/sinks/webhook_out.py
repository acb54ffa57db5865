"""``erpbridge feedback webhook``: deliver ErpFeedback events to the expense platform's URL.

Each event is POSTed as JSON, signed like our inbound webhooks (HMAC-SHA256 over
``<timestamp>.<body>``, see :mod:`connectors.sources.signatures`) with an ``Idempotency-Key`` of
``<posting id>:<status>``, so the receiver can drop a redelivery. The same rules as the ERP sink:
408/425/429/5xx and network errors are retried with full-jitter back-off (``Retry-After``
honoured) within ``sink_errors_retry_timeout_s``; ``sink_breaker_threshold`` of them in a row
open the circuit breaker, and while it is open nothing is sent but one probe request every
``sink_breaker_probe_interval_s`` (time that does not count against the record's budget);
other 4xx answers and undecodable records go to ``<prefix>.erp.feedback.dlq`` with Connect-style
headers, or stop the delivery with ``sink_errors_tolerance=none``; the offset is committed only
after the receiver's 2xx or the DLQ's ack.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import httpx
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from connectors.sinks.breaker import CircuitBreaker, State
from connectors.sinks.dead_letter import Failure, SinkStopped, dead_letter_headers
from connectors.sources.signatures import signed_headers
from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, manual_commit_consumer
from erpbridge.metrics import SINK_RECORDS
from erpbridge.rejections import Stage
from erpbridge.retry import RetryPolicy, retry_after_s, retryable_status
from erpbridge.topics import Topics

log = logging.getLogger(__name__)
NAME = "feedback_webhook"


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Refused(Exception):
    pass


class FeedbackWebhook:
    def __init__(self, settings: Settings, url: str, secret: str, source: str = "erpbridge",
                 stop: threading.Event | None = None) -> None:  # fmt: skip
        self.settings, self.url, self.secret, self.source = settings, url, secret, source
        self.stop = stop or threading.Event()
        self.topics = Topics(settings.topic_prefix)
        self.codecs = TopicCodecs(settings)
        self.policy = RetryPolicy(settings.sink_retry_initial_s, settings.sink_retry_max_s)
        self.breaker = CircuitBreaker(NAME, settings.sink_breaker_threshold,
                                      settings.sink_breaker_probe_interval_s)  # fmt: skip
        self.http = httpx.Client(timeout=30.0)

    def run(self) -> None:
        consumer = manual_commit_consumer(self.settings, f"{self.settings.topic_prefix}-feedback"
                                          "-webhook", self.topics.erp_feedback)  # fmt: skip
        producer = durable_producer(self.settings)
        log.info("feedback webhook started url=%s topic=%s", self.url, self.topics.erp_feedback)
        try:
            while not self.stop.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        if self.stop.is_set() or not self._deliver(producer, record):
                            consumer.seek(tp, record.offset)
                            break
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        finally:
            consumer.close(autocommit=False)
            producer.close()
            self.http.close()
            self.codecs.close()

    def _deliver(self, producer: KafkaProducer, record: ConsumerRecord) -> bool:
        """True once delivered or dead-lettered; False when stopped while retrying."""
        failure = Failure.first(self.breaker)
        try:
            feedback = self.codecs.deserializer("erp_feedback")(record.value)
        except DecodeError as exc:
            return self._dead_letter(producer, record, Stage.CONVERT, exc, failure)
        body = json.dumps(_jsonable(feedback), ensure_ascii=False).encode()
        headers = {**signed_headers(self.source, self.secret, body),
                   "Content-Type": "application/json",
                   "Idempotency-Key": f"{feedback['posting_id']}:{feedback['status']}"}  # fmt: skip
        while not self.stop.is_set():
            if self.breaker.state is State.OPEN:
                if not self.breaker.probe_due():
                    self.stop.wait(min(0.5, self.settings.sink_breaker_probe_interval_s))
                    continue
                self.breaker.probed(True)  # half-open: this request is the probe
                log.warning("feedback circuit breaker probing url=%s", self.url)
            try:
                self._post(body, headers)
            except _Refused as exc:
                self.breaker.success()  # the receiver answered: it is up
                return self._dead_letter(producer, record, Stage.DELIVER, exc, failure)
            except _Retry as exc:
                self.breaker.failure()
                failure.again(exc.retry_after)
                SINK_RECORDS.labels(NAME, "retried").inc()
                if failure.exhausted(self.settings, self.breaker):
                    return self._dead_letter(producer, record, Stage.DELIVER, exc, failure)
                wait = max(self.policy.delay(failure.attempts), exc.retry_after or 0.0)
                log.warning("feedback retry attempt=%d wait=%.1fs error=%s", failure.attempts,
                            wait, exc)  # fmt: skip
                self.stop.wait(wait)
                continue
            self.breaker.success()
            SINK_RECORDS.labels(NAME, "delivered").inc()
            return True
        return False

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            reply = self.http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Retry(f"{self.url} unreachable: {exc}") from exc
        if retryable_status(reply.status_code):
            raise _Retry(f"{self.url} answered HTTP {reply.status_code}",
                         retry_after_s(reply.headers))  # fmt: skip
        if not 200 <= reply.status_code < 300:
            raise _Refused(f"{self.url} answered HTTP {reply.status_code}: {reply.text[:300]}")

    def _dead_letter(self, producer: KafkaProducer, record: ConsumerRecord, stage: Stage,
                     error: BaseException, failure: Failure) -> bool:  # fmt: skip
        if failure.attempts == 0:
            failure.again()
        if self.settings.sink_errors_tolerance == "none":
            self.stop.set()
            raise SinkStopped(f"errors.tolerance=none: {record.topic}[{record.partition}]@"
                              f"{record.offset} failed for good: {error}") from error  # fmt: skip
        headers = dead_letter_headers(record, stage, error, failure, NAME)
        producer.send(self.topics.feedback_dead_letter, key=record.key, value=record.value,
                      headers=headers, timestamp_ms=record.timestamp).get(timeout=30)  # fmt: skip
        SINK_RECORDS.labels(NAME, "dead_lettered").inc()
        log.error("feedback dead-lettered stage=%s offset=%d error=%s", stage, record.offset,
                  error)  # fmt: skip
        return True


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in record.items()}
