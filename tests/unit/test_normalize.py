import datetime

import pytest

from streams.normalize import ClaimInvalid, normalize_claim, parse_amount, parse_date

VALID = {
    "claim_id": " EXP-1 ",
    "employee_id": "e1001",
    "employee_name": " 张  伟 ",
    "expense_date": "2026-11-03",
    "category": "Travel",
    "description": " 高铁 ",
    "amount": "1,234.50",
    "currency": "cny",
    "source_system": "hr",
}


def test_a_valid_claim_is_normalized() -> None:
    claim = normalize_claim(VALID)
    assert claim.claim_id == "EXP-1"
    assert claim.employee_id == "E1001"
    assert claim.employee_name == "张 伟"
    assert claim.category == "travel"
    assert claim.amount_minor == 123450
    assert str(claim.amount) == "1234.50"
    assert claim.currency == "CNY"
    assert claim.expense_date == datetime.date(2026, 11, 3)


@pytest.mark.parametrize(
    "text, currency, minor",
    [
        ("553", "CNY", 55300),
        ("１２３.４５", "CNY", 12345),
        ("¥88.8", "CNY", 8880),
        ("1,000,000.01", "CNY", 100000001),
        ("1500", "JPY", 1500),
        (" 0.01 ", "USD", 1),
    ],
)
def test_amounts_become_exact_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    "text, message",
    [
        ("abc", "not a number"),
        ("-5", "must be positive"),
        ("0", "must be positive"),
        ("1.234", "more than 2 decimals"),
        ("NaN", "not a finite number"),
    ],
)
def test_bad_amounts_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_amount(text, "CNY")


def test_yen_refuses_decimals() -> None:
    with pytest.raises(ValueError, match="more than 0 decimals for JPY"):
        parse_amount("100.5", "JPY")


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
    with pytest.raises(ClaimInvalid) as caught:
        normalize_claim(
            {"claim_id": "X", "amount": "12.345", "currency": "XXX", "expense_date": "tomorrow"}
        )
    assert caught.value.problems == [
        "employee_id: required",
        "employee_name: required",
        "currency: unknown currency 'XXX'",
        "expense_date: unrecognised date 'tomorrow' (expected e.g. 2026-11-03 or 2026年11月3日)",
    ]


def test_round_trip_through_the_record_form() -> None:
    from erpbridge.model import NormalizedClaim

    claim = normalize_claim(VALID)
    assert NormalizedClaim.from_record(claim.to_record()) == claim
