"""The processors' internal events (``claim_events``, ``invoice_refs``) as they were before they
had Avro contracts: JSON, read once more so that an upgrade loses none still in flight."""

from __future__ import annotations

import json
from typing import Any

from erpbridge.codec import DecodeError


def is_legacy(value: bytes) -> bool:
    """Avro in the Confluent framing starts with the magic byte 0; the JSON ones with ``{``."""
    return value[:1] == b"{"


def read_legacy(value: bytes) -> dict[str, Any]:
    """A JSON internal event as its contract's record (``kind`` in the contract's symbols)."""
    try:
        message = json.loads(value)
        kind = str(message["kind"]).upper()
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"neither Avro nor a legacy JSON event: {exc}") from exc
    return {**message, "kind": "INVOICE_ANSWER" if kind == "INVOICE" else kind}
