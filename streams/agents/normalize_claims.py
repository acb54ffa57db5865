"""Agent: ExpenseClaim -> ErpPosting, or -> the rejection topic (DeadLetter) with every reason."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from erpbridge.codec import DecodeError
from erpbridge.config import Settings
from erpbridge.metrics import STREAM_EVENTS, STREAM_PROCESS_SECONDS
from erpbridge.registry.client import RegistryUnavailable
from erpbridge.rejections import dead_letter
from erpbridge.retry import RetryPolicy
from streams.app import app, claims_raw, codecs, postings, rejected, settings
from streams.postings import PostingRefused, PostingRules, build_posting

AGENT = "normalize_claims"
log = logging.getLogger(__name__)


def rules_from(config: Settings) -> PostingRules:
    return PostingRules(config.company_currency, config.posting_default_account,
                        config.posting_category_accounts)  # fmt: skip


RULES = rules_from(settings)
REGISTRY_RETRY = RetryPolicy(initial_s=0.5, max_s=10.0)


@app.agent(claims_raw)
async def normalize_claims(stream: Any) -> None:
    async for event in stream.events():
        started = time.perf_counter()
        STREAM_EVENTS.labels(AGENT, "in").inc()
        message = event.message
        origin = {"topic": message.topic, "partition": message.partition,
                  "offset": message.offset}  # fmt: skip
        try:
            claim = await _decode(event.value)
            posting = build_posting(claim, RULES)
        except DecodeError as exc:
            await _reject(event.key, event.value, origin, "undecodable", [str(exc)], None)
        except PostingRefused as exc:
            await _reject(
                event.key,
                event.value,
                {**origin, **claim.get("origin", {})},
                exc.reason,
                exc.problems,
                claim["claim_id"],
            )
        else:
            await postings.send(key=event.key, value=posting)
            STREAM_EVENTS.labels(AGENT, "out").inc()
        STREAM_PROCESS_SECONDS.labels(AGENT).observe(time.perf_counter() - started)


async def _decode(value: bytes) -> dict[str, Any]:
    """Decode, waiting out a registry outage: the record is fine, only its schema is far."""
    attempt = 0
    while True:
        try:
            return codecs.deserializer("claims_raw")(value)
        except RegistryUnavailable as exc:
            attempt += 1
            log.warning("registry unavailable stage=normalize attempt=%d error=%s", attempt, exc)
            await asyncio.sleep(REGISTRY_RETRY.delay(attempt))


async def _reject(
    key: bytes | None,
    value: bytes | None,
    origin: dict[str, Any],
    reason: str,
    problems: list[str],
    claim_id: str | None,
) -> None:
    STREAM_EVENTS.labels(AGENT, "rejected").inc()
    log.warning("rejected stage=normalize reason=%s topic=%s partition=%s offset=%s claim_id=%s",
                reason, origin.get("topic"), origin.get("partition"), origin.get("offset"),
                claim_id)  # fmt: skip
    record = dead_letter(
        stage="normalize",
        reason=reason,
        problems=problems,
        original=value,
        content_type="avro/binary",
        origin=origin,
        entity_id=claim_id,
    )
    await rejected.send(key=key, value=record)
