"""The one retry policy (exponential back-off with full jitter, capped) and the one reading of an
HTTP answer as retryable or not, with its ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): uniform in [0, cap]."""
        cap = min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0))
        return (rng or random).uniform(0, cap)


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


# Timeouts, too early, too many requests and the server-side failures that pass: the statuses
# every HTTP client of ours (ERP writers, the poller, the feedback webhook) retries by default.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retryable_status(status: int, statuses: frozenset[int] = RETRYABLE_STATUSES, *,
                     any_server_error: bool = False) -> bool:  # fmt: skip
    """``any_server_error``: every 5xx is retried too (Tryton and the poller always did)."""
    return status in statuses or (any_server_error and status >= 500)
