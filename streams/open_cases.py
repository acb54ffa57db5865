"""Which claim cases a deadline tick reads.

A tick checks every open case of its partition (stall, redrive, a complete case to judge again)
and forgets closed cases past the retention window. Closed cases are nearly all of a table kept
for 400 days, and only their retention is due, so reading all of them every minute made a tick's
cost grow with the table (about 13 µs a case, measured; so 4-5 s a tick per partition at 1M
cases, holding every commit back meanwhile). Here the open cases of each partition are known by key:
the first tick after the partition is assigned reads all of its cases and notes the open ones,
every write of a case notes whether it is open, and later ticks read the open cases and the next
slice (``SWEEP_PER_TICK``) of the rest for retention, so a sweep goes round the whole partition
over successive ticks (at 1M cases and three partitions, about 67 of them) without any tick
reading it all. A rebalance forgets what is known; the next tick
reads its partition again.
"""

from __future__ import annotations

SWEEP_PER_TICK = 5_000  # cases a tick reads for retention, beyond the open ones


class OpenCases:
    """Open case keys per partition, and where each partition's retention sweep goes on."""

    def __init__(self) -> None:
        self._open: dict[int, set[bytes]] = {}
        self._sweep_from: dict[int, bytes | None] = {}

    def known(self, partition: int) -> bool:
        return partition in self._open

    def start(self, partition: int) -> None:
        """The tick reads every case of ``partition`` now, noting the open ones."""
        self._open[partition] = set()
        self._sweep_from[partition] = None

    def note(self, partition: int, key: bytes, is_open: bool) -> None:
        keys = self._open.get(partition)
        if keys is None:
            return  # not known yet: its next tick reads every case
        if is_open:
            keys.add(key)
        else:
            keys.discard(key)

    def keys(self, partition: int) -> list[bytes]:
        return sorted(self._open.get(partition, ()))

    def is_open(self, partition: int, key: bytes) -> bool:
        return key in self._open.get(partition, ())

    def sweep_from(self, partition: int) -> bytes | None:
        return self._sweep_from.get(partition)

    def swept_to(self, partition: int, key: bytes | None) -> None:
        """The next slice starts at ``key`` (None: from the start again)."""
        self._sweep_from[partition] = key

    def forget_all(self) -> None:
        self._open.clear()
        self._sweep_from.clear()
