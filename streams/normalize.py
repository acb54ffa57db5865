"""Raw claim (strings, as a source read them) -> :class:`NormalizedClaim`.

Or :class:`ClaimInvalid` listing every reason it is not one.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from erpbridge.model import CURRENCY_EXPONENTS, NormalizedClaim

REQUIRED = ("claim_id", "employee_id", "employee_name", "expense_date", "amount", "currency")
_CURRENCY_SYMBOLS = {
    "¥": "CNY",
    "￥": "CNY",
    "RMB": "CNY",
    "元": "CNY",
    "人民币": "CNY",
    "$": "USD",
    "€": "EUR",
}
_DATE_PATTERNS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


class ClaimInvalid(ValueError):
    """The claim cannot be normalized; ``problems`` lists each reason as ``field: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def clean_text(value: object) -> str:
    """NFKC (full-width -> half-width), trimmed, inner whitespace collapsed."""
    text = unicodedata.normalize("NFKC", "" if value is None else str(value))
    return " ".join(text.split())


def parse_amount(text: str, currency: str) -> int:
    """'1,234.50' / '１２３４.５' / '¥88' -> minor units; no more decimals than the currency has."""
    cleaned = clean_text(text).replace(",", "").replace(" ", "")
    for symbol in _CURRENCY_SYMBOLS:
        cleaned = cleaned.replace(unicodedata.normalize("NFKC", symbol), "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    if amount <= 0:
        raise ValueError(f"must be positive, got {text!r}")
    exponent = CURRENCY_EXPONENTS[currency]
    minor = amount.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{text!r} has more than {exponent} decimals for {currency}")
    return int(minor)


def parse_currency(text: str) -> str:
    code = clean_text(text).upper()
    code = _CURRENCY_SYMBOLS.get(code, code)
    if code not in CURRENCY_EXPONENTS:
        raise ValueError(f"unknown currency {text!r}")
    return code


def parse_date(text: str) -> datetime.date:
    cleaned = clean_text(text).replace(" ", "")
    for pattern in _DATE_PATTERNS:
        match = pattern.match(cleaned)
        if match:
            year, month, day = (int(part) for part in match.groups())
            try:
                return datetime.date(year, month, day)
            except ValueError:
                raise ValueError(f"no such date: {text!r}") from None
    raise ValueError(f"unrecognised date {text!r} (expected e.g. 2026-11-03 or 2026年11月3日)")


def normalize_claim(raw: Mapping[str, object]) -> NormalizedClaim:
    problems = [f"{name}: required" for name in REQUIRED if not clean_text(raw.get(name))]
    currency = ""
    if clean_text(raw.get("currency")):
        try:
            currency = parse_currency(str(raw["currency"]))
        except ValueError as exc:
            problems.append(f"currency: {exc}")
    amount_minor = 0
    if currency and clean_text(raw.get("amount")):
        try:
            amount_minor = parse_amount(str(raw["amount"]), currency)
        except ValueError as exc:
            problems.append(f"amount: {exc}")
    expense_date = datetime.date.min
    if clean_text(raw.get("expense_date")):
        try:
            expense_date = parse_date(str(raw["expense_date"]))
        except ValueError as exc:
            problems.append(f"expense_date: {exc}")
    if problems:
        raise ClaimInvalid(problems)
    return NormalizedClaim(
        claim_id=clean_text(raw["claim_id"]),
        source_system=clean_text(raw.get("source_system")) or "unknown",
        employee_id=clean_text(raw["employee_id"]).upper(),
        employee_name=clean_text(raw["employee_name"]),
        expense_date=expense_date,
        category=clean_text(raw.get("category")).lower() or "general",
        description=clean_text(raw.get("description")),
        amount_minor=amount_minor,
        currency=currency,
    )
