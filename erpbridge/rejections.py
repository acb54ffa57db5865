"""DeadLetter records for the rejection topic: what was refused, where it came from, and why."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any


def dead_letter(
    *,
    stage: str,
    reason: str,
    problems: Sequence[str],
    original: bytes | None,
    content_type: str | None,
    origin: Mapping[str, object],
    entity_id: str | None = None,
) -> dict[str, Any]:
    """``origin`` says where the input was (file + line, or topic/partition/offset)."""
    return {
        "stage": stage,
        "reason": reason,
        "problems": list(problems),
        "entity_id": entity_id,
        "origin": {key: str(value) for key, value in origin.items()},
        "original": original,
        "original_content_type": content_type,
        "rejected_at": datetime.datetime.now(datetime.UTC),
    }


def describe(record: Mapping[str, Any]) -> str:
    return "; ".join(record.get("problems") or [str(record.get("reason", "?"))])
