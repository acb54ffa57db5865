"""Deductible input VAT: which invoices' VAT is booked apart from the expense, and how much."""

import datetime
from decimal import Decimal

import pytest

from erpbridge.config import Settings
from erpbridge.model import Posting
from erpbridge.reference import ReferenceData, code_key, input_vat_key
from streams.input_vat import (
    NO_COMPANY_TAX_ID,
    ClaimedLine,
    VatPolicy,
    allocate,
    not_deductible,
)
from streams.invoice_checks import vat_facts
from streams.postings import PostingRefused, PostingRules, build_posting
from tests.contract_samples import SAMPLES

COMPANY = "91110108MA01ABCDEN"
POLICY = VatPolicy(frozenset({"VAT_SPECIAL", "DIGITAL_SPECIAL"}), frozenset({COMPANY}))
HOTEL = "24442000000012345678"


def _facts(kind: str = "DIGITAL_SPECIAL", buyer: str | None = COMPANY, total: str = "1280.00",
           taxes: tuple = (("0.0600", "1207.55", "72.45"),)) -> dict:  # fmt: skip
    return {"type": kind, "buyer_tax_id": buyer, "total": total,
            "taxes": [{"rate": r, "base": b, "tax": t} for r, b, t in taxes]}  # fmt: skip


def test_facts_sum_net_and_tax_per_rate_from_the_lines_or_the_header() -> None:
    line = SAMPLES["invoice"]["lines"][0]
    invoice = dict(SAMPLES["invoice"], invoice_type="VAT_SPECIAL", amount_net=Decimal("607.34"),
                   tax_amount=Decimal("51.66"), total=Decimal("659.00"), tax_rate=None,
                   lines=[line, dict(line, amount_net=Decimal("100.00"), tax_rate=Decimal("0.06"),
                                     tax_amount=Decimal("6.00"))])  # fmt: skip
    assert vat_facts(invoice)["taxes"] == [
        {"rate": "0.0900", "base": "507.34", "tax": "45.66"},
        {"rate": "0.0600", "base": "100.00", "tax": "6.00"},
    ]
    header_only = dict(invoice, lines=[], tax_rate=None)
    assert vat_facts(header_only)["taxes"] == [{"rate": None, "base": "607.34", "tax": "51.66"}]


def test_only_special_invoices_to_the_company_are_deductible() -> None:
    assert not_deductible(_facts(), POLICY) is None
    assert not_deductible(_facts("VAT_SPECIAL"), POLICY) is None
    assert not_deductible(_facts("DIGITAL_GENERAL"), POLICY) == (
        "a DIGITAL_GENERAL invoice is not deductible")  # fmt: skip
    assert not_deductible(_facts(buyer="91310000132211111P"), POLICY) == (
        f"issued to 91310000132211111P, not to the company ({COMPANY})")  # fmt: skip
    assert not_deductible(_facts(total="-1280.00"), POLICY) == "a red-letter (negative) invoice"


def test_without_a_company_tax_id_nothing_deducts_and_the_reason_says_why() -> None:
    """No company taxpayer id known: the buyer cannot be checked, so a 专票 to anyone (or a
    ticket) deducts nothing, rather than any buyer's VAT being booked as ours."""
    unchecked = VatPolicy(POLICY.deductible_types, frozenset())
    for facts in (_facts(), _facts(buyer="91310000132211111P"), _facts(buyer=None)):
        assert not_deductible(facts, unchecked) == NO_COMPANY_TAX_ID
    ticket = dict(_facts("RAILWAY_TICKET", buyer=None), traveller={"name": "张伟"})
    tickets = VatPolicy(frozenset({"RAILWAY_TICKET"}), frozenset())
    assert not_deductible(ticket, tickets, lambda *_: True) == NO_COMPANY_TAX_ID
    assert not_deductible(ticket, tickets.with_tax_ids(frozenset({COMPANY})),
                          lambda *_: True) is None  # fmt: skip
    to_another = dict(ticket, buyer_tax_id="91310000132211111P")
    assert "not to the company" in (not_deductible(
        to_another, tickets.with_tax_ids(frozenset({COMPANY})), lambda *_: True) or "")  # fmt: skip


def test_the_company_tax_ids_come_from_the_settings_and_the_reference_data() -> None:
    """A 专票 to the second company of the group deducts once the master data names it; until
    then the posting says why it did not."""
    other = "91310000132211111P"
    claim = dict(SAMPLES["expense_claim"], employee={"id": "E1001", "name": "张伟"})
    claim["lines"] = [dict(claim["lines"][0], category="lodging", amount=Decimal("1280.0000"),
                           expense_date=datetime.date(2026, 11, 5),
                           invoice_refs=[HOTEL])]  # fmt: skip
    rules = PostingRules("CNY", "5.2.2", {}, require_employee_mapping=False, vat=POLICY)
    reference = ReferenceData()
    invoices = {HOTEL: _facts(buyer=other)}
    before = build_posting(claim, rules, reference, invoices)
    assert before["tax_minor"] == 0 and "not to the company" in before["vat_notes"][0]
    reference.apply(code_key("company", other), {"name": "Group Co. Shanghai"})
    assert not reference.is_employee("Group Co. Shanghai", None)  # a company is no traveller
    after = build_posting(claim, rules, reference, invoices)
    assert after["tax_minor"] == 7245 and after["vat_notes"] == []
    reference.apply(code_key("company", other), None)  # a tombstone takes it away again
    assert reference.company_tax_ids() == frozenset()
    assert build_posting(claim, rules, reference, invoices)["tax_minor"] == 0
    assert Settings(company_tax_ids=(other,), company_tax_id=COMPANY).all_company_tax_ids() == {
        other, COMPANY}  # fmt: skip


def test_an_invoice_claimed_in_full_yields_exactly_its_tax_and_a_part_its_share() -> None:
    invoices = {HOTEL: _facts()}
    (full,) = allocate([ClaimedLine("CNY", 128000, [HOTEL])], invoices, POLICY, "CNY")
    assert full == [{"invoice_ref": HOTEL, "tax_rate": Decimal("0.0600"), "base_minor": 120755,
                     "tax_minor": 7245}]  # fmt: skip
    # a company policy caps the hotel at 1,000: the claim covers 1000/1280 of the invoice
    (part,) = allocate([ClaimedLine("CNY", 100000, [HOTEL])], invoices, POLICY, "CNY")
    assert [(v["base_minor"], v["tax_minor"]) for v in part] == [(94340, 5660)]
    # two lines citing one invoice split it; together they take exactly its tax, not twice
    halves = [ClaimedLine("CNY", 80000, [HOTEL]), ClaimedLine("CNY", 80000, [HOTEL])]
    first, second = allocate(halves, invoices, POLICY, "CNY")
    assert sum(v["tax_minor"] for v in first + second) == 7245
    assert sum(v["base_minor"] for v in first + second) == 120755
    assert second[0]["tax_minor"] == 7245 - first[0]["tax_minor"]


def test_no_deduction_for_general_invoices_foreign_lines_or_a_foreign_company_currency() -> None:
    general = {HOTEL: _facts("VAT_GENERAL")}
    assert allocate([ClaimedLine("CNY", 128000, [HOTEL])], general, POLICY, "CNY") == [[]]
    special = {HOTEL: _facts()}
    assert allocate([ClaimedLine("USD", 128000, [HOTEL])], special, POLICY, "CNY") == [[]]
    assert allocate([ClaimedLine("CNY", 128000, [HOTEL])], special, POLICY, "HKD") == [[]]
    assert allocate([ClaimedLine("CNY", 128000, ["other"])], special, POLICY, "CNY") == [[]]


def _lodging(amount: str) -> tuple[dict, ReferenceData, PostingRules]:
    """A lodging claim of ``amount`` citing HOTEL, its employee mapped, and the VAT policy."""
    reference = ReferenceData()
    reference.apply(code_key("employee", "E1001"), {"party": "P-1001"})
    claim = dict(SAMPLES["expense_claim"], employee={"id": "E1001", "name": "张伟"})
    claim["lines"] = [dict(claim["lines"][0], category="lodging", amount=Decimal(amount),
                           expense_date=datetime.date(2026, 11, 5),
                           invoice_refs=[HOTEL])]  # fmt: skip
    return claim, reference, PostingRules("CNY", "5.2.2", {}, vat=POLICY)


def test_a_posting_carries_the_input_vat_inside_its_amounts() -> None:
    claim, reference, rules = _lodging("1280.0000")
    posting = build_posting(claim, rules, reference, {HOTEL: _facts()})
    assert posting["total_minor"] == 128000 and posting["tax_minor"] == 7245
    typed = Posting.from_record(posting)
    assert typed.tax_minor == 7245 and typed.lines[0].net_minor == 120755
    # without the invoice's facts (or with a general invoice) the VAT stays in the expense
    assert build_posting(claim, rules, reference)["tax_minor"] == 0


def test_deductible_vat_at_a_rate_the_erp_has_no_tax_for_is_refused_once_its_taxes_are_known(
) -> None:  # fmt: skip
    claim, reference, rules = _lodging("1015.0000")
    rented = {HOTEL: _facts(total="1015.00", taxes=(("0.0150", "1000.00", "15.00"),))}
    assert build_posting(claim, rules, reference, rented)["tax_minor"] == 1500  # none known
    for rate in ("0.13", "0.09", "0.06"):
        reference.apply(input_vat_key(Decimal(rate)), {"tax": f"Input VAT {rate}"})
    with pytest.raises(PostingRefused) as refused:
        build_posting(claim, rules, reference, rented)
    assert refused.value.reason == "no_input_vat_tax"
    assert refused.value.problems == [
        f"lines[1].input_vat: invoice {HOTEL} deducts VAT at 1.5%, and the ERP has no input VAT "
        "tax at that rate (it has 6%, 9%, 13%): add one in the ERP and sync its master data "
        "(erpbridge source masterdata), then replay the claim"]  # fmt: skip
    reference.apply("input_vat:0.015", {"tax": "Input VAT 1.5%"})  # "0.0150" is the same rate
    assert build_posting(claim, rules, reference, rented)["tax_minor"] == 1500
    # a general invoice deducts nothing: nothing to check
    general = {
        HOTEL: _facts("VAT_GENERAL", total="1015.00", taxes=(("0.0500", "966.67", "48.33"),))
    }
    assert build_posting(claim, rules, reference, general)["tax_minor"] == 0
