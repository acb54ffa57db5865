"""What the agents share: decoding inputs, and sending rejections and claim statuses."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from erpbridge.metrics import STREAM_EVENTS
from erpbridge.registry.client import RegistryUnavailable
from erpbridge.rejections import Stage, dead_letter
from erpbridge.retry import RetryPolicy
from streams.app import claim_status, codecs, rejected
from streams.claim_case import Status

log = logging.getLogger(__name__)
REGISTRY_RETRY = RetryPolicy(initial_s=0.5, max_s=10.0)


async def decode(role: str, value: bytes) -> dict[str, Any]:
    """Decode, waiting out a registry outage: the record is fine, only its schema is far.
    Bad bytes raise :class:`erpbridge.codec.DecodeError`."""
    attempt = 0
    while True:
        try:
            return codecs.deserializer(role)(value)
        except RegistryUnavailable as exc:
            attempt += 1
            log.warning("registry unavailable stage=%s attempt=%d error=%s", Stage.DECODE, attempt,
                        exc)  # fmt: skip
            await asyncio.sleep(REGISTRY_RETRY.delay(attempt))


def origin_of(event: Any) -> dict[str, Any]:
    message = event.message
    return {"topic": message.topic, "partition": message.partition, "offset": message.offset}


def event_ms(event: Any) -> int:
    """The input's event time (the record's timestamp), so replays judge deadlines the same."""
    return int(event.message.timestamp * 1000)


async def reject(agent: str, stage: Stage, key: bytes | None, original: bytes | None,
                 origin: Mapping[str, Any], reason: str, problems: list[str],
                 entity_id: str | None) -> None:  # fmt: skip
    STREAM_EVENTS.labels(agent, "rejected").inc()
    log.warning("rejected stage=%s reason=%s origin=%s entity=%s", stage, reason, dict(origin),
                entity_id)  # fmt: skip
    record = dead_letter(stage=stage, reason=reason, problems=problems, original=original,
                         content_type="avro/binary", origin=origin,
                         entity_id=entity_id)  # fmt: skip
    await rejected.send(key=key, value=record)


async def send_status(claim_id: str, version: int, status: Status, at_ms: int) -> None:
    record = {
        "claim_id": claim_id,
        "claim_version": version,
        "status": status.status,
        "reason": status.reason,
        "detail": status.detail,
        "invoice_refs": status.invoice_refs,
        "related_claim_id": status.related_claim_id,
        "occurred_at": datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC),
    }
    await claim_status.send(key=claim_id.encode(), value=record)
