"""Dead-letter records: the original key, value and headers unchanged, plus error context headers.

Header names follow Kafka Connect's (``__connect.errors.*``) so existing tooling reads them;
ours (``erpbridge.errors.*``) add the attempt count and the first and last failure times.
"""

from __future__ import annotations

import datetime
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafka.consumer.fetcher import ConsumerRecord

from erpbridge.rejections import Stage

if TYPE_CHECKING:
    from connectors.sinks.breaker import CircuitBreaker
    from erpbridge.config import Settings

Headers = list[tuple[str, bytes]]


class SinkStopped(RuntimeError):
    """errors.tolerance=none and a record could not be delivered: the sink stops before it."""


@dataclass
class Failure:
    """One record's failures so far. Its retry budget does not run while the breaker is open:
    an ERP outage is the breaker's business, not the record's."""

    attempts: int
    first_at: datetime.datetime
    last_at: datetime.datetime
    started: float  # monotonic, at the first failure
    open_before: float  # the breaker's open time at the first failure
    retry_after_s: float | None = None  # what the ERP asked for, last time

    @classmethod
    def first(cls, breaker: CircuitBreaker) -> Failure:
        now = datetime.datetime.now(datetime.UTC)
        return cls(0, now, now, time.monotonic(), breaker.open_seconds())

    def again(self, retry_after_s: float | None = None) -> None:
        self.attempts += 1
        self.retry_after_s = retry_after_s
        self.last_at = datetime.datetime.now(datetime.UTC)

    def exhausted(self, settings: Settings, breaker: CircuitBreaker) -> bool:
        cap = settings.sink_errors_retry_max_attempts
        if cap and self.attempts >= cap:
            return True
        timeout = settings.sink_errors_retry_timeout_s
        spent = time.monotonic() - self.started - (breaker.open_seconds() - self.open_before)
        return timeout >= 0 and spent >= timeout


def dead_letter_headers(
    record: ConsumerRecord, stage: Stage, error: BaseException, failure: Failure, erp: str
) -> Headers:
    context = {
        "__connect.errors.topic": record.topic,
        "__connect.errors.partition": str(record.partition),
        "__connect.errors.offset": str(record.offset),
        "__connect.errors.stage": stage,
        "__connect.errors.class.name": erp,
        "__connect.errors.exception.class.name": type(error).__qualname__,
        "__connect.errors.exception.message": str(error),
        "__connect.errors.exception.stacktrace": "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )[-8000:],
        "erpbridge.errors.attempts": str(failure.attempts),
        "erpbridge.errors.first_failed_at": failure.first_at.isoformat(),
        "erpbridge.errors.last_failed_at": failure.last_at.isoformat(),
    }
    original = [(key, value) for key, value in (record.headers or [])]
    return original + [(key, value.encode()) for key, value in context.items()]
