"""Record (de)serialisation for every topic, in one place.

The walking skeleton writes UTF-8 JSON objects; the Avro contracts replace this module's body.
Undecodable bytes raise :class:`DecodeError`, which callers route to a rejection/DLQ topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class DecodeError(ValueError):
    """Bytes on a topic that are not a record of the expected shape."""


def encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise DecodeError("empty record (tombstone)")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def encode_key(key: str) -> bytes:
    return key.encode()


def decode_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode(errors="replace")
