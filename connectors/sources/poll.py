"""Polling source: page through an upstream REST API for claims changed since a cursor.

The cursor is ``(updated_at, id)`` of the last item read, kept in a compacted Kafka topic (like
Kafka Connect's source offsets). Each page's records and the cursor that follows them are
written in one Kafka transaction, so a crash at any point neither loses nor duplicates a record:
the restarted poller reads the last committed cursor and the page again. Upstream errors are
retried with back-off; a 429's ``Retry-After`` is honoured.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from kafka import KafkaProducer
from pydantic import ValidationError

from connectors.sources.kinds import KINDS
from connectors.sources.models import problems_of
from erpbridge.boundary import InputRefused, parse_json
from erpbridge.codec import encode_key
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import (
    Attempts,
    FailureRecord,
    PermanentError,
    RetryableError,
    RetryPolicy,
    RetryWithTolerance,
    Stage,
    Stopped,
    http_failure,
)
from erpbridge.kafka_security import client_options
from erpbridge.metrics import SOURCE_PUBLISH_SECONDS, SOURCE_RECORDS
from erpbridge.topic_reader import read_all

SOURCE = "poll"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cursor:
    updated_at: str
    id: str


class UpstreamRefused(PermanentError):
    """The upstream answered a 4xx other than 429 (our request is wrong), or a page we cannot
    read: retrying will not help. ``body``: what it answered, when that is the fault."""

    def __init__(self, message: str, retry_after: float | None = None,
                 body: bytes | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.body = body


class UpstreamUnavailable(RetryableError):
    """The upstream could not be reached, or answered 408/425/429/5xx: try again later."""


class CursorStore:
    """The last committed cursor per source, in the compacted ``source_offsets`` topic."""

    def __init__(self, settings: Settings, source_name: str) -> None:
        self.settings, self.key = settings, source_name.encode()
        self.topic = TopicCodecs(settings).topic("source_offsets")

    def load(self) -> Cursor | None:
        values = [r.value for r in read_all(self.settings, self.topic) if r.key == self.key]
        return Cursor(**json.loads(values[-1])) if values else None

    def send(self, producer: KafkaProducer, cursor: Cursor) -> None:
        producer.send(
            self.topic,
            key=self.key,
            value=json.dumps({"updated_at": cursor.updated_at, "id": cursor.id}).encode(),
        )


class Poller:
    def __init__(
        self,
        settings: Settings,
        source_name: str,
        url: str,
        page_size: int = 100,
        interval_s: float = 5.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings, self.source_name, self.url = settings, source_name, url
        self.tz = settings.time_zone_for(source_name)
        self.page_size, self.interval_s = page_size, interval_s
        self.stop = stop or threading.Event()
        self.codecs = TopicCodecs(settings)
        self.cursors = CursorStore(settings, source_name)
        # an upstream outage is waited out (no time limit): its data is not going anywhere
        self.retry = RetryWithTolerance(source_name, Stage.SOURCE_POLL, RetryPolicy(0.5, 30.0))
        self.http = httpx.Client(timeout=30)

    def run(self, once: bool = False) -> int:
        """Poll until stopped (or, with ``once``, until caught up); return records published."""
        producer = KafkaProducer(
            **client_options(self.settings),
            acks="all",
            enable_idempotence=True,
            transactional_id=f"erpbridge-poll-{self.settings.topic_prefix}-{self.source_name}",
        )
        producer.init_transactions()  # fences a previous instance and aborts its open batch
        self.codecs.register_all("claims_raw")
        cursor, published = self.cursors.load(), 0
        log.info("poller started source=%s cursor=%s", self.source_name, cursor)
        try:
            while not self.stop.is_set():
                try:
                    items = self._fetch(cursor)
                except UpstreamRefused as exc:
                    self._record(producer, exc)
                    raise
                if items is None:  # stopped while backing off
                    break
                if items:
                    started = time.perf_counter()
                    cursor = self._publish(producer, items)
                    published += len(items)
                    SOURCE_PUBLISH_SECONDS.labels(SOURCE).observe(time.perf_counter() - started)
                if len(items) < self.page_size:  # caught up
                    if once:
                        break
                    self.stop.wait(self.interval_s)
        finally:
            producer.close()
            self.codecs.close()
            self.http.close()
        return published

    def _fetch(self, cursor: Cursor | None) -> list[dict[str, Any]] | None:
        params: dict[str, Any] = {"limit": self.page_size}
        if cursor:
            params.update(updated_since=cursor.updated_at, after_id=cursor.id)
        try:
            return self.retry.call(lambda: self._get(params), self.stop, self._retrying)
        except Stopped:
            return None

    def _get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            reply = self.http.get(self.url, params=params)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if reply.status_code != 200:
            raise http_failure(reply.status_code, reply.headers,
                               f"{self.url} answered HTTP {reply.status_code}: {reply.text[:300]}",
                               any_server_error=True, retryable=UpstreamUnavailable,
                               permanent=UpstreamRefused)  # fmt: skip
        return _items(self.url, reply.content)

    def _record(self, producer: KafkaProducer, error: UpstreamRefused) -> None:
        """The refusal that stops the poller, on the rejection topic (its own transaction)."""
        failure = FailureRecord.refused(
            stage=Stage.SOURCE_POLL, reason="upstream_refused", connector=SOURCE,
            problems=[str(error)], original=error.body, content_type="application/json",
            origin={"source": self.source_name, "url": self.url})  # fmt: skip
        producer.begin_transaction()
        producer.send(self.codecs.topic("rejected"), **failure.to_message())
        producer.commit_transaction()

    def _retrying(self, attempts: Attempts, wait: float) -> None:
        log.warning("upstream retry stage=%s source=%s attempt=%d wait=%.1fs reason=%s",
                    Stage.SOURCE_POLL, self.source_name, attempts.count, wait,
                    attempts.error)  # fmt: skip

    def _publish(self, producer: KafkaProducer, items: list[dict[str, Any]]) -> Cursor:
        """One transaction: every item (as a claim or a rejection) and the cursor after them."""
        producer.begin_transaction()
        try:
            for item in items:
                self._send_item(producer, item)
            cursor = Cursor(str(items[-1]["updated_at"]), str(items[-1]["claim_id"]))
            self.cursors.send(producer, cursor)
            producer.commit_transaction()
        except BaseException:
            producer.abort_transaction()
            raise
        return cursor

    def _send_item(self, producer: KafkaProducer, item: dict[str, Any]) -> None:
        SOURCE_RECORDS.labels(SOURCE, "read").inc()
        origin = {"source": self.source_name, "updated_at": str(item.get("updated_at", ""))}
        claim_id = str(item.get("claim_id") or "")
        try:
            record = KINDS["claims"].validate(item, self.tz).to_record(self.source_name, origin)
        except ValidationError as exc:
            SOURCE_RECORDS.labels(SOURCE, "rejected").inc()
            failure = FailureRecord.refused(
                stage=Stage.SOURCE_POLL, reason="invalid_event", connector=SOURCE,
                problems=[f"{p['field']}: {p['message']}" for p in problems_of(exc)],
                original=json.dumps(item, ensure_ascii=False, default=str).encode(),
                content_type="application/json", origin=origin, entity_id=claim_id or None,
                key=encode_key(claim_id) or None)  # fmt: skip
            producer.send(self.codecs.topic("rejected"), **failure.to_message())
            return
        SOURCE_RECORDS.labels(SOURCE, "published").inc()
        producer.send(
            self.codecs.topic("claims_raw"),
            key=encode_key(record["claim_id"]),
            value=self.codecs.serializer("claims_raw")(record),
        )


def _items(url: str, body: bytes) -> list[dict[str, Any]]:
    """A page's items, through the input boundary; each needs ``claim_id`` and ``updated_at``
    (the cursor is made of them)."""
    try:
        page = parse_json(body)
        items = page["items"]
        if not isinstance(items, list):
            raise TypeError("'items' is not a list")
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("claim_id") or not item.get("updated_at"):
                raise TypeError(f"items[{n}] has no claim_id or updated_at")
    except (InputRefused, KeyError, TypeError) as exc:
        raise UpstreamRefused(f"{url} answered a page we cannot read: {exc}", body=body) from exc
    return list(items)
