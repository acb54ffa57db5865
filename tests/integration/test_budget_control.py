"""Budget control on the real stack (issue 30): broker, registry, a streams worker, the Tryton sink
and Tryton. Claims on one cost centre arriving together are booked only while its budget lasts;
the rest are held over budget, saying budget, used and asked; a claim returned in approval gives
its reservation back, and a red-letter invoice its booking's part, and held claims that fit then
are booked; an operator releases one held claim (audited); the budget side's count equals what
Tryton booked."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from erpbridge.config import Settings
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_statuses
from ops.audit import AuditTrail, Role
from ops.budgets import budgets
from tests.browser import chromium_page, screenshot
from tests.contract_samples import SAMPLES
from tests.integration.ops_server import running_ops
from tests.integration.pipeline import (
    make_settings,
    posted_in_tryton,
    publish,
    publish_budget,
    running_workers,
    wait_for,
)
from tests.integration.test_china_fidelity import (
    COMPANY,
    NOW,
    TODAY,
    _approve,
    _claim,
    _einvoice,
    _import_xml,
    _number,
)

pytestmark = pytest.mark.integration
BUDGET = Decimal(
    "3000.00"
)  # CC-SH-01's, this year (the sample claims' cost centre CC-100 maps to it)
HOTEL = ("<IssuItemInformation><ItemName>*住宿服务*住宿费</ItemName><Amount>{net}</Amount>"
         "<TaxRate>0.06</TaxRate><ComTaxAm>{tax}</ComTaxAm></IssuItemInformation>")  # fmt: skip


def _decide(settings: Settings, claim_id: str, decision: str, hours: int) -> None:
    publish(settings, "approvals_raw", [(claim_id.encode(), dict(
        SAMPLES["approval_decision"], claim_id=claim_id, event_id=uuid.uuid4().hex, final=True,
        decision=decision, decided_at=NOW + datetime.timedelta(hours=hours)))])  # fmt: skip


def _last_statuses(settings: Settings) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for status in read_statuses(settings):
        if status["status"] not in ("WAITING", "REDRIVEN"):
            last[status["claim_id"]] = status
    return last


def _outcomes(settings: Settings, claim_ids: list[str]) -> dict[str, list[str]] | None:
    """Claim ids by their last outcome, once each of them has one."""
    last = _last_statuses(settings)
    if any(claim_id not in last for claim_id in claim_ids):
        return None
    by: dict[str, list[str]] = {}
    for claim_id in claim_ids:
        by.setdefault(last[claim_id]["status"], []).append(claim_id)
    return by


def _row(settings: Settings) -> Any:
    (row,) = [r for r in budgets(settings) if r.cost_centre == "CC-SH-01"]
    return row


def _booked_net(erp: Any, references: list[str]) -> Decimal:
    return sum((Decimal(str(inv["total_amount"])) for inv in posted_in_tryton(erp, references)),
               Decimal(0))  # fmt: skip


def _cli(settings: Settings, *args: str, books: Path | None = None) -> tuple[int, Any]:
    env = {**os.environ, **settings.to_env()}
    if books is not None:
        env["ERPBRIDGE_BOOKS_PATH"] = str(books)
    done = subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning", "budget",
                           *args, "--json"], capture_output=True, text=True, timeout=120,
                          env=env)  # fmt: skip
    return done.returncode, json.loads(done.stdout or "{}")


def _release_in_console(url: str, tokens: dict[Role, str], claim_id: str, reason: str) -> Path:
    """Sign in as a viewer (no release form), then as an operator: release the held claim with
    ``reason`` in the claim's page. The page's screenshot."""
    with chromium_page(1300, 900) as page:
        for role in (Role.VIEWER, Role.OPERATOR):
            page.goto(f"{url}/")
            page.fill("input[name=token]", tokens[role])
            page.click("#sign-in")
            page.goto(f"{url}/console/claims/{claim_id}")
            assert "over_budget" in page.locator("#journey").inner_text()
            assert page.locator("#release").count() == (role == Role.OPERATOR)
        page.fill("#release input[name=reason]", reason)
        shot = screenshot(page, "ops-console-budget-hold")
        page.click("#release button")
        assert "Release sent" in page.locator("#released").inner_text()
    return shot


def test_concurrent_claims_never_exceed_and_cancellation_and_reversal_give_back(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             company_tax_id=COMPANY, streams_tick_interval_s=2.0,
                             streams_redrive_after_s=5.0)  # fmt: skip
    ensure_topics(settings)
    publish_budget(settings, "CC-SH-01", BUDGET, TODAY.year)
    tag = uuid.uuid4().hex[:6].upper()
    blue = _number()
    hotel, waiting = f"BV{tag}", f"BR{tag}"
    burst = [f"BC{tag}{n:02d}" for n in range(12)]
    everyone = [hotel, waiting, *burst]
    with running_workers(settings, tmp_path / "w", erp=erp.settings) as workers:
        # a hotel claim with its invoice: booked, 1,280.00 consumed
        _import_xml(settings, tmp_path / "blue.xml", _einvoice(
            blue, "数电票（增值税专用发票）", HOTEL.format(net="1207.55", tax="72.45"),
            "1207.55", "72.45", "1280.00", seller="深圳市某某酒店管理有限公司"))  # fmt: skip
        publish(settings, "claims_raw", [(hotel.encode(), _claim(hotel, [
            ("lodging", "1280.00", blue)]))])  # fmt: skip
        _approve(settings, hotel)
        wait_for(lambda: posted_in_tryton(erp.settings, [hotel]), 180, "the hotel claim booked",
                 workers)  # fmt: skip
        # approved, its invoice never sent: 300.00 reserved while it waits
        publish(settings, "claims_raw", [(waiting.encode(), _claim(waiting, [
            ("meals", "300.00", _number())]))])  # fmt: skip
        _approve(settings, waiting)
        wait_for(lambda: _row(settings).reserved_minor == 30_000, 60, "the reservation",
                 workers)  # fmt: skip

        # twelve claims of 300.00 at once, over three partitions: 1,420.00 left, four fit
        publish(settings, "claims_raw", [(c.encode(), _claim(c, [("meals", "300.00", "")]))
                                         for c in burst])  # fmt: skip
        _approve(settings, *burst)
        first = wait_for(lambda: _outcomes(settings, burst), 120, "every burst claim judged",
                         workers)  # fmt: skip
        assert (len(first.get("POSTED", [])), len(first.get("HELD", []))) == (4, 8), first
        held = _last_statuses(settings)[first["HELD"][0]]
        assert held["reason"] == "over_budget"
        assert held["detail"][0].startswith(
            f"cost centre CC-SH-01 budget 3,000.00 CNY for {TODAY.year}-01-01..{TODAY.year}-12-31"
            ", used 2,780.00 CNY, asked 300.00 CNY: over by 80.00 CNY")  # fmt: skip
        row = _row(settings)
        assert (row.consumed_minor, row.reserved_minor, row.available_minor) == (
            248_000, 30_000, 22_000)  # fmt: skip
        assert len(row.held) == 8

        # the waiting claim is returned: its 300.00 goes back, and one held claim is booked
        _decide(settings, waiting, "RETURN", hours=2)
        wait_for(lambda: len(_outcomes(settings, burst).get("POSTED", [])) == 5, 60,
                 "one held claim booked after the return", workers)  # fmt: skip

        # the hotel's red-letter invoice: its 1,280.00 goes back, five more fit (to the fen)
        _import_xml(settings, tmp_path / "red.xml", _einvoice(
            _number(), "数电票（增值税专用发票）", HOTEL.format(net="-1207.55", tax="-72.45"),
            "-1207.55", "-72.45", "-1280.00", seller="深圳市某某酒店管理有限公司",
            extra=f"<BlueInvoiceNumber>{blue}</BlueInvoiceNumber>"))  # fmt: skip
        wait_for(lambda: len(_outcomes(settings, burst).get("POSTED", [])) == 10, 120,
                 "five held claims booked after the reversal", workers)  # fmt: skip
        row = _row(settings)
        assert (row.consumed_minor, row.reserved_minor, row.available_minor) == (300_000, 0, 0)
        still = list(row.held)
        assert len(still) == 2

        # an operator releases one over budget in the console (audited); a viewer cannot; one
        # not held is refused by the CLI and the API alike
        with running_ops(settings, tmp_path / "ops") as (url, tokens, _):
            shot = _release_in_console(url, tokens, still[0], "CFO 批准超预算")
            wait_for(lambda: _last_statuses(settings)[still[0]]["status"] == "POSTED", 60,
                     "the released claim posted", workers)  # fmt: skip
            refused_api = httpx.post(f"{url}/api/budget/release", timeout=60, json={
                "claim_id": still[0], "reason": "again"}, headers={
                "Authorization": f"Bearer {tokens[Role.OPERATOR]}"})  # fmt: skip
            assert (refused_api.status_code, refused_api.json()["error"]) == (409, "not_held")
        assert shot.stat().st_size > 10_000
        assert any("released by " in line and "CFO 批准超预算" in line
                   for line in _last_statuses(settings)[still[0]]["detail"])  # fmt: skip
        status, refused = _cli(settings, "release", f"NOPE{tag}", "--reason", "x")
        assert (status, refused["outcome"]) == (3, "refused")
        _decide(settings, still[1], "REJECT", hours=2)
        wait_for(lambda: _last_statuses(settings)[still[1]]["status"] == "CANCELLED", 60,
                 "the last held claim withdrawn", workers)  # fmt: skip
        wait_for(lambda: not _row(settings).held, 60, "the queue empty", workers)

    # what the budget side counted is what Tryton booked (the credit note included)
    references = [*everyone, f"{hotel}-RED-{blue}"]
    booked = posted_in_tryton(erp.settings, references)
    assert sorted(inv["reference"] for inv in booked) == sorted(
        [hotel, f"{hotel}-RED-{blue}", *(c for c in burst if c != still[1])])  # fmt: skip
    row = _row(settings)
    assert row.consumed_minor == _booked_net(erp.settings, references) * 100 == 330_000
    assert (row.reserved_minor, row.held, row.claims) == (0, (), 12)
    released = [r for r in AuditTrail(settings).records() if r["action"] == "budget.release"]
    assert [(r["outcome"], r["selection"]["claim_id"]) for r in released] == [
        ("ok", still[0]), ("refused", still[0]), ("refused", f"NOPE{tag}")]  # fmt: skip
    assert released[0]["role"] == "operator"
    assert released[0]["detail"] == "300.00 CNY held over budget, released: CFO 批准超预算"

    # budget vs actual: the ERP's answers (in the books) agree with the processors' count
    status, report = _cli(settings, "report", books=tmp_path / "books.duckdb")
    (mine,) = [r for r in report if r["cost_centre"] == "CC-SH-01"]
    assert status == 0 and (mine["budget_minor"], mine["booked_minor"], mine["consumed_minor"],
                            mine["reserved_minor"], mine["used_pct"]) == (
        300_000, 330_000, 330_000, 0, 110.0), mine  # fmt: skip
