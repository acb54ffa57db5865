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
from streams.app import app, claim_versions, claims_raw, codecs, postings, rejected, settings
from streams.dedupe import ClaimState, Verdict, content_hash, judge
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
        except DecodeError as exc:
            await _reject(event.key, event.value, origin, "undecodable", [str(exc)], None)
        else:
            await _normalize(event.key, event.value, claim, {**origin, **claim["origin"]})
        STREAM_PROCESS_SECONDS.labels(AGENT).observe(time.perf_counter() - started)


async def _normalize(key: bytes | None, value: bytes, claim: dict[str, Any],
                     origin: dict[str, Any]) -> None:  # fmt: skip
    claim_id = claim["claim_id"]
    table_key = claim_id.encode()
    previous = ClaimState.from_json(claim_versions.get(table_key))
    digest = content_hash(claim)
    verdict, version = judge(previous, digest)
    if verdict is Verdict.DUPLICATE:
        STREAM_EVENTS.labels(AGENT, "duplicate").inc()
        return
    if verdict is Verdict.CHANGED_AFTER_POSTING:
        claim_versions[table_key] = ClaimState(digest, version, posted=True).to_json()
        await _reject(
            key,
            value,
            origin,
            "changed_after_posting",
            [
                f"claim {claim_id} changed after version {version - 1} was posted; this is version "
                f"{version}: amend the booking in the ERP, or send it as a new claim"
            ],
            claim_id,
        )
        return
    try:
        posting = build_posting(claim, RULES)
    except PostingRefused as exc:
        claim_versions[table_key] = ClaimState(digest, version, posted=False).to_json()
        await _reject(key, value, origin, exc.reason, exc.problems, claim_id)
        return
    claim_versions[table_key] = ClaimState(digest, version, posted=True).to_json()
    posting["claim_version"] = version
    await postings.send(key=key, value=posting)
    STREAM_EVENTS.labels(AGENT, "out").inc()


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
