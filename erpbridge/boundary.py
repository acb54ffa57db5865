"""The one boundary every source parses through: explicit limits, and every failure a refusal.

Whatever bytes arrive (a webhook body, a JSON Lines line, a CSV field, an XML document), what the
parsers and validators here raise is :class:`InputRefused` with a machine-readable code and a
message an operator can act on, never ``RecursionError``, ``OverflowError``, the integer-digit
``ValueError`` or ``UnicodeError``. The limits are settings (``ERPBRIDGE_INPUT_*``), read at
start-up and documented in the README.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InputLimits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_INPUT_", frozen=True, extra="ignore")

    max_line_bytes: int = Field(1_000_000, ge=1024)  # one JSON Lines line or CSV record
    max_field_chars: int = Field(10_000, ge=100)  # one CSV field, one JSON string
    max_depth: int = Field(16, ge=4)  # JSON / XML nesting
    max_number_chars: int = Field(40, ge=20)  # digits (and sign, point, exponent) of a number
    max_lines_per_document: int = Field(500, ge=1)  # lines of a claim, items of an invoice
    # an invoice's original file, base64 in "content_base64" (the only string this long)
    max_original_base64: int = Field(1_400_000, ge=1024)


LIMITS = InputLimits()


class InputRefused(ValueError):
    """Input refused at the boundary: ``code`` says why (machine-readable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def parse_json(data: bytes | str, limits: InputLimits = LIMITS) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or Infinity, numbers of at most
    ``max_number_chars`` (kept exact: decimals as :class:`~decimal.Decimal`), strings of at most
    ``max_field_chars`` without lone surrogates, nesting at most ``max_depth`` deep."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputRefused("not_utf8", f"not UTF-8 text: {exc}") from None

    def number(text: str) -> Decimal | int:
        if len(text) > limits.max_number_chars:
            raise InputRefused("number_too_long", f"a number of {len(text)} characters (at "
                               f"most {limits.max_number_chars})")  # fmt: skip
        return int(text) if text.lstrip("-").isdigit() else Decimal(text)

    def constant(text: str) -> Any:
        raise InputRefused("not_a_number", f"{text} is not a JSON number")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise InputRefused("duplicate_key", f"the key {key!r} appears twice in an object")
            found[key] = value
        return found

    try:
        value = json.loads(data, object_pairs_hook=unique, parse_int=number,
                           parse_float=number, parse_constant=constant)  # fmt: skip
    except InputRefused:
        raise
    except RecursionError:
        raise InputRefused("too_deep", f"nested deeper than {limits.max_depth}") from None
    except (ValueError, OverflowError) as exc:  # JSONDecodeError is a ValueError
        raise InputRefused("malformed_json", f"not JSON: {exc}") from None
    check_tree(value, limits)
    return value


def check_tree(value: Any, limits: InputLimits = LIMITS) -> None:
    """Nesting depth, string sizes and lone surrogates of a parsed document (iteratively)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise InputRefused("too_deep", f"nested deeper than {limits.max_depth}")
        if isinstance(node, dict):
            for key, item in node.items():
                check_text(key, limits)
                if key == ORIGINAL_FIELD and isinstance(item, str):
                    _check_base64_text(item, limits)
                else:
                    stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            check_text(node, limits)


ORIGINAL_FIELD = "content_base64"  # see connectors.sources.models.OriginalIn


def _check_base64_text(text: str, limits: InputLimits) -> None:
    if len(text) > limits.max_original_base64:
        raise InputRefused("string_too_long", f"{ORIGINAL_FIELD} of {len(text)} characters (at "
                           f"most {limits.max_original_base64})")  # fmt: skip
    if not text.isascii():
        raise InputRefused("not_base64", f"{ORIGINAL_FIELD} holds characters outside base64")


def check_text(text: str, limits: InputLimits = LIMITS) -> None:
    if len(text) > limits.max_field_chars:
        raise InputRefused("string_too_long", f"a string of {len(text)} characters (at most "
                           f"{limits.max_field_chars})")  # fmt: skip
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputRefused("lone_surrogate", "a string holds a lone UTF-16 surrogate "
                           "(not a character)") from None  # fmt: skip
