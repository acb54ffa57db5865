"""Master data from the ERP on the real stack (issue 30): employees hired in Tryton over JSON-RPC
get their claims booked with no employee file loaded; an employee given an end date has later
claims refused as left; an employee deleted in Tryton is removed (a tombstone) and their claim
refused saying so; a second sync with nothing new publishes nothing; an empty answer is refused
by the removal guard and publishes nothing. Rates come from Tryton's own currency rates."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.erp.tryton_rpc import TrytonRpc
from connectors.sources.masterdata import current_entries
from connectors.sources.reference_file import publish_reference
from erpbridge.config import Settings, env_of
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_all, read_records, read_rejections
from erpbridge.topics import Topics
from ops.audit import AuditTrail
from tests.contract_samples import SAMPLES
from tests.fakes.erp_gateway import Gateway
from tests.integration.pipeline import (
    SAMPLE_REFERENCE,
    make_settings,
    pipeline_env,
    posted_in_tryton,
    publish,
    running_workers,
    wait_for,
)

pytestmark = pytest.mark.integration
TODAY = datetime.datetime.now(datetime.UTC).date()


def _sync(settings: Settings, erp: Any, *args: str,
          source: str = "tryton") -> tuple[int, dict[str, Any], str]:  # fmt: skip
    """``erp``: the test Tryton, or the environment of another ERP's writer."""
    env = erp if isinstance(erp, dict) else env_of(erp.settings)
    done = subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning", "source",
                           "masterdata", "--from", source, "--json", *args],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, **pipeline_env(settings), **env})  # fmt: skip
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def _hire(rpc: TrytonRpc, company: int, code: str, name: str) -> int:
    new = {"name": name, "code": code, "addresses": [["create", [{}]]]}
    (party,) = rpc.call("model.party.party.create", [new])
    (employee,) = rpc.call("model.company.employee.create", [{"party": party, "company": company}])
    return int(employee)


def _claim_and_approval(settings: Settings, claim_id: str, employee: str, *,
                        category: str = "travel", amount: Decimal = Decimal("553.0000"),
                        refs: list[str] | None = None) -> None:  # fmt: skip
    """``refs``: the invoices the claim cites (none: it waits for no invoice)."""
    now = datetime.datetime.now(datetime.UTC)
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, event_id=uuid.uuid4().hex,
                 submitted_at=now)  # fmt: skip
    claim["employee"] = dict(claim["employee"], id=employee)
    claim["lines"] = [dict(claim["lines"][0], invoice_refs=refs or [], category=category,
                           amount=amount)]  # fmt: skip
    approval = dict(SAMPLES["approval_decision"], claim_id=claim_id, decision="APPROVE",
                    final=True, decided_at=now, event_id=uuid.uuid4().hex)  # fmt: skip
    publish(settings, "claims_raw", [(claim_id.encode(), claim)])
    publish(settings, "approvals_raw", [(claim_id.encode(), approval)])


def _refusal(settings: Settings, claim_id: str) -> dict[str, Any] | None:
    return next((s for s in read_records(settings, "claim_status")
                 if s["claim_id"] == claim_id and s["status"] == "REFUSED"), None)  # fmt: skip


def _posting(settings: Settings, claim_id: str) -> dict[str, Any] | None:
    return next((p for p in read_records(settings, "postings") if p["claim_id"] == claim_id),
                None)  # fmt: skip


def _reference_end(settings: Settings) -> int:
    return len(read_all(settings, Topics(settings.topic_prefix).reference))


def test_employees_and_rates_follow_tryton_with_no_file_loaded(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    for path in sorted(SAMPLE_REFERENCE.glob("*.csv")):
        if path.name != "employees.csv":  # the employees come from Tryton
            publish_reference(path, settings)
    rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
    rpc.login()
    company = int(rpc.context["company"])
    tag = uuid.uuid4().hex[:6].upper()
    codes = [f"MD{tag}{n}" for n in range(3)]
    hired = {code: _hire(rpc, company, code, f"员工{n}") for n, code in enumerate(codes)}
    currencies = {c["code"]: c["id"] for c in rpc.call(
        "model.currency.currency.search_read", [("code", "in", ["CNY", "USD"])], 0, None, None,
        ["code"])}  # fmt: skip
    if "USD" not in currencies:
        (currencies["USD"],) = rpc.call("model.currency.currency.create", [{
            "name": "U.S. Dollar", "code": "USD", "symbol": "$",
            "rounding": Decimal("0.01")}])  # fmt: skip
    day = datetime.date(2026, 12, 1)
    rpc.call("model.currency.currency.rate.create", [
        {"currency": currencies["CNY"], "date": day, "rate": Decimal("1")},
        {"currency": currencies["USD"], "date": day, "rate": Decimal("0.140476")}])  # fmt: skip

    status, report, stderr = _sync(settings, erp)
    assert status == 0 and report["outcome"] == "published", stderr
    entries = current_entries(settings)
    first = entries[f"employee:{codes[0]}"]
    assert first == {"party": codes[0], "name": "员工0", "source": "tryton",
                     "source_ref": f"company.employee,{hired[codes[0]]}"}  # fmt: skip
    assert entries["rate:USD:2026-12-01"]["rate"] == str(
        (Decimal(1) / Decimal("0.140476")).quantize(Decimal("0.000001")))  # fmt: skip
    assert report["kinds"]["employee"]["added"] >= 3 and report["kinds"]["rate"]["added"] >= 1
    assert entries["department:SALES-EAST"]["name"] == "华东销售部"
    assert entries["cost_centre:CC-SH-01"]["erp_code"] == "CC-SH-01"
    budget = entries[f"budget:CC-SH-01:{TODAY.year}-01-01"]  # Tryton's analytic budget line
    assert (Decimal(budget["amount"]), budget["end"]) == (Decimal(50000), f"{TODAY.year}-12-31")

    before = _reference_end(settings)
    status, again, _ = _sync(settings, erp)
    assert (status, again["outcome"], again["published"]) == (0, "unchanged", 0)
    assert _reference_end(settings) == before  # nothing new: nothing written

    # the claim of an employee known only to Tryton is booked
    with running_workers(settings, tmp_path / "w", erp=erp.settings, prepare=False) as workers:
        _claim_and_approval(settings, f"MDC-{tag}-0", codes[0])
        wait_for(lambda: posted_in_tryton(erp.settings, [f"MDC-{tag}-0"]), 180,
                 "the new hire's claim booked", workers)  # fmt: skip
        # its department (the claim's 销售部, SALES-EAST by the file) named as Tryton names it
        assert _posting(settings, f"MDC-{tag}-0")["department_name"] == "华东销售部"
        (sales,) = rpc.call("model.analytic_account.account.search", [("code", "=", "SALES-EAST")],
                            0, None, None)  # fmt: skip
        rpc.call("model.analytic_account.account.write", [sales], {"name": "华东大区销售部"})

        # one leaves (their last day yesterday), one is deleted from Tryton
        yesterday = TODAY - datetime.timedelta(days=1)
        rpc.call("model.company.employee.write", [hired[codes[1]]], {"end_date": yesterday})
        rpc.call("model.company.employee.delete", [hired[codes[2]]])
        status, changed, stderr = _sync(settings, erp)
        assert status == 0, stderr
        ops = {(c["op"], c["key"]) for c in changed["changes"]}
        assert ops == {("change", f"employee:{codes[1]}"), ("remove", f"employee:{codes[2]}"),
                       ("change", "department:SALES-EAST")}  # fmt: skip
        _claim_and_approval(settings, f"MDC-{tag}-3", codes[0])  # the renamed department's next
        _claim_and_approval(settings, f"MDC-{tag}-1", codes[1])
        _claim_and_approval(settings, f"MDC-{tag}-2", codes[2])
        wait_for(lambda: _refusal(settings, f"MDC-{tag}-1") and _refusal(settings, f"MDC-{tag}-2"),
                 120, "both refused", workers)  # fmt: skip
        wait_for(lambda: _posting(settings, f"MDC-{tag}-3"), 60, "the next posting", workers)
    assert _posting(settings, f"MDC-{tag}-3")["department_name"] == "华东大区销售部"
    left, removed = _refusal(settings, f"MDC-{tag}-1"), _refusal(settings, f"MDC-{tag}-2")
    assert left is not None and removed is not None
    assert left["reason"] == "employee_left"
    assert left["detail"][0].startswith(f"employee.id: {codes[1]} left on {yesterday}")
    assert removed["reason"] == "unknown_employee"
    assert removed["detail"][0].endswith("is not in the employee mapping (it was removed from it)")

    # an empty answer (every employee gone at once) is refused whole, nothing published
    employees = rpc.call("model.company.employee.search", [("company", "=", company)], 0, None,
                         None, context={"active_test": False})  # fmt: skip
    rpc.call("model.company.employee.delete", employees)
    before = _reference_end(settings)
    status, refused, stderr = _sync(settings, erp)
    assert status == 3 and refused["outcome"] == "refused"
    assert refused["refused"][0].startswith("employee: the ERP listed none")
    assert _reference_end(settings) == before
    assert f"employee:{codes[0]}" in current_entries(settings)
    trail = [r for r in AuditTrail(settings).records() if r["action"] == "masterdata.sync"]
    assert [r["outcome"] for r in trail] == ["ok", "ok", "ok", "refused"]
    assert trail[-1]["counts"]["employee.removed"] >= 2
    rpc.close()


def test_a_gateways_lists_are_read_page_by_page_and_an_item_that_does_not_read_refuses_the_sync(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    staff = [{"code": f"G{n:03d}", "name": f"员工{n}", "dept": {"code": "D10"}} for n in range(7)]
    gateway = Gateway(lists={"/employees": staff})
    server, url = gateway.serve()
    lists = {"employee": {"path": "/employees", "items_field": "items", "page_size": 3,
                          "fields": {"employee_id": "code", "party": "code", "name": "name",
                                     "department": "dept.code", "left_on": "left_on"}}}  # fmt: skip
    env = {"ERPBRIDGE_REST_ERP_BASE_URL": url, "ERPBRIDGE_REST_ERP_MASTERDATA": json.dumps(lists)}
    try:
        status, report, stderr = _sync(settings, env, source="rest")
        assert status == 0 and report["kinds"]["employee"]["added"] == 7, stderr
        assert current_entries(settings)["employee:G006"] == {
            "party": "G006", "name": "员工6", "department": "D10", "source": "rest",
            "source_ref": "/employees#G006"}  # fmt: skip
        pages = [path for method, path, _ in gateway.requests if path.startswith("/employees")]
        assert len(pages) == 3  # 3 + 3 + 1

        staff[0]["left_on"], staff[1]["left_on"] = "2026-12-01", "soon"
        before = _reference_end(settings)
        status, refused, _ = _sync(settings, env, source="rest")
        assert status == 3 and refused["outcome"] == "refused"
        assert refused["refused"] == ["employee: item 2 of /employees: Invalid isoformat string: "
                                      "'soon'"]  # fmt: skip
        assert _reference_end(settings) == before  # nothing of a kind that does not read

        del staff[1]["left_on"]
        status, changed, _ = _sync(settings, env, source="rest")
        assert status == 0 and [(c["op"], c["key"]) for c in changed["changes"]] == [
            ("change", "employee:G000")]  # fmt: skip
        assert current_entries(settings)["employee:G000"]["left_on"] == "2026-12-01"
    finally:
        server.shutdown()


def _dlq_replay(settings: Settings, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning", "dlq",
                           "replay", "--json", "--yes", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **pipeline_env(settings)})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def _rented_room_invoice(number: str) -> dict[str, Any]:
    """A 数电专票 to the company at 1.5% (个人出租住房, 减按1.5%): 1,000.00 + 15.00."""
    invoice = dict(SAMPLES["invoice"], invoice_number=number, event_id=uuid.uuid4().hex,
                   invoice_type="DIGITAL_SPECIAL", amount_net=Decimal("1000.00"),
                   tax_rate=Decimal("0.0150"), tax_amount=Decimal("15.00"),
                   total=Decimal("1015.00"))  # fmt: skip
    invoice["lines"] = [dict(invoice["lines"][0], name="*经营租赁*住房租金",
                             amount_net=Decimal("1000.00"), tax_rate=Decimal("0.0150"),
                             tax_amount=Decimal("15.00"),
                             unit_price=Decimal("1000.000000"))]  # fmt: skip
    return invoice


def test_expense_category_accounts_and_input_vat_taxes_follow_tryton(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    """A category made in Tryton with its expense account books its claims' lines there; the
    input VAT taxes Tryton has are synced, and a claim deducting VAT at a rate Tryton has no tax
    for is refused no_input_vat_tax by the processors (nothing half-booked), then booked with
    the tax once it is added in Tryton, synced, and the claim replayed."""
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    for path in sorted(SAMPLE_REFERENCE.glob("*.csv")):
        publish_reference(path, settings)
    rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
    rpc.login()
    company = int(rpc.context["company"])
    tag = uuid.uuid4().hex[:6].upper()
    (default,) = rpc.call("model.account.account.search_read",
                          [("code", "=", settings.posting_default_account),
                           ("company", "=", company)], 0, 1, None, ["type", "parent"])  # fmt: skip
    code = f"5.2.{tag}"
    (account,) = rpc.call("model.account.account.create", [{
        "name": f"差旅费 {tag}", "code": code, "type": default["type"],
        "parent": default["parent"]}])  # fmt: skip
    (category,) = rpc.call("model.product.category.create", [{
        "name": f"差旅费 {tag}", "code": f"TRAVEL{tag}", "accounting": True,
        "account_expense": account}])  # fmt: skip
    # no 1.5% input VAT tax is active in Tryton (an earlier run may have added one)
    rented = rpc.call("model.account.tax.search", [("rate", "=", Decimal("0.015"))], 0, None,
                      None, context={"active_test": False})  # fmt: skip
    if rented:
        rpc.call("model.account.tax.write", rented, {"active": False})

    status, report, stderr = _sync(settings, erp)
    assert status == 0 and report["outcome"] == "published", stderr
    entries = current_entries(settings)
    assert entries[f"category:TRAVEL{tag}"] == {
        "account": code, "name": f"差旅费 {tag}", "source": "tryton",
        "source_ref": f"product.category,{category}"}  # fmt: skip
    taxes = {key for key in entries if key.startswith("input_vat:")}
    assert {"input_vat:0.13", "input_vat:0.09", "input_vat:0.06"} <= taxes
    assert "input_vat:0.015" not in taxes

    booked, deducting = f"MDV-{tag}-A", f"MDV-{tag}-B"
    number = f"2631200000{uuid.uuid4().int % 10**10:010d}"
    with running_workers(settings, tmp_path / "w", erp=erp.settings, prepare=False) as workers:
        _claim_and_approval(settings, booked, "E1001", category=f"travel{tag.lower()}")
        publish(settings, "invoices_raw", [(number.encode(), _rented_room_invoice(number))])
        _claim_and_approval(settings, deducting, "E1001", amount=Decimal("1015.0000"),
                            refs=[number])  # fmt: skip
        wait_for(lambda: posted_in_tryton(erp.settings, [booked]), 180,
                 "the travel claim booked", workers)  # fmt: skip
        refused = wait_for(lambda: _refusal(settings, deducting), 120,
                           "the 1.5% claim refused", workers)  # fmt: skip
        assert refused["reason"] == "no_input_vat_tax"
        assert refused["detail"][0].startswith(
            f"lines[1].input_vat: invoice {number} deducts VAT at 1.5%, and the ERP has no input "
            "VAT tax at that rate (it has ")  # fmt: skip
        assert not posted_in_tryton(erp.settings, [deducting]) and not _posting(
            settings, deducting)  # fmt: skip
        # judged on the invoice side's answer; its failure record is the claim, to go back to
        # the claims topic on replay
        (failure,) = [r for r in read_rejections(settings) if r.entity_id == deducting]
        assert failure.origin["topic"] == Topics(settings.topic_prefix).claims_raw
        assert ".streams.claim-events[" in failure.origin["judged_on"]

        # the fix: the tax in Tryton, a sync, a replay of the refused claim
        if rented:
            rpc.call("model.account.tax.write", rented, {"active": True})
        else:
            (vat_account,) = rpc.call("model.account.account.search",
                                      [("code", "=", "1.4.4"), ("company", "=", company)], 0,
                                      1, None)  # fmt: skip
            rpc.call("model.account.tax.create", [{
                "name": "Input VAT 1.5%", "description": "进项税额 1.5%", "type": "percentage",
                "rate": Decimal("0.015"), "invoice_account": vat_account,
                "credit_note_account": vat_account}])  # fmt: skip
        status, added, stderr = _sync(settings, erp)
        assert status == 0 and ("add", "input_vat:0.015") in {
            (c["op"], c["key"]) for c in added["changes"]}, stderr  # fmt: skip
        time.sleep(2)  # the processors' reference view follows the topic
        replayed = _dlq_replay(settings, "--topic", "rejected", "--reason", "no_input_vat_tax",
                               "--claim-id", deducting)  # fmt: skip
        assert replayed["replayed"] == 1
        wait_for(lambda: posted_in_tryton(erp.settings, [deducting]), 180,
                 "the 1.5% claim booked after the fix", workers)  # fmt: skip
    lines = rpc.call("model.account.invoice.line.search_read",
                     [("invoice.reference", "=", booked)], 0, None, None,
                     ["account.code"])  # fmt: skip
    assert [line["account."]["code"] for line in lines] == [code]
    vat = rpc.call("model.account.invoice.tax.search_read",
                   [("invoice.reference", "=", deducting)], 0, None, None,
                   ["amount", "tax.rate"])  # fmt: skip
    assert [(tax["amount"], tax["tax."]["rate"]) for tax in vat] == [
        (Decimal("15.00"), Decimal("0.015"))]  # fmt: skip
    rpc.close()
