"""Where is claim X? Its journey through the ops API and the console, in a real browser: the
claim as it came in (with its provenance), its invoice and approval, the posting, the ERP's
booking and payment and a failure, found by the claim id, an invoice number or an event id;
claims listed by employee; an unknown claim answered 404. A screenshot of each page is kept."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest

from erpbridge.failures import FailureRecord, Stage
from erpbridge.kafka_io import durable_producer
from ops.audit import Role
from tests.browser import chromium_page, screenshot
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import publish, topics_of

pytestmark = pytest.mark.integration
T0 = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=2)


def _at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def _journey_of(settings: Any, claim: str, employee: str) -> str:
    """A claim's records on the pipeline's topics; returns its invoice's number."""
    number = f"2631200000{abs(hash(claim)) % 10**10:010d}"
    person = dict(SAMPLES["expense_claim"]["employee"], id=employee)
    publish(settings, "claims_raw", [(claim.encode(), dict(
        SAMPLES["expense_claim"], claim_id=claim, event_id=f"evt-{claim}", submitted_at=_at(0),
        employee=person, origin={"file": "claims-1207.csv", "line": "7"}))])  # fmt: skip
    publish(settings, "invoices_raw", [(number.encode(), dict(
        SAMPLES["invoice"], invoice_number=number, claim_id=claim, event_id=f"inv-{claim}",
        received_at=_at(3)))])  # fmt: skip
    publish(settings, "approvals_raw", [(claim.encode(), dict(
        SAMPLES["approval_decision"], claim_id=claim, event_id=f"apr-{claim}",
        decided_at=_at(40)))])  # fmt: skip
    publish(settings, "postings", [(claim.encode(), dict(
        SAMPLES["erp_posting"], posting_id=claim, claim_id=claim, employee_id=employee,
        created_at=_at(41)))])  # fmt: skip
    booked = dict(SAMPLES["erp_feedback"], posting_id=claim, claim_id=claim, answered_at=_at(42))
    publish(settings, "erp_feedback", [(claim.encode(), booked), (claim.encode(), dict(
        booked, status="PAID", answered_at=_at(100), paid_minor=55300, paid_on=_at(100).date(),
        payment_reference="付-2026-0031"))])  # fmt: skip
    failure = FailureRecord.refused(
        stage=Stage.SOURCE_WEBHOOK, reason="invalid_request", connector="webhook",
        problems=["lines.1.amount: not a number"], original=b'{"claim_id": "x"}',
        content_type="application/json", origin={"request_id": f"req-{claim}"},
        entity_id=claim, key=claim.encode())  # fmt: skip
    producer = durable_producer(settings)
    producer.send(topics_of(settings).rejected, **failure.to_message()).get(timeout=30)
    producer.close()
    return number


def _get(url: str, path: str, token: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, timeout=60,
                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def test_an_operator_finds_where_a_claim_is(ops_server) -> None:
    url, settings, tokens, _, _ = ops_server
    viewer = tokens[Role.VIEWER]
    number = _journey_of(settings, "JRN-0001", "E-J1")
    _journey_of(settings, "JRN-0002", "E-J2")
    journey = _get(url, "/api/claims/JRN-0001", viewer)
    assert journey.status_code == 200, journey.text
    body = journey.json()
    assert body["claims"] == ["JRN-0001"]
    assert [(e["stage"], e["event"]) for e in body["events"]] == [
        ("input", "claim"), ("input", "invoice"), ("approval", "APPROVE"), ("posting", "BOOKING"),
        ("erp", "BOOKED"), ("erp", "PAID"), ("failed", "rejected: invalid_request")]  # fmt: skip
    assert body["events"][0]["origin"] == {"file": "claims-1207.csv", "line": "7"}
    assert body["events"][6]["origin"] == {"request_id": "req-JRN-0001"}
    assert "付-2026-0031" in body["events"][5]["summary"]
    assert body["stages"] == {"input_to_posting": 41 * 60.0, "posting_to_booked": 60.0,
                              "booked_to_paid": 58 * 60.0}  # fmt: skip
    for asked in (number, "evt-JRN-0001", "apr-JRN-0001"):
        assert _get(url, f"/api/claims/{asked}", viewer).json()["events"] == body["events"]
    assert _get(url, "/api/claims/NO-SUCH-CLAIM", viewer).status_code == 404
    assert _get(url, "/api/claims/JRN-0001", "ebt_not-a-token").status_code == 401
    listed = _get(url, "/api/claims", viewer, employee="E-J2").json()["claims"]
    assert [(c["claim_id"], c["last_status"]) for c in listed] == [("JRN-0002", "PAID")]
    assert _get(url, "/api/claims", viewer, **{"from": "yesterday"}).status_code == 422

    with chromium_page() as page:
        page.goto(f"{url}/")
        page.fill("input[name=token]", viewer)
        page.click("#sign-in")
        page.click("text=Claims")
        page.fill("#claim", number)  # found by its invoice's number
        page.click("button:has-text('Trace')")
        table = page.locator("#journey").inner_text()
        assert "claims-1207.csv" in table and "付-2026-0031" in table and "PAID" in table
        assert page.locator("#journey tr").count() == 8
        assert "booked to paid" in page.locator("#stages").inner_text()
        journey_shot = screenshot(page, "ops-console-claim-journey")
        page.goto(f"{url}/console/claims?employee=E-J1")
        assert "JRN-0001" in page.locator("#claims").inner_text()
        list_shot = screenshot(page, "ops-console-claims")
    print("journey screenshots:", journey_shot, list_shot)
    assert journey_shot.stat().st_size > 10_000 and list_shot.stat().st_size > 10_000
