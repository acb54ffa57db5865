"""A claim's journey from the books (books.journey): each role's record becomes one event, a
claim is found by its id, an invoice's number, a posting or document number or an input's event
id, its events come in order with the time between them, failures carry their reason and
provenance, and claims are listed by employee and day."""

from __future__ import annotations

import datetime
from collections import namedtuple

from books.journey import rows_of, search, trace
from books.store import BooksSettings, Store
from erpbridge.failures import FailureRecord, Stage
from tests.contract_samples import SAMPLES

Record = namedtuple("Record", "topic partition offset key value headers timestamp")
T0 = datetime.datetime(2026, 12, 1, 9, 0, tzinfo=datetime.UTC)


def _at(minutes: float) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


def _store_with(events: list[tuple[str, object]]) -> Store:
    store = Store(BooksSettings(path=":memory:"))  # type: ignore[arg-type]
    rows = []
    for offset, (role, value) in enumerate(events):
        record = Record(f"acme.{role}", 0, offset, None, b"", [], None)
        if isinstance(value, FailureRecord):  # as read back from its topic
            message = value.to_message()
            record = Record(f"acme.{role}", 0, offset, message["key"], message["value"],
                            message["headers"], None)  # fmt: skip
            value = FailureRecord.read_any(record)
        rows += rows_of(role, record, value)
    with store.transaction():
        store.upsert("journey", rows)
    return store


def _claim_events() -> list[tuple[str, object]]:
    claim = dict(SAMPLES["expense_claim"], claim_id="C-1", event_id="evt-c1", submitted_at=_at(0))
    approval = dict(SAMPLES["approval_decision"], claim_id="C-1", event_id="evt-a1",
                    decided_at=_at(30))  # fmt: skip
    invoice = dict(SAMPLES["invoice"], claim_id="C-1", event_id="evt-i1", received_at=_at(5))
    posting = dict(SAMPLES["erp_posting"], posting_id="C-1", claim_id="C-1", created_at=_at(31))
    booked = dict(SAMPLES["erp_feedback"], posting_id="C-1", claim_id="C-1", answered_at=_at(32))
    paid = dict(booked, status="PAID", answered_at=_at(60 * 24), paid_minor=55300,
                paid_on=_at(60 * 24).date(), payment_reference="付-7")  # fmt: skip
    refused = FailureRecord.refused(stage=Stage.SOURCE_WEBHOOK, reason="invalid_request",
                                    connector="webhook", problems=["lines.0.amount: negative"],
                                    original=b"{}", content_type="application/json",
                                    origin={"request_id": "req-9"}, entity_id="C-1",
                                    key=b"C-1")  # fmt: skip
    other = dict(SAMPLES["expense_claim"], claim_id="C-2", event_id="evt-c2", submitted_at=_at(1),
                 employee=dict(SAMPLES["expense_claim"]["employee"], id="E-OTHER"))  # fmt: skip
    return [("claims_raw", claim), ("claims_raw", other), ("invoices_raw", invoice),
            ("approvals_raw", approval), ("postings", posting), ("erp_feedback", booked),
            ("erp_feedback", paid), ("rejected", refused)]  # fmt: skip


def test_a_claim_is_found_by_any_of_its_references_with_its_events_in_order() -> None:
    store = _store_with(_claim_events())
    try:
        by_id = trace(store, "C-1")
        assert by_id.claims == ["C-1"]
        assert [(e.stage, e.event) for e in by_id.events] == [
            ("input", "claim"), ("input", "invoice"), ("approval", "APPROVE"),
            ("posting", "BOOKING"), ("erp", "BOOKED"), ("erp", "PAID"),
            ("failed", "rejected: invalid_request")]  # fmt: skip
        assert [e.since_previous_s for e in by_id.events][:4] == [None, 300.0, 1500.0, 60.0]
        assert by_id.stages() == {"input_to_posting": 31 * 60.0, "posting_to_booked": 60.0,
                                  "booked_to_paid": (60 * 24 - 32) * 60.0}  # fmt: skip
        paid = by_id.events[5]
        assert paid.summary == f"paid 553.00 on {_at(60 * 24).date()} (付-7)"
        failed = by_id.events[6]
        assert "lines.0.amount: negative" in failed.summary
        assert failed.origin == {"request_id": "req-9"}
        assert by_id.events[0].origin == SAMPLES["expense_claim"]["origin"]
        invoice_key = SAMPLES["invoice"]["invoice_number"]
        for asked in (invoice_key, "evt-a1", "evt-c1", "12"):  # invoice, event ids, document
            assert trace(store, asked).events == by_id.events, asked
        assert trace(store, "nothing-like-it").events == []
        assert by_id.to_json()["events"][0]["at"] == "2026-12-01T09:00:00Z"
    finally:
        store.close()


def test_claims_are_listed_by_employee_and_day() -> None:
    store = _store_with(_claim_events())
    try:
        employee = SAMPLES["expense_claim"]["employee"]["id"]
        found = search(store, employee)
        assert [(c["claim_id"], c["last_status"]) for c in found] == [("C-1", "PAID")]
        assert [c["claim_id"] for c in search(store, "E-OTHER")] == ["C-2"]
        assert search(store, None, T0.date(), T0.date())[0]["claim_id"] == "C-2"  # newest first
        assert search(store, employee, start=(T0 + datetime.timedelta(days=2)).date()) == []
    finally:
        store.close()


def test_a_replayed_record_says_who_replayed_it() -> None:
    posting = dict(SAMPLES["erp_posting"], posting_id="C-3", claim_id="C-3", created_at=_at(2))
    headers = [("erpbridge.replay.by", b"ops-alice"), ("erpbridge.replay.count", b"1")]
    (row,) = rows_of("postings", Record("acme.postings", 0, 7, b"C-3", b"", headers, None), posting)
    (plain,) = rows_of("postings", Record("acme.postings", 0, 8, b"C-3", b"", [], None), posting)
    summary = row[7]
    assert summary == f"replayed by ops-alice: {plain[7]}"


def test_a_claim_held_over_budget_is_offered_for_release_until_a_later_status() -> None:
    claim = dict(SAMPLES["expense_claim"], claim_id="C-4", event_id="evt-c4", submitted_at=_at(0))
    status = dict(SAMPLES["claim_status"], claim_id="C-4")
    held = dict(
        status,
        status="HELD",
        reason="over_budget",
        occurred_at=_at(1),
        detail=["cost centre CC-1 budget 100.00 CNY, used 90.00 CNY, asked 20.00 CNY"],
    )
    waiting = dict(status, status="WAITING", reason=None, detail=[], occurred_at=_at(2))
    posted = dict(status, status="POSTED", reason=None, detail=["released by ops-li: CFO"],
                  occurred_at=_at(3))  # fmt: skip
    other_hold = dict(held, reason="missing_invoice", detail=[])
    for events, expected in (
        ([claim, held], "C-4"),
        ([claim, held, waiting], "C-4"),  # a tick's WAITING does not end the hold
        ([claim, held, posted], None),
        ([claim, other_hold], None),  # held for another reason: nothing to release
    ):
        store = _store_with([("claims_raw", events[0]), *(("claim_status", e) for e in events[1:])])
        assert trace(store, "C-4").held_over_budget() == expected, events
