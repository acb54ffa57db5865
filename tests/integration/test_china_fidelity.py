"""China finance fidelity on the real stack (broker, registry, streams worker, Tryton sink, Tryton):
travel tickets' input VAT booked to the fen, originals archived and attached, a red-letter
invoice reversing a booked claim with a credit note, and one owner for an invoice two claims
cite, whatever order their events arrive in."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.erp.tryton import TrytonWriter
from connectors.sources.batch_file import import_file
from connectors.sources.reference_file import publish_reference
from erpbridge.archive import Archive
from erpbridge.config import Settings
from erpbridge.topic_reader import read_records
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import Worker, make_settings, publish, running_workers, wait_for

pytestmark = pytest.mark.integration
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
TODAY = datetime.date.today()
COMPANY = SAMPLES["invoice"]["buyer_tax_id"]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, schema_registry_url: str, redis_url: str, erp,
          tmp_path_factory) -> Iterator[tuple[Settings, list[Worker]]]:  # fmt: skip
    workdir = tmp_path_factory.mktemp("fidelity")
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, workdir,
                             company_tax_id=COMPANY, streams_tick_interval_s=2.0,
                             streams_redrive_after_s=5.0)  # fmt: skip
    with running_workers(settings, workdir, erp=erp.settings) as workers:
        yield settings, workers


@pytest.fixture
def tryton(erp) -> Iterator[Any]:
    writer = TrytonWriter.from_settings(erp.settings)
    yield writer._rpc
    writer.close()


def _number() -> str:
    return "2631" + str(uuid.uuid4().int)[:16]


def _einvoice(number: str, kind: str, body: str, net: str, tax: str, total: str,
              seller: str = "中国铁路上海局集团有限公司", extra: str = "",
              buyer: str = COMPANY) -> str:  # fmt: skip
    return f"""<EInvoice><EInvoiceData>
  <SellerInformation><SellerIdNum>91310000132211111P</SellerIdNum><SellerName>{seller}</SellerName></SellerInformation>
  <BuyerInformation><BuyerIdNum>{buyer}</BuyerIdNum><BuyerName>ERPBridge Demo Co., Ltd.</BuyerName></BuyerInformation>
  <BasicInformation><InvoiceType>{kind}</InvoiceType><TotalAmWithoutTax>{net}</TotalAmWithoutTax>
    <TotalTaxAm>{tax}</TotalTaxAm><TotalTax-includedAmount>{total}</TotalTax-includedAmount>{extra}</BasicInformation>
  {body}
</EInvoiceData><TaxSupervisionInfo><InvoiceNumber>{number}</InvoiceNumber>
<IssueTime>{TODAY.isoformat()} 08:00:00</IssueTime></TaxSupervisionInfo></EInvoice>"""  # noqa: E501


def _import_xml(settings: Settings, path: Path, *invoices: str) -> None:
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<EInvoices>' + "".join(invoices)
                    + "</EInvoices>\n", encoding="utf-8")  # fmt: skip
    report = import_file(path, settings, f"einvoice-{uuid.uuid4().hex[:6]}")
    assert (report.published, report.rejected) == (len(invoices), 0), report.summary()


def _claim(claim_id: str, lines: list[tuple[str, str, str]], minutes: int = 0) -> dict:
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, event_id=uuid.uuid4().hex,
                 submitted_at=NOW + datetime.timedelta(minutes=minutes))  # fmt: skip
    base = claim["lines"][0]
    claim["lines"] = [dict(base, line_no=n, category=category, amount=Decimal(amount),
                           invoice_refs=[ref] if ref else [], expense_date=TODAY)
                      for n, (category, amount, ref) in enumerate(lines, 1)]  # fmt: skip
    return claim


def _approve(settings: Settings, *claim_ids: str) -> None:
    publish(settings, "approvals_raw", [
        (claim_id.encode(), dict(SAMPLES["approval_decision"], claim_id=claim_id,
                                 event_id=uuid.uuid4().hex, final=True,
                                 decided_at=NOW + datetime.timedelta(hours=1)))
        for claim_id in claim_ids])  # fmt: skip


def _invoice_of(tryton: Any, reference: str) -> dict | None:
    found = tryton.call("model.account.invoice.search_read", [("reference", "=", reference)],
                        0, 1, None, ["state", "total_amount", "untaxed_amount", "tax_amount",
                                     "comment", "description"])  # fmt: skip
    return found[0] if found and found[0]["state"] == "posted" else None


def _statuses(settings: Settings, claim_id: str) -> list[dict]:
    return [s for s in read_records(settings, "claim_status") if s["claim_id"] == claim_id]


def test_tickets_book_their_input_vat_with_the_originals_attached(stack, tryton, tmp_path):
    settings, workers = stack
    rail, air, stranger = _number(), _number(), _number()
    passenger = ("<PassengerTransportInformation><TravellerName>{name}</TravellerName>"
                 "<TravellerIdNum>{id}</TravellerIdNum><TravelDate>{day}</TravelDate>"
                 "<DeparturePlace>上海虹桥</DeparturePlace><DestinationPlace>北京南</DestinationPlace>"
                 "<CarrierNumber>{no}</CarrierNumber><Fare>{fare}</Fare>{more}"
                 "</PassengerTransportInformation>")  # fmt: skip
    _import_xml(settings, tmp_path / "tickets.xml",
        _einvoice(rail, "电子发票（铁路电子客票）", passenger.format(
            name="张伟", id="3101**********1234", day=TODAY, no="G2", fare="553.00", more=""),
            "507.34", "45.66", "553.00"),
        _einvoice(air, "电子发票（航空运输电子客票行程单）", passenger.format(
            name="李娜", id="3101**********567X", day=TODAY, no="MU5101", fare="1340.00",
            more="<FuelSurcharge>60.00</FuelSurcharge>"
                 "<CivilAviationDevelopmentFund>50.00</CivilAviationDevelopmentFund>"),
            "1339.36", "110.64", "1450.00", seller="中国东方航空股份有限公司"),
        _einvoice(stranger, "电子发票（铁路电子客票）", passenger.format(
            name="王五", id="4401**********0001", day=TODAY, no="G7", fare="109.00", more=""),
            "100.00", "9.00", "109.00"),
    )  # fmt: skip
    claim_id = f"T{uuid.uuid4().hex[:8].upper()}"
    claim = _claim(claim_id, [("travel", "553.00", rail), ("travel", "1450.00", air),
                              ("travel", "109.00", stranger)])  # fmt: skip
    publish(settings, "claims_raw", [(claim_id.encode(), claim)])
    _approve(settings, claim_id)

    invoice = wait_for(lambda: _invoice_of(tryton, claim_id), timeout=120,
                       what="the ticket claim booked in Tryton", workers=workers)  # fmt: skip
    # railway 553.00 / 1.09 x 9% = 45.66; air (1340.00 + 60.00) / 1.09 x 9% = 115.60 (the
    # 50.00 development fund bears none); a stranger's ticket deducts nothing, and says why
    assert invoice["total_amount"] == Decimal("2112.00")
    assert invoice["tax_amount"] == Decimal("161.26")
    assert invoice["untaxed_amount"] == Decimal("1950.74")
    assert invoice["comment"] == (f"invoice {stranger}: input VAT not deducted: the traveller "
                                  "王五 is not an employee of the company")  # fmt: skip
    taxes = tryton.call("model.account.invoice.tax.search_read", [("invoice", "=", invoice["id"])],
                        0, None, [("amount", "DESC")],
                        ["amount", "base", "account.code", "tax.rate", "description"])  # fmt: skip
    assert [(t["amount"], t["base"], t["account."]["code"], t["tax."]["rate"]) for t in taxes] == [
        (Decimal("115.60"), Decimal("1284.40"), "1.4.4", Decimal("0.09")),
        (Decimal("45.66"), Decimal("507.34"), "1.4.4", Decimal("0.09")),
    ]  # fmt: skip

    # each ticket's original (its <EInvoice> element) is archived and attached, by SHA-256
    archive = Archive(settings.archive_dir)
    attachments = wait_for(lambda: _attachments(tryton, invoice["id"], 3), timeout=30,
                           what="three attachments", workers=workers)  # fmt: skip
    by_name = {a["name"]: a for a in attachments}
    assert set(by_name) == {f"{rail}.xml", f"{air}.xml", f"{stranger}.xml"}
    for number in (rail, air, stranger):
        attached = by_name[f"{number}.xml"]
        digest = hashlib.sha256(attached["data"]).hexdigest()
        assert attached["description"].startswith(f"sha256:{digest} ")
        assert archive.read(digest) == attached["data"]
        assert f"<InvoiceNumber>{number}</InvoiceNumber>".encode() in attached["data"]

    # the archive verifies; one changed byte in one original is found and named
    assert _archive_verify(settings)[0] == 0
    path = archive.path_of(hashlib.sha256(by_name[f"{air}.xml"]["data"]).hexdigest())
    os.chmod(path, 0o644)
    original = path.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0x20
    path.write_bytes(bytes(changed))
    code, report = _archive_verify(settings)
    assert code == 1 and not report["ok"]
    assert [p["where"] for p in report["problems"]] == [f"document {path.name}"]
    path.write_bytes(original)
    assert _archive_verify(settings)[0] == 0  # restored


def test_input_vat_follows_the_buyer_and_the_travellers_id_number(stack, tryton, tmp_path):
    """A 数电专票 to a second company of the group deducts once the master data names it (not
    the settings); one to an outside buyer does not; a ticket of 李娜's namesake (another ID
    number) does not, and says the ID number does not match rather than that 李娜 is no
    employee."""
    settings, workers = stack
    group, outsider = "91310000MA1FL8XQ37", "91440300MA5DC6QX9C"
    (tmp_path / "companies.csv").write_text(f"tax_id,name\n{group},上海分公司\n",
                                            encoding="utf-8")  # fmt: skip
    publish_reference(tmp_path / "companies.csv", settings)
    ours, theirs, namesake = _number(), _number(), _number()
    hotel = ("<IssuItemInformation><ItemName>*住宿服务*住宿费</ItemName><Amount>{net}</Amount>"
             "<TaxRate>0.06</TaxRate><ComTaxAm>{tax}</ComTaxAm></IssuItemInformation>")  # fmt: skip
    ticket = ("<PassengerTransportInformation><TravellerName>李娜</TravellerName>"
              f"<TravellerIdNum>4401**********0002</TravellerIdNum><TravelDate>{TODAY}</TravelDate>"
              "<DeparturePlace>上海虹桥</DeparturePlace><DestinationPlace>杭州东</DestinationPlace>"
              "<CarrierNumber>G7311</CarrierNumber><Fare>73.00</Fare>"
              "</PassengerTransportInformation>")  # fmt: skip
    _import_xml(settings, tmp_path / "buyers.xml",
        _einvoice(ours, "数电票（增值税专用发票）", hotel.format(net="1207.55", tax="72.45"),
                  "1207.55", "72.45", "1280.00", seller="深圳市某某酒店管理有限公司", buyer=group),
        _einvoice(theirs, "数电票（增值税专用发票）", hotel.format(net="500.00", tax="30.00"),
                  "500.00", "30.00", "530.00", seller="深圳市某某酒店管理有限公司",
                  buyer=outsider),
        _einvoice(namesake, "电子发票（铁路电子客票）", ticket, "66.97", "6.03", "73.00"),
    )  # fmt: skip
    time.sleep(3)  # the processors read the reference topic as it grows
    claim_id = f"B{uuid.uuid4().hex[:8].upper()}"
    publish(settings, "claims_raw", [(claim_id.encode(), _claim(claim_id, [
        ("lodging", "1280.00", ours), ("lodging", "530.00", theirs),
        ("travel", "73.00", namesake)]))])  # fmt: skip
    _approve(settings, claim_id)
    invoice = wait_for(lambda: _invoice_of(tryton, claim_id), timeout=120,
                       what="the claim booked in Tryton", workers=workers)  # fmt: skip
    assert invoice["total_amount"] == Decimal("1883.00")
    assert invoice["tax_amount"] == Decimal("72.45")  # only the group company's invoice
    why = {namesake: "the traveller's ID number 4401**********0002 does not match that of the "
                     "employee 李娜 (a namesake is not the employee)",
           theirs: f"issued to {outsider}, not to the company "
                   f"({', '.join(sorted({COMPANY, group}))})"}  # fmt: skip
    assert invoice["comment"].splitlines() == [
        f"invoice {number}: input VAT not deducted: {why[number]}" for number in sorted(why)
    ]


def _attachments(tryton: Any, invoice_id: int, count: int) -> list[dict] | None:
    found = tryton.call("model.ir.attachment.search_read",
                        [("resource", "=", f"account.invoice,{invoice_id}")], 0, None, None,
                        ["name", "data", "description"])  # fmt: skip
    return found if len(found) >= count else None


def _archive_verify(settings: Settings) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "erpbridge", "archive", "verify", "--json"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **settings.to_env()})  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_a_red_letter_invoice_reverses_a_booked_claim_with_a_credit_note(stack, tryton, tmp_path):
    settings, workers = stack
    blue, red = _number(), _number()
    hotel = ("<IssuItemInformation><ItemName>*住宿服务*住宿费</ItemName><Amount>{net}</Amount>"
             "<TaxRate>0.06</TaxRate><ComTaxAm>{tax}</ComTaxAm></IssuItemInformation>")  # fmt: skip
    _import_xml(settings, tmp_path / "blue.xml", _einvoice(
        blue, "数电票（增值税专用发票）", hotel.format(net="1207.55", tax="72.45"), "1207.55",
        "72.45", "1280.00", seller="深圳市某某酒店管理有限公司"))  # fmt: skip
    claim_id = f"R{uuid.uuid4().hex[:8].upper()}"
    publish(settings, "claims_raw", [(claim_id.encode(), _claim(
        claim_id, [("lodging", "1280.00", blue), ("meals", "86.05", "")]))])  # fmt: skip
    _approve(settings, claim_id)
    booked = wait_for(lambda: _invoice_of(tryton, claim_id), timeout=120,
                      what="the hotel claim booked", workers=workers)  # fmt: skip
    assert (booked["total_amount"], booked["tax_amount"]) == (Decimal("1366.05"),
                                                              Decimal("72.45"))  # fmt: skip

    # the hotel issues a red-letter invoice offsetting the blue one in full
    _import_xml(settings, tmp_path / "red.xml", _einvoice(
        red, "数电票（增值税专用发票）", hotel.format(net="-1207.55", tax="-72.45"), "-1207.55",
        "-72.45", "-1280.00", seller="深圳市某某酒店管理有限公司",
        extra=f"<BlueInvoiceNumber>{blue}</BlueInvoiceNumber>"))  # fmt: skip
    reference = f"{claim_id}-RED-{blue}"
    credit = wait_for(lambda: _invoice_of(tryton, reference), timeout=120,
                      what="the credit note in Tryton", workers=workers)  # fmt: skip
    # only the hotel line is reversed (the meal had no invoice), VAT and all
    assert (credit["total_amount"], credit["tax_amount"], credit["untaxed_amount"]) == (
        Decimal("-1280.00"), Decimal("-72.45"), Decimal("-1207.55"))  # fmt: skip
    assert credit["description"].startswith(f"Credit note reversing {claim_id}: ")
    assert f"red-letter invoice {red} offsets invoice {blue}" in credit["comment"]
    reversed_ = [s for s in _statuses(settings, claim_id) if s["status"] == "REVERSED"]
    assert [s["invoice_refs"] for s in reversed_] == [[blue]]
    feedback = wait_for(lambda: [f for f in read_records(settings, "erp_feedback")
                                 if f["posting_id"] == reference], timeout=60,
                        what="feedback for the credit note", workers=workers)  # fmt: skip
    assert feedback[0]["status"] == "BOOKED" and feedback[0]["total_minor"] == -128000


@pytest.mark.parametrize("seed", [11, 23, 37, 41, 53, 67])
def test_two_claims_citing_one_invoice_give_the_same_owner_in_any_order(stack, tryton, tmp_path,
                                                                        seed):  # fmt: skip
    settings, workers = stack
    rng = random.Random(seed)
    number = _number()
    run = uuid.uuid4().hex[:6].upper()
    first, second = f"O{run}-A", f"O{run}-B"  # A submitted 10 minutes before B
    claims = {first: _claim(first, [("travel", "553.00", number)], minutes=-10),
              second: _claim(second, [("travel", "553.00", number)], minutes=0)}  # fmt: skip
    passenger = ("<PassengerTransportInformation><TravellerName>张伟</TravellerName>"
                 "<Fare>553.00</Fare></PassengerTransportInformation>")  # fmt: skip
    inputs = [lambda: publish(settings, "claims_raw", [(first.encode(), claims[first])]),
              lambda: publish(settings, "claims_raw", [(second.encode(), claims[second])]),
              lambda: _import_xml(settings, tmp_path / "ticket.xml", _einvoice(
                  number, "铁路电子客票", passenger, "507.34", "45.66", "553.00"))]  # fmt: skip
    rng.shuffle(inputs)
    for send in inputs:
        send()

    # both claims were answered about the invoice before either is approved
    def answered() -> bool:  # A waits for its approval only; B is held on A's invoice
        return _held(settings, second) is not None and any(
            s["status"] == "WAITING" and s["invoice_refs"] == []
            for s in _statuses(settings, first))  # fmt: skip

    wait_for(answered, timeout=90, what="both claims answered", workers=workers)
    approvals = [first, second]
    rng.shuffle(approvals)
    for claim_id in approvals:
        _approve(settings, claim_id)
    wait_for(lambda: _invoice_of(tryton, first), timeout=120, what=f"{first} booked",
             workers=workers)  # fmt: skip
    held = _held(settings, second)
    assert held and held["related_claim_id"] == first
    assert f"cited by claim {second} and by claim {first}" in held["detail"][0]
    assert _invoice_of(tryton, second) is None


def _held(settings: Settings, claim_id: str) -> dict | None:
    found = [s for s in _statuses(settings, claim_id) if s["status"] == "HELD"]
    return found[-1] if found else None
