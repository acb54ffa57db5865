"""The one error path. Where a newcomer looks for...

- the retry policy, budgets, the breaker's accounting and ``errors.tolerance``:
  :mod:`erpbridge.failures.retry` (:class:`RetryWithTolerance`);
- whether a failure is worth retrying (timeouts, 429/5xx with ``Retry-After``, locks):
  :mod:`erpbridge.failures.classify`;
- where a failed record goes and what it carries: :mod:`erpbridge.failures.record`
  (:class:`FailureRecord`, on the topics :mod:`erpbridge.topics` names ``rejected``,
  ``erp_dead_letter`` and ``feedback_dead_letter``);
- the stages a record can fail at: :mod:`erpbridge.failures.stage`.
"""

from erpbridge.failures.breaker import CircuitBreaker, State
from erpbridge.failures.classify import (
    RETRYABLE_STATUSES,
    PermanentError,
    RetriesExhausted,
    RetryableError,
    http_failure,
    is_retryable,
    retry_after_s,
    retryable_status,
)
from erpbridge.failures.record import FailureRecord
from erpbridge.failures.retry import (
    Attempts,
    RetryPolicy,
    RetryWithTolerance,
    Stopped,
    Tolerance,
    ToleranceExceeded,
)
from erpbridge.failures.stage import Stage

__all__ = [
    "RETRYABLE_STATUSES",
    "Attempts",
    "CircuitBreaker",
    "FailureRecord",
    "PermanentError",
    "RetriesExhausted",
    "RetryPolicy",
    "RetryWithTolerance",
    "RetryableError",
    "Stage",
    "State",
    "Stopped",
    "Tolerance",
    "ToleranceExceeded",
    "http_failure",
    "is_retryable",
    "retry_after_s",
    "retryable_status",
]
