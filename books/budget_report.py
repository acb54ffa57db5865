"""Budget against actual per cost centre and period: each budget the ERP keeps (synced into the
reference data), what the ERP booked against it (from the books: postings on the cost centre
dated in the period, answered booked, credit notes included), and what the processors counted
(consumed by postings, reserved by approved claims not yet booked, claims held over budget).

Booked and consumed differ while postings are on their way to the ERP, for postings the ERP
refused, and for claims booked before the budget reached the processors (they were never counted
against it); any other lasting difference is a finding for the reconciliation.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from books.store import Store


@dataclass(frozen=True)
class BudgetLine:
    """One budget as the processors see it (what the report compares the books with)."""

    cost_centre: str
    start: datetime.date
    end: datetime.date | None  # None: the ERP keeps no such budget any more
    name: str
    currency: str
    budget_minor: int | None
    consumed_minor: int
    reserved_minor: int
    held: tuple[str, ...]  # claim ids, oldest first
    policy: str
    claims: int = 0  # claims counted against it

    @property
    def available_minor(self) -> int | None:
        """The budget less what the processors counted (consumed and reserved)."""
        if self.budget_minor is None:
            return None
        return self.budget_minor - self.consumed_minor - self.reserved_minor

    def to_json(self) -> dict[str, Any]:
        return {"cost_centre": self.cost_centre, "period_start": self.start.isoformat(),
                "period_end": self.end.isoformat() if self.end else None, "name": self.name,
                "currency": self.currency, "policy": self.policy,
                "budget_minor": self.budget_minor, "consumed_minor": self.consumed_minor,
                "reserved_minor": self.reserved_minor, "available_minor": self.available_minor,
                "claims": self.claims, "held": list(self.held)}  # fmt: skip


@dataclass(frozen=True)
class BudgetRow:
    line: BudgetLine
    postings: int
    booked_minor: int  # what the ERP answered booked (credit notes subtract)

    @property
    def available_minor(self) -> int | None:
        """The budget less what was booked and what approved claims reserved."""
        if self.line.budget_minor is None:
            return None
        return self.line.budget_minor - self.booked_minor - self.line.reserved_minor

    @property
    def used_pct(self) -> float | None:
        if not self.line.budget_minor:
            return None
        return round(100 * (self.booked_minor + self.line.reserved_minor)
                     / self.line.budget_minor, 1)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The line's, with what the ERP booked; ``available_minor`` is the books' (the budget
        less what was booked and what is reserved)."""
        return {**self.line.to_json(), "booked_minor": self.booked_minor,
                "postings": self.postings, "available_minor": self.available_minor,
                "used_pct": self.used_pct}  # fmt: skip


def budget_vs_actual(store: Store, lines: list[BudgetLine]) -> list[BudgetRow]:
    rows = []
    for line in lines:
        end = line.end or datetime.date.max
        ((postings, booked),) = store.query(
            """select count(distinct p.posting_id), coalesce(sum(p.total_minor), 0)
               from postings p join feedback f on f.posting_id = p.posting_id
               where f.status in ('BOOKED', 'ALREADY_BOOKED') and upper(p.cost_centre) = ?
                 and p.currency = ? and p.posting_date between ? and ?""",
            [line.cost_centre.upper(), line.currency, line.start, end],
        )  # fmt: skip
        rows.append(BudgetRow(line, int(postings), int(booked)))
    return rows
