"""Agent: raw claims -> normalized claims, or -> the rejection topic with every reason."""

from __future__ import annotations

import logging
import time
from typing import Any

from erpbridge import codec
from erpbridge.metrics import STREAM_EVENTS, STREAM_PROCESS_SECONDS
from erpbridge.rejections import rejection_record
from streams.app import app, claims_normalized, claims_raw, claims_rejected
from streams.normalize import ClaimInvalid, normalize_claim

AGENT = "normalize_claims"
log = logging.getLogger(__name__)


@app.agent(claims_raw)
async def normalize_claims(stream: Any) -> None:
    async for event in stream.events():
        started = time.perf_counter()
        STREAM_EVENTS.labels(AGENT, "in").inc()
        message = event.message
        origin = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
        try:
            raw = codec.decode(event.value)
            claim = normalize_claim(raw)
        except codec.DecodeError as exc:
            await _reject(event.key, event.value, origin, "undecodable", [str(exc)], None)
        except ClaimInvalid as exc:
            await _reject(
                event.key,
                event.value,
                {**origin, **_provenance(raw)},
                "invalid_claim",
                exc.problems,
                str(raw.get("claim_id") or "") or None,
            )
        else:
            await claims_normalized.send(
                key=codec.encode_key(claim.claim_id), value=codec.encode(claim.to_record())
            )
            STREAM_EVENTS.labels(AGENT, "out").inc()
        STREAM_PROCESS_SECONDS.labels(AGENT).observe(time.perf_counter() - started)


def _provenance(raw: dict[str, Any]) -> dict[str, Any]:
    return {key: raw[key] for key in ("source_file", "line") if key in raw}


async def _reject(
    key: bytes | None,
    value: bytes | None,
    origin: dict[str, Any],
    reason: str,
    problems: list[str],
    claim_id: str | None,
) -> None:
    STREAM_EVENTS.labels(AGENT, "rejected").inc()
    log.warning(
        "rejected stage=normalize reason=%s topic=%s partition=%s offset=%s claim_id=%s",
        reason,
        origin.get("topic"),
        origin.get("partition"),
        origin.get("offset"),
        claim_id,
    )
    record = rejection_record(
        stage="normalize",
        reason=reason,
        problems=problems,
        original=value,
        origin=origin,
        claim_id=claim_id,
    )
    await claims_rejected.send(
        key=key, value=codec.encode(record), headers={"erpbridge.rejection.reason": reason.encode()}
    )
