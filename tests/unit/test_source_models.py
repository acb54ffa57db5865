import datetime
import re
import time
import unicodedata

import pytest
from pydantic import ValidationError

from connectors.sources.kinds import KINDS
from connectors.sources.models import ApprovalIn, ClaimIn, InvoiceIn, problems_of
from connectors.sources.signatures import SignatureRefused, signed_headers, verify
from erpbridge.config import Settings
from erpbridge.model import valid_uscc

INVOICE = {"invoice_type": "专票", "invoice_code": "3100231130", "invoice_number": "12345678",
           "issue_date": "2026/11/02", "seller_name": "上海某某科技有限公司",
           "seller_tax_id": "91440300708461136T", "buyer_name": "ERPBridge Demo",
           "amount_net": "1,000.00", "tax_rate": "13%", "tax_amount": "130.00",
           "total": "1130.00", "check_code": "12345678901234567890"}  # fmt: skip


def _problems(model: type, payload: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return problems_of(caught.value)


@pytest.mark.parametrize(
    "code, ok",
    [
        ("914403001922038216", True),
        ("91440300708461136T", True),
        ("91440300708461136U", False),
        ("9144030070846113", False),
    ],
)
def test_unified_social_credit_code_check_character(code: str, ok: bool) -> None:
    assert valid_uscc(code) is ok


def test_a_paper_era_special_invoice_is_accepted() -> None:
    invoice = InvoiceIn.model_validate(INVOICE)
    assert invoice.invoice_type == "VAT_SPECIAL" and invoice.key == "3100231130-12345678"
    assert str(invoice.tax_rate) == "0.1300" and str(invoice.amount_net) == "1000.00"


def test_invoice_rules_say_what_is_wrong() -> None:
    assert _problems(InvoiceIn, {**INVOICE, "total": "1130.01"}) == [
        {"field": "body", "message": "amount_net 1000.00 + tax_amount 130.00 != total 1130.01"}
    ]
    assert _problems(InvoiceIn, {**INVOICE, "invoice_code": None})[0]["message"] == (
        "an 8-digit invoice number needs a 10 or 12-digit invoice_code"
    )
    bad = _problems(
        InvoiceIn, {**INVOICE, "seller_tax_id": "91440300708461136U", "invoice_number": "123"}
    )
    assert [p["field"] for p in bad] == ["invoice_number", "seller_tax_id"]


def test_approval_decisions_accept_chinese_and_naive_times_are_china_time() -> None:
    approval = ApprovalIn.model_validate(
        {
            "claim_id": "C1",
            "step": 1,
            "approver_id": "E7",
            "approver_name": "李娜",
            "decision": "驳回",
            "decided_at": "2026-11-05 10:00:00",
            "final": True,
        }
    )
    assert approval.decision == "REJECT"
    assert approval.decided_at == datetime.datetime(2026, 11, 5, 2, tzinfo=datetime.UTC)


def test_naive_times_are_read_in_the_sources_configured_zone_and_stored_as_utc() -> None:
    settings = Settings(source_time_zones={"concur-eu": "Europe/Berlin"})
    payload = {
        "claim_id": "C1",
        "step": 1,
        "approver_id": "E7",
        "approver_name": "Anna",
        "decision": "approve",
        "decided_at": "2026-11-05 10:00:00",
        "final": True,
    }
    berlin = KINDS["approvals"].validate(payload, settings.time_zone_for("concur-eu"))
    china = KINDS["approvals"].validate(payload, settings.time_zone_for("oa"))
    assert berlin.decided_at == datetime.datetime(2026, 11, 5, 9, tzinfo=datetime.UTC)
    assert china.decided_at == datetime.datetime(2026, 11, 5, 2, tzinfo=datetime.UTC)
    offset = KINDS["approvals"].validate({**payload, "decided_at": "2026-11-05T10:00:00+08:00"},
                                         settings.time_zone_for("concur-eu"))  # fmt: skip
    assert offset.decided_at == china.decided_at  # an explicit offset wins over the zone


def test_a_claim_needs_lines_that_fit_their_currency() -> None:
    assert (
        _problems(
            ClaimIn, {"claim_id": "C", "employee_id": "E", "employee_name": "N", "lines": []}
        )[0]["field"]
        == "lines"
    )
    problems = _problems(ClaimIn, {"claim_id": "C", "employee_id": "E", "employee_name": "N",
                                   "lines": [{"amount": "1.005", "currency": "CNY",
                                              "expense_date": "2026-11-02"}]})  # fmt: skip
    assert problems == [{"field": "lines[0]", "message": "1.005 has more than 2 decimals for CNY"}]


def test_signatures() -> None:
    body = b'{"claim_id": "C1"}'
    headers = signed_headers("oa", "secret", body)
    assert verify(headers, body, {"oa": "secret"}, 300) == "oa"
    for changed, code in [
        ((body + b" ", {"oa": "secret"}), "signature_invalid"),
        ((body, {"hr": "secret"}), "unknown_source"),
    ]:
        with pytest.raises(SignatureRefused) as caught:
            verify(headers, *changed, 300)
        assert caught.value.code == code
    old = signed_headers("oa", "secret", body, now=time.time() - 301)
    with pytest.raises(SignatureRefused, match="s away from now; at most 300s is accepted"):
        verify(old, body, {"oa": "secret"}, 300)


@pytest.mark.parametrize("claim_id", ["E10\u030101", "\u0301E1001", "E1001\u20dd", "E1\ufe0f001",
                                      "E1\u0903001"])  # fmt: skip
def test_an_id_with_a_combining_mark_is_refused_not_a_second_claim(claim_id: str) -> None:
    """A look-alike of E1001 with a combining (U+0301, U+20DD enclosing), variation-selector or
    spacing mark is refused by the model and by the OpenAPI document's pattern alike."""
    line = {"amount": "1.00", "currency": "CNY", "expense_date": "2026-11-02"}
    (problem,) = _problems(ClaimIn, {"claim_id": claim_id, "employee_id": "E",
                                     "employee_name": "N", "lines": [line]})  # fmt: skip
    assert problem["field"] == "claim_id" and "combining" in problem["message"]
    pattern = re.compile(ClaimIn.model_json_schema()["properties"]["claim_id"]["pattern"])
    assert pattern.match(claim_id) is None and pattern.match("E1001")


def test_an_id_is_composed_first_so_an_accent_written_apart_is_the_same_id() -> None:
    line = {"amount": "1.00", "currency": "CNY", "expense_date": "2026-11-02"}
    decomposed = ClaimIn.model_validate({"claim_id": "Jose\u0301-1", "employee_id": "E",
                                         "employee_name": "N", "lines": [line]})  # fmt: skip
    assert decomposed.claim_id == "Jos\u00e9-1" == unicodedata.normalize("NFC", "Jose\u0301-1")
