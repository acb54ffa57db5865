import datetime
from decimal import Decimal

import pytest

from erpbridge.model import Posting
from erpbridge.reference import BadReferenceEntry, ReferenceData, code_key, rate_key
from streams.postings import PostingRefused, PostingRules, build_posting
from tests.contract_samples import SAMPLES

RULES = PostingRules("CNY", "5.2.2", {"meals": "5.1.3"})


def _reference() -> ReferenceData:
    data = ReferenceData(rate_max_age_days=3)
    data.apply(code_key("employee", "E1001"), {"party": "P-1001", "cost_centre": "CC-100"})
    data.apply(code_key("department", "销售部"), {"erp_code": "SALES-EAST"})
    data.apply(code_key("cost_centre", "CC-100"), {"erp_code": "CC-SH-01"})
    data.apply(rate_key("USD", datetime.date(2026, 11, 6)), {"rate": "7.1187"})
    return data


def _claim(**line_changes: object) -> dict:
    claim = dict(SAMPLES["expense_claim"])
    claim["lines"] = [dict(claim["lines"][0], **line_changes)]
    return claim


def test_a_claim_becomes_a_posting_in_minor_units_on_mapped_accounts_and_codes() -> None:
    claim = _claim()
    claim["lines"].append(
        dict(
            claim["lines"][0],
            line_no=2,
            category="Meals",
            amount=Decimal("86.0500"),
            expense_date=datetime.date(2026, 11, 5),
        )  # fmt: skip
    )
    posting = build_posting(claim, RULES, _reference())
    assert posting["posting_id"] == posting["claim_id"] == "EXP-2026-0001"
    assert (posting["employee_id"], posting["department"], posting["cost_centre"]) == (
        "P-1001", "SALES-EAST", "CC-SH-01")  # fmt: skip
    assert [line["account_code"] for line in posting["lines"]] == ["5.2.2", "5.1.3"]
    assert [line["amount_minor"] for line in posting["lines"]] == [55300, 8605]
    assert posting["total_minor"] == 63905
    assert posting["posting_date"] == datetime.date(2026, 11, 5)
    typed = Posting.from_record(posting)
    assert typed.amount(typed.lines[1]) == Decimal("86.05")


def test_a_foreign_amount_is_converted_at_the_expense_dates_rate_or_the_last_before_it() -> None:
    posting = build_posting(
        _claim(currency="USD", amount=Decimal("12.3400"), expense_date=datetime.date(2026, 11, 8)),
        RULES, _reference())  # fmt: skip
    line = posting["lines"][0]
    # 12.34 x 7.1187 = 87.844758 -> 87.84 CNY; the 8th (a Sunday) uses the 6th's fixing
    assert line["amount_minor"] == 8784
    assert line["exchange_rate"] == Decimal("7.11870000")
    assert line["rate_date"] == datetime.date(2026, 11, 6)
    assert line["original_amount"] == Decimal("12.3400") and line["original_currency"] == "USD"


def test_a_foreign_currency_without_a_recent_rate_is_refused_with_the_reason() -> None:
    with pytest.raises(PostingRefused) as caught:
        build_posting(_claim(currency="USD", amount=Decimal("12.0000"),
                             expense_date=datetime.date(2026, 11, 10)), RULES,
                      _reference())  # fmt: skip
    assert caught.value.reason == "no_exchange_rate"
    assert caught.value.problems == [
        "lines[1].currency: no USD to CNY rate on 2026-11-10 or the 3 days before"
    ]


def test_unknown_codes_are_refused_each_named() -> None:
    claim = _claim()
    claim["employee"] = dict(claim["employee"], id="E9999", department="研发部")
    with pytest.raises(PostingRefused) as caught:
        build_posting(claim, RULES, _reference())
    assert caught.value.reason == "unknown_employee"
    assert caught.value.problems == [
        "employee.id: E9999 is not in the employee mapping",
        "employee.department: 研发部 is not in the department mapping",
    ]


def test_without_required_mapping_an_unmapped_employee_books_under_its_own_code() -> None:
    lenient = PostingRules("CNY", "5.2.2", {}, require_employee_mapping=False)
    claim = _claim()
    claim["employee"] = dict(claim["employee"], id="e2002", department=None, cost_centre=None)
    posting = build_posting(claim, lenient, ReferenceData())
    assert (posting["employee_id"], posting["department"], posting["cost_centre"]) == (
        "E2002", None, None)  # fmt: skip


def test_an_amount_finer_than_fen_is_refused() -> None:
    with pytest.raises(PostingRefused, match="finer than CNY minor units"):
        build_posting(_claim(amount=Decimal("1.2345")), RULES, _reference())


def test_an_employee_who_left_has_later_claims_refused_and_a_removed_one_is_named() -> None:
    submitted = SAMPLES["expense_claim"]["submitted_at"].date()
    reference = _reference()
    reference.apply(code_key("employee", "E1001"), {"party": "P-1001", "cost_centre": "CC-100",
                                                    "left_on": str(submitted)})  # fmt: skip
    build_posting(_claim(), RULES, reference)  # submitted on their last day: still theirs
    day_before = submitted - datetime.timedelta(days=1)
    reference.apply(code_key("employee", "E1001"), {"party": "P-1001", "cost_centre": "CC-100",
                                                    "left_on": str(day_before)})  # fmt: skip
    with pytest.raises(PostingRefused) as caught:
        build_posting(_claim(), RULES, reference)
    assert caught.value.reason == "employee_left"
    assert caught.value.problems == [f"employee.id: E1001 left on {day_before}, before this "
                                     f"claim was submitted ({submitted})"]  # fmt: skip
    reference.apply(code_key("employee", "E1001"), None)  # a tombstone: removed from the ERP
    with pytest.raises(PostingRefused) as caught:
        build_posting(_claim(), RULES, reference)
    assert caught.value.reason == "unknown_employee"
    assert caught.value.problems[0] == ("employee.id: E1001 is not in the employee mapping (it "
                                        "was removed from it)")  # fmt: skip


def test_a_left_on_that_is_no_date_is_a_bad_entry() -> None:
    from erpbridge.reference import BadReferenceEntry

    with pytest.raises(BadReferenceEntry):
        _reference().apply(code_key("employee", "E2"), {"party": "P-2", "left_on": "soon"})


def test_a_posting_names_its_department_and_cost_centre_as_the_erp_does() -> None:
    reference = _reference()
    assert build_posting(_claim(), RULES, reference)["department_name"] is None
    reference.apply(code_key("department", "销售部"), {"erp_code": "SALES-EAST", "name": "销售部"})
    reference.apply(code_key("cost_centre", "CC-100"), {"erp_code": "CC-SH-01", "name": "上海"})
    posting = build_posting(_claim(), RULES, reference)
    assert (posting["department_name"], posting["cost_centre_name"]) == ("销售部", "上海")
    # the ERP's own entry of its code (as erpbridge source masterdata lists it) wins
    reference.apply(code_key("department", "SALES-EAST"), {"erp_code": "SALES-EAST",
                                                           "name": "华东销售部"})  # fmt: skip
    posting = build_posting(_claim(), RULES, reference)
    assert (posting["department"], posting["department_name"]) == ("SALES-EAST", "华东销售部")


def test_a_cost_centres_budget_is_found_by_the_day_it_holds() -> None:
    from erpbridge.reference import BadReferenceEntry, budget_key

    reference = _reference()
    start = datetime.date(2026, 1, 1)
    reference.apply(budget_key("CC-SH-01", start), {"amount": "50000.00", "end": "2026-12-31"})
    found = reference.budget("cc-sh-01", datetime.date(2026, 12, 31))
    assert found is not None and found.amount == Decimal("50000.00")
    assert reference.budget("CC-SH-01", datetime.date(2027, 1, 1)) is None
    assert reference.sizes()["budget"] == 1
    with pytest.raises(BadReferenceEntry):
        reference.apply(budget_key("CC-SH-01", start), {"amount": "-1", "end": "2026-12-31"})
    reference.apply(budget_key("CC-SH-01", start), None)
    assert reference.budget("CC-SH-01", datetime.date(2026, 6, 1)) is None


def test_a_categorys_account_comes_from_the_reference_data_before_the_settings_and_the_default(
) -> None:  # fmt: skip
    reference = _reference()
    meals = _claim(category="Meals")
    assert build_posting(meals, RULES, reference)["lines"][0]["account_code"] == "5.1.3"
    reference.apply(code_key("category", "MEALS"), {"account": "6.6.1", "name": "业务招待费"})
    reference.apply(code_key("category", "TRAVEL"), {"account": "6.6.2", "name": "差旅费"})
    assert build_posting(meals, RULES, reference)["lines"][0]["account_code"] == "6.6.1"
    travel = build_posting(_claim(category=" travel "), RULES, reference)
    assert travel["lines"][0]["account_code"] == "6.6.2"
    reference.apply(code_key("category", "MEALS"), None)  # removed in the ERP: the setting again
    assert build_posting(meals, RULES, reference)["lines"][0]["account_code"] == "5.1.3"
    assert build_posting(_claim(category="taxi"), RULES, reference)["lines"][0][
        "account_code"] == "5.2.2"  # fmt: skip
    with pytest.raises(BadReferenceEntry):
        reference.apply(code_key("category", "GIFTS"), {"name": "礼品"})  # no account
