"""The canonical claim model shared by stream processors (who build it) and sinks (who book it)."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

# ISO 4217 minor-unit exponents for the currencies we accept.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "THB": 2,
    "MYR": 2,
    "KRW": 0,
    "JPY": 0,
    "VND": 0,
}


@dataclass(frozen=True, slots=True)
class NormalizedClaim:
    """One expense claim in the canonical model: exact money in minor units, ISO dates."""

    claim_id: str
    source_system: str
    employee_id: str
    employee_name: str
    expense_date: datetime.date
    category: str
    description: str
    amount_minor: int
    currency: str

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-CURRENCY_EXPONENTS[self.currency])

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["expense_date"] = self.expense_date.isoformat()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NormalizedClaim:
        names = {f.name for f in fields(cls)}
        missing = names - record.keys()
        if missing:
            raise ValueError(f"normalized claim lacks {sorted(missing)}")
        values = {name: record[name] for name in names}
        values["expense_date"] = datetime.date.fromisoformat(record["expense_date"])
        values["amount_minor"] = int(record["amount_minor"])
        return cls(**values)
