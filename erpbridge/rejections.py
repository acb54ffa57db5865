"""The record written to the rejection topic: what was refused, where it came from, and why."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping, Sequence
from typing import Any


def rejection_record(
    *,
    stage: str,
    reason: str,
    problems: Sequence[str],
    original: bytes | None,
    origin: Mapping[str, Any],
    claim_id: str | None = None,
) -> dict[str, Any]:
    """``origin`` says where the input was (file + line, or topic/partition/offset)."""
    try:
        text: str | None = original.decode() if original is not None else None
        encoded = None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(original or b"").decode()
    return {
        "stage": stage,
        "reason": reason,
        "problems": list(problems),
        "claim_id": claim_id,
        "origin": dict(origin),
        "original": text,
        "original_base64": encoded,
        "rejected_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
