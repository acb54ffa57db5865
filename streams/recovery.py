"""Table recovery that cannot start from a table the changelog says is not empty.

Under ``exactly_once`` faust-streaming 0.15 took each changelog partition's highwater from
aiokafka's ``last_stable_offset(tp)``, a value the consumer learns only from a *fetch response*
for that partition. Recovery starts a few tens of milliseconds after an assignment, often before
any fetch of a changelog partition has returned: the value is ``None``, Faust turns it into -1,
concludes that the changelog is empty, restores nothing and starts the agents on empty tables.
The new process then writes fresh cases over the old ones in the compacted changelog, so no later
restart can bring them back (reported in issue 12: -1 on every partition after 3 of 8 restarts,
114 claims with inputs on both sides of such a restart never posted; reproduced with the
repeated-kill test, seed 2: 2 of 9 starts, 69 of 1,000 claims never posted, silently).

Upstream: robinhood/faust#658 reports the same lookup (the last stable offset of a partition
whose fetch state has no position yet) making exactly_once workers misjudge their changelogs;
faust-streaming/faust#597 the ``- 1 if value is not None else -1`` conversion (its ``FIXME``) that
turns "unknown" into "empty". Neither is fixed in faust-streaming 0.15.3.

Two mechanisms here:

- :class:`ConsumerThread` asks the *broker* for the highwaters (``ListOffsets`` at the
  consumer's isolation level: the last stable offset under ``read_committed``), which is known
  at any moment, whether or not the partition was fetched yet.
- :class:`CheckedRecovery` refuses to start (the worker exits with :class:`RecoveryRefused`)
  when active recovery plans to read less of a changelog partition than the broker holds,
  whatever the reason: a table is never rebuilt from a prefix of its changelog, silently.
  Standby copies (of partitions another worker owns and keeps writing) are not held to it.

:mod:`streams.framework` checks at start-up that the framework members these rely on exist.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, cast

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = logging.getLogger(__name__)


class RecoveryRefused(RuntimeError):
    """Recovery would rebuild a table from less than its changelog holds."""


Offsets = Mapping[Any, int | None]


def short_of_changelog(planned: Mapping[Any, int], earliest: Offsets,
                       end: Offsets) -> dict[Any, tuple[int, int, int]]:  # fmt: skip
    """Partitions whose planned last offset (Faust's highwater: end offset - 1, or -1 for
    "empty") is short of what the broker holds: tp -> (planned, earliest, end)."""
    short = {}
    for tp, last in planned.items():
        first, stop = earliest.get(tp), end.get(tp)
        if stop is None or first is None:
            short[tp] = (last, -1 if first is None else first, -1)  # unknown: never "empty"
        elif stop > first and last < stop - 1:
            short[tp] = (last, first, stop)
    return short


class ConsumerThread(AIOKafkaConsumerThread):  # type: ignore[misc]
    async def _highwaters(self, partitions: Iterable[Any]) -> Mapping[Any, int]:
        """The broker's end offsets at the consumer's isolation level (last stable offsets
        under read_committed), not the fetcher's, which is unknown until a fetch returned."""
        consumer = self._ensure_consumer()
        return dict(await consumer.end_offsets(list(partitions)))


async def _broker_end_offsets(consumer: Any, tps: Iterable[Any]) -> Mapping[Any, int]:
    """End offsets asked of the broker by the consumer's own thread (its event loop)."""
    thread = consumer._thread

    async def ask() -> Mapping[Any, int]:
        return dict(await thread._ensure_consumer().end_offsets(list(tps)))

    return cast(Mapping[Any, int], await thread.call_thread(ask))


class CheckedRecovery(Recovery):  # type: ignore[misc]
    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Any,
                                title: str) -> None:  # fmt: skip
        await super()._build_highwaters(consumer, tps, destination, title)
        if not tps or title != "active":
            # A standby copy follows a changelog that its partition's active owner, another
            # worker, keeps writing: its end moves between two asks, and a standby behind it is
            # what a standby is (it goes on following). Whatever it lacks when it becomes
            # active is read then, by an active recovery, which this check does cover. (The
            # fault suite found workers refusing to start over a moving standby changelog.)
            return
        earliest = await consumer.earliest_offsets(*tps)
        end = await _broker_end_offsets(consumer, tps)
        short = short_of_changelog({tp: destination[tp] for tp in tps}, earliest, end)
        if short:
            details = "; ".join(f"{tp.topic}[{tp.partition}]: would read to {last}, the "
                                f"changelog holds {first}..{stop - 1}"
                                for tp, (last, first, stop) in sorted(short.items()))  # fmt: skip
            log.critical("refusing to start: %s recovery would rebuild tables from less than "
                         "their changelog holds: %s", title, details)  # fmt: skip
            raise RecoveryRefused(f"{title} table recovery would start short of its changelog "
                                  f"({details}); restart the worker")  # fmt: skip

    async def _seek_offsets(self, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        """Faust seeks offset -1 (its "nothing read yet") as 0, and passes any other value on:
        a standby partition's offset came as None (nothing known of it), aiokafka refused the
        seek (ValueError 'Offset must be a positive integer'), the recovery crashed and the
        worker exited (the fault suite, seed 469216, starting standby partitions on the
        3-broker cluster; then, with None handled as a number, TypeError). None, or any offset
        below -1, means the same as -1 here: read the changelog from its start (more reading,
        never less)."""
        clamped = Counter({tp: -1 if offsets[tp] is None else max(int(offsets[tp]), -1)
                           for tp in tps})  # fmt: skip
        await super()._seek_offsets(consumer, tps, clamped, title)


class CheckedTableManager(TableManager):  # type: ignore[misc]
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CheckedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
