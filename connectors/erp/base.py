"""The sink interface: one ErpWriter per ERP (Tryton, generic REST), behind the same runner."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from connectors.erp.errors import ErpError
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

    def book_many(self, postings: Sequence[Posting]) -> list[Booking | ErpError]:
        """Book a batch: one outcome per posting, in order (a Booking or the ErpError that
        posting met). Raises an ErpError only when the whole call failed."""

    def probe(self) -> bool:
        """Does the ERP answer? (cheap; used while the circuit breaker is open)"""

    def close(self) -> None: ...


def book_one(writer: ErpWriter, posting: Posting) -> Booking:
    """``book`` for ERPs whose batch call is the primitive: a batch of one."""
    (outcome,) = writer.book_many([posting])
    if isinstance(outcome, ErpError):
        raise outcome
    return outcome


def book_each(writer: ErpWriter, postings: Sequence[Posting]) -> list[Booking | ErpError]:
    """``book_many`` for ERPs without a batch API: one call per posting, each its own outcome."""
    outcomes: list[Booking | ErpError] = []
    for posting in postings:
        try:
            outcomes.append(writer.book(posting))
        except ErpError as exc:
            outcomes.append(exc)
    return outcomes


@dataclass(frozen=True)
class Payment:
    """How the ERP settled a booking: the amount paid (minor units), when, and its reference
    (the payment voucher's number)."""

    reference: str  # the posting id
    paid_minor: int
    paid_on: datetime.date
    payment_reference: str


@runtime_checkable
class PaymentLookup(Protocol):
    """An ERP writer that can say which of its bookings are paid."""

    name: str

    def payments(self, references: Sequence[str]) -> dict[str, Payment]:
        """The paid ones among ``references`` (the posting ids), each with its payment."""


@dataclass(frozen=True)
class MasterData:
    """What an ERP lists of the reference data (``erpbridge.reference``'s keys and values),
    whole for each kind in ``kinds``: an entry of those kinds that it does not list, it no
    longer has. ``skipped`` names what it has but cannot be mapped (say, an employee whose party
    has no code), for the sync's report; ``problems`` what it answered that does not read."""

    kinds: frozenset[str]
    entries: dict[str, dict[str, Any]]
    skipped: tuple[str, ...] = ()
    # entries of ``kinds`` that the ERP answered but that do not read: the sync refuses the
    # whole answer rather than publish part of a kind (the rest would read as removed)
    problems: tuple[str, ...] = ()


@runtime_checkable
class MasterDataSource(Protocol):
    """An ERP writer that can read the master data the processors map."""

    name: str

    def master_data(self) -> MasterData:
        """Every entry the ERP has of the kinds it covers; values carry ``source_ref`` (the
        ERP's own record, e.g. ``company.employee,12``)."""
