"""A schema registry in memory, for pure unit tests."""

from __future__ import annotations

from erpbridge.registry.client import SchemaNotFound


class MemoryRegistry:
    """Stands in for the registry's HTTP API in pure unit tests."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}

    def register(self, subject: str, schema: str) -> int:
        for schema_id, text in self.schemas.items():
            if text == schema:
                return schema_id
        self.schemas[len(self.schemas) + 1] = schema
        return len(self.schemas)

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self.schemas:
            raise SchemaNotFound(404, 40403, "Schema not found")
        return self.schemas[schema_id]
