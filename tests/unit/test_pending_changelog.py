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


def test_a_commit_leaves_out_a_partition_whose_transaction_is_not_open(monkeypatch) -> None:
    """A worker joining under load fenced this one's transaction of partition 1 before the
    rebalance reached it: the periodic commit sent that partition's changelog into it and the
    broker client refused (IllegalOperation "Can't send messages while not in transaction"),
    crashing the consumer. Partition 1 now takes nothing (its records wait, its offsets stay
    uncommitted) while partition 0 commits and its store takes its writes."""
    from types import SimpleNamespace

    from faust.transport.drivers.aiokafka import Consumer as FaustConsumer

    import streams.transactions as transactions
    from streams.transactions import Consumer

    class Tp(SimpleNamespace):
        def __hash__(self) -> int:
            return hash((self.topic, self.partition))

    tp0, tp1 = Tp(topic="claims", partition=0), Tp(topic="claims", partition=1)
    claims = _Table("claims")
    pending = PendingChangelog()
    pending.record(claims, (0, 0), b"C-0", {"state": "approved"})
    pending.record(claims, (0, 1), b"C-1", {"state": "approved"})
    sent, committed, flushed = [], [], []

    async def send(self: Any, group: Any, topic: str, key: bytes, value: Any,
                   partition: int) -> Any:  # fmt: skip
        if group == (0, 1):
            raise RuntimeError("Can't send messages while not in transaction")
        sent.append(key)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def faust_commit(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        committed.append(dict(offsets))
        return True

    async def flush(app: Any, tps: Any) -> None:
        flushed.extend(tps)

    monkeypatch.setattr(FaustConsumer, "_commit_offsets", faust_commit)
    monkeypatch.setattr(Consumer, "_send_changelog", send)
    monkeypatch.setattr(transactions, "flush_committed", flush)
    consumer: Any = Consumer.__new__(Consumer)
    assignor = SimpleNamespace(group_for_topic=lambda _: 0)
    consumer.app = SimpleNamespace(changelog=pending, assignor=assignor)
    consumer.assignment = lambda: {tp0, tp1}
    consumer.transactions = SimpleNamespace(is_open=lambda tp: tp.partition == 0)
    monkeypatch.setattr(Consumer, "in_transaction", True, raising=False)
    assert asyncio.run(consumer._commit_offsets({tp0: 10, tp1: 20})) is True
    assert (sent, committed, flushed) == ([b"C-0"], [{tp0: 10}], [tp0])
    assert len(pending) == 1  # partition 1's record waits: its next owner, or its next commit
