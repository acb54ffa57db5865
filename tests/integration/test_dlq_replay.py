"""Operators on the real stack: claims refused for an unknown cost centre and postings the ERP
refused for an unknown account land in the failure topics; the mapping is fixed, the postings
repaired on the way; ``erpbridge dlq replay`` books each exactly once in Tryton, a second replay
books nothing, a record that keeps failing is quarantined, and the audit trail holds every
action and proves it was not altered."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.sources.reference_file import publish_reference
from erpbridge.config import Settings
from erpbridge.kafka_io import end_offsets
from erpbridge.topic_reader import read_failures
from ops.audit import from_json_lines, to_json_lines, verify
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import (
    make_settings,
    pipeline_env,
    posted_in_tryton,
    publish,
    running_workers,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return _run_env(settings, {}, *args)


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    done = _run(settings, *args)
    return done.returncode, done.stdout + done.stderr


def _cli_json(settings: Settings, *args: str) -> dict[str, Any]:
    done = _run(settings, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def _claim(claim_id: str) -> tuple[bytes, dict[str, Any]]:
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, event_id=uuid.uuid4().hex,
                 submitted_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
    claim["employee"] = dict(
        claim["employee"], id="E1001", department=None, cost_centre="CC-NEW"
    )  # not in the cost centre mapping (yet)
    claim["lines"] = [dict(claim["lines"][0], invoice_refs=[], currency="CNY",
                           amount=Decimal("120.0000"))]  # fmt: skip
    return claim_id.encode(), claim


def _posting(posting_id: str, account: str) -> tuple[bytes, dict[str, Any]]:
    record = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                  total_minor=4200, created_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
    record["lines"] = [dict(record["lines"][0], amount_minor=4200, account_code=account,
                            invoice_refs=[], input_vat=[])]  # fmt: skip
    record["tax_minor"] = 0
    return posting_id.encode(), record


def test_fix_then_replay_books_each_once_and_a_second_replay_books_nothing(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             streams_require_approval=False, sink_retry_initial_s=0.2)  # fmt: skip
    run = uuid.uuid4().hex[:6].upper()
    claims = [f"R{run}-C{n}" for n in range(2)]
    postings = [f"R{run}-P{n}" for n in range(2)]
    stubborn = f"R{run}-P9"  # stays wrong: replayed unrepaired, it fails again
    with running_workers(settings, tmp_path / "workers", erp=erp.settings) as workers:
        publish(settings, "claims_raw", [_claim(c) for c in claims])
        publish(settings, "postings", [_posting(p, "9.9.9") for p in [*postings, stubborn]])
        refused = wait_for(lambda: len(read_failures(settings, "rejected")) >= 2 and
                           len(read_failures(settings, "erp_dead_letter")) >= 3, timeout=120,
                           what="the refusals", workers=workers)  # fmt: skip
        assert refused
        listed = _cli_json(settings, "dlq", "list")
        assert listed["summary"]["by_reason"] == {"unknown_cost_centre": 2, "refused": 3}
        assert posted_in_tryton(erp.settings, claims + postings) == []

        # a dry run writes nothing and says where each would go
        before = end_offsets(settings, topics_of(settings).postings)
        dry = _cli_json(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--dry-run")
        assert dry["selected"] == 3 and dry["replayed"] == 0
        assert {step["to"] for step in dry["plan"]} == {topics_of(settings).postings}
        assert end_offsets(settings, topics_of(settings).postings) == before

        # fix the cause: the cost centre mapping; repair the postings' account on the way
        mapping = tmp_path / "cost_centres.csv"
        mapping.write_text("cost_centre,erp_code\nCC-NEW,CC-SH-01\n", encoding="utf-8")
        publish_reference(mapping, settings)
        time.sleep(2)  # the processors' reference view follows the topic
        first = _cli_json(settings, "dlq", "replay", "--topic", "rejected", "--reason",
                          "unknown_cost_centre", "--yes")  # fmt: skip
        assert (first["selected"], first["replayed"]) == (2, 2)
        for posting in postings:  # each repaired on its way back
            fixed = _cli_json(
                settings,
                "dlq",
                "replay",
                "--topic",
                "erp_dead_letter",
                "--yes",
                "--claim-id",
                posting,
                "--set",
                "lines.0.account_code=5.2.2",
            )
            assert fixed["replayed"] == 1
        unrepaired = _cli_json(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes",
                               "--claim-id", stubborn)  # fmt: skip
        assert unrepaired["replayed"] == 1
        booked = wait_for(lambda: (found := posted_in_tryton(erp.settings, claims + postings))
                          and len(found) >= 4 and found, timeout=120, what="4 bookings",
                          workers=workers)  # fmt: skip
        assert Counter(inv["reference"] for inv in booked) == Counter(claims + postings)
        # the unrepaired one failed again, now with its replay count: past --max-replays 1 it
        # goes to quarantine instead of round again
        again = wait_for(lambda: [f for f in read_failures(settings, "erp_dead_letter")
                                  if f.key == stubborn.encode() and dict(f.headers).get(
                                      "erpbridge.replay.count") == b"1"], timeout=60,
                         what="the unrepaired posting refused again", workers=workers)  # fmt: skip
        assert again
        loop = _cli_json(settings, "dlq", "replay", "--topic", "erp_dead_letter", "--yes",
                         "--claim-id", stubborn, "--max-replays", "1")  # fmt: skip
        assert (loop["replayed"], loop["quarantined"]) == (1, 1)  # count 0: again; count 1: kept
        assert [f.key for f in read_failures(settings, "quarantine")] == [stubborn.encode()]

        # a second replay of everything that was fixed books nothing new
        for args in (["--topic", "rejected", "--reason", "unknown_cost_centre"],
                     ["--topic", "erp_dead_letter", "--claim-id", postings[0], "--set",
                      "lines.0.account_code=5.2.2"]):  # fmt: skip
            assert _cli_json(settings, "dlq", "replay", "--yes", *args)["replayed"] >= 1
        time.sleep(8)  # the processors and the sink have had their chance to book twice
        booked = posted_in_tryton(erp.settings, claims + postings)
    assert Counter(inv["reference"] for inv in booked) == Counter(claims + postings)

    # the audit trail holds every action, in order, and proves it
    code, out = _cli(settings, "audit", "verify")
    assert code == 0 and "intact" in out, out
    trail = _run(settings, "audit", "list", "--json").stdout
    records = from_json_lines(trail)
    replays = [r for r in records if r["action"] == "dlq.replay"]
    assert [r["dry_run"] for r in replays][:1] == [True] and len(replays) == 8
    assert all(r["actor"].startswith("cli:") and r["outcome"] == "ok" for r in replays)
    exported = tmp_path / "audit.jsonl"
    assert _cli(settings, "audit", "export", "--file", str(exported))[0] == 0
    whole = exported.read_text(encoding="utf-8")
    assert _cli(settings, "audit", "verify", "--file", str(exported))[0] == 0
    # its last records cut off: caught by the anchor, and (the anchor re-made) by the live trail
    lines = whole.splitlines(keepends=True)
    exported.write_text("".join(lines[:-3] + lines[-1:]), encoding="utf-8")
    code, out = _cli(settings, "audit", "verify", "--file", str(exported))
    assert code == 1 and "cut from its end" in out, out
    kept = from_json_lines(whole)[:-2]
    exported.write_text(to_json_lines(kept, datetime.datetime.now(datetime.UTC)), encoding="utf-8")
    code, out = _cli(settings, "audit", "verify", "--file", str(exported))
    assert code == 1 and f"broken at seq {kept[-1]['seq'] + 1}" in out and "cut short" in out, out
    altered = from_json_lines(whole)
    altered[2]["counts"] = {**altered[2]["counts"], "replayed": 0}  # someone "corrects" it
    exported.write_text(to_json_lines(altered), encoding="utf-8")
    code, out = _cli(settings, "audit", "verify", "--file", str(exported))
    assert code == 1 and "broken at seq 3" in out, out
    removed = from_json_lines(to_json_lines(records))
    del removed[1]
    assert verify(removed).first_bad_seq == 3 and not verify(records[:4]).first_bad_seq


def test_auto_replay_books_what_failed_while_the_erp_was_down_once(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    """The ERP down longer than a posting's retry budget: dead-lettered as retries_exhausted;
    the ERP back, one auto-replay pass books it; the next pass replays nothing."""
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             sink_errors_retry_timeout_s=3.0, sink_breaker_threshold=1000,
                             sink_retry_initial_s=0.2)  # fmt: skip
    posting = f"A{uuid.uuid4().hex[:6].upper()}-P"
    with running_workers(settings, tmp_path / "w", streams=False, erp=erp.settings) as workers:
        erp.stop()
        try:
            publish(settings, "postings", [_posting(posting, "5.2.2")])
            wait_for(lambda: read_failures(settings, "erp_dead_letter"), timeout=90,
                     what="the posting dead-lettered", workers=workers)  # fmt: skip
        finally:
            erp.start()
        (dead,) = read_failures(settings, "erp_dead_letter")
        assert dead.reason == "retries_exhausted" and dead.error_class == "RetriesExhausted"
        env = {"ERPBRIDGE_AUTO_REPLAY_BASE_S": "0"}
        first = _run_env(settings, env, "dlq", "auto-replay", "--once")
        assert "'replayed': 1" in first.stdout, first.stdout + first.stderr
        wait_for(lambda: len(posted_in_tryton(erp.settings, [posting])) == 1, timeout=90,
                 what="the auto-replayed posting booked", workers=workers)  # fmt: skip
        second = _run_env(settings, env, "dlq", "auto-replay", "--once")
        assert "'replayed': 1" not in second.stdout  # its group moved past it
        time.sleep(5)
        assert len(posted_in_tryton(erp.settings, [posting])) == 1
    passes = [
        r
        for r in from_json_lines(_run(settings, "audit", "list", "--json").stdout)
        if r["actor"] == "auto-replay"
    ]
    # idle passes leave no record; the one that wrote says so before its first write
    assert [r["action"] for r in passes] == ["dlq.replay.start", "dlq.replay"]
    assert passes[-1]["counts"]["replayed"] == 1


def _run_env(settings: Settings, extra: dict[str, str],
             *args: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "erpbridge", "--log-level", "warning", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **pipeline_env(settings), **extra})  # fmt: skip
