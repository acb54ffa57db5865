"""The embedded schema registry: the Confluent REST API subset our clients and Confluent's use,
over HTTP on loopback, with its state in a compacted Kafka topic (see :mod:`.store`)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import fastavro
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from erpbridge.config import Settings
from erpbridge.contracts.compatibility import Mode, check_evolution
from erpbridge.kafka_security import client_options
from erpbridge.registry.store import (
    RegistryState,
    canonical,
    config_key,
    config_value,
    schema_key,
    schema_value,
)

log = logging.getLogger(__name__)
JSON_TYPE = "application/vnd.schemaregistry.v1+json"


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"error_code": code, "message": message}, status=status, content_type=JSON_TYPE
    )


def _ok(payload: Any) -> web.Response:
    return web.json_response(payload, content_type=JSON_TYPE)


class Registry:
    """Log-backed registry state plus the writes that extend the log."""

    def __init__(self, kafka: Settings, topic: str, default_level: Mode,
                 replication: tuple[int, int] = (1, 1)) -> None:  # fmt: skip
        """``kafka``: the settings its clients connect with (bootstrap servers, security)."""
        self.kafka, self.topic, self.replication = kafka, topic, replication
        self.state = RegistryState(default_level.value)
        self._applied = asyncio.Condition()
        self._write_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(_ensure_topic, self.kafka, self.topic, self.replication)
        self._producer = AIOKafkaProducer(
            **client_options(self.kafka), acks="all", enable_idempotence=True
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **client_options(self.kafka), group_id=None, enable_auto_commit=False
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        await self._consumer.seek_to_beginning(tp)
        end = (await self._consumer.end_offsets([tp]))[tp]
        self._reader = asyncio.create_task(self._read())
        await self.wait_applied(end - 1)
        log.info(
            "schema registry ready topic=%s schemas=%d subjects=%d",
            self.topic,
            len(self.state.schemas),
            len(self.state.subjects),
        )

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            async with self._applied:
                for records in batches.values():
                    for record in records:
                        self.state.apply(record.key, record.value, record.offset)
                self._applied.notify_all()

    async def wait_applied(self, offset: int, timeout: float = 30.0) -> None:
        async with self._applied:
            await asyncio.wait_for(
                self._applied.wait_for(lambda: self.state.applied_offset >= offset), timeout
            )

    async def _append(self, key: bytes, value: bytes) -> None:
        assert self._producer is not None
        metadata = await self._producer.send_and_wait(self.topic, value=value, key=key, partition=0)
        await self.wait_applied(metadata.offset)

    async def register(self, subject: str, schema: str) -> int:
        async with self._write_lock:
            for _ in range(10):
                if (version := self.state.version_of(subject, schema)) is not None:
                    return self.state.subjects[subject][version]
                schema_id, version = self.state.next_allocation(subject, schema)
                await self._append(
                    schema_key(subject, version), schema_value(schema_id, schema, subject, version)
                )
            raise RuntimeError(f"could not allocate an id for {subject} after 10 races")

    async def set_level(self, subject: str | None, level: str) -> None:
        await self._append(config_key(subject), config_value(level))

    def problems(self, subject: str, schema: str, against_version: int | None = None) -> list[str]:
        versions = self.state.subjects.get(subject, {})
        chosen = sorted(v for v in versions if against_version is None or v == against_version)
        previous = [json.loads(self.state.schemas[versions[v]]) for v in chosen]
        return check_evolution(json.loads(schema), previous, Mode(self.state.level(subject)))


def _ensure_topic(kafka: Settings, topic: str, replication: tuple[int, int]) -> None:
    """The registry's log: compacted, one partition; (copies, min.insync.replicas)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**client_options(kafka))
    try:
        if topic not in admin.list_topics():
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            1,
                            replication[0],
                            topic_configs={
                                "cleanup.policy": "compact",
                                "min.insync.replicas": str(replication[1]),
                            },
                        )  # fmt: skip
                    ]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def build_app(registry: Registry) -> web.Application:
    routes = web.RouteTableDef()
    state = registry.state

    async def schema_body(request: web.Request) -> str | web.Response:
        try:
            body = await request.json()
            text = canonical(body["schema"])
            fastavro.parse_schema(json.loads(text))
        except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
            return _error(422, 42201, f"Invalid schema: {exc}")
        if body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, f"schema type {body['schemaType']} is not supported")
        return text

    def subject_version(subject: str, raw: str) -> tuple[int, int] | web.Response:
        versions = state.subjects.get(subject)
        if not versions:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        version = max(versions) if raw in ("latest", "-1") else int(raw) if raw.isdigit() else 0
        if version not in versions:
            return _error(404, 40402, f"Version {raw} not found.")
        return version, versions[version]

    @routes.get("/")
    async def root(_: web.Request) -> web.Response:
        return _ok({})

    @routes.get("/subjects")
    async def subjects(_: web.Request) -> web.Response:
        return _ok(sorted(state.subjects))

    @routes.get("/subjects/{subject}/versions")
    async def versions(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        if subject not in state.subjects:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        return _ok(sorted(state.subjects[subject]))

    @routes.get("/subjects/{subject}/versions/{version}")
    async def get_version(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        found = subject_version(subject, request.match_info["version"])
        if isinstance(found, web.Response):
            return found
        version, schema_id = found
        return _ok(
            {
                "subject": subject,
                "version": version,
                "id": schema_id,
                "schema": state.schemas[schema_id],
            }
        )

    @routes.post("/subjects/{subject}/versions")
    async def register(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        text = await schema_body(request)
        if isinstance(text, web.Response):
            return text
        if state.version_of(subject, text) is None:
            problems = registry.problems(subject, text)
            if problems:
                return _error(
                    409,
                    409,
                    "Schema being registered is incompatible with an "
                    f"earlier schema for subject '{subject}': " + "; ".join(problems),
                )
        return _ok({"id": await registry.register(subject, text)})

    @routes.post("/subjects/{subject}")
    async def lookup(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        text = await schema_body(request)
        if isinstance(text, web.Response):
            return text
        if subject not in state.subjects:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        version = state.version_of(subject, text)
        if version is None:
            return _error(404, 40403, "Schema not found")
        return _ok(
            {
                "subject": subject,
                "version": version,
                "id": state.subjects[subject][version],
                "schema": text,
            }
        )

    @routes.get("/schemas/ids/{schema_id}")
    async def by_id(request: web.Request) -> web.Response:
        raw = request.match_info["schema_id"]
        schema = state.schemas.get(int(raw)) if raw.isdigit() else None
        if schema is None:
            return _error(404, 40403, f"Schema {raw} not found")
        return _ok({"schema": schema})

    @routes.get("/schemas/ids/{schema_id}/versions")
    async def id_versions(request: web.Request) -> web.Response:
        raw = request.match_info["schema_id"]
        schema_id = int(raw) if raw.isdigit() else -1
        if schema_id not in state.schemas:
            return _error(404, 40403, f"Schema {raw} not found")
        return _ok(
            [
                {"subject": s, "version": v}
                for s, versions in sorted(state.subjects.items())
                for v, sid in sorted(versions.items())
                if sid == schema_id
            ]
        )

    @routes.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatibility(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        text = await schema_body(request)
        if isinstance(text, web.Response):
            return text
        raw = request.match_info["version"]
        against = None
        if subject in state.subjects and raw not in ("latest", "-1"):
            found = subject_version(subject, raw)
            if isinstance(found, web.Response):
                return found
            against = found[0]
        problems = registry.problems(subject, text, against)
        return _ok({"is_compatible": not problems, "messages": problems})

    @routes.get("/config")
    async def get_config(_: web.Request) -> web.Response:
        return _ok({"compatibilityLevel": state.level(None)})

    @routes.get("/config/{subject}")
    async def get_subject_config(request: web.Request) -> web.Response:
        return _ok({"compatibilityLevel": state.level(request.match_info["subject"])})

    async def put_config(request: web.Request, subject: str | None) -> web.Response:
        try:
            level = Mode(str((await request.json())["compatibility"]).upper())
        except (ValueError, KeyError, TypeError):
            return _error(
                422, 42203, f"Invalid compatibility level; one of {[m.value for m in Mode]}"
            )
        await registry.set_level(subject, level.value)
        return _ok({"compatibility": level.value})

    @routes.put("/config")
    async def put_global(request: web.Request) -> web.Response:
        return await put_config(request, None)

    @routes.put("/config/{subject}")
    async def put_subject(request: web.Request) -> web.Response:
        return await put_config(request, request.match_info["subject"])

    app = web.Application()
    app.add_routes(routes)

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        await registry.start()
        yield
        await registry.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def serve(kafka: Settings, topic: str, host: str, port: int, level: Mode,
          replication: tuple[int, int] = (1, 1)) -> None:  # fmt: skip
    web.run_app(
        build_app(Registry(kafka, topic, level, replication)),
        host=host,
        port=port,
        print=lambda *_: log.info("schema registry listening on %s:%d", host, port),
    )
