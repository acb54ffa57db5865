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


# Unicode categories an id may not hold: control (Cc, e.g. ESC), format (Cf: zero-width space,
# BOM, bidi marks), surrogates, private use and unassigned code points; and line separators.
_NOT_IN_IDS = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Marks (Mn non-spacing, Mc spacing combining, Me enclosing) left after normalisation: an id is
# NFC (NFKC) and holds none, so 'E10\u030101' cannot pose as a second claim beside 'E1001' (a
# letter with its accent composes first, so 'é' written as 'e' + U+0301 is the id 'é').
_MARKS = frozenset({"Mn", "Mc", "Me"})


def _mark_ranges() -> str:
    """The Basic Multilingual Plane's marks as character-class ranges (``\\uXXXX-\\uYYYY``)."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)) in _MARKS:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# The same rule for the OpenAPI document, as ranges both JSON Schema (ECMA-262) and Python read:
# control, format, line/paragraph separator, surrogate and private-use characters and the
# marks of the Basic Multilingual Plane (unassigned code points and marks beyond U+FFFF are
# refused too, but a pattern without the u flag cannot list them).
ID_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890-\\u0891\\u08e2\\u180e"
    "\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\ud800-\\uf8ff\\ufeff\\ufff9-\\ufffb"
    + _mark_ranges()
    + "]+$"
)


def identifier(value: str) -> str:
    """An id as :func:`clean_text` gives it (NFKC, so composed), refused if it holds a character
    that is not printable or a mark that composes with nothing (``ValueError`` naming the
    character's code point)."""
    for char in value:
        if unicodedata.category(char) in _NOT_IN_IDS:
            raise ValueError(f"holds the non-printable character U+{ord(char):04X}; ids are "
                             "printable characters only")  # fmt: skip
    cleaned = clean_text(value)
    for char in cleaned:
        if unicodedata.category(char) in _MARKS:
            raise ValueError(f"holds the combining mark U+{ord(char):04X} "
                             f"({unicodedata.name(char, 'unnamed')}); ids may not hold "
                             "combining or non-spacing marks")  # fmt: skip
    return cleaned


def parse_amount(text: str, *, signed: bool = False) -> Decimal:
    """'1,234.50' / '１２３４.５' / '¥88' -> Decimal, positive (any sign when ``signed``: the
    amounts of an invoice, where 0 is a tax-free line and a red-letter invoice is negative), at
    most 4 decimals."""
    cleaned = clean_text(text).replace(",", "").replace(" ", "")
    for symbol in _CURRENCY_ALIASES:
        cleaned = cleaned.replace(unicodedata.normalize("NFKC", symbol), "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    if amount <= 0 and not signed:
        raise ValueError(f"must be positive, got {text!r}")
    if abs(amount) >= Decimal(10) ** (18 - AMOUNT_SCALE):  # before quantize, which overflows on it
        raise ValueError(f"{text!r} is too large")
    if amount != amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE)):
        raise ValueError(f"{text!r} has more than {AMOUNT_SCALE} decimals")
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
