"""Typed views of the records both sides share: sinks book a :class:`Posting`."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

# ISO 4217 minor-unit exponents for the currencies we accept.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2, "HKD": 2, "TWD": 2, "USD": 2, "EUR": 2, "GBP": 2, "SGD": 2, "AUD": 2,
    "CAD": 2, "CHF": 2, "THB": 2, "MYR": 2, "KRW": 0, "JPY": 0, "VND": 0,
}  # fmt: skip

# Kinds of China VAT invoice and passenger ticket (the Invoice contract's InvoiceType symbols).
InvoiceType = Literal[
    "VAT_SPECIAL", "VAT_GENERAL", "DIGITAL_SPECIAL", "DIGITAL_GENERAL", "OTHER",
    "RAILWAY_TICKET", "AIR_ITINERARY", "ROAD_TICKET", "WATERWAY_TICKET",
]  # fmt: skip
TICKET_TYPES: tuple[InvoiceType, ...] = ("RAILWAY_TICKET", "AIR_ITINERARY", "ROAD_TICKET",
                                         "WATERWAY_TICKET")  # fmt: skip
# The kinds whose VAT the company deducts, unless configured otherwise: 专票, 数电专票, and the
# passenger tickets of employees (公告2019年第39号 §6).
DEDUCTIBLE_INVOICE_TYPES: tuple[InvoiceType, ...] = ("VAT_SPECIAL", "DIGITAL_SPECIAL",
                                                     *TICKET_TYPES)  # fmt: skip
# The e-invoice platform's status of an invoice (the contract's InvoiceStatus symbols).
InvoiceStatus = Literal["NORMAL", "VOID", "RED_FLUSHED"]

_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def valid_uscc(code: str) -> bool:
    """统一社会信用代码: 18 characters, the last a GB 32100-2015 check character."""
    if not _USCC.match(code):
        return False
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31] == code[17]


def from_minor_units(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-CURRENCY_EXPONENTS[currency])


@dataclass(frozen=True, slots=True)
class InputVat:
    """Deductible input VAT (进项税额) of one VAT invoice at one rate, inside a line's amount."""

    invoice_ref: str
    tax_rate: Decimal | None  # None: the invoice gives no single rate for this part
    base_minor: int  # the net amount the tax is on
    tax_minor: int


@dataclass(frozen=True, slots=True)
class PostingLine:
    account_code: str
    description: str
    amount_minor: int  # what the line costs, input VAT included
    invoice_refs: tuple[str, ...]
    input_vat: tuple[InputVat, ...] = ()

    @property
    def net_minor(self) -> int:
        """The expense itself: the amount less the deductible input VAT."""
        return self.amount_minor - sum(vat.tax_minor for vat in self.input_vat)


@dataclass(frozen=True, slots=True)
class Posting:
    """An ErpPosting record: one claim, in the company currency, on the ERP's accounts."""

    posting_id: str
    claim_id: str
    source_system: str
    employee_id: str
    employee_name: str
    posting_date: datetime.date
    currency: str
    lines: tuple[PostingLine, ...]
    total_minor: int
    cost_centre: str | None = None
    department: str | None = None
    cost_centre_name: str | None = None  # the ERP's names of them (contract v5)
    department_name: str | None = None
    claim_version: int = 1
    kind: str = "BOOKING"  # or REVERSAL: a credit note offsetting the booking ``reverses``
    reverses: str | None = None
    vat_notes: tuple[str, ...] = ()
    originals: tuple[tuple[str, str], ...] = ()  # (invoice key, SHA-256 of its archived original)

    def amount(self, line: PostingLine) -> Decimal:
        return self.money(line.amount_minor)

    def money(self, minor: int) -> Decimal:
        return from_minor_units(minor, self.currency)

    @property
    def tax_minor(self) -> int:
        return sum(vat.tax_minor for line in self.lines for vat in line.input_vat)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Posting:
        return cls(
            posting_id=record["posting_id"], claim_id=record["claim_id"],
            source_system=record["source_system"], employee_id=record["employee_id"],
            employee_name=record["employee_name"], posting_date=record["posting_date"],
            currency=record["currency"], total_minor=record["total_minor"],
            cost_centre=record.get("cost_centre"), department=record.get("department"),
            cost_centre_name=record.get("cost_centre_name"),
            department_name=record.get("department_name"),
            claim_version=record.get("claim_version", 1),
            kind=record.get("kind", "BOOKING"), reverses=record.get("reverses"),
            vat_notes=tuple(record.get("vat_notes", ())),
            originals=tuple((o["invoice_ref"], o["sha256"]) for o in record.get("originals", ())),
            lines=tuple(PostingLine(line["account_code"], line["description"],
                                    line["amount_minor"], tuple(line["invoice_refs"]),
                                    tuple(InputVat(**vat) for vat in line.get("input_vat", [])))
                        for line in record["lines"]),
        )  # fmt: skip


def invoice_key(code: str | None, number: str) -> str:
    """The one key of a VAT invoice: ``code-number`` (paper era) or the 20-digit 数电票 number.
    Sources key ``invoices.raw`` by it; claims cite invoices by it (see :func:`invoice_ref`)."""
    return f"{code}-{number}" if code else number


_REF = re.compile(r"(\d{10}|\d{12})\s*[\s\-_/:]\s*(\d{8})|(\d{10})(\d{8})")


def invoice_ref(text: str) -> str:
    """A claim's invoice reference as an invoice key: ``code number`` / ``code-number`` (and 18
    digits: a 10-digit code + 8) become ``code-number``; 20 digits stay a 数电票 number."""
    match = _REF.fullmatch(text.strip())
    if match is None:
        return "".join(text.split())
    code, number = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    return invoice_key(code, number)
