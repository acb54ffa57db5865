"""The budget vs actual page in a real browser (Debian's Chromium): its tiles, chart and table
as an operator sees them, the screenshot kept for a human look. No service is needed: the page
is rendered from report rows as ``erpbridge budget report --format html`` renders it."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from books import export
from books.budget_report import BudgetLine, BudgetRow
from tests.browser import chromium_page, screenshot

pytestmark = pytest.mark.integration
START, END = datetime.date(2026, 1, 1), datetime.date(2026, 12, 31)


def test_the_budget_page_shows_each_budget_its_use_and_its_held_claims(tmp_path: Path) -> None:
    rows = [
        BudgetRow(BudgetLine("CC-SH-01", START, END, "上海销售部", "CNY", 300_000, 300_000, 0,
                             ("C-9", "C-10"), "hold", 14), 13, 330_000),  # a credit note aside
        BudgetRow(BudgetLine("CC-BJ-01", START, END, "北京研发部", "CNY", 500_000, 128_000,
                             30_000, (), "warn", 3), 2, 128_000),
    ]  # fmt: skip
    page_file = tmp_path / "budget.html"
    page_file.write_text(export.budget_html(rows, "2026-12-07T10:00:00+00:00"), encoding="utf-8")
    with chromium_page(1300, 900) as page:
        page.goto(page_file.as_uri())
        assert page.locator("#budgets tr").count() == 3  # the header and two budgets
        cells = page.locator("#budgets tr").nth(1).locator("td").all_inner_texts()
        assert "CC-SH-01" in cells and "3,000.00" in cells and "-300.00" in cells
        assert "used of 5,000.00 CNY" in page.locator(".tile").nth(1).inner_text()
        assert page.locator('svg [data-series="booked"]').count() == 2
        # a cost centre or period cell does not wrap (one line high, as the others)
        heights = {page.locator("#budgets tr").nth(1).locator("td").nth(n).bounding_box()["height"]
                   for n in range(3)}  # fmt: skip
        assert len(heights) == 1
        shot = screenshot(page, "budget")
    assert shot.stat().st_size > 10_000
