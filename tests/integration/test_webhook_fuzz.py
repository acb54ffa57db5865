"""The webhook source under generated and hostile requests, as a real process on the real broker.

Requests are generated from the source's own ``/openapi.json`` by schemathesis (valid-looking and
deliberately invalid ones), signed or not, with JSON and other content types; then the hostile
cases found by hand. For every request: no 5xx and no traceback, an answer in the documented
shape, and the request either published (once) or on the rejection topic with its reason. The
server must still answer, with bounded memory, afterwards.

Seeded and bounded (``derandomize=True``; ``ERPBRIDGE_FUZZ_EXAMPLES`` cases per endpoint and mode,
default 100).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_dict

from connectors.sources.openapi import openapi_document
from connectors.sources.signatures import signed_headers
from connectors.sources.webhook import ENDPOINTS
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.topic_reader import read_all, read_rejections
from tests.integration.http_checks import documented_answer
from tests.integration.webhook_server import SECRET

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("ERPBRIDGE_FUZZ_EXAMPLES", "100"))
HTTP_FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))  # fmt: skip
SCHEMA = from_dict(openapi_document(ENDPOINTS))
CONTENT_TYPES = ["application/json"] * 6 + [
    "application/json; charset=utf-8", "application/json; charset=latin-1", "text/plain",
    "application/x-www-form-urlencoded", None]  # fmt: skip


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _body(value: Any, ascii_only: bool) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate stays (as invalid UTF-8)


def _post(url: str, path: str, body: bytes, content_type: str | None, sign: bool,
          headers: dict[str, str]) -> httpx.Response:  # fmt: skip
    sent = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if sign:
        sent.update(signed_headers("travel-platform", SECRET, body))
    if content_type is not None:
        sent["Content-Type"] = content_type
    return httpx.post(f"{url}{path}", content=body, headers=sent, timeout=30)


def _answered_as_documented(reply: httpx.Response) -> dict[str, Any]:
    answer = documented_answer(reply)
    if reply.status_code == 202:
        assert answer["status"] == "accepted" and answer["event_id"]
    return answer


def _check_outcomes(settings: Any, seen: list[tuple[str, int, dict[str, Any]]]) -> None:
    """Each refused request is on the rejection topic; each accepted one on its topic, once."""
    kept = {r.origin.get("request_id"): r for r in read_rejections(settings)}
    refused = [(rid, answer) for rid, status, answer in seen if status != 202]
    missing = [rid for rid, _ in refused if rid not in kept]
    assert not missing, f"{len(missing)} refusals not on the rejection topic: {missing[:5]}"
    for rid, answer in refused:
        assert kept[rid].reason == answer["error"]
    accepted = {answer["event_id"]: answer for _, status, answer in seen if status == 202}
    codecs = TopicCodecs(settings)
    try:
        counts: Counter[str] = Counter()
        for topic in {answer["topic"] for answer in accepted.values()}:
            role = next(r for r in ("claims_raw", "approvals_raw", "invoices_raw")
                        if codecs.topic(r) == topic)  # fmt: skip
            for record in read_all(settings, topic):
                counts[codecs.deserializer(role)(record.value)["event_id"]] += 1
    finally:
        codecs.close()
    assert {event_id: counts[event_id] for event_id in accepted} == dict.fromkeys(accepted, 1)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])  # fmt: skip
@pytest.mark.parametrize("path", [endpoint.path for endpoint in ENDPOINTS])
def test_generated_requests_are_published_or_refused_never_a_server_error(
    webhook, path: str, mode: GenerationMode
) -> None:
    url, settings, worker = webhook
    assert worker.proc is not None
    rss_before = _rss_kib(worker.proc.pid)
    seen: list[tuple[str, int, dict[str, Any]]] = []
    operation = SCHEMA[path]["POST"]

    @HTTP_FUZZ
    @given(case=operation.as_strategy(generation_mode=mode),
           sign=st.sampled_from([True, True, True, False]),
           content_type=st.sampled_from(CONTENT_TYPES), ascii_only=st.booleans())  # fmt: skip
    def run(case: Any, sign: bool, content_type: str | None, ascii_only: bool) -> None:
        headers = {k: str(v) for k, v in (case.headers or {}).items()}
        body = _body(case.body, ascii_only)
        reply = _post(url, path, body, content_type, sign, headers)
        seen.append((reply.headers["X-Request-Id"], reply.status_code,
                     _answered_as_documented(reply)))  # fmt: skip

    run()
    statuses = Counter(status for _, status, _ in seen)
    print(f"{path} {mode.value}: {len(seen)} requests, answers {dict(sorted(statuses.items()))}")
    _check_outcomes(settings, seen)
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    grown_mib = (_rss_kib(worker.proc.pid) - rss_before) / 1024
    assert grown_mib < 100, f"the webhook source grew by {grown_mib:.0f} MiB"


def _claim(claim_id: str, **changes: Any) -> dict[str, Any]:
    claim = {"claim_id": claim_id, "employee_id": "E1001", "employee_name": "张伟",
             "lines": [{"category": "travel", "amount": "553.00", "currency": "CNY",
                        "expense_date": "2026-11-02"}]}  # fmt: skip
    return {**claim, **changes}


def _line(**changes: Any) -> list[dict[str, Any]]:
    return [{"category": "travel", "amount": "553.00", "currency": "CNY",
             "expense_date": "2026-11-02", **changes}]  # fmt: skip


def _hostile() -> list[tuple[str, bytes, str | None, dict[str, Any], int, str]]:
    """(name, body, content type, extra headers, status, error code): the classes the issue
    found, each answered as the OpenAPI document says."""
    cid = f"H-{uuid.uuid4().hex[:8]}"
    j = json.dumps
    return [
        ("deep nesting", b'{"claim_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
         "application/json", {}, 400, "too_deep"),
        ("huge integer", ('{"claim_id": "X", "step": ' + "9" * 5000 + "}").encode(),
         "application/json", {}, 400, "number_too_long"),
        ("duplicate keys", b'{"claim_id": "D1", "amount": "12.34", "amount": "99999.00"}',
         "application/json", {}, 400, "duplicate_key"),
        ("lone surrogate", b'{"claim_id": "\\ud800"}', "application/json", {}, 400,
         "lone_surrogate"),
        ("NaN", b'{"claim_id": "N1", "total": NaN}', "application/json", {}, 400,
         "not_a_number"),
        ("not UTF-8", '{"claim_id": "张伟"}'.encode("gbk"), "application/json", {}, 400,
         "not_utf8"),
        ("offset out of range", j(_claim(cid + "a", submitted_at="0001-01-01T00:00:00+14:00"))
         .encode(), "application/json", {}, 422, "invalid_event"),
        ("amount beyond precision", j(_claim(cid + "b", lines=_line(amount="1e400"))).encode(),
         "application/json", {}, 422, "invalid_event"),
        ("too many decimals", j(_claim(cid + "c", lines=_line(amount="0.000001"))).encode(),
         "application/json", {}, 422, "invalid_event"),
        ("text/plain", j(_claim(cid + "d")).encode(), "text/plain", {}, 415,
         "unsupported_media_type"),
        ("form-encoded", b"claim_id=F1&amount=1", "application/x-www-form-urlencoded", {}, 415,
         "unsupported_media_type"),
        ("no content type", j(_claim(cid + "e")).encode(), None, {}, 415,
         "unsupported_media_type"),
        ("latin-1 JSON", j(_claim(cid + "f")).encode(), "application/json; charset=latin-1", {},
         415, "unsupported_media_type"),
        ("control character id", j(_claim(cid + "\x07")).encode(), "application/json", {}, 422,
         "invalid_event"),
        ("zero-width id", j(_claim(cid + "\u200b")).encode(), "application/json", {}, 422,
         "invalid_event"),
        ("BOM in id", j(_claim("\ufeff" + cid)).encode(), "application/json", {}, 422,
         "invalid_event"),
        ("combining mark in id", j(_claim(cid + "-1\u0301")).encode(),
         "application/json", {}, 422, "invalid_event"),
        ("terminal escape id", j(_claim(cid + "\x1b[2J")).encode(), "application/json", {}, 422,
         "invalid_event"),
        ("bad idempotency key", j(_claim(cid + "g")).encode(), "application/json",
         {"Idempotency-Key": "has space"}, 400, "invalid_idempotency_key"),
        ("absurd timestamp", j(_claim(cid + "h")).encode(), "application/json",
         {"X-Erpbridge-Timestamp": "9" * 40}, 401, "timestamp_invalid"),
        ("unicode digits timestamp", j(_claim(cid + "i")).encode(), "application/json",
         {"X-Erpbridge-Timestamp": "١٧٠٠٠٠٠٠٠٠".encode()}, 401, "timestamp_invalid"),
    ]  # fmt: skip


def test_hostile_requests_get_their_documented_refusal_and_are_kept(webhook) -> None:
    url, settings, _ = webhook
    seen = []
    for name, body, content_type, extra, status, code in _hostile():
        headers = signed_headers("travel-platform", SECRET, body)
        headers.update(extra)  # after signing: an absurd timestamp replaces the good one
        if content_type is not None:
            headers["Content-Type"] = content_type
        reply = httpx.post(f"{url}/v1/claims", content=body, headers=headers, timeout=30)
        answer = _answered_as_documented(reply)
        assert (reply.status_code, answer["error"]) == (status, code), f"{name}: {reply.text}"
        seen.append((reply.headers["X-Request-Id"], reply.status_code, answer))
    too_big = b'{"claim_id": "' + b"x" * (settings.webhook_max_body_bytes + 10) + b'"}'
    reply = httpx.post(f"{url}/v1/claims", content=too_big, timeout=30,
                       headers={**signed_headers("travel-platform", SECRET, too_big),
                                "Content-Type": "application/json"})  # fmt: skip
    assert reply.status_code == 413
    _check_outcomes(settings, seen)
    # Not HTTP at all (a control character in a header): aiohttp's parser refuses it before any
    # handler runs; there is no request to keep, and still no 5xx.
    body = json.dumps(_claim("C-ctl")).encode()
    bad = httpx.post(f"{url}/v1/claims", content=body, timeout=30, headers={
        **signed_headers("travel-platform", SECRET, body), "Content-Type": "application/json",
        "Idempotency-Key": "k\x01"})  # fmt: skip
    assert bad.status_code == 400


def test_an_idempotency_key_reused_for_another_body_is_refused_not_answered_as_the_first(
    webhook,
) -> None:
    url, settings, _ = webhook
    key = f"K-{uuid.uuid4().hex}"
    first, second = (json.dumps(_claim(f"I-{uuid.uuid4().hex[:8]}", **extra)).encode()
                     for extra in ({}, {"purpose": "changed"}))  # fmt: skip
    replies = []
    for body in (first, second, first):
        headers = {**signed_headers("travel-platform", SECRET, body),
                   "Content-Type": "application/json", "Idempotency-Key": key}  # fmt: skip
        replies.append(httpx.post(f"{url}/v1/claims", content=body, headers=headers, timeout=30))
        time.sleep(0.05)
    assert [r.status_code for r in replies] == [202, 422, 202]
    assert replies[1].json()["error"] == "idempotency_key_reused"
    assert replies[2].headers.get("Idempotent-Replayed") == "true"  # the same body: replayed
    seen = [(r.headers["X-Request-Id"], r.status_code, r.json()) for r in replies[:2]]
    _check_outcomes(settings, seen)  # the first written once; the second kept as refused
