"""Passenger tickets end to end in pure code: the contract, the sources' model and XML reader, the
invoice side's facts, and the posting's input VAT (to the fen) with the traveller checked."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.sources.file_formats import einvoice_entries
from connectors.sources.models import InvoiceIn
from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer
from erpbridge.model import DEDUCTIBLE_INVOICE_TYPES
from erpbridge.reference import ReferenceData, code_key
from streams.input_vat import VatPolicy
from streams.invoice_checks import tax_problems, vat_facts
from streams.postings import PostingRules, build_posting
from tests.contract_samples import RAILWAY_TICKET, SAMPLES
from tests.fakes.registry import MemoryRegistry

COMPANY = SAMPLES["invoice"]["buyer_tax_id"]
RAIL, AIR = "26312000000123456789", "26312000000987654321"


def test_a_ticket_round_trips_in_v3_and_a_v2_reader_sees_other() -> None:
    registry = MemoryRegistry()
    data = AvroSerializer(registry, "invoice-value", contract("invoice").latest)(RAILWAY_TICKET)  # type: ignore[arg-type]
    assert AvroDeserializer(registry, contract("invoice").latest)(data) == RAILWAY_TICKET  # type: ignore[arg-type]
    old = AvroDeserializer(registry, contract("invoice").version(2))(data)  # type: ignore[arg-type]
    assert old["invoice_type"] == "OTHER"  # the enum's default: v2 readers keep working
    assert "passenger" not in old


def _ticket_json(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "invoice_type": "电子发票（航空运输电子客票行程单）", "invoice_number": AIR,
        "issue_date": "2026-11-03", "seller_name": "中国东方航空股份有限公司",
        "seller_tax_id": "91310000132211111P", "buyer_name": "ERPBridge Demo Co., Ltd.",
        "amount_net": "1339.36", "tax_amount": "110.64", "total": "1450.00",
        "passenger": {"traveller_name": "李娜", "traveller_id_masked": "3101**********567x",
                      "travel_date": "2026-11-03", "departure": "上海虹桥",
                      "destination": "北京首都",
                      "carrier_number": "MU5101", "fare": "1340.00", "fuel_surcharge": "60.00",
                      "development_fund": "50.00"},
    }  # fmt: skip
    return {**body, **changes}


def test_the_source_model_reads_an_air_itinerary_and_its_passenger_block() -> None:
    invoice = InvoiceIn.model_validate(_ticket_json())
    assert invoice.invoice_type == "AIR_ITINERARY"
    assert invoice.passenger is not None
    assert invoice.passenger.traveller_id_masked == "3101**********567X"
    record = invoice.to_record("e-invoice", {})
    assert record["passenger"]["fare"] == Decimal("1340.00")


@pytest.mark.parametrize("changes, message", [
    ({"passenger": None}, "needs its passenger block"),
    ({"invoice_type": "数电普票"}, "has no passenger block"),
    ({"invoice_number": "12345678", "invoice_code": "3100000000"}, "has a 20-digit number"),
    ({"total": "1460.00", "amount_net": "1349.36"}, "add up to 1450.00, not total 1460.00"),
    ({"passenger": {"traveller_name": "李娜", "traveller_id_masked": "310101199001015678",
                    "fare": "1450.00"}}, "full ID number is refused"),  # fmt: skip
    ({"invoice_type": "铁路电子客票"}, "has no fuel surcharge"),
])  # fmt: skip
def test_an_inconsistent_ticket_is_refused_with_the_reason(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InvoiceIn.model_validate(_ticket_json(**changes))


def test_the_xml_reader_reads_the_passenger_block(tmp_path: Path) -> None:
    path = tmp_path / "tickets.xml"
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<EInvoices><EInvoice><EInvoiceData>
  <SellerInformation><SellerIdNum>91310000132211111P</SellerIdNum><SellerName>中国铁路上海局集团有限公司</SellerName></SellerInformation>
  <BuyerInformation><BuyerName>ERPBridge Demo Co., Ltd.</BuyerName></BuyerInformation>
  <BasicInformation><InvoiceType>电子发票（铁路电子客票）</InvoiceType>
    <TotalAmWithoutTax>507.34</TotalAmWithoutTax><TotalTaxAm>45.66</TotalTaxAm>
    <TotalTax-includedAmount>553.00</TotalTax-includedAmount></BasicInformation>
  <PassengerTransportInformation><TravellerName>张伟</TravellerName>
    <TravellerIdNum>3101**********1234</TravellerIdNum><TravelDate>2026-11-02</TravelDate>
    <DeparturePlace>上海虹桥</DeparturePlace><DestinationPlace>北京南</DestinationPlace>
    <CarrierNumber>G2</CarrierNumber><SeatClass>二等座</SeatClass><Fare>553.00</Fare>
  </PassengerTransportInformation>
</EInvoiceData><TaxSupervisionInfo><InvoiceNumber>{RAIL}</InvoiceNumber>
<IssueTime>2026-11-02 08:00:00</IssueTime></TaxSupervisionInfo></EInvoice></EInvoices>
""", encoding="utf-8")  # fmt: skip
    (entry,) = einvoice_entries(path)
    invoice = InvoiceIn.model_validate(entry.payload)
    assert invoice.invoice_type == "RAILWAY_TICKET"
    assert invoice.passenger is not None
    assert (invoice.passenger.traveller_name, invoice.passenger.departure,
            invoice.passenger.destination, invoice.passenger.carrier_number,
            invoice.passenger.travel_date) == ("张伟", "上海虹桥", "北京南", "G2",
                                               datetime.date(2026, 11, 2))  # fmt: skip


def _air_record(traveller: str = "李娜", stated: str | None = None) -> dict:
    model = InvoiceIn.model_validate(
        _ticket_json(
            passenger={
                **_ticket_json()["passenger"],
                "traveller_name": traveller,
                "stated_vat": stated,
            }
        )
    )  # type: ignore[dict-item]
    return model.to_record("e-invoice", {})


def _claim(amounts: dict[str, str]) -> dict:
    claim = dict(SAMPLES["expense_claim"])
    line = claim["lines"][0]
    claim["lines"] = [dict(line, line_no=n, amount=Decimal(amount), invoice_refs=[ref])
                      for n, (ref, amount) in enumerate(amounts.items(), 1)]  # fmt: skip
    return claim


def _reference() -> ReferenceData:
    data = ReferenceData()
    data.apply(code_key("employee", SAMPLES["expense_claim"]["employee"]["id"]),
               {"party": "E1001", "name": "张伟", "id_masked": "3101**********1234"})  # fmt: skip
    data.apply(code_key("department", "销售部"), {"erp_code": "SALES-EAST"})
    data.apply(code_key("cost_centre", "CC-100"), {"erp_code": "CC-SH-01"})
    data.apply(code_key("employee", "E1002"),
               {"party": "E1002", "name": "李 娜", "id_masked": "3101**********567X"})  # fmt: skip
    return data


RULES = PostingRules(
    "CNY",
    "5.2.2",
    {},
    require_employee_mapping=False,
    vat=VatPolicy(frozenset(DEDUCTIBLE_INVOICE_TYPES), frozenset({COMPANY})),
)


def test_a_claim_with_a_railway_ticket_and_a_colleagues_air_itinerary_deducts_both() -> None:
    rail, air = dict(RAILWAY_TICKET, lines=[]), _air_record()
    assert tax_problems(rail) == [] and tax_problems(air) == []
    facts = {RAIL: vat_facts(rail), AIR: vat_facts(air)}
    posting = build_posting(_claim({RAIL: "553.00", AIR: "1450.00"}), RULES, _reference(), facts)
    rail_vat, air_vat = (line["input_vat"] for line in posting["lines"])
    # 553.00 / 1.09 x 0.09 = 45.66; (1340.00 + 60.00) / 1.09 x 0.09 = 115.60, the fund left out
    assert rail_vat == [{"invoice_ref": RAIL, "tax_rate": Decimal("0.0900"), "base_minor": 50734,
                         "tax_minor": 4566}]  # fmt: skip
    assert air_vat == [{"invoice_ref": AIR, "tax_rate": Decimal("0.0900"), "base_minor": 128440,
                        "tax_minor": 11560}]  # fmt: skip
    assert posting["tax_minor"] == 4566 + 11560
    assert posting["vat_notes"] == []


def test_the_vat_an_itinerary_states_is_deducted_as_stated() -> None:
    facts = {AIR: vat_facts(_air_record(stated="115.59"))}
    posting = build_posting(_claim({AIR: "1450.00"}), RULES, _reference(), facts)
    assert posting["lines"][0]["input_vat"][0]["tax_minor"] == 11559


def test_a_ticket_of_someone_outside_the_company_deducts_nothing_and_says_why() -> None:
    facts = {AIR: vat_facts(_air_record(traveller="王五"))}
    posting = build_posting(_claim({AIR: "1450.00"}), RULES, _reference(), facts)
    assert posting["lines"][0]["input_vat"] == [] and posting["tax_minor"] == 0
    assert posting["vat_notes"] == [f"invoice {AIR}: input VAT not deducted: the traveller 王五 "
                                    "is not an employee of the company"]  # fmt: skip


def test_the_claimant_is_an_employee_even_when_the_list_does_not_name_them() -> None:
    facts = {RAIL: vat_facts(dict(RAILWAY_TICKET, lines=[]))}
    reference = ReferenceData()
    reference.apply(code_key("department", "销售部"), {"erp_code": "SALES-EAST"})
    reference.apply(code_key("cost_centre", "CC-100"), {"erp_code": "CC-SH-01"})
    posting = build_posting(_claim({RAIL: "553.00"}), RULES, reference, facts)
    assert posting["tax_minor"] == 4566  # 张伟 claims his own ticket


def test_a_namesake_with_another_id_number_is_not_the_employee() -> None:
    ticket = dict(RAILWAY_TICKET, lines=[], passenger=dict(RAILWAY_TICKET["passenger"],
                  traveller_name="李娜", traveller_id_masked="4401**********0001"))  # fmt: skip
    posting = build_posting(_claim({RAIL: "553.00"}), RULES, _reference(),
                            {RAIL: vat_facts(ticket)})  # fmt: skip
    assert posting["tax_minor"] == 0
    (note,) = posting["vat_notes"]
    assert note.endswith("the traveller's ID number 4401**********0001 does not match that of "
                         "the employee 李娜 (a namesake is not the employee)")  # fmt: skip
    assert "is not an employee" not in note  # 李娜 is one
