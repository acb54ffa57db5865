"""A Faust codec over the same serializer/deserializer, for ``app.topic(value_serializer=...)``."""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec

from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer


class AvroCodec(Codec):  # type: ignore[misc]
    def __init__(self, serializer: AvroSerializer, deserializer: AvroDeserializer) -> None:
        super().__init__()
        self.serializer, self.deserializer = serializer, deserializer

    def _dumps(self, obj: Any) -> bytes:
        return self.serializer(obj)

    def _loads(self, s: bytes) -> Any:
        return self.deserializer(s)
