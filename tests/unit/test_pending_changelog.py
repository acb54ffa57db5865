"""Table writes wait for their input transaction's commit: one changelog record per changed key,
the last value, sent into that transaction; a revoked transaction's writes are forgotten."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from streams.table_writes import PendingChangelog


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name

    def prepare_key(self, key: bytes, serializer: Any) -> tuple[bytes, None]:
        return key, None

    def prepare_value(self, value: Any, serializer: Any) -> tuple[bytes, None]:
        return json.dumps(value).encode(), None


class _Store:
    def __init__(self) -> None:
        self.noted: dict[Any, int] = {}

    def note_sent(self, group: Any, futures: list[Any]) -> None:
        self.noted[group] = self.noted.get(group, 0) + len(futures)


class _Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.changelog_topic = _Topic(f"{name}-changelog")
        self.data = _Store()


def _send_all(pending: PendingChangelog, groups: set[Any]) -> list[tuple[Any, ...]]:
    sent: list[tuple[Any, ...]] = []

    async def send(group: Any, topic: str, key: bytes, value: bytes | None,
                   partition: int) -> asyncio.Future[Any]:  # fmt: skip
        sent.append((group, topic, key, value, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    asyncio.run(pending.send(groups, send))
    return sent


def test_a_key_written_several_times_between_commits_costs_one_record_its_last_value() -> None:
    claims, invoices = _Table("claims"), _Table("invoices")
    pending = PendingChangelog()
    pending.record(claims, (0, 3), b"C-1", {"state": "submitted"})
    pending.record(claims, (0, 3), b"C-1", {"state": "approved"})
    pending.record(claims, (0, 3), b"C-2", {"state": "submitted"})
    pending.record(claims, (0, 3), b"C-2", None)  # deleted after its write: the deletion counts
    pending.record(invoices, (1, 3), b"I-1", {"cited_by": ["C-1"]})
    assert len(pending) == 3
    sent = _send_all(pending, {(0, 3)})
    assert sent == [((0, 3), "claims-changelog", b"C-1", b'{"state": "approved"}', 3),
                    ((0, 3), "claims-changelog", b"C-2", None, 3)]  # fmt: skip
    assert claims.data.noted == {(0, 3): 2} and invoices.data.noted == {}
    # the other transaction was not committing: its record waits for its own commit
    assert len(pending) == 1
    assert _send_all(pending, {(0, 3)}) == []
    assert [s[2] for s in _send_all(pending, {(1, 3)})] == [b"I-1"] and len(pending) == 0


def test_a_revoked_transaction_s_writes_are_never_sent() -> None:
    claims = _Table("claims")
    pending = PendingChangelog()
    pending.record(claims, (0, 1), b"C-1", {"state": "approved"})
    pending.record(claims, (0, 2), b"C-2", {"state": "approved"})
    pending.forget([(0, 1)])
    assert [s[2] for s in _send_all(pending, {(0, 1), (0, 2)})] == [b"C-2"]
