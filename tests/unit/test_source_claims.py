import datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from connectors.sources.fields import parse_amount, parse_date, to_minor_units
from connectors.sources.file_formats import claim_payload
from connectors.sources.kinds import KINDS
from connectors.sources.models import problems_of

ROW = {"claim_id": " EXP-1 ", "employee_id": "e1001", "employee_name": " 张  伟 ",
       "expense_date": "2026-11-03", "category": "Travel", "description": " 高铁 ",
       "amount": "1,234.50", "currency": "rmb", "invoice_refs": "2631 2632"}  # fmt: skip


def _claim(row: dict, origin: dict | None = None) -> dict:
    return KINDS["claims"].validate(claim_payload(row)).to_record("hr", origin or {})


def _problems(row: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        KINDS["claims"].validate(claim_payload(row))
    return [f"{p['field']}: {p['message']}" for p in problems_of(caught.value)]


def test_a_valid_row_becomes_an_expense_claim() -> None:
    claim = _claim(ROW, {"file": "a.csv", "line": "2"})
    assert claim["claim_id"] == "EXP-1"
    assert claim["employee"] == {
        "id": "E1001",
        "name": "张 伟",
        "department": None,
        "cost_centre": None,
    }
    (line,) = claim["lines"]
    assert line["amount"] == Decimal("1234.5000") and line["currency"] == "CNY"
    assert line["category"] == "travel" and line["description"] == "高铁"
    assert line["expense_date"] == datetime.date(2026, 11, 3)
    assert line["invoice_refs"] == ["2631", "2632"]
    assert claim["origin"] == {"file": "a.csv", "line": "2"}


def test_the_event_id_is_stable_for_the_same_content_and_changes_with_it() -> None:
    first = _claim(ROW)["event_id"]
    assert _claim(ROW, {"line": "9"})["event_id"] == first
    assert _claim({**ROW, "amount": "1234.51"})["event_id"] != first


@pytest.mark.parametrize("text, amount", [
    ("553", "553"), ("１２３.４５", "123.45"), ("¥88.8", "88.8"), ("1,000,000.01", "1000000.01"),
    (" 0.0001 ", "0.0001"),
])  # fmt: skip
def test_amounts_are_exact_decimals(text: str, amount: str) -> None:
    assert parse_amount(text) == Decimal(amount)


@pytest.mark.parametrize("text, message", [
    ("abc", "not a number"), ("-5", "must be positive"), ("0", "must be positive"),
    ("1.23456", "more than 4 decimals"), ("NaN", "not a finite number"),
    ("1e20", "too large"),
])  # fmt: skip
def test_bad_amounts_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_amount(text)


def test_minor_units_respect_the_currency() -> None:
    assert to_minor_units(Decimal("1234.50"), "CNY") == 123450
    assert to_minor_units(Decimal("1500"), "JPY") == 1500
    with pytest.raises(ValueError, match="more than 0 decimals for JPY"):
        to_minor_units(Decimal("100.5"), "JPY")


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-03",
        "2026/11/3",
        "2026.11.03",
        "2026年11月3日",
        "2026年11月03",
        "20261103",
        "２０２６-１１-０３",
    ],
)
def test_chinese_and_iso_dates(text: str) -> None:
    assert parse_date(text) == datetime.date(2026, 11, 3)


def test_impossible_date_is_refused() -> None:
    with pytest.raises(ValueError, match="no such date"):
        parse_date("2026-02-30")


def test_every_problem_is_reported_at_once() -> None:
    assert _problems({"claim_id": "X", "amount": "12.345", "currency": "CNY",
                      "expense_date": "tomorrow"}) == [
        "employee_id: Field required", "employee_name: Field required",
        "lines[0].expense_date: unrecognised date 'tomorrow' (expected e.g. 2026-11-03 or "
        "2026年11月3日)",
    ]  # fmt: skip
    assert _problems({**ROW, "amount": "12.345"}) == [
        "lines[0]: 12.345 has more than 2 decimals for CNY"
    ]


def test_unknown_currency_is_refused() -> None:
    assert _problems({**ROW, "currency": "XXX"}) == ["lines[0].currency: unknown currency 'XXX'"]
