"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Every failure to read bytes is a :class:`erpbridge.codec.DecodeError` subclass, so callers route
it to the rejection/dead-letter topic with the reason instead of crashing.
"""

from __future__ import annotations

import struct

from erpbridge.codec import DecodeError

MAGIC = 0
_HEADER = struct.Struct(">bI")


class BadMagicByte(DecodeError):
    """The first byte is not 0: not Confluent-framed Avro."""


class TruncatedPayload(DecodeError):
    """Shorter than the header, or the Avro body ends early."""


class UnknownSchemaId(DecodeError):
    """The registry has no schema with the id in the header."""


class BodyDoesNotMatchSchema(DecodeError):
    """The body cannot be decoded with the writer schema its id names."""


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + body


def unframe(data: bytes | None) -> tuple[int, memoryview]:
    """Return (schema id, Avro body)."""
    if data is None:
        raise TruncatedPayload("empty record (tombstone)")
    if len(data) < _HEADER.size:
        raise TruncatedPayload(f"{len(data)} bytes is shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadMagicByte(f"magic byte {magic & 0xFF:#04x}, expected 0x00 (Confluent Avro)")
    return schema_id, memoryview(data)[_HEADER.size :]
