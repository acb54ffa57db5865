"""Tables on disk that hold committed state only (the default store, ``ERPBRIDGE_STREAMS_STORE``).

In memory, a table is rebuilt from its whole changelog at every start, so start-up time and
memory grow with every case kept (retention is 400 days). Faust's RocksDB store keeps the table
on disk and remembers the changelog offset it holds, so a restart reads only what is newer. But
it writes each table assignment to RocksDB at once, while under exactly_once the changelog record
of that assignment commits only with its event's transaction: after a SIGKILL the local store
would hold effects of aborted transactions, and a replayed event would find its own effect and
be judged a duplicate, its output never sent (the loss :mod:`streams.transactions` repair 3 is
about).

Here writes wait in memory, per input transaction (topic group and partition), and reads see
them. When that transaction's offsets commit, its writes go to RocksDB in one atomic write batch
together with the offset of its last changelog record. So the store on disk always holds a
committed prefix of the changelog and the offset it ends at; whatever committed after it (a crash
between the Kafka commit and the local write) is read back from the changelog at the next start,
and whatever aborted was never on disk. An uncommitted transaction's writes are dropped when its
partitions are revoked. Under at_least_once the same rule holds for committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event

ALIAS = "erpbridge-rocksdb"
# Bounded memory: the block cache and memtables are RocksDB's own, per table partition.
OPTIONS = {
    "driver": "rocksdict",
    "block_cache_size": 16 * 1024**2,
    "block_cache_compressed_size": 0,
    "write_buffer_size": 8 * 1024**2,
    "max_write_buffer_number": 2,
}

Group = tuple[int, int]  # (topic group, partition): the input transaction an event belongs to


def transaction_of(app: Any, tp: Any) -> Group:
    """The input transaction a record of ``tp`` is processed in."""
    return (app.assignor.group_for_topic(tp.topic), tp.partition)


@dataclass
class _Open:
    """An input transaction's table writes (``None``: deleted) and their changelog sends."""

    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    sent: list[Awaitable[Any]] = field(default_factory=list)


class CommittedRocksStore(RocksDBStore):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: dict[Group, _Open] = {}

    def _open_for(self, event: Any) -> _Open:
        return self._open.setdefault(transaction_of(self.app, event.message.tp), _Open())

    # writes wait for their transaction
    def _set(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        if event is None:
            raise RuntimeError(f"{self.table.name}: a table write outside an event")
        self._open_for(event).writes[key] = value

    def _del(self, key: bytes) -> None:
        self._set(key, None)

    def note_sent(self, group: Group, futures: list[Awaitable[Any]]) -> None:
        """The changelog records of ``group``'s writes (their last offset is stored with them)."""
        self._open.setdefault(group, _Open()).sent.extend(futures)

    # reads see them
    def _pending_value(self, key: bytes) -> tuple[bool, bytes | None]:
        event = current_event()
        if event is not None:
            opened = self._open.get(transaction_of(self.app, event.message.tp))
            candidates = [] if opened is None else [opened]
        else:
            candidates = list(self._open.values())
        for opened in candidates:
            if key in opened.writes:
                return True, opened.writes[key]
        return False, None

    def _get(self, key: bytes) -> bytes | None:
        found, value = self._pending_value(key)
        return value if found else super()._get(key)

    def _contains(self, key: bytes) -> bool:
        found, value = self._pending_value(key)
        return value is not None if found else bool(super()._contains(key))

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        pending: dict[bytes, bytes | None] = {}
        for opened in self._open.values():
            pending.update(opened.writes)
        for key, value in super()._iteritems():
            if key not in pending:
                yield key, value
        yield from ((key, value) for key, value in pending.items() if value is not None)

    def partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """One partition's entries: its own RocksDB and its waiting writes."""
        pending: dict[bytes, bytes | None] = {}
        for group, opened in self._open.items():
            if group[1] == partition:
                pending.update(opened.writes)
        for key, value in self._visible_items(self._db_for_partition(partition)):
            if key not in pending:
                yield key, value
        yield from ((key, value) for key, value in pending.items() if value is not None)

    def sweep(self, partition: int, start: bytes | None,
              limit: int) -> tuple[list[tuple[bytes, bytes]], bytes | None]:  # fmt: skip
        """Up to ``limit`` committed entries of ``partition`` in key order from ``start``, and
        the key the next slice starts at (None: the end was reached)."""
        db = self._db_for_partition(partition)
        items: list[tuple[bytes, bytes]] = []
        for key, value in db.items(from_key=start) if start is not None else db.items():
            if key == self.offset_key:
                continue
            if len(items) == limit:
                return items, key
            items.append((key, value))
        return items, None

    def _iterkeys(self) -> Iterator[bytes]:
        return (key for key, _ in self._iteritems())

    def _itervalues(self) -> Iterator[bytes]:
        return (value for _, value in self._iteritems())

    def _size(self) -> int:
        return sum(1 for _ in self._iteritems())

    def approximate_len(self) -> int:
        """RocksDB's estimate of the keys on disk, plus the writes waiting (cheap; ``len`` of
        a table on disk reads every key)."""
        on_disk = sum(db.property_int_value("rocksdb.estimate-num-keys") or 0
                      for db in self._dbs_for_actives())  # fmt: skip
        return on_disk + sum(len(opened.writes) for opened in self._open.values())

    # commit and revoke
    async def flush(self, committed: Iterable[Group]) -> None:
        """Write the committed transactions' writes and changelog offsets to RocksDB."""
        import rocksdict

        for group in set(committed):
            opened = self._open.pop(group, None)
            if opened is None:
                continue
            offsets = [metadata.offset for metadata in await asyncio.gather(*opened.sent)]
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in opened.writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            if offsets:
                batch.put(self.offset_key, str(max(offsets)).encode())
            self._db_for_partition(group[1]).write(batch)

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        partitions = {tp.partition for tp in tps}
        for group in [group for group in self._open if group[1] in partitions]:
            del self._open[group]
        super().revoke_partitions(table, tps)


STORES.aliases[ALIAS] = f"{__name__}:CommittedRocksStore"


async def flush_committed(app: Any, offsets: Iterable[Any]) -> None:
    """After offsets committed: each table's writes of those input transactions go to disk."""
    groups = {transaction_of(app, tp) for tp in offsets}
    for table in app.tables.values():
        store = table.data
        if isinstance(store, CommittedRocksStore):
            await store.flush(groups)


def partition_items(table: Any, partition: int) -> Iterator[tuple[bytes, Any]]:
    """A table's entries of ``partition`` on disk (each partition has its own RocksDB); in
    memory, where partitions share one dict, every entry (the caller picks its own); in the
    direct runtime's tables, that partition's."""
    if hasattr(table, "entries_of"):
        return table.entries_of(partition)
    store = table.data
    if isinstance(store, CommittedRocksStore):
        return store.partition_items(partition)
    return iter(list(table.items()))


def sweep_items(table: Any, partition: int, start: bytes | None,
                limit: int) -> tuple[list[tuple[bytes, Any]], bytes | None]:  # fmt: skip
    """A slice of a table's committed entries of ``partition`` and where the next one starts
    (:meth:`CommittedRocksStore.sweep`); in memory every entry at once."""
    if hasattr(table, "sweep_of"):
        return table.sweep_of(partition, start, limit)
    store = table.data
    if isinstance(store, CommittedRocksStore):
        return store.sweep(partition, start, limit)
    return list(table.items()), None


def key_count(table: Any) -> int:
    """Keys in a table, for its gauge: exact in memory, RocksDB's estimate on disk."""
    if hasattr(table, "key_count"):
        return int(table.key_count())
    store = table.data
    return store.approximate_len() if isinstance(store, CommittedRocksStore) else len(store)
