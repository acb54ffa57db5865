"""How an ERP call failed: retry it later, or never (dead-letter it)."""

from __future__ import annotations


class ErpError(Exception):
    """Base class for ERP failures."""


class RetryableErpError(ErpError):
    """Timeouts, connection errors, 429/5xx, lock conflicts: try again after a back-off
    (at least ``retry_after`` seconds when the ERP said so)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentErpError(ErpError):
    """The ERP refused the document (validation, unknown party/account, 4xx): do not retry."""
