"""Issue 29's claim on the real stack: a claim sent to the webhook with the sender's
``traceparent``, its invoice and its approval, processed by the stream processors, booked in
Tryton by the sink and answered upstream by the feedback webhook, is one trace
(erpbridge.tracing): every process writes its spans to one JSON-lines file
(``ERPBRIDGE_TRACING=file``); the claim's trace holds a span of every stage, the sender's trace
id is kept, and the feedback request carries the trace on to the receiver. Then it is paid in
Tryton (its Pay wizard), the payment watcher answers PAID, delivered upstream once, and
``erpbridge trace`` prints the whole journey (the console shows the same: test_claim_journey)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.erp.tryton_rpc import TrytonRpc
from deploy.local.process import free_port
from erpbridge.config import env_of
from tests.integration.pipeline import (
    Worker,
    make_settings,
    pipeline_env,
    posted_in_tryton,
    running_workers,
    serving,
    wait_for,
)
from tests.integration.test_feedback_webhook import SECRET as FEEDBACK_SECRET
from tests.integration.test_feedback_webhook import Receiver
from tests.integration.tryton_pay import pay
from tests.integration.webhook_server import SECRET, post_signed

pytestmark = pytest.mark.integration
UPSTREAM_TRACE = uuid.uuid4().hex
UPSTREAM = f"00-{UPSTREAM_TRACE}-{uuid.uuid4().hex[:16]}-01"


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _delivered(receiver: Receiver, claim_id: str, status: str) -> list[dict[str, str]]:
    """The headers of each delivery of ``claim_id``'s answer ``status`` upstream."""
    return [headers for event, headers in receiver.received
            if event["claim_id"] == claim_id and event["status"] == status]  # fmt: skip


def _trace_id(span: dict[str, Any]) -> str:
    return str(span["context"]["trace_id"]).removeprefix("0x")


def test_a_claim_is_one_trace_from_the_webhook_to_the_feedback(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    traces = tmp_path / "spans.jsonl"
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             tracing="file", tracing_file=str(traces),
                             sink_retry_initial_s=0.2)  # fmt: skip
    claim_id = f"TRC-{uuid.uuid4().hex[:8].upper()}"
    number = f"2631200000{uuid.uuid4().int % 10**10:010d}"
    receiver = Receiver(answers=[])
    port = free_port()
    env = {**pipeline_env(settings),
           "ERPBRIDGE_WEBHOOK_SECRETS": json.dumps({"travel-platform": SECRET})}  # fmt: skip
    webhook = Worker("webhook", [sys.executable, "-m", "erpbridge", "source", "webhook",
                                 "--port", str(port)], env, tmp_path / "webhook.log")  # fmt: skip
    feedback = Worker("feedback", [sys.executable, "-m", "erpbridge", "feedback", "webhook",
                                   "--url", receiver.url],
                      {**env, "ERPBRIDGE_FEEDBACK_WEBHOOK_SECRET": FEEDBACK_SECRET},
                      tmp_path / "feedback.log")  # fmt: skip
    payments = Worker("payments", [sys.executable, "-m", "erpbridge", "payments", "watch",
                                   "tryton", "--poll-s", "1"],
                      {**env, **env_of(erp.settings)}, tmp_path / "payments.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_workers(settings, tmp_path / "pipeline", erp=erp.settings) as workers:
        serving(webhook, url, "the webhook source")
        feedback.start()
        everyone = [*workers, webhook, feedback]
        try:
            claim = {"claim_id": claim_id, "employee_id": "e1001", "employee_name": "张伟",
                     "purpose": "客户拜访",
                     "lines": [{"category": "travel", "description": "高铁", "amount": "553.00",
                                "currency": "CNY", "expense_date": "2026-11-02",
                                "invoice_refs": [number]}]}  # fmt: skip
            invoice = {"invoice_type": "数电普票", "invoice_number": number,
                       "issue_date": "2026-11-02", "seller_name": "中国铁路上海局集团有限公司",
                       "seller_tax_id": "91310000132211111P",
                       "buyer_name": "ERPBridge Demo Co., Ltd.", "amount_net": "507.34",
                       "tax_rate": "9%", "tax_amount": "45.66", "total": "553.00",
                       "lines": [{"name": "*运输服务*客运服务费", "amount_net": "507.34",
                                  "tax_rate": "0.09", "tax_amount": "45.66"}]}  # fmt: skip
            approval = {"claim_id": claim_id, "step": 2, "step_name": "财务审核",
                        "approver_id": "E7", "approver_name": "李娜", "decision": "同意",
                        "decided_at": "2026-11-05T10:00:00", "final": True}  # fmt: skip
            sent = post_signed(url, "/v1/claims", claim, headers={"traceparent": UPSTREAM})
            assert sent.status_code == 202, sent.text
            assert post_signed(url, "/v1/invoices", invoice).status_code == 202
            assert post_signed(url, "/v1/approvals", approval).status_code == 202
            wait_for(lambda: posted_in_tryton(erp.settings, [claim_id]), 120, "the booking",
                     everyone)  # fmt: skip
            wait_for(lambda: _delivered(receiver, claim_id, "BOOKED"), 60,
                     "the feedback delivered", everyone)  # fmt: skip
            wait_for(lambda: {"feedback.deliver"} <= {s["name"] for s in _spans(traces)},
                     30, "the delivery's span", everyone)  # fmt: skip
            payments.start()
            everyone.append(payments)
            rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
            try:
                assert pay(rpc, claim_id)["state"] == "paid"
            finally:
                rpc.close()
            wait_for(lambda: _delivered(receiver, claim_id, "PAID"), 60, "PAID delivered",
                     everyone)  # fmt: skip
            journey = subprocess.run(
                [sys.executable, "-m", "erpbridge", "trace", claim_id],
                env={**os.environ, **env, "ERPBRIDGE_BOOKS_PATH": str(tmp_path / "books.duckdb")},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            time.sleep(3)  # three lookups of the watcher more: no second PAID
        finally:
            payments.stop()
            feedback.stop()
            webhook.stop()
            receiver.server.shutdown()
    assert journey.returncode == 0, journey.stdout + journey.stderr
    for seen in ("claim from", "invoice", "APPROVE", "BOOKING", "BOOKED", "PAID", number):
        assert seen in journey.stdout, (seen, journey.stdout)
    assert len(_delivered(receiver, claim_id, "PAID")) == 1
    spans = [s for s in _spans(traces) if _trace_id(s) == UPSTREAM_TRACE]
    names = {s["name"] for s in spans}
    assert {"webhook /v1/claims", "streams.claim", "streams.post", "sink.write",
            "feedback.deliver"} <= names, sorted(names)  # fmt: skip
    services = {s["resource"]["attributes"]["service.name"] for s in spans}
    assert services == {"erpbridge-webhook", "erpbridge-streams", "erpbridge-sink",
                        "erpbridge-feedback"}, services  # fmt: skip
    ids = {s["context"]["span_id"] for s in spans}
    roots = [s for s in spans if s["parent_id"] is None or s["parent_id"] not in ids]
    assert [s["name"] for s in roots] == ["webhook /v1/claims"], roots  # one tree, the webhook's
    (delivered,) = _delivered(receiver, claim_id, "BOOKED")
    assert delivered["traceparent"].split("-")[1] == UPSTREAM_TRACE
    writes = [s["attributes"] for s in spans if s["name"] == "sink.write"]
    assert sorted(w["erpbridge.sink"] for w in writes) == ["feedback_webhook", "tryton"]
    assert {w["erpbridge.key"] for w in writes} == {claim_id}
