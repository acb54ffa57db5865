"""Registry state, rebuilt from a compacted Kafka topic: ids and versions survive restarts and are
shared by every registry process reading the same topic.

Records: key ``{"keytype": "SCHEMA", "subject", "version"}`` -> ``{"id", "schema"}``, and
key ``{"keytype": "CONFIG", "subject": null|name}`` -> ``{"compatibilityLevel"}``. Writers race
only through the log: the first record to claim an id or a subject version wins, and a writer
that finds its claim lost allocates again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def canonical(schema_text: str) -> str:
    """The form we compare and store: parsed and re-serialized without whitespace."""
    return json.dumps(json.loads(schema_text), separators=(",", ":"), ensure_ascii=False)


def schema_key(subject: str, version: int) -> bytes:
    return json.dumps(
        {"keytype": "SCHEMA", "subject": subject, "version": version}, separators=(",", ":")
    ).encode()


def schema_value(schema_id: int, schema: str, subject: str, version: int) -> bytes:
    return json.dumps(
        {"id": schema_id, "schema": schema, "subject": subject, "version": version},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def config_key(subject: str | None) -> bytes:
    return json.dumps({"keytype": "CONFIG", "subject": subject}, separators=(",", ":")).encode()


def config_value(level: str) -> bytes:
    return json.dumps({"compatibilityLevel": level}).encode()


@dataclass
class RegistryState:
    default_level: str
    schemas: dict[int, str] = field(default_factory=dict)
    ids_by_schema: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, dict[int, int]] = field(default_factory=dict)
    levels: dict[str | None, str] = field(default_factory=dict)
    applied_offset: int = -1

    def apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        self.applied_offset = offset
        try:
            k: dict[str, Any] = json.loads(key or b"{}")
            v: dict[str, Any] | None = json.loads(value) if value else None
        except ValueError:
            return  # not ours: ignore rather than stop serving
        if k.get("keytype") == "CONFIG" and v:
            self.levels[k.get("subject")] = str(v["compatibilityLevel"])
        elif k.get("keytype") == "SCHEMA" and v:
            self._apply_schema(str(k["subject"]), int(k["version"]), int(v["id"]), str(v["schema"]))

    def _apply_schema(self, subject: str, version: int, schema_id: int, schema: str) -> None:
        versions = self.subjects.get(subject, {})
        if self.schemas.get(schema_id, schema) != schema:
            return  # the id was claimed first by another schema
        if self.ids_by_schema.get(schema, schema_id) != schema_id:
            return  # the schema already has another id
        if versions.get(version, schema_id) != schema_id or (
            schema_id in versions.values() and versions.get(version) != schema_id
        ):
            return  # the version was taken first, or the schema is already in the subject
        self.schemas[schema_id] = schema
        self.ids_by_schema[schema] = schema_id
        self.subjects.setdefault(subject, {})[version] = schema_id

    # -- queries -------------------------------------------------------------------------
    def level(self, subject: str | None) -> str:
        return self.levels.get(subject) or self.levels.get(None) or self.default_level

    def version_of(self, subject: str, schema: str) -> int | None:
        schema_id = self.ids_by_schema.get(schema)
        for version, sid in self.subjects.get(subject, {}).items():
            if sid == schema_id:
                return version
        return None

    def next_allocation(self, subject: str, schema: str) -> tuple[int, int]:
        """(schema id, version) a new registration of ``schema`` under ``subject`` would claim."""
        schema_id = self.ids_by_schema.get(schema) or max(self.schemas, default=0) + 1
        version = max(self.subjects.get(subject, {}), default=0) + 1
        return schema_id, version
