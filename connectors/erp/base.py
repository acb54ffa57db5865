"""The sink interface: one ErpWriter per ERP (Tryton, generic REST), behind the same runner."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from erpbridge.model import Posting


@dataclass(frozen=True, slots=True)
class Booking:
    """The ERP's answer for one posting."""

    reference: str
    document_id: str
    number: str | None
    state: str
    total: Decimal
    already_booked: bool
    voucher: str | None = None  # the accounting voucher (凭证号) when the ERP made one


class ErpWriter(Protocol):
    """Writers must be idempotent by the posting's reference and safe to call from several
    threads for different claims (the runner books claims concurrently, one claim at a time)."""

    name: str

    def book(self, posting: Posting) -> Booking:
        """Book ``posting`` once: if its reference is already in the ERP, return that booking.

        Raises RetryableErpError or PermanentErpError.
        """

    def probe(self) -> bool:
        """Does the ERP answer? (cheap; used while the circuit breaker is open)"""

    def close(self) -> None: ...
