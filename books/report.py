"""The expense report: what was sent to the ERP in a period, grouped by department, cost centre,
category, employee or month: postings, how many the ERP booked, amounts, the input VAT deducted,
and the average booking latency (from the posting's creation, when the claim was approved, to the
ERP's answer). Read from the books; amounts stay per currency.

A category is the expense line's (a posting's lines can fall in several), so by category the
amounts and VAT are the lines', and a posting counts once in each of its categories.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from books.store import Store

DIMENSIONS = {
    "department": "coalesce(p.department, '-')",
    "cost_centre": "coalesce(p.cost_centre, '-')",
    "employee": "p.employee_id || ' ' || coalesce(p.employee_name, '')",
    "month": "cast(date_trunc('month', p.posting_date) as date)",
    "category": "coalesce(l.category, '-')",
}
BOOKED = ("BOOKED", "ALREADY_BOOKED")


@dataclass(frozen=True)
class ReportRow:
    group: str
    currency: str
    postings: int
    booked: int
    refused: int
    total_minor: int
    input_vat_minor: int
    avg_latency_s: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Report:
    start: datetime.date
    end: datetime.date
    by: str
    rows: list[ReportRow]

    def totals(self) -> dict[str, dict[str, int]]:
        """Amounts and VAT per currency (by category the lines', which add up to the postings')."""
        found: dict[str, dict[str, int]] = {}
        for row in self.rows:
            tally = found.setdefault(row.currency, {"total_minor": 0, "input_vat_minor": 0})
            tally["total_minor"] += row.total_minor
            tally["input_vat_minor"] += row.input_vat_minor
        return found

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "by": self.by,
                "totals": self.totals(), "rows": [r.to_json() for r in self.rows]}  # fmt: skip


def report(
    store: Store, start: datetime.date, end: datetime.date, by: str = "department"
) -> Report:
    if by not in DIMENSIONS:
        raise ValueError(f"--by one of {', '.join(DIMENSIONS)}")
    lines = by == "category"
    amount, vat = ("l.amount_minor", "l.tax_minor") if lines else ("p.total_minor", "p.tax_minor")
    join = "join posting_lines l on l.posting_id = p.posting_id" if lines else ""
    booked = "f.status in ('BOOKED', 'ALREADY_BOOKED')"
    rows = store.query(
        f"""select cast({DIMENSIONS[by]} as varchar) as grp, p.currency,
                   count(distinct p.posting_id),
                   count(distinct p.posting_id) filter (where {booked}),
                   count(distinct p.posting_id) filter (where f.status in ('REFUSED', 'FAILED')),
                   coalesce(sum({amount}), 0), coalesce(sum({vat}), 0),
                   avg(extract(epoch from (f.answered_at - p.created_at))) filter (where {booked})
            from postings p {join}
            left join feedback f on f.posting_id = p.posting_id
            where p.posting_date between ? and ?
            group by 1, 2 order by 1, 2""",  # noqa: S608
        [start, end],
    )
    return Report(start, end, by, [
        ReportRow(str(group), str(currency), int(n), int(ok), int(refused), int(total), int(tax),
                  None if latency is None else round(float(latency), 1))
        for group, currency, n, ok, refused, total, tax, latency in rows])  # fmt: skip
