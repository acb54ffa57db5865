"""Avro (de)serialization in the Confluent wire format, for kafka-python and Faust alike.

Subjects follow the TopicNameStrategy (``<topic>-value``). The serializer registers its schema
once and caches the id; the deserializer fetches each writer schema by id once and resolves it
against the reader's contract version, so v1 producers and v2 consumers interoperate.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from erpbridge.contracts.catalog import ContractVersion, parse_schema_text
from erpbridge.contracts.wire import (
    BodyDoesNotMatchSchema,
    TruncatedPayload,
    UnknownSchemaId,
    frame,
    unframe,
)
from erpbridge.registry.client import SchemaNotFound, SchemaRegistryClient
from erpbridge.registry.store import canonical


class SerializationError(ValueError):
    """A record does not fit its contract (missing field, wrong type): a bug or bad input."""


def value_subject(topic: str) -> str:
    return f"{topic}-value"


class AvroSerializer:
    def __init__(
        self, registry: SchemaRegistryClient, subject: str, contract: ContractVersion
    ) -> None:
        self.registry, self.subject, self.contract = registry, subject, contract
        self._schema_id: int | None = None

    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self.registry.register(self.subject, self.contract.text)
        return self._schema_id

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        buffer = io.BytesIO()
        try:
            fastavro.schemaless_writer(buffer, self.contract.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(
                f"record does not fit {self.contract.full_name} v{self.contract.version}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return frame(self.schema_id, buffer.getvalue())


class AvroDeserializer:
    """Bytes -> dict. Bad bytes raise :class:`erpbridge.codec.DecodeError` subclasses; an
    unreachable registry raises :class:`RegistryUnavailable` (retry: the data is not at fault)."""

    def __init__(
        self, registry: SchemaRegistryClient, reader: ContractVersion | None = None
    ) -> None:
        self.registry, self.reader = registry, reader
        # schema id -> (writer schema, reader schema or None when both are the same)
        self._plans: dict[int, tuple[Any, Any]] = {}

    def writer_schema(self, schema_id: int) -> str:
        try:
            return self.registry.schema_by_id(schema_id)
        except SchemaNotFound as exc:
            raise UnknownSchemaId(f"schema id {schema_id} is not in the registry") from exc

    def _plan(self, schema_id: int) -> tuple[Any, Any]:
        plan = self._plans.get(schema_id)
        if plan is None:
            text = self.writer_schema(schema_id)
            if self.reader is None or canonical(text) == self.reader.text:
                plan = (parse_schema_text(text), None)  # same schema: no resolution needed
            else:
                plan = (parse_schema_text(text), self.reader.parsed)
            self._plans[schema_id] = plan
        return plan

    def __call__(self, data: bytes | None) -> dict[str, Any]:
        schema_id, body = unframe(data)
        writer, reader = self._plan(schema_id)
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except (EOFError, struct.error) as exc:
            raise TruncatedPayload(f"Avro body ends early for schema id {schema_id}") from exc
        except SchemaResolutionError as exc:
            raise BodyDoesNotMatchSchema(
                f"writer schema {schema_id} cannot be read as "
                f"{self.reader.full_name if self.reader else 'itself'}: {exc}"
            ) from exc
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            if stream.tell() >= len(body):  # it failed for want of bytes
                raise TruncatedPayload(
                    f"Avro body ends early for schema id {schema_id}: {exc}"
                ) from exc
            raise BodyDoesNotMatchSchema(
                f"body does not decode with schema id {schema_id}: {exc}"
            ) from exc
        if stream.tell() != len(body):
            raise BodyDoesNotMatchSchema(
                f"{len(body) - stream.tell()} bytes left over after the record (schema id "
                f"{schema_id})"
            )
        if not isinstance(record, dict):
            raise BodyDoesNotMatchSchema(f"schema id {schema_id} is not a record schema")
        return record
