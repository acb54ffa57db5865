"""Deductible input VAT of passenger-transport tickets (旅客运输服务进项税额).

财政部 税务总局 海关总署公告2019年第39号 §6 lets a general taxpayer deduct the input VAT of
domestic passenger transport bought for its employees, from the tickets themselves:

- 航空运输电子客票行程单 (air itinerary): (票价 + 燃油附加费) ÷ (1 + 9%) × 9%; the civil
  aviation development fund (民航发展基金) is not part of it;
- 铁路车票 (railway ticket): 票面金额 ÷ (1 + 9%) × 9%;
- 公路、水路等其他客票 (road and waterway tickets): 票面金额 ÷ (1 + 3%) × 3%.

The electronic railway ticket (铁路电子客票) and the electronic air itinerary (航空运输电子客票
行程单) of the 2024 notices are 数电 invoices with a 20-digit number; where the
platform gives the VAT the itinerary states, that amount is deducted as stated. Only a ticket
naming an employee of the company (the claimant or a colleague) is deductible; any other
ticket deducts nothing, and says why.

Amounts are in fen (integers); the tax is rounded to the fen, half up, and the base is what is
left of the deductible amount, so base + tax is exactly that amount.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

RAILWAY, AIR, ROAD, WATERWAY = "RAILWAY_TICKET", "AIR_ITINERARY", "ROAD_TICKET", "WATERWAY_TICKET"
RATES = {RAILWAY: Decimal("0.09"), AIR: Decimal("0.09"), ROAD: Decimal("0.03"),
         WATERWAY: Decimal("0.03")}  # fmt: skip
TICKET_KINDS = frozenset(RATES)


@dataclass(frozen=True)
class Ticket:
    kind: str  # one of TICKET_KINDS
    face_fen: int  # 票面金额 (air: the fare, 票价)
    fuel_surcharge_fen: int = 0  # air only: 燃油附加费
    development_fund_fen: int = 0  # air only: 民航发展基金, never deductible
    stated_tax_fen: int | None = None  # the VAT the ticket states, where the platform gives it


@dataclass(frozen=True)
class TicketVat:
    rate: Decimal
    base_fen: int
    tax_fen: int


def ticket_vat(ticket: Ticket) -> TicketVat:
    """The input VAT a ticket for an employee's journey yields."""
    rate = RATES.get(ticket.kind)
    if rate is None:
        raise ValueError(f"{ticket.kind!r} is not a passenger-transport ticket")
    if min(ticket.face_fen, ticket.fuel_surcharge_fen, ticket.development_fund_fen) < 0:
        raise ValueError("a ticket's amounts cannot be negative")
    if ticket.kind != AIR and (ticket.fuel_surcharge_fen or ticket.development_fund_fen):
        raise ValueError(f"a {ticket.kind} has no fuel surcharge or development fund")
    amount = ticket.face_fen + ticket.fuel_surcharge_fen  # the fund is left out
    if ticket.stated_tax_fen is not None:
        if not 0 <= ticket.stated_tax_fen <= amount:
            raise ValueError(f"stated VAT {ticket.stated_tax_fen} fen is outside 0..{amount}")
        tax = ticket.stated_tax_fen
    else:
        tax = int((Decimal(amount) / (1 + rate) * rate).quantize(Decimal(1), ROUND_HALF_UP))
    return TicketVat(rate, amount - tax, tax)


def not_deductible_ticket(
    traveller: Mapping[str, Any] | None, is_employee: Callable[[str, str | None], bool]
) -> str | None:
    """Why a ticket deducts nothing (its traveller is not an employee, or has an employee's name
    but not their ID number), or None when it does.
    ``traveller``: ``{"name", "id_masked"}``; ``is_employee(name, id_masked)`` asks the
    company's employee list."""
    name = (traveller or {}).get("name")
    id_masked = (traveller or {}).get("id_masked")
    if not name:
        return "the ticket names no traveller"
    if is_employee(name, id_masked):
        return None
    if id_masked and is_employee(name, None):  # an employee has the name, not this ID number
        return (
            f"the traveller's ID number {id_masked} does not match that of the employee "
            f"{name} (a namesake is not the employee)"
        )
    return f"the traveller {name} is not an employee of the company"


def ticket_taxes(kind: str, fare: Decimal, fuel_surcharge: Decimal, development_fund: Decimal,
                 stated_vat: Decimal | None) -> list[dict[str, Any]]:  # fmt: skip
    """A ticket's VAT facts' ``taxes`` (see :func:`streams.invoice_checks.vat_facts`), in yuan
    as text: the deductible part at its rate, and the development fund, which bears none."""
    fen = {name: int(value.scaleb(2)) for name, value in (("fare", fare),
           ("fuel", fuel_surcharge), ("fund", development_fund))}  # fmt: skip
    stated = None if stated_vat is None else int(stated_vat.scaleb(2))
    vat = ticket_vat(Ticket(kind, fen["fare"], fen["fuel"], fen["fund"], stated))
    rate = str(vat.rate.quantize(Decimal("0.0001")))
    taxes: list[dict[str, Any]] = [
        {"rate": rate, "base": _yuan(vat.base_fen), "tax": _yuan(vat.tax_fen)}
    ]
    if fen["fund"]:
        taxes.append({"rate": None, "base": _yuan(fen["fund"]), "tax": "0.00"})
    return taxes


def _yuan(fen: int) -> str:
    return str(Decimal(fen).scaleb(-2))
