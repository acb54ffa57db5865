"""Which fetched records reached the agents: a safety net under Faust's consumer, which can drop
a fetched record on several paths (a batch cut short by a seek, the read-offset check after a
seek, a partition paused mid-batch) and later commit past it, so that the record is never
processed (see :mod:`streams.transactions`).

Per partition, every record fetched for an agent is *pending* until it is handed to the
agents. A commit never goes past a pending record, and a record still pending once its batch
is done was dropped on the way: the consumer reads the partition again from it. Pure
bookkeeping, no Kafka.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # a topic partition


class DeliveryLedger(Generic[K]):
    def __init__(self) -> None:
        self._pending: dict[K, set[int]] = {}

    def fetched(self, tp: K, offsets: Iterable[int]) -> None:
        """Records fetched for the agents (leave out ones already handed on)."""
        self._pending.setdefault(tp, set()).update(offsets)

    def delivered(self, tp: K, offset: int) -> None:
        pending = self._pending.get(tp)
        if pending is not None:
            pending.discard(offset)

    def returned(self, tp: K, offset: int) -> None:
        """A record handed on was discarded before an agent took it: pending again."""
        self._pending.setdefault(tp, set()).add(offset)

    def first_pending(self, tp: K) -> int | None:
        """A commit of ``tp`` may not go past this offset."""
        pending = self._pending.get(tp)
        return min(pending) if pending else None

    def dropped(self) -> dict[K, int]:
        """Per partition, the first record fetched but never handed on. Ask between batches:
        by then every record of the batches before was handed on or dropped."""
        return {tp: min(pending) for tp, pending in self._pending.items() if pending}

    def forget(self, tp: K, from_offset: int = 0) -> None:
        """The partition is read again from ``from_offset`` (or revoked): forget what was
        pending from there on."""
        pending = self._pending.get(tp)
        if pending is not None:
            pending.difference_update([o for o in pending if o >= from_offset])

    def forget_all(self) -> None:
        self._pending.clear()
