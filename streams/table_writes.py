"""Table writes that commit with the event that caused them, one changelog record per changed key.

A Faust table assignment (``table[key] = value``) queues its changelog record in the producer
buffer, which a background task sends later, possibly into the *next* transaction, after the
commit of the event's offsets (see :mod:`streams.transactions`, repair 2). Here the store is
updated at once (later reads see the write), and the changelog record waits, per input
transaction (:func:`streams.disk_state.transaction_of`), for that transaction's commit: the
commit sends the last value of each key written since the previous one, into that transaction,
before its offsets (:meth:`streams.transactions.Consumer._commit_offsets`), so the changelog,
the outputs and the offsets commit together, or none of them. Like Kafka Streams' record cache
and Quix Streams' checkpoints, a key written several times between two commits (a claim, its
approvals and its invoice answer arriving close together) costs one record, not one a write.
An on-disk store (:mod:`streams.disk_state`) writes the value to disk once that transaction
committed. The writes of a revoked partition are forgotten with its transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from streams.disk_state import Group, transaction_of

# (table, key) -> value (None: deleted)
_Writes = dict[tuple[Any, bytes], Any]
Sender = Callable[[Group, str, bytes, bytes | None, int], Awaitable[Awaitable[Any]]]


class PendingChangelog:
    """The changelog records of each open input transaction, the last value per key."""

    def __init__(self) -> None:
        self._open: dict[Group, _Writes] = {}

    def record(self, table: Any, group: Group, key: bytes, value: Any | None) -> None:
        self._open.setdefault(group, {})[(table, key)] = value

    def forget(self, groups: Iterable[Group]) -> None:
        for group in set(groups):
            self._open.pop(group, None)

    def __len__(self) -> int:
        return sum(len(writes) for writes in self._open.values())

    async def send(self, groups: Iterable[Group], send: Sender) -> None:
        """Send the records of ``groups`` (each into its own transaction) and tell an on-disk
        store which sends hold its writes (it stores their offset when it writes them)."""
        for group in set(groups):
            writes = self._open.pop(group, None)
            if not writes:
                continue
            sent: dict[Any, list[Awaitable[Any]]] = {}
            for (table, key), value in writes.items():
                topic = table.changelog_topic
                raw_key, _ = topic.prepare_key(key, None)
                raw_value = None if value is None else topic.prepare_value(value, None)[0]
                future = await send(group, topic.get_topic_name(), raw_key, raw_value, group[1])
                sent.setdefault(table, []).append(future)
            for table, futures in sent.items():
                note_sent = getattr(table.data, "note_sent", None)  # an on-disk store
                if note_sent is not None:
                    note_sent(group, futures)


def put(table: Any, event: Any, key: bytes, value: Any | None) -> None:
    """Set ``table[key] = value`` (``None`` deletes it); its changelog record commits with the
    event's transaction."""
    put_for = getattr(table, "put_for", None)  # the direct runtime's table (streams.direct)
    if put_for is not None:
        put_for(event, key, value)
        return
    if value is None:
        table.data.pop(key, None)
    else:
        table.data[key] = value
    app = table.app
    app.changelog.record(table, transaction_of(app, event.message.tp), key, value)
