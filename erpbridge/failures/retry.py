"""The retry policy, in one object: Kafka Connect's ``RetryWithToleranceOperator``, with a breaker.

:class:`RetryWithTolerance` owns everything about a failing operation but the operation itself:
the attempts and the time spent (``errors.retry.timeout``, a cap on attempts), the full-jitter
back-off (``Retry-After`` honoured as the least wait), the circuit breaker's accounting, and
``errors.tolerance`` (``all``: a record that failed for good goes to its failure topic; ``none``:
the stage stops before it). Every stage that retries uses it: the sink runner (for any target:
an ERP writer, the feedback webhook), the poller, and the stream processors' decode retry.

Two ways to use it: a caller that cannot block (the sink rewinds a partition and pauses it)
asks :meth:`RetryWithTolerance.failed` how long to wait; a caller that can block hands its
operation to :meth:`RetryWithTolerance.call` (or :meth:`call_async`).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from erpbridge.failures.breaker import CircuitBreaker, State
from erpbridge.failures.classify import RetriesExhausted, is_retryable
from erpbridge.failures.stage import Stage

if TYPE_CHECKING:
    from erpbridge.config import Settings

T = TypeVar("T")
OnRetry = Callable[["Attempts", float], None]  # told each retry: the attempts so far, the wait


class Tolerance(StrEnum):
    """Connect's ``errors.tolerance``."""

    NONE = "none"  # stop at the first record that fails for good: nothing skipped
    ALL = "all"  # send it to its failure topic and go on


class ToleranceExceeded(RuntimeError):
    """``errors.tolerance=none`` and a record failed for good: the stage stops before it."""


class Stopped(Exception):
    """The caller's stop event was set while an operation was waiting to be retried."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with full jitter, capped (Connect: ``errors.retry.delay.max.ms``)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): uniform in [0, cap]."""
        cap = min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0))
        return (rng or random).uniform(0, cap)


@dataclass
class Attempts:
    """One operation's failures so far (one record, one page fetch)."""

    started: float  # monotonic, at the first attempt
    open_before: float  # the breaker's open time then: time it stays open is not spent
    count: int = 0
    first_at: datetime.datetime | None = None
    last_at: datetime.datetime | None = None
    retry_after_s: float | None = None  # what the other side asked for, last time
    error: BaseException | None = None  # the last one

    def note(self, error: BaseException) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.count += 1
        self.first_at = self.first_at or now
        self.last_at = now
        self.retry_after_s = getattr(error, "retry_after", None)
        self.error = error


@dataclass
class RetryWithTolerance:
    """``stage`` is where the guarded party is called (put, deliver, source.poll): only failures
    there move the breaker; a registry outage while decoding says nothing about the ERP."""

    name: str
    stage: Stage
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = -1.0  # Connect's errors.retry.timeout; -1: forever
    max_attempts: int = 0  # 0: no cap
    tolerance: Tolerance = Tolerance.ALL
    breaker: CircuitBreaker | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_sink(cls, name: str, stage: Stage, settings: Settings) -> RetryWithTolerance:
        """The sink settings' rules (``sink_errors_*``, ``sink_retry_*``, ``sink_breaker_*``)."""
        return cls(
            name,
            stage,
            RetryPolicy(settings.sink_retry_initial_s, settings.sink_retry_max_s),
            settings.sink_errors_retry_timeout_s,
            settings.sink_errors_retry_max_attempts,
            Tolerance(settings.sink_errors_tolerance),
            CircuitBreaker(
                name, settings.sink_breaker_threshold, settings.sink_breaker_probe_interval_s
            ),  # fmt: skip
        )

    # -- accounting ---------------------------------------------------------------------------
    def start(self) -> Attempts:
        return Attempts(time.monotonic(), self.breaker.open_seconds() if self.breaker else 0.0)

    def succeeded(self) -> None:
        """The guarded party answered with success."""
        if self.breaker is not None:
            with self._lock:
                self.breaker.success()

    def failed(self, attempts: Attempts, error: BaseException, stage: Stage) -> float | None:
        """Count a failure at ``stage``: seconds to wait before the next attempt, or None when
        it failed for good (a permanent error, or the budget is spent: see :meth:`final`)."""
        attempts.note(error)
        retryable = is_retryable(error)
        if self.breaker is not None and stage == self.stage:
            with self._lock:  # a permanent refusal says the other side is up
                self.breaker.failure() if retryable else self.breaker.success()
        if not retryable or self.exhausted(attempts):
            return None
        return max(self.policy.delay(attempts.count), attempts.retry_after_s or 0.0)

    def exhausted(self, attempts: Attempts) -> bool:
        if self.max_attempts and attempts.count >= self.max_attempts:
            return True
        if self.timeout_s < 0:
            return False
        spent = time.monotonic() - attempts.started - self._open_since(attempts)
        return spent >= self.timeout_s

    def final(self, attempts: Attempts, where: str) -> BaseException:
        """The error to report for an operation that failed for good; under
        ``errors.tolerance=none`` raises :class:`ToleranceExceeded` instead."""
        error = attempts.error or RuntimeError("failed")
        if is_retryable(error):
            exhausted = RetriesExhausted(f"gave up after {attempts.count} attempts: {error}")
            exhausted.__cause__ = error
            error = exhausted
        if self.tolerance is Tolerance.NONE:
            raise ToleranceExceeded(
                f"errors.tolerance=none: {where} failed for good: {error}"
            ) from error
        return error

    def _open_since(self, attempts: Attempts) -> float:
        return self.breaker.open_seconds() - attempts.open_before if self.breaker else 0.0

    # -- the breaker's gate -------------------------------------------------------------------
    def open(self) -> bool:
        """Is the breaker open (nothing may be sent but probes)?"""
        return self.breaker is not None and self.breaker.state is State.OPEN

    def probe_due(self) -> bool:
        return self.breaker is not None and self.breaker.probe_due()

    def probed(self, answered: bool) -> None:
        if self.breaker is not None:
            with self._lock:
                self.breaker.probed(answered)

    # -- for callers that can block -----------------------------------------------------------
    def call(self, operation: Callable[[], T], stop: threading.Event,
             on_retry: OnRetry | None = None) -> T:  # fmt: skip
        """Run ``operation`` until it succeeds. Raises what :meth:`final` gives when it fails
        for good, or :class:`Stopped` when ``stop`` is set meanwhile."""
        attempts = self.start()
        while not stop.is_set():
            try:
                result = operation()
            except Exception as exc:  # noqa: BLE001  classified by failed()
                wait = self._after(attempts, exc, on_retry)
                stop.wait(wait)
                continue
            self.succeeded()
            return result
        raise Stopped()

    async def call_async(self, operation: Callable[[], Awaitable[T]],
                         on_retry: OnRetry | None = None) -> T:  # fmt: skip
        """:meth:`call` for a coroutine; cancelled with its task."""
        attempts = self.start()
        while True:
            try:
                result = await operation()
            except Exception as exc:  # noqa: BLE001  classified by failed()
                await asyncio.sleep(self._after(attempts, exc, on_retry))
                continue
            self.succeeded()
            return result

    def _after(self, attempts: Attempts, error: Exception,
               on_retry: OnRetry | None) -> float:  # fmt: skip
        wait = self.failed(attempts, error, self.stage)
        if wait is None:
            if not is_retryable(error):
                raise error
            raise self.final(attempts, self.name)
        if on_retry is not None:
            on_retry(attempts, wait)
        return wait
