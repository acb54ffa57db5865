"""Which claim cases a deadline tick reads, and how a round of them is cut into slices.

A tick checks every open case of its partition (stall, redrive, a complete case to judge again)
and forgets closed cases past the retention window. Closed cases are nearly all of a table kept
for 400 days, and only their retention is due, so reading all of them every minute made a tick's
cost grow with the table (about 13 µs a case, measured; so 4-5 s a tick per partition at 1M
cases, holding every commit back meanwhile). Here the open cases of each partition are known by key:
every write of a case notes whether it is open, the first tick after the partition is assigned
reads all of its cases (noting the open ones), and later ticks read the open cases and the next
slice (``SWEEP_PER_TICK``) of the rest for retention, so a sweep goes round the whole partition
over successive ticks (at 1M cases and three partitions, about 67 of them) without any tick
reading it all. A rebalance forgets what is known; the next tick reads its partition again.

**Rounds in slices.** Open cases alone can be many: at 100,000 claims waiting for their
approvals, one tick re-drove tens of thousands of them in one go, held the event loop for more
than the transaction timeout (10 s) and got the worker fenced. So the cases one tick would read
make a *round*, visited lazily, and one tick event spends at most ``streams_tick_slice_s`` on
it. When time
is up, the handler sends a *continuation* tick to its own partition inside its transaction: the
slice's writes and effects commit, and the continuation, visible once they have, handles the
next slice. A timer tick that arrives while a round runs handles a slice of that round (it starts
no new one); a continuation that finds no round (it ended, or a rebalance forgot it) does
nothing. A continuation lost with an aborted transaction is sent again by the next timer tick
(``CONTINUATION_LOST_S``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

SWEEP_PER_TICK = 5_000  # cases a tick reads for retention, beyond the open ones
CONTINUATION_LOST_S = 30.0  # a continuation not seen this long after it was sent: send another


@dataclass
class Round:
    """One partition's running round: the keys still to visit (read as it goes), and the open
    cases it counted so far by whether they stalled."""

    keys: Iterator[bytes]
    counts: dict[str, int] = field(default_factory=lambda: {"true": 0, "false": 0})
    slices: int = 0


class OpenCases:
    """Open case keys per partition, where each partition's retention sweep goes on, and each
    partition's running round of ticks."""

    def __init__(self) -> None:
        self._open: dict[int, set[bytes]] = {}
        self._known: set[int] = set()
        self._sweep_from: dict[int, bytes | None] = {}
        self._rounds: dict[int, Round] = {}
        self._continuation_sent: dict[int, float] = {}

    def known(self, partition: int) -> bool:
        return partition in self._known

    def start(self, partition: int) -> None:
        """The tick reads every case of ``partition`` now, noting the open ones."""
        self._known.add(partition)
        self._open.setdefault(partition, set())
        self._sweep_from[partition] = None

    def note(self, partition: int, key: bytes, is_open: bool) -> None:
        """A case written (or read by a tick): known open or not. Noted before the partition's
        first full read too: a write its read of the committed entries cannot see yet."""
        keys = self._open.setdefault(partition, set())
        if is_open:
            keys.add(key)
        else:
            keys.discard(key)

    def keys(self, partition: int) -> list[bytes]:
        return sorted(self._open.get(partition, ())) if partition in self._known else []

    def is_open(self, partition: int, key: bytes) -> bool:
        return key in self._open.get(partition, ())

    def sweep_from(self, partition: int) -> bytes | None:
        return self._sweep_from.get(partition)

    def swept_to(self, partition: int, key: bytes | None) -> None:
        """The next slice starts at ``key`` (None: from the start again)."""
        self._sweep_from[partition] = key

    # rounds ------------------------------------------------------------------------------------
    def running(self, partition: int) -> Round | None:
        return self._rounds.get(partition)

    def round(self, partition: int, keys: Callable[[], Iterator[bytes]]) -> Round:
        """The partition's running round, or a new one visiting ``keys()``."""
        running = self._rounds.get(partition)
        if running is None:
            running = self._rounds[partition] = Round(keys())
        running.slices += 1
        return running

    def end_round(self, partition: int) -> None:
        self._rounds.pop(partition, None)

    def continuation_due(self, partition: int, now: float) -> bool:
        """Whether an unfinished round needs a continuation sent (none is on its way)."""
        sent = self._continuation_sent.get(partition)
        return sent is None or now - sent > CONTINUATION_LOST_S

    def continuation_sent(self, partition: int, now: float) -> None:
        self._continuation_sent[partition] = now

    def continuation_arrived(self, partition: int) -> None:
        self._continuation_sent.pop(partition, None)

    def forget_all(self) -> None:
        self._open.clear()
        self._known.clear()
        self._sweep_from.clear()
        self._rounds.clear()
        self._continuation_sent.clear()
