"""The books' answers as finance reads them: the report's sums by each dimension, CSV and HTML
exports that a spreadsheet cannot turn into formulas, the scheduled run's period and summary, and
the REST gateway read back for reconciliation (the stand-in gateway over HTTP)."""

from __future__ import annotations

import csv
import datetime
import io

import pytest

from books import export
from books.reconcile import Difference, ErpDocument, Reconciliation, reconcile
from books.report import DIMENSIONS, Report, ReportRow, report
from books.scheduled import ReconcileSettings, summary
from books.store import BooksSettings, Store
from connectors.erp.rest import RestErpSettings, RestErpWriter
from erpbridge.model import Posting, PostingLine
from erpbridge_cli.books_commands import REPORT_DIMENSIONS
from erpbridge_cli.ledgers import RestLedger
from tests.fakes.erp_gateway import Gateway

DAY = datetime.date(2026, 11, 2)
T0 = datetime.datetime(2026, 11, 2, 8, 0)
EVIL = '=HYPERLINK("http://x","y")'


def _store() -> Store:
    store = Store(BooksSettings(path=":memory:"))
    people = [
        ("E1", "张伟", "D10", "CC-1"),
        ("E2", EVIL, "D10", "CC-2"),
        ("E3", "李娜", "@D20", "CC-2"),
    ]
    rows, lines, answers = [], [], []
    for n in range(1, 7):
        employee, name, department, centre = people[n % 3]
        day = DAY + datetime.timedelta(days=n % 2 * 31)  # November and December
        rows.append((f"P{n}", f"C{n}", 1, "oa", employee, name, department, centre, day, "CNY",
                     1000 * n, 60 * n, T0, "t", 0, n))  # fmt: skip
        lines += [(f"P{n}", 1, "5.2.2", "差旅", "差旅: 机票", 600 * n, 60 * n),
                  (f"P{n}", 2, "5.1.3", "-餐费", "-餐费: lunch", 400 * n, 0)]  # fmt: skip
        if n != 6:  # P6 unanswered; P5 refused
            status = "REFUSED" if n == 5 else "BOOKED"
            answers.append((f"P{n}", "tryton", status, None, None, None, None, None,
                            T0 + datetime.timedelta(seconds=10 * n)))  # fmt: skip
    store.upsert("postings", rows)
    store.upsert("posting_lines", lines)
    store.upsert("feedback", answers)
    return store


def test_the_report_sums_each_dimension_to_the_same_totals() -> None:
    store = _store()
    assert set(REPORT_DIMENSIONS) == set(DIMENSIONS)
    end = DAY + datetime.timedelta(days=40)
    for by in DIMENSIONS:
        result = report(store, DAY, end, by)
        assert result.totals() == {"CNY": {"total_minor": 21000, "input_vat_minor": 1260}}, by
    by_department = {r.group: r for r in report(store, DAY, end, "department").rows}
    assert set(by_department) == {"D10", "@D20"}
    d10, d20 = by_department["D10"], by_department["@D20"]  # P1 P3 P4 P6 (unanswered)
    assert (d10.postings, d10.booked, d10.refused, d10.total_minor) == (4, 3, 0, 14000)
    assert d10.avg_latency_s == round((10 + 30 + 40) / 3, 1)
    assert (d20.postings, d20.booked, d20.refused, d20.avg_latency_s) == (2, 1, 1, 20.0)
    months = {r.group: r.postings for r in report(store, DAY, end, "month").rows}
    assert months == {"2026-11-01": 3, "2026-12-01": 3}
    categories = {r.group: (r.postings, r.total_minor) for r in report(store, DAY, end,
                                                                      "category").rows}  # fmt: skip
    assert categories == {"差旅": (6, 12600), "-餐费": (6, 8400)}
    with pytest.raises(ValueError, match="--by one of"):
        report(store, DAY, end, "colour")


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_exports_neutralise_formula_cells_and_keep_numbers() -> None:
    store = _store()
    end = DAY + datetime.timedelta(days=40)
    rows = _cells(export.report_csv(report(store, DAY, end, "employee")))
    assert rows[0][:3] == ["group", "currency", "postings"]
    texts = [row[0] for row in rows[1:]]
    assert any(t.startswith("E2 ") for t in texts)
    assert "'-餐费" in [r[0] for r in _cells(export.report_csv(report(store, DAY, end,
                                                                      "category")))]  # fmt: skip
    assert "'@D20" in [r[0] for r in _cells(export.report_csv(report(store, DAY, end,
                                                                      "department")))]  # fmt: skip
    for row in rows[1:]:
        assert not row[0].startswith(export.FORMULA_STARTS)
        float(row[5])  # amounts stay numbers, even negative ones would
    assert export.safe_cell("-12.5") == "'-12.5" and export.safe_cell(-12.5) == -12.5
    assert export.safe_cell("+86 138") == "'+86 138" and export.safe_cell("ok=1") == "ok=1"

    evil = ErpDocument("=cmd|' /C calc'!A0", "@SUM(A1)", "posted", 5, 0, DAY)
    ledger = _Ledger([ErpDocument("P1", "INV1", "posted", 999, 60, DAY)], [evil])
    result = reconcile(store, ledger, DAY, end, by="employee",
                       now=datetime.datetime(2026, 12, 31, tzinfo=datetime.UTC))  # fmt: skip
    table = _cells(export.reconciliation_csv(result))
    assert table[0] == list(export.DIFFERENCE_COLUMNS)
    assert ["unexpected_in_erp", "'=cmd|' /C calc'!A0", "", "'@SUM(A1)", "", "0.05"] == table[-1][
        :6
    ]
    assert all(not cell.startswith(export.FORMULA_STARTS) for row in table for cell in row)
    page = export.reconciliation_html(result, "2026-12-31T00:00:00+00:00")
    assert "&#39;=cmd|&#39; /C calc&#39;!A0" in page and ">=cmd" not in page
    assert page.count('class="bar"') >= 2 and "Differences by kind" in page
    html_report = export.report_html(report(store, DAY, end, "department"), "now")
    assert "&#39;@D20" in html_report and html_report.count("<svg") == 2


class _Ledger:
    def __init__(self, documents: list[ErpDocument], extra: list[ErpDocument]) -> None:
        self.found, self.extra = {d.reference: d for d in documents}, extra

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [self.found[r] for r in references if r in self.found]

    def documents_between(self, start: datetime.date, end: datetime.date) -> list[ErpDocument]:
        return list(self.found.values()) + self.extra

    def close(self) -> None:
        pass


def test_a_schedule_reads_its_period_and_next_time_in_its_own_zone() -> None:
    config = ReconcileSettings(cron="30 2 * * *", timezone="Asia/Shanghai", days=2)
    late_utc = datetime.datetime(2026, 11, 30, 20, 0, tzinfo=datetime.UTC)  # 04:00 on 1 Dec
    assert config.period(late_utc) == (datetime.date(2026, 11, 30), datetime.date(2026, 12, 1))
    due = config.next_run(late_utc)
    assert due.astimezone(datetime.UTC) == datetime.datetime(2026, 12, 1, 18, 30,
                                                             tzinfo=datetime.UTC)  # fmt: skip
    with pytest.raises(ValueError, match="not a cron expression"):
        ReconcileSettings(cron="every night")
    with pytest.raises(ValueError):
        ReconcileSettings(timezone="Mars/Olympus")
    result = reconcile(_store(), _Ledger([], []), DAY, DAY,
                       now=datetime.datetime(2026, 12, 31, tzinfo=datetime.UTC))  # fmt: skip
    event = summary(result, "tryton", late_utc)
    assert event["counts"]["missing_in_erp"] == 3 and not event["ok"]
    assert len(event["differences"]) == len(result.differences) and not event["truncated"]


def test_the_rest_ledger_reads_the_gateway_back_by_reference_and_by_date() -> None:
    gateway = Gateway()
    server, url = gateway.serve()
    config = RestErpSettings(base_url=url)
    writer = RestErpWriter(config)
    try:
        for n in (1, 2):
            line = PostingLine("5.2.2", "差旅", 1000 * n, ())
            writer.book(
                Posting(f"RP{n}", f"RC{n}", "oa", "E1", "张伟", DAY, "CNY", (line,), 1000 * n)
            )
        gateway.vouchers["RP2"]["status"] = "cancelled"  # by hand, in the ERP
        ledger = RestLedger(config)
        found = {d.reference: d for d in ledger.documents(["RP1", "RP2", "RP3"])}
        assert set(found) == {"RP1", "RP2"}
        assert (found["RP1"].state, found["RP1"].total_minor, found["RP1"].number) == (
            "posted",
            1000,
            "AP-00001",
        )
        assert found["RP2"].state == "cancelled"
        listed = ledger.documents_between(DAY, DAY)
        assert listed is not None and {d.reference for d in listed} == {"RP1", "RP2"}
        assert (
            ledger.documents_between(
                DAY + datetime.timedelta(days=1), DAY + datetime.timedelta(days=9)
            )
            == []
        )
        ledger.close()
        batched = RestLedger(
            RestErpSettings(
                base_url=url,
                batch_lookup_size=2,
                batch_lookup_path="/vouchers?external_refs={references}",
            )
        )
        before = len(gateway.requests)
        assert {d.reference: d for d in batched.documents(["RP1", "RP2", "RP3"])} == found
        assert len(gateway.requests) - before == 2  # two requests for three references
        batched.close()
        unlisted = RestLedger(RestErpSettings(base_url=url, list_path=None))
        assert unlisted.documents_between(DAY, DAY) is None
        unlisted.close()
    finally:
        writer.close()
        server.shutdown()
    with pytest.raises(ValueError, match="list_path"):
        RestErpSettings(list_path="/vouchers?day={day}")
    with pytest.raises(ValueError, match="batch_lookup_path"):
        RestErpSettings(batch_lookup_path="/vouchers?refs=all")


def test_credit_notes_stay_numbers_in_csv_exports() -> None:
    """A reversal (a credit note) is negative: the CSV cell is the number -1280.00, not the text
    '-1280.00 that the formula guard makes of a string starting with a minus."""
    credit = Difference("amount_mismatch", "C9-RED-1", "CC-1", -128000, -127900, "CN-1", "x")
    result = Reconciliation(DAY, DAY, "cost_centre", differences=[credit])
    (row,) = _cells(export.reconciliation_csv(result))[1:]
    assert row[4:6] == ["-1280.00", "-1279.00"]
    rows = export.report_csv(Report(DAY, DAY, "employee", [
        ReportRow("E1", "CNY", 1, 1, 0, -128000, -10547, None)]))  # fmt: skip
    assert _cells(rows)[1][5:7] == ["-1280.00", "-105.47"]
    assert export.safe_cell("-1280.00") == "'-1280.00"  # text from upstream is still guarded


def test_budget_vs_actual_counts_what_the_erp_booked_in_the_period() -> None:
    from books.budget_report import BudgetLine, budget_vs_actual

    november = BudgetLine("cc-2", DAY.replace(day=1), DAY.replace(day=30), EVIL, "CNY", 10_000,
                          6_000, 500, ("C9",), "hold", 3)  # fmt: skip
    gone = BudgetLine("CC-1", DAY.replace(day=1), None, "", "CNY", None, 0, 0, (), "warn")
    rows = budget_vs_actual(_store(), [november, gone])
    # CC-2 in November: P2 and P4 booked (P1 is December's, P5 was refused)
    assert [(r.postings, r.booked_minor) for r in rows] == [(2, 6000), (1, 3000)]  # P6: no answer
    assert (rows[0].available_minor, rows[0].used_pct) == (3500, 65.0)
    assert (rows[1].available_minor, rows[1].used_pct) == (None, None)
    cells = _cells(export.budget_csv(rows))
    assert cells[0][:8] == ["cost_centre", "period_start", "period_end", "name", "currency",
                            "policy", "budget", "booked"]  # fmt: skip
    assert cells[1][3] == "'" + EVIL and cells[1][6:8] == ["100.00", "60.00"]
    page = export.budget_html(rows, "2026-12-07T10:00:00+00:00")
    assert 'aria-label="Budget vs actual by cost centre (CNY)"' in page
    assert page.count('data-series="booked"') == 2 and "65.0 %" in page
    assert "<td>" + EVIL not in page  # escaped
