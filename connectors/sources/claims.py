"""A claim as a source read it (strings) -> an ExpenseClaim contract record, or every reason not."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from connectors.sources.fields import (
    clean_text,
    parse_amount,
    parse_currency,
    parse_date,
    to_minor_units,
)

REQUIRED = ("claim_id", "employee_id", "employee_name", "expense_date", "amount", "currency")


class ClaimInvalid(ValueError):
    """The input is not a valid claim; ``problems`` lists each reason as ``field: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _parsed(
    raw: Mapping[str, object], name: str, parse: Callable[[str], Any], problems: list[str]
) -> Any:
    if not clean_text(raw.get(name)):
        return None
    try:
        return parse(str(raw[name]))
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
        return None


def expense_claim(
    raw: Mapping[str, object], source_system: str, origin: Mapping[str, str]
) -> dict[str, Any]:
    """One single-line claim (a CSV row, a webhook body) as an ExpenseClaim record."""
    problems = [f"{name}: required" for name in REQUIRED if not clean_text(raw.get(name))]
    currency = _parsed(raw, "currency", parse_currency, problems)
    amount = _parsed(raw, "amount", parse_amount, problems)
    expense_date = _parsed(raw, "expense_date", parse_date, problems)
    if currency and amount is not None:
        try:
            to_minor_units(amount, currency)
        except ValueError as exc:
            problems.append(f"amount: {exc}")
    if problems:
        raise ClaimInvalid(problems)
    claim_id = clean_text(raw["claim_id"])
    line = {
        "line_no": 1,
        "category": clean_text(raw.get("category")).lower() or "general",
        "description": clean_text(raw.get("description")),
        "amount": amount,
        "currency": currency,
        "expense_date": expense_date,
        "invoice_refs": [ref for ref in clean_text(raw.get("invoice_refs")).split(" ") if ref],
    }
    employee = {
        "id": clean_text(raw["employee_id"]).upper(),
        "name": clean_text(raw["employee_name"]),
        "department": clean_text(raw.get("department")) or None,
        "cost_centre": clean_text(raw.get("cost_centre")) or None,
    }
    return {
        "event_id": event_id(source_system, claim_id, employee, [line]),
        "claim_id": claim_id,
        "source_system": source_system,
        "employee": employee,
        "project": clean_text(raw.get("project")) or None,
        "purpose": clean_text(raw.get("purpose")) or None,
        "lines": [line],
        "submitted_at": datetime.datetime.now(datetime.UTC),
        "origin": dict(origin),
    }


def event_id(source_system: str, claim_id: str, *content: object) -> str:
    """Stable across re-reads of the same content; changes when the content changes."""
    digest = hashlib.sha256(
        json.dumps(
            [source_system, claim_id, *content], default=str, sort_keys=True, ensure_ascii=False
        ).encode()
    )
    return f"{source_system}:{claim_id}:{digest.hexdigest()[:16]}"
