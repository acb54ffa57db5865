"""How an ERP call failed: retry it later, or never (dead-letter it). The classes are the core's
(:mod:`erpbridge.failures.classify`), named for the ERP so a dead letter says where it failed."""

from __future__ import annotations

from erpbridge.failures.classify import PermanentError, RetryableError


class ErpError(Exception):
    """Base class for ERP failures."""


class RetryableErpError(ErpError, RetryableError):
    """Timeouts, connection errors, 429/5xx, lock conflicts: try again after a back-off
    (at least ``retry_after`` seconds when the ERP said so)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        RetryableError.__init__(self, message, retry_after)


class PermanentErpError(ErpError, PermanentError):
    """The ERP refused the document (validation, unknown party/account, 4xx): do not retry."""
