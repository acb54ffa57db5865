"""A flat export row (CSV, one claim per row) -> the shared :class:`ClaimIn` model."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.sources.models import ClaimIn

_LINE_FIELDS = ("category", "description", "amount", "currency", "expense_date")


def claim_from_row(row: Mapping[str, str]) -> ClaimIn:
    """Raises pydantic's ValidationError with every problem of the row."""
    line: dict[str, object] = {name: row[name] for name in _LINE_FIELDS if row.get(name)}
    line["invoice_refs"] = (row.get("invoice_refs") or "").replace(",", " ").split()
    claim = {name: value for name, value in row.items() if name not in _LINE_FIELDS and value}
    return ClaimIn.model_validate({**claim, "lines": [line]})
