"""Serializers and deserializers for the pipeline's topics, from their contracts."""

from __future__ import annotations

from functools import cached_property

from erpbridge.config import Settings
from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer, value_subject
from erpbridge.registry.client import SchemaRegistryClient
from erpbridge.topics import CONTRACTS, Topics


class TopicCodecs:
    """``codecs.serializer("postings")`` writes the topic's contract (latest version);
    ``codecs.deserializer("postings")`` reads any registered version of it."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics(settings.topic_prefix)
        self._registry_url = settings.schema_registry_url
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializers: dict[str, AvroDeserializer] = {}

    @cached_property
    def registry(self) -> SchemaRegistryClient:
        return SchemaRegistryClient(self._registry_url)

    def topic(self, role: str) -> str:
        return str(getattr(self.topics, role))

    def serializer(self, role: str) -> AvroSerializer:
        if role not in self._serializers:
            self._serializers[role] = AvroSerializer(
                self.registry, value_subject(self.topic(role)), contract(CONTRACTS[role]).latest
            )
        return self._serializers[role]

    def deserializer(self, role: str) -> AvroDeserializer:
        if role not in self._deserializers:
            self._deserializers[role] = AvroDeserializer(
                self.registry, contract(CONTRACTS[role]).latest
            )
        return self._deserializers[role]

    def register_all(self, *roles: str) -> dict[str, int]:
        """Register the writers' schemas up front, so a missing registry fails at start-up."""
        return {role: self.serializer(role).schema_id for role in roles}

    def close(self) -> None:
        if "registry" in self.__dict__:
            self.registry.close()
