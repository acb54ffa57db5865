"""Idempotency keys in Redis: a retried request gets the first answer back, and is written once.

A key is ``pending`` while its first request is being published and holds that request's answer
and its body's hash afterwards, for ``ttl_s`` (a different body under the same key is refused by
the webhook, not answered with the first answer). Redis makes this hold across processes and
restarts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

PENDING = "pending"


@dataclass(frozen=True)
class Stored:
    status: int
    body: dict[str, Any]
    request_hash: str | None = None  # sha256 of the first request's body (None: stored before)

    def same_request(self, request_hash: str) -> bool:
        return self.request_hash is None or self.request_hash == request_hash


class IdempotencyStore:
    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: int,
        pending_ttl_s: int = 60,
        prefix: str = "erpbridge:idem",
    ) -> None:
        self._redis, self._ttl, self._pending_ttl, self._prefix = (
            client,
            ttl_s,
            pending_ttl_s,
            prefix,
        )

    def _key(self, scope: str, key: str) -> str:
        return f"{self._prefix}:{scope}:{key}"

    async def claim(self, scope: str, key: str) -> Stored | str | None:
        """None: the caller owns the key now. A :class:`Stored` answer: replay it. ``PENDING``:
        the same request is in flight elsewhere."""
        name = self._key(scope, key)
        if await self._redis.set(name, PENDING, nx=True, ex=self._pending_ttl):
            return None
        value = await self._redis.get(name)
        if value is None:  # expired between the two calls: try once more
            return (
                None
                if await self._redis.set(name, PENDING, nx=True, ex=self._pending_ttl)
                else PENDING
            )
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text == PENDING:
            return PENDING
        stored = json.loads(text)
        return Stored(int(stored["status"]), stored["body"], stored.get("request_hash"))

    async def pending_for(self, scope: str, key: str) -> int:
        """Whole seconds until a pending key lapses (its holder may have died): what a client
        should wait before it asks again (at least 1)."""
        remaining_ms = await self._redis.pttl(self._key(scope, key))
        return max(1, -(-int(remaining_ms) // 1000)) if remaining_ms and remaining_ms > 0 else 1

    async def complete(self, scope: str, key: str, status: int, body: dict[str, Any],
                       request_hash: str | None = None) -> None:  # fmt: skip
        value = {"status": status, "body": body, "request_hash": request_hash}
        await self._redis.set(self._key(scope, key), json.dumps(value), ex=self._ttl)

    async def release(self, scope: str, key: str) -> None:
        await self._redis.delete(self._key(scope, key))
