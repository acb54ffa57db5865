"""The stream processors on the real broker: out-of-order claims, approvals and invoices become
postings once; duplicates from two sources pass once; a content update is a new version; a
duplicate invoice across two claims is held and flagged; bad invoices, unknown codes and
missing rates are refused with their reason; a claim waiting too long is reported stalled; and
the state survives a restart."""

from __future__ import annotations

import datetime
import re
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from erpbridge.config import Settings
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_records, read_rejections
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import make_settings, publish, running_workers, wait_for

pytestmark = pytest.mark.integration
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _at(minutes: int) -> datetime.datetime:
    return NOW + datetime.timedelta(minutes=minutes)


def _claim(claim_id: str, source: str, *, amount: str = "553.0000", currency: str = "CNY",
           refs: tuple[str, ...] = (), employee: str = "E1001", minutes: int = 0,
           day: datetime.date = datetime.date(2026, 11, 12)) -> tuple:  # fmt: skip
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, source_system=source,
                 event_id=f"{source}:{uuid.uuid4().hex}", origin={"via": source},
                 submitted_at=_at(minutes))  # fmt: skip
    claim["employee"] = dict(claim["employee"], id=employee)
    claim["lines"] = [dict(claim["lines"][0], amount=Decimal(amount), currency=currency,
                           invoice_refs=list(refs), expense_date=day)]  # fmt: skip
    return "claims_raw", claim_id.encode(), claim


def _approval(claim_id: str, decision: str = "APPROVE", minutes: int = 1) -> tuple:
    approval = dict(SAMPLES["approval_decision"], claim_id=claim_id, decision=decision,
                    final=True, decided_at=_at(minutes), event_id=uuid.uuid4().hex)  # fmt: skip
    return "approvals_raw", claim_id.encode(), approval


def _invoice(number: str, *, tax: str = "45.66", kind: str = "DIGITAL_GENERAL") -> tuple:
    invoice = dict(SAMPLES["invoice"], invoice_number=number, event_id=uuid.uuid4().hex,
                   invoice_type=kind)  # fmt: skip
    # A line whose tax is not net x rate passes the source (net + tax = total still holds).
    invoice["lines"] = [dict(invoice["lines"][0], tax_amount=Decimal(tax))]
    invoice["tax_amount"] = Decimal(tax)
    invoice["total"] = invoice["amount_net"] + Decimal(tax)
    return "invoices_raw", number.encode(), invoice


def _send(settings: Settings, *records: tuple[str, bytes, dict]) -> None:
    for role, key, value in records:
        publish(settings, role, [(key, value)])


def _read(settings: Settings, role: str) -> list[dict[str, Any]]:
    return read_records(settings, role)


def _statuses(settings: Settings, waiting: bool = False) -> dict[str, list[tuple[str, str | None]]]:
    """Statuses per claim; WAITING ones only with ``waiting`` (what a claim waits for depends on
    which of its topics the worker happens to read first)."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for status in _read(settings, "claim_status"):
        if waiting or status["status"] != "WAITING":
            found.setdefault(status["claim_id"], []).append((status["status"], status["reason"]))
    return found


INV_A, INV_B, INV_F = "26312000000000000001", "26312000000000000002", "26312000000000000003"
EXPECTED_STATUSES = {
    "A": [("POSTED", None)],
    "B": [("POSTED", None)],
    "C": [("HELD", "duplicate_invoice"), ("STALLED", "waiting")],  # held claims wait too
    "D": [("CANCELLED", "returned"), ("POSTED", None)],
    "E": [("STALLED", "waiting")],
    "F": [("HELD", "invalid_invoice"), ("STALLED", "waiting")],
    "G": [("REFUSED", "unknown_employee")],
    "H": [("POSTED", None)],
    "J": [("REFUSED", "no_exchange_rate")],
}


def test_claims_approvals_and_invoices_in_any_order(kafka_bootstrap, schema_registry_url,
                                                    redis_url, tmp_path: Path) -> None:  # fmt: skip
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             streams_tick_interval_s=1.0,
                             streams_stall_after_s=25.0,
                             company_tax_id=SAMPLES["invoice"]["buyer_tax_id"])  # fmt: skip
    ensure_topics(settings)
    _send(
        settings,
        # A: approval, then invoice, then the claim from two sources (one duplicate)
        _approval("A"), _invoice(INV_A), _claim("A", "oa", refs=(INV_A,)),
        _claim("A", "travel", refs=(INV_A,)),
        # B: claim, approval, invoice last
        _claim("B", "oa", refs=(INV_B,)), _approval("B"),
        # C: cites A's invoice: the same receipt twice
        _claim("C", "oa", refs=(INV_A,), employee="E1002"), _approval("C"),
        # D: returned, then changed and approved again: posted as version 2
        _claim("D", "oa", minutes=-10), _approval("D", "RETURN", minutes=-9),
        _claim("D", "oa", amount="500.0000", minutes=-5), _approval("D", minutes=-4),
        # E: never approved: stalls
        _claim("E", "oa"),
        # F: its invoice's tax is not net x rate
        _claim("F", "oa", refs=(INV_F,)), _approval("F"), _invoice(INV_F, tax="50.00"),
        # G: an employee nobody mapped; H: dollars on a day with a rate; J: on a day without
        _claim("G", "oa", employee="E9999"), _approval("G"),
        _claim("H", "oa", amount="100.0000", currency="USD"), _approval("H"),
        _claim("J", "oa", amount="100.0000", currency="USD", day=datetime.date(2026, 1, 5)),
        _approval("J"),
    )  # fmt: skip
    with running_workers(settings, tmp_path / "first", sink=False) as (worker,):
        # B's invoice, a 数电专票 to the company, after the worker started
        _send(settings, _invoice(INV_B, kind="DIGITAL_SPECIAL"))
        seen: list[dict] = [{}]

        def settled() -> dict | None:
            seen[0] = _statuses(settings)
            return seen[0] if seen[0] == EXPECTED_STATUSES else None

        try:
            statuses = wait_for(settled, timeout=120, what="every claim's status",
                                workers=[worker])  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"statuses so far: {seen[0]}\n{exc}") from None
        metrics = worker.metrics()
    assert statuses == EXPECTED_STATUSES
    # every claim seen says at once what it waits for: E, never approved, waited for that
    assert _statuses(settings, waiting=True)["E"] == [("WAITING", "waiting_for_approval"),
                                                      ("STALLED", "waiting")]  # fmt: skip
    waited = {claim for claim, found in _statuses(settings, waiting=True).items()
              if any(status == "WAITING" for status, _ in found)}  # fmt: skip
    assert {"B", "C", "E", "F"} <= waited  # B, C and F waited for their invoice's answer too

    postings = {p["claim_id"]: p for p in _read(settings, "postings")}
    assert sorted(postings) == ["A", "B", "D", "H"]
    assert (postings["D"]["claim_version"], postings["D"]["total_minor"]) == (2, 50000)
    assert postings["A"]["employee_id"] == "E1001"
    # B's special invoice: its VAT is deductible, booked apart; A's general invoice: expensed
    assert (postings["B"]["total_minor"], postings["B"]["tax_minor"]) == (55300, 4566)
    assert postings["B"]["lines"][0]["input_vat"] == [
        {"invoice_ref": INV_B, "tax_rate": Decimal("0.0900"), "base_minor": 50734,
         "tax_minor": 4566}]  # fmt: skip
    assert (postings["A"]["tax_minor"], postings["A"]["lines"][0]["input_vat"]) == (0, [])
    assert (postings["A"]["department"], postings["A"]["cost_centre"]) == (
        "SALES-EAST", "CC-SH-01")  # fmt: skip
    (usd,) = postings["H"]["lines"]
    assert (usd["amount_minor"], usd["exchange_rate"], usd["rate_date"]) == (
        71219, Decimal("7.12190000"), datetime.date(2026, 11, 12))  # fmt: skip

    held = {(r.entity_id, r.reason): r for r in read_rejections(settings)}
    duplicate = held[("C", "duplicate_invoice")]
    (problem,) = duplicate.problems  # A booked it, or (same submission time) has the smaller id
    assert problem in [f"invoice {INV_A} is cited by claim C and by claim A, which {why}: it "
                       "stays with A" for why in ("booked it", "was submitted first")]  # fmt: skip
    assert duplicate.value[:1] == b"\x00"  # the claim's bytes, replayable
    flag, _ = [s for s in _read(settings, "claim_status")
               if s["claim_id"] == "C" and s["status"] != "WAITING"]  # fmt: skip
    assert (flag["related_claim_id"], flag["invoice_refs"]) == ("A", [INV_A])
    mismatch = held[(INV_F, "invoice_tax_mismatch")]
    assert mismatch.origin["file"] == "einvoices.xml" and mismatch.origin["entry"] == "1"
    assert mismatch.origin["topic"].endswith(".invoices.raw")  # where it came from, both ways
    assert list(held[(INV_F, "invoice_tax_mismatch")].problems) == [
        "lines[1]: tax_amount 50.00 is not amount_net 507.34 x tax_rate 0.0900 (= 45.66) within "
        "0.01"
    ]
    assert list(held[("G", "unknown_employee")].problems) == [
        "employee.id: E9999 is not in the employee mapping"
    ]
    stalled = {s["claim_id"]: s for s in _read(settings, "claim_status")
               if s["status"] == "STALLED"}  # fmt: skip
    assert stalled["E"]["detail"][0].endswith("waiting for the final approval")
    assert stalled["C"]["invoice_refs"] == [INV_A]
    assert 'erpbridge_stream_events_total{agent="claims",outcome="duplicate"} 1.0' in metrics
    # C's invoice is flagged once per time C asks: at its citation, and again when its approval
    # is handled after the claim (READY); never for A, whose two sources are one claim
    flagged = re.search(r'erpbridge_stream_events_total\{agent="invoices",outcome="flagged"\} '
                        r"(\S+)", metrics)  # fmt: skip
    assert flagged is not None and float(flagged.group(1)) in (1.0, 2.0), flagged
    assert 'erpbridge_stream_table_keys{table="reference.rate"} 6.0' in metrics

    # After a restart the tables are restored from their changelogs: A replayed from a third
    # source is still a duplicate; E's approval now posts it; a new claim K goes through.
    _send(settings, _claim("A", "replayed-dlq", refs=(INV_A,)), _approval("E", minutes=2),
          _claim("K", "file"), _approval("K"))  # fmt: skip
    with running_workers(settings, tmp_path / "second", sink=False) as (worker,):
        wait_for(lambda: {"E", "K"} <= {p["claim_id"] for p in _read(settings, "postings")},
                 timeout=120, what="E and K posted after the restart",
                 workers=[worker])  # fmt: skip
    counts = Counter(p["claim_id"] for p in _read(settings, "postings"))
    assert counts == Counter({"A": 1, "B": 1, "D": 1, "H": 1, "E": 1, "K": 1})


def test_a_tick_over_many_open_claims_goes_in_slices_that_each_commit(
        kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path) -> None:  # fmt: skip
    """1,500 claims never approved, a tick each second and 3 ms of a tick's time per event: each
    partition's round over its open claims runs in many slices, each handed on by a continuation
    tick after its commit, and every claim is reported stalled exactly once (none skipped where
    a slice ended, none twice where a timer tick joined a running round)."""
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             streams_tick_interval_s=1.0, streams_stall_after_s=4.0,
                             streams_tick_slice_s=0.003)  # fmt: skip
    ensure_topics(settings)
    ids = [f"S-{number:04d}" for number in range(1_500)]
    publish(settings, "claims_raw", [_claim(claim_id, "oa")[1:] for claim_id in ids])
    with running_workers(settings, tmp_path / "worker", sink=False) as (worker,):

        def stalled() -> Counter | None:
            found = Counter(s["claim_id"] for s in _read(settings, "claim_status")
                            if s["status"] == "STALLED")  # fmt: skip
            return found if len(found) == len(ids) else None

        counts = wait_for(stalled, timeout=120, what="every claim stalled", workers=[worker])
        metrics = worker.metrics()
    assert counts == Counter(dict.fromkeys(ids, 1))
    continued = re.search(r'erpbridge_stream_events_total\{agent="claims",'
                          r'outcome="tick_continued"\} (\S+)', metrics)  # fmt: skip
    assert continued is not None and float(continued.group(1)) >= 3, continued
