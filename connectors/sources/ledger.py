"""What a source already published, in Redis: re-reading the same input publishes nothing twice.

A row's identity is a hash of its source, entity id and content, so a changed row (same claim
id, new content) is published again as an update. Identities are recorded only after the broker
acknowledged the rows, so a crash re-publishes at most the unacknowledged batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import cast

import redis


def row_identity(source_system: str, entity_id: str, content: object) -> str:
    text = json.dumps([source_system, entity_id, content], sort_keys=True, ensure_ascii=False,
                      default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_checksum(path_bytes: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in path_bytes:
        digest.update(chunk)
    return digest.hexdigest()


def namespace(kind: str, topic_prefix: str) -> str:
    """Redis keys of one pipeline (topic prefix): two pipelines sharing a Redis (a test and a
    production prefix) must not see each other's imports or idempotency keys. The default
    prefix keeps the names it always had, so an upgrade forgets nothing."""
    return (
        f"erpbridge:{kind}" if topic_prefix == "erpbridge" else f"erpbridge:{kind}:{topic_prefix}"
    )


class ImportLedger:
    def __init__(self, redis_url: str, source_system: str, topic_prefix: str = "erpbridge") -> None:
        self._redis = redis.Redis.from_url(redis_url)
        base = namespace("ledger", topic_prefix)
        self._rows = f"{base}:{source_system}:rows"
        self._files = f"{base}:{source_system}:files"

    def close(self) -> None:
        self._redis.close()

    def known(self, identities: list[str]) -> set[str]:
        if not identities:
            return set()
        flags = cast(list[int], self._redis.smismember(self._rows, identities))
        return {identity for identity, flag in zip(identities, flags, strict=True) if flag}

    def record(self, identities: Iterable[str]) -> None:
        batch = list(identities)
        if batch:
            self._redis.sadd(self._rows, *batch)

    def file_done(self, checksum: str) -> str | None:
        """The summary of an earlier complete import of the same bytes, if any."""
        value = cast(bytes | None, self._redis.hget(self._files, checksum))
        return value.decode() if value is not None else None

    def mark_file_done(self, checksum: str, summary: str) -> None:
        self._redis.hset(self._files, checksum, summary)
