"""DeadLetter records for the rejection topic: what was refused, where it came from, and why;
and the one list of the stages a record can fail at, for every failure topic and log line."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """Where in the pipeline a record failed (``DeadLetter.stage``, ``__connect.errors.stage``)."""

    SOURCE_WEBHOOK = "source.webhook"  # an inbound request refused
    SOURCE_BATCH_FILE = "source.batch_file"  # a row of an imported file refused
    SOURCE_POLL = "source.poll"  # an item of a polled page refused, or the poll retried
    DECODE = "decode"  # reading a record's bytes (a registry outage is retried)
    VALIDATE = "validate"  # an invoice's tax arithmetic
    NORMALIZE = "normalize"  # a claim's codes, rates and amounts
    CORRELATE = "correlate"  # a claim against its invoices (duplicate, invalid)
    CONVERT = "convert"  # a sink could not decode a record
    PUT = "put"  # an ERP write
    DELIVER = "deliver"  # a feedback POST to the expense platform


def dead_letter(
    *,
    stage: Stage,
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
