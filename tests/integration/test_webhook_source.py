"""The webhook source as a real process: signed requests in, contract records on real topics."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import redis

from connectors.sources.idempotency import PENDING
from connectors.sources.ledger import namespace
from connectors.sources.signatures import signed_headers
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import FailureRecord
from erpbridge.topic_reader import read_all, read_rejections
from tests.integration.pipeline import wait_for
from tests.integration.webhook_server import SECRET, post_signed

pytestmark = pytest.mark.integration


def _claim(claim_id: str) -> dict:
    return {"claim_id": claim_id, "employee_id": "e1001", "employee_name": "张伟",
            "department": "销售部", "purpose": "客户拜访",
            "lines": [{"category": "travel", "description": "高铁", "amount": "553.00",
                       "currency": "CNY", "expense_date": "2026-11-02",
                       "invoice_refs": ["26312000000123456789"]},
                      {"category": "meals", "amount": 86.5, "currency": "RMB",
                       "expense_date": "2026年11月3日"}]}  # fmt: skip


def _records(settings: Settings, role: str, key: str) -> list[dict]:
    codecs = TopicCodecs(settings)
    try:
        return [
            codecs.deserializer(role)(r.value)
            for r in read_all(settings, codecs.topic(role))
            if r.key == key.encode()
        ]
    finally:
        codecs.close()


def _rejection(settings: Settings, request_id: str) -> FailureRecord:
    found = wait_for(lambda: [r for r in read_rejections(settings)
                              if r.origin.get("request_id") == request_id],
                     timeout=30, what=f"the rejection of request {request_id}")  # fmt: skip
    return found[0]


def test_a_valid_claim_is_published_after_the_broker_acked(webhook) -> None:
    url, settings, _ = webhook
    claim_id = f"EXP-{uuid.uuid4().hex[:8]}"
    reply = post_signed(url, "/v1/claims", _claim(claim_id))
    assert reply.status_code == 202, reply.text
    answer = reply.json()
    assert answer["key"] == claim_id and answer["topic"] == f"{settings.topic_prefix}.claims.raw"
    (record,) = _records(settings, "claims_raw", claim_id)
    assert record["event_id"] == answer["event_id"]
    assert record["employee"]["id"] == "E1001"
    assert [str(line["amount"]) for line in record["lines"]] == ["553.0000", "86.5000"]
    assert record["lines"][1]["currency"] == "CNY"
    assert record["origin"]["request_id"] == reply.headers["X-Request-Id"]


def test_approvals_and_invoices_land_on_their_topics(webhook) -> None:
    url, settings, _ = webhook
    claim_id = f"EXP-{uuid.uuid4().hex[:8]}"
    approval = {"claim_id": claim_id, "step": 2, "step_name": "财务审核", "approver_id": "E7",
                "approver_name": "李娜", "decision": "同意", "decided_at": "2026-11-05T10:00:00",
                "final": True}  # fmt: skip
    assert post_signed(url, "/v1/approvals", approval).status_code == 202
    (decision,) = _records(settings, "approvals_raw", claim_id)
    assert decision["decision"] == "APPROVE"
    assert decision["decided_at"].isoformat() == "2026-11-05T02:00:00+00:00"  # China time -> UTC

    number = f"2631200000{uuid.uuid4().int % 10**10:010d}"
    invoice = {"invoice_type": "数电普票", "invoice_number": number, "issue_date": "2026-11-02",
               "seller_name": "中国铁路上海局集团有限公司", "seller_tax_id": "91310000132211111P",
               "buyer_name": "ERPBridge Demo Co., Ltd.", "amount_net": "507.34",
               "tax_rate": "9%", "tax_amount": "45.66", "total": "553.00",
               "lines": [{"name": "*运输服务*客运服务费", "amount_net": "507.34",
                          "tax_rate": "0.09", "tax_amount": "45.66"}]}  # fmt: skip
    reply = post_signed(url, "/v1/invoices", invoice)
    assert reply.status_code == 202, reply.text
    (stored,) = _records(settings, "invoices_raw", number)
    assert stored["invoice_type"] == "DIGITAL_GENERAL" and str(stored["tax_rate"]) == "0.0900"


@pytest.mark.parametrize("case, status, code", [
    ("tampered", 401, "signature_invalid"),
    ("expired", 401, "timestamp_expired"),
    ("malformed", 400, "malformed_json"),
    ("wrong_type", 422, "invalid_event"),
])  # fmt: skip
def test_refused_requests_get_the_documented_error_and_are_kept(
    webhook, case, status, code
) -> None:
    url, settings, _ = webhook
    body = json.dumps(_claim(f"EXP-{uuid.uuid4().hex[:8]}")).encode()
    if case == "tampered":
        headers = {**signed_headers("travel-platform", SECRET, body),
                   "Content-Type": "application/json"}  # fmt: skip
        reply = httpx.post(f"{url}/v1/claims", content=body.replace(b"553.00", b"5530.00"),
                           headers=headers, timeout=30)  # fmt: skip
        sent = body.replace(b"553.00", b"5530.00")
    elif case == "expired":
        reply, sent = post_signed(url, "/v1/claims", None, raw=body, now=time.time() - 3600), body
    elif case == "malformed":
        sent = b'{"claim_id": "EXP-1", "lines": ['
        reply = post_signed(url, "/v1/claims", None, raw=sent)
    else:
        payload = json.loads(body)
        payload["lines"][0]["amount"] = {"value": 553}
        payload["lines"][1]["expense_date"] = 20261103
        sent = json.dumps(payload).encode()
        reply = post_signed(url, "/v1/claims", None, raw=sent)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == code
    rejection = _rejection(settings, reply.headers["X-Request-Id"])
    assert rejection.stage == "source.webhook" and rejection.reason == code
    assert rejection.value == sent
    if case == "wrong_type":
        fields = [p["field"] for p in reply.json()["problems"]]
        assert fields == ["lines[0].amount", "lines[1].expense_date"]
        assert list(rejection.problems)[0].startswith("lines[0].amount: ")


def test_a_retried_request_is_written_once(webhook) -> None:
    url, settings, _ = webhook
    claim_id = f"EXP-{uuid.uuid4().hex[:8]}"
    body = json.dumps(_claim(claim_id)).encode()
    first = post_signed(url, "/v1/claims", None, raw=body, headers={"Idempotency-Key": claim_id})
    again = post_signed(url, "/v1/claims", None, raw=body, headers={"Idempotency-Key": claim_id})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(_records(settings, "claims_raw", claim_id)) == 1

    other_id = f"EXP-{uuid.uuid4().hex[:8]}"  # no header and no event_id: the body is the key
    other = json.dumps(_claim(other_id)).encode()
    replies = [post_signed(url, "/v1/claims", None, raw=other) for _ in range(2)]
    assert [r.status_code for r in replies] == [202, 202]
    assert replies[1].headers.get("Idempotent-Replayed") == "true"
    assert len(_records(settings, "claims_raw", other_id)) == 1


def test_a_request_still_in_flight_elsewhere_says_when_to_ask_again(webhook) -> None:
    """A source killed mid-request leaves its key pending (60 s): the 409 carries Retry-After."""
    url, settings, _ = webhook
    claim_id = f"EXP-{uuid.uuid4().hex[:8]}"
    key = f"{namespace('idem', settings.topic_prefix)}:travel-platform:/v1/claims:{claim_id}"
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.set(key, PENDING, ex=7)
        reply = post_signed(url, "/v1/claims", _claim(claim_id),
                            headers={"Idempotency-Key": claim_id})  # fmt: skip
        assert reply.status_code == 409 and reply.json()["error"] == "request_in_progress"
        assert 1 <= int(reply.headers["Retry-After"]) <= 7
        client.delete(key)
        assert post_signed(url, "/v1/claims", _claim(claim_id),
                           headers={"Idempotency-Key": claim_id}).status_code == 202  # fmt: skip
    finally:
        client.close()


def test_the_openapi_document_describes_the_endpoints(webhook) -> None:
    url, _, worker = webhook
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/v1/claims", "/v1/approvals", "/v1/invoices"}
    claims = document["paths"]["/v1/claims"]["post"]
    assert {"202", "400", "401", "409", "422", "503"} <= set(claims["responses"])
    assert "X-Erpbridge-Signature" in [p["name"] for p in claims["parameters"]]
    assert "lines" in document["components"]["schemas"]["ClaimIn"]["required"]


def test_the_source_counts_what_it_read_published_and_refused(webhook) -> None:
    url, _, worker = webhook
    post_signed(url, "/v1/claims", _claim(f"EXP-{uuid.uuid4().hex[:8]}"))
    post_signed(url, "/v1/claims", None, raw=b"{oops")
    text = worker.metrics()
    counts = {outcome: _metric(text, outcome) for outcome in ("read", "published", "rejected")}
    assert counts["read"] >= counts["published"] + 1 and counts["published"] >= 1
    assert counts["rejected"] >= 1
    assert 'erpbridge_source_publish_seconds_count{source="webhook"}' in text


def _metric(text: str, outcome: str) -> float:
    prefix = f'erpbridge_source_records_total{{outcome="{outcome}",source="webhook"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix) :])
