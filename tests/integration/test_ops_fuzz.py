"""The ops API under generated and hostile requests, as a real process on the real broker.

Requests are generated from the API's own ``/openapi.json`` by schemathesis (valid-looking and
deliberately invalid ones) for every route, each with a credential drawn from every role (and
none); then the hostile cases found by hand, and requests no handler sees (malformed HTTP, a
request line too long, an unknown path). For every request: no 5xx and no traceback, an answer
in the documented shape, and a record in the audit trail. A dry run meant as one (``"dry_run":
"on"``) is refused, never run.

Seeded and bounded (``derandomize=True``; ``ERPBRIDGE_FUZZ_EXAMPLES`` cases per route and mode,
default 10 here: 100 generated requests, about 50 s).
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.openapi import from_dict

from erpbridge.topic_reader import read_all
from ops.audit import AuditTrail, Role
from ops.openapi import openapi_document
from tests.integration.http_checks import documented_answer
from tests.integration.pipeline import topics_of, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("ERPBRIDGE_OPS_FUZZ_EXAMPLES", "10"))
HTTP_FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))  # fmt: skip
SCHEMA = from_dict(openapi_document())
OPERATIONS = [(path, method.upper()) for path, methods in openapi_document()["paths"].items()
              for method in methods]  # fmt: skip
ROLES = [None, Role.VIEWER, Role.OPERATOR, Role.ADMIN]


def _query(values: Any) -> list[tuple[str, str]]:
    """A generated query as text pairs (anything nested goes as its JSON)."""
    pairs: list[tuple[str, str]] = []
    for name, value in (values or {}).items():
        for item in value if isinstance(value, list) else [value]:
            text = item if isinstance(item, str) else json.dumps(item)
            pairs.append((str(name), text))
    return pairs


def _body(case: Any) -> bytes | None:
    body = getattr(case, "body", None)
    if body is None or type(body).__name__ == "NotSet":
        return None
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return repr(body).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])  # fmt: skip
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_generated_requests_by_every_role_are_answered_as_documented_and_audited(
    ops_server, path: str, method: str, mode: GenerationMode
) -> None:
    url, settings_, tokens, _, _ = ops_server
    operation = SCHEMA[path][method]
    trail = AuditTrail(settings_)
    before = len(trail.records())
    seen: Counter[tuple[str, int]] = Counter()

    @HTTP_FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), role=st.sampled_from(ROLES))
    def run(case: Any, role: Role | None) -> None:
        headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
        body = _body(case)
        if body is not None:
            headers["Content-Type"] = "application/json"
        reply = httpx.request(method, f"{url}{case.formatted_path}", params=_query(case.query),
                              content=body, headers=headers, timeout=60)  # fmt: skip
        documented_answer(reply)
        seen[(str(role), reply.status_code)] += 1

    run()
    print(f"{method} {path} {mode.value}: {sum(seen.values())} requests, "
          f"{dict(sorted(seen.items()))}")  # fmt: skip
    audited = len(trail.records()) - before
    assert audited >= sum(seen.values()), f"{sum(seen.values())} requests, {audited} audited"
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def _hostile() -> list[tuple[str, Role, str, str, Any, int, str]]:
    """(name, role, method, path, body or query, status, error): the cases the issue found."""
    deep = b'{"topic": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [
        ("replay: a list", Role.OPERATOR, "POST", "/api/replay", b"[]", 400, "malformed_body"),
        ("replay: deep", Role.OPERATOR, "POST", "/api/replay", deep, 400, "too_deep"),
        ("replay: unknown topic", Role.OPERATOR, "POST", "/api/replay", {"topic": "claims_raw"},
         422, "invalid_request"),
        ("replay: set as a list", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "set": ["lines.0.account_code=5.2.2"]}, 422,
         "invalid_request"),
        ("replay: dry_run on", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "dry_run": "on"}, 422, "invalid_request"),
        ("replay: dry_run 1", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "dry_run": 1}, 422, "invalid_request"),
        ("replay: dry_run 'true'", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "dry_run": "true"}, 422, "invalid_request"),
        ("replay: to elsewhere", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "dry_run": True, "to": "__consumer_offsets"}, 422,
         "unknown_topic"),
        ("replay: unknown field", Role.OPERATOR, "POST", "/api/replay",
         {"topic": "erp_dead_letter", "dryrun": True}, 422, "invalid_request"),
        ("purge: not JSON", Role.ADMIN, "POST", "/api/purge", b"topic=rejected", 400,
         "malformed_json"),
        ("purge: a list", Role.ADMIN, "POST", "/api/purge", b'["rejected"]', 400,
         "malformed_body"),
        ("purge: null", Role.ADMIN, "POST", "/api/purge", b"null", 400, "malformed_body"),
        ("purge: empty", Role.ADMIN, "POST", "/api/purge", b"", 400, "malformed_body"),
        ("purge: unknown topic", Role.ADMIN, "POST", "/api/purge", {"topic": "postings"}, 422,
         "invalid_request"),
        ("failures: limit abc", Role.VIEWER, "GET", "/api/failures", {"limit": "abc"}, 422,
         "invalid_request"),
        ("failures: since yesterday", Role.VIEWER, "GET", "/api/failures",
         {"since": "yesterday"}, 422, "invalid_request"),
        ("failures: until 2026-13-40", Role.VIEWER, "GET", "/api/failures",
         {"until": "2026-13-40"}, 422, "invalid_request"),
        ("failures: not a failure topic", Role.VIEWER, "GET", "/api/failures",
         {"topic": "postings"}, 422, "invalid_request"),
        ("failure: a bad address", Role.VIEWER, "GET", "/api/failures/garbage", None, 400,
         "bad_request"),
        ("failure: unmask 'maybe'", Role.ADMIN, "GET", "/api/failures/x[0]@0",
         {"unmask": "maybe"}, 422, "invalid_request"),
        ("release: a blank reason", Role.OPERATOR, "POST", "/api/budget/release",
         {"claim_id": "C-1", "reason": "   "}, 422, "invalid_request"),
        ("release: not held", Role.OPERATOR, "POST", "/api/budget/release",
         {"claim_id": "C-NEVER-HELD", "reason": "CFO said so"}, 409, "not_held"),
        ("release: a list", Role.OPERATOR, "POST", "/api/budget/release", b"[]", 400,
         "malformed_body"),
        ("release: null", Role.OPERATOR, "POST", "/api/budget/release", b"null", 400,
         "malformed_body"),
        ("release: 10k deep", Role.OPERATOR, "POST", "/api/budget/release",
         b"[" * 10_000 + b"]" * 10_000, 400, "too_deep"),
        ("release: claim_id a number", Role.OPERATOR, "POST", "/api/budget/release",
         {"claim_id": 7, "reason": "x"}, 422, "invalid_request"),
        ("release: by a viewer", Role.VIEWER, "POST", "/api/budget/release",
         {"claim_id": "C-1", "reason": "x"}, 403, "forbidden"),
        ("unknown path", Role.ADMIN, "GET", "/api/nothing-here", None, 404, "not_found"),
        ("wrong method", Role.ADMIN, "DELETE", "/api/replay", None, 405, "method_not_allowed"),
    ]  # fmt: skip


def test_hostile_requests_get_their_documented_refusal_and_a_dry_run_never_runs(
    ops_server,
) -> None:
    url, settings_, tokens, _, _ = ops_server
    trail = AuditTrail(settings_)
    before, replayed_before = len(trail.records()), _replayed(settings_)
    for name, role, method, path, payload, status, code in _hostile():
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        params, content = None, None
        if method == "GET":
            params = payload
        else:
            content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        reply = httpx.request(method, f"{url}{path}", params=params, content=content,
                              headers=headers, timeout=60)  # fmt: skip
        answer = documented_answer(reply)
        assert (reply.status_code, answer["error"]) == (status, code), f"{name}: {reply.text}"
    assert _replayed(settings_) == replayed_before  # "dry_run": "on" and the rest: nothing
    wait_for(lambda: len(trail.records()) - before >= len(_hostile()), timeout=30,
             what="every hostile request audited")  # fmt: skip
    refused = [r for r in trail.records()[before:] if r["outcome"] == "refused"]
    assert len(refused) >= len(_hostile())


def _replayed(settings_: Any) -> int:
    return sum(1 for r in read_all(settings_, topics_of(settings_).postings)
               if dict(r.headers or []).get("erpbridge.replay.action"))  # fmt: skip


def _raw(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_requests_refused_before_any_handler_are_audited(ops_server) -> None:
    """aiohttp's parser answers these itself (no handler, no middleware runs): the access
    logger audits each as ``api.refused``, with its status."""
    url, settings_, tokens, _, _ = ops_server
    trail = AuditTrail(settings_)
    before = len(trail.records())
    malformed = _raw(url, b"GARBAGE /api/audit HTTP/1.1\r\nHost: x\r\n\r\n")
    too_long = _raw(url, b"GET /api/failures?" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    bad_header = _raw(url, b"GET /api/audit HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n")
    statuses = [int(answer.split(b" ", 2)[1]) for answer in (malformed, too_long, bad_header)]
    assert all(400 <= s < 500 for s in statuses), statuses
    big = httpx.post(f"{url}/api/replay", content=b"{" + b" " * 200_000 + b"}", timeout=30,
                     headers={"Authorization": f"Bearer {tokens[Role.OPERATOR]}",
                              "Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and big.json()["error"] == "body_too_large"

    def refusals() -> list[dict[str, Any]]:
        return [r for r in trail.records()[before:] if r["outcome"] == "refused"]

    wait_for(lambda: len(refusals()) >= 4, timeout=30, what="four refusals audited")
    found = refusals()
    pre_handler = [r for r in found if r["action"] == "api.refused"]
    assert sorted(int(r["selection"]["status"]) for r in pre_handler) == sorted(statuses)
    assert all(r["actor"] == "anonymous" and r["detail"] for r in pre_handler)
    assert [r["detail"][:3] for r in found if r["action"] == "api.replay"] == ["413"]
    print("refused before any handler:", [(r["selection"]["status"], r["detail"][:60])
                                          for r in pre_handler])  # fmt: skip
