"""Retryable or permanent: the one reading of a failure, and of an HTTP answer.

Every client of ours (ERP writers, the poller, the feedback webhook, the registry client) raises
one of the two classes below, or a subclass; :func:`is_retryable` is what the retry operator
asks. Network errors and timeouts are retryable; so are 408/425/429 and the 5xx that pass, with
the ``Retry-After`` the server sent (seconds or an HTTP date) honoured as the least wait.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping


class RetryableError(Exception):
    """Try again after a back-off, at least ``retry_after`` seconds when the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """The other side refused for good (validation, unknown account, a 4xx): do not retry."""


class RetriesExhausted(RetryableError):
    """A retryable failure that went on past its budget (attempts or time)."""


# Timeouts, too early, too many requests and the server-side failures that pass: the statuses
# every HTTP client of ours retries by default.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, RetryableError):
        return True
    if isinstance(error, PermanentError):
        return False
    return isinstance(error, TimeoutError | ConnectionError)


def retryable_status(status: int, statuses: frozenset[int] = RETRYABLE_STATUSES, *,
                     any_server_error: bool = False) -> bool:  # fmt: skip
    """``any_server_error``: every 5xx is retried too (Tryton and the poller always did)."""
    return status in statuses or (any_server_error and status >= 500)


def http_failure(status: int, headers: Mapping[str, str], message: str, *,
                 retry_on: frozenset[int] = RETRYABLE_STATUSES, any_server_error: bool = False,
                 retryable: type[RetryableError] = RetryableError,
                 permanent: type[PermanentError] = PermanentError) -> Exception:  # fmt: skip
    """The error an unsuccessful HTTP answer means (call it for answers that are not success);
    ``retryable`` and ``permanent`` name the caller's subclasses (an ERP's, the poller's)."""
    if retryable_status(status, retry_on, any_server_error=any_server_error):
        return retryable(message, retry_after=retry_after_s(headers))
    return permanent(message)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds an HTTP ``Retry-After`` header (delay-seconds or an HTTP date) asks to wait."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None
