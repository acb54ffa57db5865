"""Field parsers every source shares: one rule, written once, for amounts, currencies and dates.

Upstream exports use full-width digits, thousands separators, currency symbols and Chinese date
formats; each parser accepts those and raises ValueError with a message an operator can act on.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from decimal import Decimal, InvalidOperation

from erpbridge.model import CURRENCY_EXPONENTS

AMOUNT_SCALE = 4  # decimals the ExpenseClaim contract keeps (decimal(18,4))
_CURRENCY_ALIASES = {"¥": "CNY", "￥": "CNY", "RMB": "CNY", "元": "CNY", "人民币": "CNY",
                     "$": "USD", "€": "EUR"}  # fmt: skip
_DATE_PATTERNS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


def clean_text(value: object) -> str:
    """NFKC (full-width -> half-width), trimmed, inner whitespace collapsed."""
    text = unicodedata.normalize("NFKC", "" if value is None else str(value))
    return " ".join(text.split())


def parse_amount(text: str) -> Decimal:
    """'1,234.50' / '１２３４.５' / '¥88' -> Decimal, positive, at most 4 decimals."""
    cleaned = clean_text(text).replace(",", "").replace(" ", "")
    for symbol in _CURRENCY_ALIASES:
        cleaned = cleaned.replace(unicodedata.normalize("NFKC", symbol), "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    if amount <= 0:
        raise ValueError(f"must be positive, got {text!r}")
    if amount != amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE)):
        raise ValueError(f"{text!r} has more than {AMOUNT_SCALE} decimals")
    if amount >= Decimal(10) ** (18 - AMOUNT_SCALE):
        raise ValueError(f"{text!r} is too large")
    return amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE))


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Exact minor units (fen for CNY); refuses amounts finer than the currency allows."""
    minor = amount.scaleb(CURRENCY_EXPONENTS[currency])
    if minor != minor.to_integral_value():
        raise ValueError(
            f"{amount.normalize()} has more than {CURRENCY_EXPONENTS[currency]} "
            f"decimals for {currency}"
        )
    return int(minor)


def parse_currency(text: str) -> str:
    code = clean_text(text).upper()
    code = _CURRENCY_ALIASES.get(code, code)
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
