"""Circuit breaker: after N consecutive retryable failures a sink stops calling its target.

CLOSED   calls go through; a retryable failure counts, any success resets the count.
OPEN     no calls; the runner pauses its partitions (it keeps polling, so the group does not
         rebalance) and probes the ERP every ``probe_interval_s``.
HALF_OPEN the probe answered: partitions resume; the next booking's outcome closes the breaker
         or opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from erpbridge.metrics import SINK_BREAKER_STATE, SINK_BREAKER_TRANSITIONS


class State(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    sink: str
    threshold: int
    probe_interval_s: float
    clock: Callable[[], float] = time.monotonic
    state: State = State.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _next_probe: float = field(default=0.0, repr=False)
    _open_total: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        SINK_BREAKER_STATE.labels(self.sink).set(self.state.value)

    def success(self) -> None:
        self.failures = 0
        if self.state is not State.CLOSED:
            self._move(State.CLOSED)

    def failure(self) -> None:
        """A retryable failure (a permanent one says the ERP is up: call :meth:`success`)."""
        self.failures += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.failures >= self.threshold
        ):
            self._move(State.OPEN)
            self.opened_at = self.clock()
            self._next_probe = self.opened_at + self.probe_interval_s

    def open_seconds(self) -> float:
        """How long the breaker has been open in all (retry budgets do not run meanwhile)."""
        extra = self.clock() - self.opened_at if self.state is State.OPEN else 0.0
        return self._open_total + extra

    def probe_due(self) -> bool:
        return self.state is State.OPEN and self.clock() >= self._next_probe

    def probed(self, answered: bool) -> None:
        if answered:
            self._move(State.HALF_OPEN)
        else:
            self._next_probe = self.clock() + self.probe_interval_s

    def _move(self, state: State) -> None:
        if self.state is State.OPEN:
            self._open_total += self.clock() - self.opened_at
        self.state = state
        SINK_BREAKER_STATE.labels(self.sink).set(state.value)
        SINK_BREAKER_TRANSITIONS.labels(self.sink, state.name.lower()).inc()
