"""Webhook source: signed HTTP POSTs of claims, approvals and invoices -> Kafka.

A request is answered 202 only after the broker acknowledged the write (acks=all). Every refusal
gets a machine-readable error and is kept, with the raw body and the reason, on the rejection
topic. Retries of the same request (same ``Idempotency-Key`` header, else event id, else body)
are answered with the first answer and written once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from connectors.sources.idempotency import PENDING, IdempotencyStore, Stored
from connectors.sources.kinds import KINDS, Kind
from connectors.sources.ledger import namespace
from connectors.sources.models import problems_of
from connectors.sources.openapi import openapi_document
from connectors.sources.originals import keep_original
from connectors.sources.signatures import SignatureRefused, verify_slot
from erpbridge import tracing
from erpbridge.archive import Archive
from erpbridge.boundary import InputRefused, parse_json
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.contracts.serde import SerializationError
from erpbridge.failures import FailureRecord, Stage
from erpbridge.kafka_security import client_options
from erpbridge.metrics import (
    SOURCE_PUBLISH_SECONDS,
    SOURCE_RECORDS,
    WEBHOOK_RESPONSES,
    WEBHOOK_SECRET_USED,
)
from erpbridge.refusal import Refusal

SOURCE = "webhook"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    path: str
    kind: Kind

    @property
    def model(self) -> type[BaseModel]:
        return self.kind.model

    @property
    def summary(self) -> str:
        return self.kind.summary


ENDPOINTS = tuple(Endpoint(f"/v1/{name}", kind) for name, kind in KINDS.items())


class WebhookSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codecs = TopicCodecs(settings)
        self.archive = Archive(settings.archive_dir)
        self.secrets = {source: [s.get_secret_value() for s in secrets]
                        for source, secrets in settings.webhook_secrets.items()}  # fmt: skip
        self.producer: AIOKafkaProducer | None = None
        self.redis: aioredis.Redis | None = None
        self.idempotency: IdempotencyStore | None = None

    async def start(self, _: web.Application) -> None:
        self.codecs.register_all(*{e.kind.role for e in ENDPOINTS})
        self.producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=True
        )
        await self.producer.start()
        self.redis = aioredis.Redis.from_url(self.settings.redis_url)
        self.idempotency = IdempotencyStore(
            self.redis,
            self.settings.webhook_idempotency_ttl_s,
            prefix=namespace("idem", self.settings.topic_prefix),
        )

    async def stop(self, _: web.Application) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.redis is not None:
            await self.redis.aclose()
        self.codecs.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.webhook_max_body_bytes)
        for endpoint in ENDPOINTS:
            app.router.add_post(endpoint.path, self._handler(endpoint))
        document = openapi_document(ENDPOINTS)

        async def openapi(_: web.Request) -> web.Response:
            return web.json_response(document)

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/openapi.json", openapi)
        app.router.add_get("/healthz", healthz)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app

    def _handler(self, endpoint: Endpoint) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            started = time.perf_counter()
            request_id = _request_id(request.headers.get("X-Request-Id"))
            body = b""
            source = _printable(request.headers.get("X-Erpbridge-Source", ""))
            declared = request.headers.get("Content-Type", "")[:200] or None
            try:
                body = await request.read()
                with tracing.span(f"webhook {endpoint.path}",
                                  tracing.context_from(request.headers.items()), SpanKind.SERVER,
                                  request_id=request_id):  # fmt: skip
                    response = await self._accept(endpoint, request, body, request_id)
            except web.HTTPRequestEntityTooLarge:
                response = await self._refuse(
                    endpoint,
                    Refusal(
                        413,
                        "body_too_large",
                        f"the body exceeds {self.settings.webhook_max_body_bytes} bytes",
                    ),
                    source,
                    body,
                    request_id,
                    declared,
                )
            except Refusal as refusal:
                response = await self._refuse(endpoint, refusal, source, body, request_id, declared)
            except KafkaError as exc:  # nothing was written: the client may retry safely
                log.error(
                    "broker unavailable stage=source.webhook path=%s error=%s", endpoint.path, exc
                )
                response = web.json_response(
                    Refusal(503, "broker_unavailable", str(exc)).body(), status=503
                )
            except RedisError as exc:  # nothing was written either
                log.error("idempotency store unavailable stage=source.webhook path=%s error=%s",
                          endpoint.path, exc)  # fmt: skip
                response = web.json_response(
                    Refusal(503, "idempotency_store_unavailable", str(exc)).body(), status=503
                )
            except Exception as exc:  # our bug: kept with the request, answered without a trace
                log.exception("internal error stage=source.webhook path=%s", endpoint.path)
                response = await self._refuse(
                    endpoint, Refusal(500, "internal_error", f"{type(exc).__name__}"), source,
                    body, request_id, declared)  # fmt: skip
            SOURCE_PUBLISH_SECONDS.labels(SOURCE).observe(time.perf_counter() - started)
            WEBHOOK_RESPONSES.labels(endpoint.path, str(response.status)).inc()
            response.headers["X-Request-Id"] = request_id
            return response

        return handle

    async def _accept(
        self, endpoint: Endpoint, request: web.Request, body: bytes, request_id: str
    ) -> web.Response:
        SOURCE_RECORDS.labels(SOURCE, "read").inc()
        _json_only(request)
        try:
            source, slot = verify_slot(request.headers, body, self.secrets,
                                       self.settings.webhook_max_skew_s)  # fmt: skip
        except SignatureRefused as exc:
            raise Refusal(401, exc.code, exc.message) from exc
        WEBHOOK_SECRET_USED.labels(source, str(slot)).inc()
        try:
            payload = parse_json(body)
        except InputRefused as exc:
            raise Refusal(400, exc.code, f"the body is not acceptable JSON: {exc.message}") from exc
        if not isinstance(payload, dict):
            raise Refusal(400, "malformed_body", "the body must be a JSON object")
        try:
            event = endpoint.kind.validate(payload, self.settings.time_zone_for(source))
        except ValidationError as exc:
            raise Refusal(
                422, "invalid_event", "the event does not pass validation", problems_of(exc)
            ) from exc
        origin = {"source": source, "path": endpoint.path, "request_id": request_id}
        record = event.to_record(source, origin)  # type: ignore[attr-defined]
        try:
            await asyncio.to_thread(keep_original, self.archive, event, body,
                                    "application/json", source, origin, record)  # fmt: skip
        except ValueError as exc:  # the carried original is not base64
            raise Refusal(422, "invalid_event", f"original: {exc}") from exc
        except (OSError, sqlite3.Error) as exc:  # ours, not the caller's: try again later
            raise Refusal(503, "archive_unavailable", "the archive of original documents "
                          f"cannot be written: {type(exc).__name__}") from exc  # fmt: skip
        key = endpoint.kind.key(event)
        try:
            value = self.codecs.serializer(endpoint.kind.role)(record)
        except (SerializationError, ValueError, OverflowError) as exc:  # beyond the contract
            raise Refusal(422, "unencodable", "the event does not fit its contract: "
                          f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
        # Written once per event id (the caller's, else the content's hash) and per
        # Idempotency-Key: a repeat of either is answered as the first; either one reused for
        # other content is refused.
        fingerprint = _fingerprint(event)
        names = [*_idempotency_key(request.headers.get("Idempotency-Key")),
                 f"event:{record['event_id']}"]  # fmt: skip
        scope = f"{source}:{endpoint.path}"
        assert self.idempotency is not None and self.producer is not None
        claimed: list[str] = []
        try:
            for name in names:
                found = await self.idempotency.claim(scope, name)
                if isinstance(found, Stored):
                    if not found.same_request(fingerprint):
                        raise Refusal(422, "idempotency_key_reused", "this Idempotency-Key or "
                                      "event_id was used before for a different event; send a "
                                      "new one")  # fmt: skip
                    for other in claimed:  # the other name now answers the same
                        await self.idempotency.complete(scope, other, found.status, found.body,
                                                        fingerprint)  # fmt: skip
                    claimed = []
                    SOURCE_RECORDS.labels(SOURCE, "replayed").inc()
                    return web.json_response(found.body, status=found.status,
                                             headers={"Idempotent-Replayed": "true"})  # fmt: skip
                if found == PENDING:
                    wait_s = min(await self.idempotency.pending_for(scope, name), 10)
                    raise Refusal(409, "request_in_progress", "the same request is being "
                                  f"processed; send it again in {wait_s} s",
                                  retry_after_s=wait_s)  # fmt: skip
                claimed.append(name)
            metadata = await self.producer.send_and_wait(
                self.codecs.topic(endpoint.kind.role),
                value=value,
                key=key.encode(),
                headers=tracing.headers_of(),
            )
        except BaseException:
            for name in claimed:
                await self.idempotency.release(scope, name)
            raise
        answer = {"status": "accepted", "event_id": record["event_id"], "key": key,
                  "topic": metadata.topic, "partition": metadata.partition,
                  "offset": metadata.offset}  # fmt: skip
        for name in claimed:
            await self.idempotency.complete(scope, name, 202, answer, fingerprint)
        SOURCE_RECORDS.labels(SOURCE, "published").inc()
        return web.json_response(answer, status=202)

    async def _refuse(self, endpoint: Endpoint, refusal: Refusal, source: str, body: bytes,
                      request_id: str, content_type: str | None) -> web.Response:  # fmt: skip
        """Keep the refused request on the rejection topic, then answer with the error."""
        SOURCE_RECORDS.labels(SOURCE, "rejected").inc()
        log.warning(
            "rejected stage=source.webhook path=%s source=%s error=%s request_id=%s",
            endpoint.path,
            source or "-",
            refusal.code,
            request_id,
        )
        problems = [f"{p['field']}: {p['message']}" for p in refusal.problems] or [refusal.message]
        failure = FailureRecord.refused(
            stage=Stage.SOURCE_WEBHOOK, reason=refusal.code, connector=SOURCE, problems=problems,
            original=body, content_type=content_type,
            origin={"source": source, "path": endpoint.path, "request_id": request_id})  # fmt: skip
        assert self.producer is not None
        try:
            await self.producer.send_and_wait(self.codecs.topic("rejected"),
                                              **failure.to_message())  # fmt: skip
        except KafkaError as exc:  # the refusal could not be kept: the caller must try again
            log.error("rejection not kept stage=source.webhook request_id=%s error=%s",
                      request_id, exc)  # fmt: skip
            unavailable = Refusal(503, "broker_unavailable", f"{refusal.message} (and the "
                                  f"refusal could not be recorded: {exc})")  # fmt: skip
            return web.json_response(unavailable.body(), status=503)
        return web.json_response(refusal.body(), status=refusal.status, headers=refusal.headers())


JSON_TYPES = ("application/json",)
_ID_CHARS = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces


def _json_only(request: web.Request) -> None:
    """415 for any body that is not declared JSON (in UTF-8, if a charset is named at all)."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type not in JSON_TYPES or charset not in ("utf-8", "utf8"):
        declared = request.headers.get("Content-Type", "(none)")
        raise Refusal(
            415,
            "unsupported_media_type",
            f"send application/json (UTF-8); the request says {declared[:100]!r}",
        )


def _idempotency_key(header: str | None) -> list[str]:
    if header is None:
        return []
    if not _ID_CHARS.fullmatch(header):
        raise Refusal(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 "
                      "printable ASCII characters without spaces")  # fmt: skip
    return [header]


def _fingerprint(event: BaseModel) -> str:
    """The event's content, however the JSON was written (spacing, key order, escapes)."""
    content = json.dumps(event.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()


def _request_id(header: str | None) -> str:
    """The caller's X-Request-Id when it is a sane token, else one of ours."""
    return header if header is not None and _ID_CHARS.fullmatch(header) else uuid.uuid4().hex


def _printable(text: str) -> str:
    return text if _ID_CHARS.fullmatch(text) else ""


def serve(settings: Settings, host: str, port: int) -> None:
    web.run_app(
        WebhookSource(settings).app(),
        host=host,
        port=port,
        print=lambda *_: log.info("webhook source listening on %s:%d", host, port),
        shutdown_timeout=settings.shutdown_grace_s,
    )
