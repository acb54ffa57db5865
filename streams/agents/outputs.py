"""What the agents share: their event loop, decoding inputs, and sending rejections and claim
statuses."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from erpbridge.codec import DecodeError
from erpbridge.failures import Attempts, FailureRecord, RetryPolicy, RetryWithTolerance, Stage
from erpbridge.metrics import STREAM_EVENTS, STREAM_PROCESS_SECONDS
from streams.app import app, claim_status, codecs, reference, rejected
from streams.claim_case import Status
from streams.internal_events import is_legacy, read_legacy
from streams.transactions import TRACE

log = logging.getLogger(__name__)
# A registry outage is waited out: the record is fine, only its schema is far.
REGISTRY_RETRY = RetryWithTolerance("streams", Stage.DECODE, RetryPolicy(initial_s=0.5, max_s=10.0))


def serve(channel: Any, agent: str, roles: Mapping[str, str],
          handle: Callable[[Any, str], Awaitable[None]], *,
          after_reference: bool = False) -> None:  # fmt: skip
    """Run ``handle(event, role)`` for each event of ``channel`` (``roles``: its topics' roles),
    under the runtime's agent named ``agent``: each event whole inside the commit gate (a commit
    holds whole events only), traced and timed. ``after_reference``: each event waits for the
    reference data first, outside the gate (a commit need not wait for it)."""

    timer = STREAM_PROCESS_SECONDS.labels(agent)  # once: a lookup per event is a hot-path cost

    async def one(event: Any) -> None:
        if after_reference:
            await reference.ready()
        async with app.gate.event():
            started = time.perf_counter()
            role = roles[event.message.topic]
            TRACE.info("event %s %d %d %r", role, event.message.partition, event.message.offset,
                       event.key)  # fmt: skip
            await handle(event, role)
            timer.observe(time.perf_counter() - started)

    app.handle(channel, one, f"streams.agents.{agent}.{agent}_agent")


async def decode(role: str, value: bytes) -> dict[str, Any]:
    """Decode, waiting out a registry outage. Bad bytes raise
    :class:`erpbridge.codec.DecodeError`."""

    async def attempt() -> dict[str, Any]:
        return codecs.deserializer(role)(value)

    return await REGISTRY_RETRY.call_async(attempt, _registry_retry)


async def decode_or_reject(agent: str, stage: Stage, role: str,
                           event: Any) -> dict[str, Any] | None:  # fmt: skip
    """The event's record, or None once it was refused as undecodable (and kept)."""
    try:
        if role in ("claim_events", "invoice_refs"):
            return await decode_internal(role, event.value)
        return await decode(role, event.value)
    except DecodeError as exc:
        await reject(agent, stage, event.key, event.value, origin_of(event), "undecodable",
                     [str(exc)], None, event.headers)  # fmt: skip
        return None


async def decode_internal(role: str, value: bytes) -> dict[str, Any]:
    """An internal event (claim_events, invoice_refs), also as written before the contracts."""
    return read_legacy(value) if is_legacy(value) else await decode(role, value)


def _registry_retry(attempts: Attempts, wait: float) -> None:
    log.warning("registry unavailable stage=%s attempt=%d wait=%.1fs error=%s", Stage.DECODE,
                attempts.count, wait, attempts.error)  # fmt: skip


def origin_of(event: Any) -> dict[str, Any]:
    message = event.message
    return {"topic": message.topic, "partition": message.partition, "offset": message.offset}


def event_ms(event: Any) -> int:
    """The input's event time (the record's timestamp), so replays judge deadlines the same."""
    return int(event.message.timestamp * 1000)


async def reject(agent: str, stage: Stage, key: bytes | None, original: bytes | None,
                 origin: Mapping[str, Any], reason: str, problems: list[str],
                 entity_id: str | None,
                 headers: Mapping[str, bytes] | None = None) -> None:  # fmt: skip
    """``headers``: the refused input's own (a replay's count travels with them)."""
    STREAM_EVENTS.labels(agent, "rejected").inc()
    log.warning("rejected stage=%s reason=%s origin=%s entity=%s", stage, reason, dict(origin),
                entity_id)  # fmt: skip
    failure = FailureRecord.refused(stage=stage, reason=reason, connector=agent,
                                    problems=problems, original=original,
                                    content_type="avro/binary", origin=origin,
                                    entity_id=entity_id, key=key,
                                    headers=list((headers or {}).items()))  # fmt: skip
    message = failure.to_message()
    await rejected.send(key=message["key"], value=message["value"], headers=message["headers"])


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
