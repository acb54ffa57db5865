import datetime
from decimal import Decimal

import pytest

from erpbridge.model import Posting
from streams.postings import PostingRefused, PostingRules, build_posting
from tests.contract_samples import SAMPLES

RULES = PostingRules("CNY", "5.2.2", {"meals": "5.1.3"})


def _claim(**line_changes: object) -> dict:
    claim = dict(SAMPLES["expense_claim"])
    claim["lines"] = [dict(claim["lines"][0], **line_changes)]
    return claim


def test_a_claim_becomes_a_posting_in_minor_units_on_mapped_accounts() -> None:
    claim = _claim()
    claim["lines"].append(
        dict(
            claim["lines"][0],
            line_no=2,
            category="Meals",
            amount=Decimal("86.0500"),
            expense_date=datetime.date(2026, 11, 5),
        )
    )
    posting = build_posting(claim, RULES)
    assert posting["posting_id"] == posting["claim_id"] == "EXP-2026-0001"
    assert [line["account_code"] for line in posting["lines"]] == ["5.2.2", "5.1.3"]
    assert [line["amount_minor"] for line in posting["lines"]] == [55300, 8605]
    assert posting["total_minor"] == 63905
    assert posting["posting_date"] == datetime.date(2026, 11, 5)
    typed = Posting.from_record(posting)
    assert typed.amount(typed.lines[1]) == Decimal("86.05")


def test_a_foreign_currency_without_a_rate_is_refused_with_the_reason() -> None:
    with pytest.raises(PostingRefused) as caught:
        build_posting(_claim(currency="USD", amount=Decimal("12.0000")), RULES)
    assert caught.value.reason == "no_exchange_rate"
    assert caught.value.problems == [
        "lines[1].currency: USD needs an exchange rate to CNY; none is configured"
    ]


def test_an_amount_finer_than_fen_is_refused() -> None:
    with pytest.raises(PostingRefused, match="finer than CNY minor units"):
        build_posting(_claim(amount=Decimal("1.2345")), RULES)
