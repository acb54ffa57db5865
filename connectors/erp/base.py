"""What every ERP writer offers the sink runner."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from erpbridge.model import Posting


@dataclass(frozen=True, slots=True)
class Booking:
    """The ERP's answer for one posting."""

    reference: str
    document_id: int
    number: str | None
    state: str
    total: Decimal
    already_booked: bool


class ErpWriter(Protocol):
    name: str

    def book(self, posting: Posting) -> Booking:
        """Book ``posting`` once: if its reference is already in the ERP, return that booking.

        Raises RetryableErpError or PermanentErpError.
        """

    def close(self) -> None: ...
