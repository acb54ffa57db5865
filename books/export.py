"""Exports of the books' answers (reconciliation, report): CSV and a self-contained HTML page with
charts. Text from upstream (names, references, ERP messages) lands in finance's spreadsheets, so
every text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is neutralised
with a leading apostrophe (OWASP's CSV-injection advice); numbers are written as numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from books import charts
from books.budget_report import BudgetRow
from books.reconcile import KINDS, Reconciliation
from books.report import Report

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAGES = Environment(loader=FileSystemLoader(Path(__file__).parent / "pages"),
                    autoescape=select_autoescape(["html"]))  # fmt: skip


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet reads it as text, never as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


PAGES.filters["cell"] = safe_cell


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


DIFFERENCE_COLUMNS = ("kind", "reference", "group", "document", "sent", "erp", "detail")
REPORT_COLUMNS = ("group", "currency", "postings", "booked", "refused", "total", "input_vat",
                  "avg_latency_s")  # fmt: skip


def _money(minor: int | None) -> Decimal | str:
    """Minor units as a number of yuan (a credit note's negative amount stays a number: the
    formula guard only touches text)."""
    return "" if minor is None else Decimal(minor).scaleb(-2)


def _shown(minor: int | None) -> str:
    """Minor units as a page shows yuan: thousands grouped, two decimals (``-1,280.00``)."""
    return "" if minor is None else f"{Decimal(minor).scaleb(-2):,.2f}"


def reconciliation_csv(result: Reconciliation) -> str:
    return to_csv(DIFFERENCE_COLUMNS, (
        (d.kind, d.reference, d.group or "", d.document or "", _money(d.sent_minor),
         _money(d.erp_minor), d.detail) for d in result.differences))  # fmt: skip


def report_csv(result: Report) -> str:
    return to_csv(REPORT_COLUMNS, (
        (r.group, r.currency, r.postings, r.booked, r.refused, _money(r.total_minor),
         _money(r.input_vat_minor), "" if r.avg_latency_s is None else r.avg_latency_s)
        for r in result.rows))  # fmt: skip


def reconciliation_html(result: Reconciliation, generated_at: str) -> str:
    days = sorted(result.per_day)
    sent_vs_booked = charts.bars(
        "Sent vs booked per day (amount)",
        days,
        {"sent": [result.per_day[d]["sent_minor"] / 100 for d in days],
         "booked": [result.per_day[d]["booked_minor"] / 100 for d in days]},
    )  # fmt: skip
    counts = result.counts()
    by_kind = charts.bars("Differences by kind", list(KINDS),
                          {"differences": [float(counts[k]) for k in KINDS]})  # fmt: skip
    return PAGES.get_template("reconciliation.html").render(
        r=result, counts=counts, money=_shown, generated_at=generated_at,
        charts=[Markup(sent_vs_booked), Markup(by_kind)],  # noqa: S704 (drawn by books.charts)
    )  # fmt: skip


def report_html(result: Report, generated_at: str) -> str:
    drawn = []
    for currency in sorted(result.totals()):
        rows = [r for r in result.rows if r.currency == currency]
        labels = [r.group for r in rows]
        amounts = {"total": [r.total_minor / 100 for r in rows],
                   "input VAT": [r.input_vat_minor / 100 for r in rows]}  # fmt: skip
        drawn.append(charts.bars(f"Amount and input VAT by {result.by} ({currency})", labels,
                                 amounts))  # fmt: skip
        latencies = [r.avg_latency_s or 0.0 for r in rows]
        drawn.append(charts.bars(f"Average booking latency by {result.by} ({currency})", labels,
                                 {"latency": latencies}, unit=" s"))  # fmt: skip
    return PAGES.get_template("report.html").render(
        r=result, money=_shown, generated_at=generated_at,
        charts=[Markup(c) for c in drawn],  # noqa: S704 (drawn by books.charts)
    )  # fmt: skip


BUDGET_COLUMNS = ("cost_centre", "period_start", "period_end", "name", "currency", "policy",
                  "budget", "booked", "postings", "consumed", "reserved", "available",
                  "used_pct", "held")  # fmt: skip


def budget_csv(rows: list[BudgetRow]) -> str:
    return to_csv(BUDGET_COLUMNS, (
        (r.line.cost_centre, r.line.start, r.line.end or "", r.line.name, r.line.currency,
         r.line.policy, _money(r.line.budget_minor), _money(r.booked_minor), r.postings,
         _money(r.line.consumed_minor), _money(r.line.reserved_minor), _money(r.available_minor),
         "" if r.used_pct is None else r.used_pct, len(r.line.held)) for r in rows))  # fmt: skip


def budget_html(rows: list[BudgetRow], generated_at: str) -> str:
    drawn = []
    for currency in sorted({r.line.currency for r in rows}):
        mine = [r for r in rows if r.line.currency == currency]
        labels = [f"{r.line.cost_centre} {r.line.start:%Y-%m}" for r in mine]
        drawn.append(charts.bars(f"Budget vs actual by cost centre ({currency})", labels, {
            "budget": [(r.line.budget_minor or 0) / 100 for r in mine],
            "booked": [r.booked_minor / 100 for r in mine],
            "reserved": [r.line.reserved_minor / 100 for r in mine]}))  # fmt: skip
    return PAGES.get_template("budget.html").render(
        rows=rows, money=_shown, generated_at=generated_at,
        charts=[Markup(c) for c in drawn],  # noqa: S704 (drawn by books.charts)
    )  # fmt: skip
