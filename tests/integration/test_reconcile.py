"""Reconciliation against a real Tryton: after a run the books and the ERP agree to the cent;
an invoice cancelled or added by hand in Tryton, and a posting the ERP refused, are each named
with their kind of difference. (Tryton refuses to delete a posted or cancelled invoice, so a
document deleted by hand can only be a draft's, which we never leave.)"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from books.reconcile import KINDS
from connectors.erp.tryton import TrytonWriter
from connectors.erp.tryton_rpc import TrytonRpc
from erpbridge.config import env_of
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.model import Posting
from erpbridge.topic_reader import read_all, read_failures
from tests.browser import chromium_page, screenshot
from tests.integration.pipeline import (
    make_settings,
    pipeline_env,
    plain_posting,
    posted_in_tryton,
    publish,
    running_workers,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_reconcile_agrees_then_names_what_was_changed_by_hand(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    # a day of its own in 2026, so that other tests' documents in the same Tryton stay out
    day = datetime.date(2026, 1, 5) + datetime.timedelta(days=random.SystemRandom().randrange(250))
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    run = uuid.uuid4().hex[:6].upper()
    ids = [f"RC{run}-{n}" for n in range(4)]
    env = {**os.environ, **pipeline_env(settings), **env_of(erp.settings),
           "ERPBRIDGE_BOOKS_PATH": str(tmp_path / "books.duckdb")}  # fmt: skip

    def reconcile() -> tuple[int, dict[str, Any]]:
        done = subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning",
                               "reconcile", "--from", day.isoformat(), "--to", day.isoformat(),
                               "--feedback-after-min", "0.5", "--json"],
                              capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    with running_workers(settings, tmp_path / "w", streams=False, erp=erp.settings) as workers:
        publish(settings, "postings", [plain_posting(p, day, 1000 * (n + 1)) for n, p in
                                       enumerate(ids)])  # fmt: skip
        wait_for(lambda: len(posted_in_tryton(erp.settings, ids)) == 4, timeout=120,
                 what="4 bookings", workers=workers)  # fmt: skip
        wait_for(lambda: reconcile()[0] == 0, timeout=60, what="the feedback in the books")
        code, result = reconcile()
        assert code == 0 and result["ok"] and (result["sent"], result["booked"]) == (4, 4)
        assert result["sent_minor"] == result["booked_minor"] == 10000

        # the ERP refuses one more (an unknown account): sent, never booked
        refused = f"RC{run}-X"
        bad = plain_posting(refused, day, 777)
        bad[1]["lines"][0]["account_code"] = "9.9.9"
        publish(settings, "postings", [bad])
        wait_for(lambda: read_failures(settings, "erp_dead_letter"), timeout=60,
                 what="the refusal", workers=workers)  # fmt: skip
    writer = TrytonWriter.from_settings(erp.settings)
    rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
    try:
        invoices = {inv["reference"]: inv for inv in posted_in_tryton(erp.settings, ids)}
        rpc.call("model.account.invoice.cancel", [invoices[ids[0]]["id"]])  # by hand
        # changed by hand: Tryton keeps a posted invoice's amounts, so finance cancels it and
        # enters it again, here for 25.00 where 20.00 was sent
        rpc.call("model.account.invoice.cancel", [invoices[ids[1]]["id"]])
        writer.book(Posting.from_record(plain_posting(f"FIX{run}", day, 2500)[1]))
        (again,) = writer.find_invoices([f"FIX{run}"])
        rpc.call("model.account.invoice.write", [again["id"]], {"reference": ids[1]})
        by_hand = f"HAND{run}"  # booked in the expense journal, never sent by us
        writer.book(Posting.from_record(plain_posting(by_hand, day, 555)[1]))
        void = f"VOID{run}"  # entered by hand too, then cancelled properly: no difference
        writer.book(Posting.from_record(plain_posting(void, day, 666)[1]))
        (voided,) = writer.find_invoices([void])
        rpc.call("model.account.invoice.cancel", [voided["id"]])
    finally:
        rpc.close()
        writer.close()
    code, result = reconcile()
    found = sorted((d["kind"], d["reference"], d["document"]) for d in result["differences"])
    assert code == 1 and found == [("amount_mismatch", ids[1], again["number"]),
                                   ("missing_in_erp", refused, None),
                                   ("not_posted", ids[0], invoices[ids[0]]["number"]),
                                   ("unexpected_in_erp", by_hand, found[-1][2])]  # fmt: skip
    assert result["counts"]["not_posted"] == 1 and (result["sent"], result["booked"]) == (5, 3)
    assert [(d["reference"], d["erp_minor"]) for d in result["cancelled_unsent"]] == [(void, 666)]

    # the same answer as finance reads it: CSV, the HTML page in a real browser, the summary
    # event on <prefix>.reconciliation, and the report by cost centre
    pages = tmp_path / "pages"
    period = ["--from", day.isoformat(), "--to", day.isoformat(), "--no-sync"]
    for args in (["reconcile", *period, "--format", "csv", "--out", str(pages / "r.csv")],
                 ["reconcile", *period, "--format", "html", "--out", str(pages / "r.html"),
                  "--publish"],
                 ["report", *period, "--by", "cost_centre", "--format", "html", "--out",
                  str(pages / "report.html")]):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning", *args],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert done.returncode == (0 if args[0] == "report" else 1), done.stderr
    rows = list(csv.reader(io.StringIO((pages / "r.csv").read_text(encoding="utf-8"))))
    assert sorted(r[0] for r in rows[1:]) == [kind for kind, _, _ in found]
    (summary,) = [TopicCodecs(settings).deserializer("reconciliation")(r.value)
                  for r in read_all(settings, topics_of(settings).reconciliation)]  # fmt: skip
    assert summary["counts"]["amount_mismatch"] == 1 and not summary["ok"]
    assert sorted((d["kind"], d["reference"]) for d in summary["differences"]) == [
        (kind, ref) for kind, ref, _ in found]  # fmt: skip
    with chromium_page(1300, 900) as page:
        page.goto((pages / "r.html").as_uri())
        assert "4 difference(s)" in page.locator("#verdict").inner_text()
        assert page.locator("#differences tr").count() == 5  # the header and four
        assert page.locator("svg.chart rect.bar").count() >= 2 + len(KINDS)
        shots = [screenshot(page, "reconciliation")]
        page.goto((pages / "report.html").as_uri())
        assert page.locator("#report tr").count() >= 2
        assert page.locator(".tile .total").first.inner_text() == "107.77"  # as sent
        shots.append(screenshot(page, "report"))
    assert all(s.stat().st_size > 10_000 for s in shots)
