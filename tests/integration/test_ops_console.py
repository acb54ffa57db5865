"""The ops API and console as a real process: roles refuse what they must (API tokens and single
sign-on JWTs), personal data is masked below admin, every call is audited, and an operator works
the console in a real browser (Debian's Chromium, headless): sign in, filter, open a record,
preview a replay, replay it, read the audit trail. A screenshot of each page is kept."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from erpbridge.topic_reader import read_all
from ops.audit import AuditTrail, Role, verify
from tests.browser import chromium_page, screenshot
from tests.integration.ops_server import sso_jwt
from tests.integration.pipeline import topics_of

pytestmark = pytest.mark.integration


def _get(url: str, path: str, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}{path}", params=params, headers=headers, timeout=60)


def _post(url: str, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=60)  # fmt: skip


def test_roles_refuse_what_they_must_and_every_call_is_audited(ops_server) -> None:
    url, settings, tokens, key, ids = ops_server
    viewer, operator, admin = tokens[Role.VIEWER], tokens[Role.OPERATOR], tokens[Role.ADMIN]
    assert _get(url, "/api/failures", None).status_code == 401
    assert _get(url, "/api/failures", "ebt_not-a-token").status_code == 401
    listed = _get(url, "/api/failures", viewer, topic="erp_dead_letter")
    assert listed.status_code == 200 and listed.json()["summary"]["total"] == 2
    where = listed.json()["records"][0]["where"]
    shown = _get(url, f"/api/failures/{where}", viewer).json()
    assert "13812345678" not in json.dumps(shown, ensure_ascii=False)  # masked for a viewer
    assert shown["original"]["employee_name"].startswith("张伟 138")
    assert _get(url, f"/api/failures/{where}", viewer, unmask="1").status_code == 403
    unmasked = _get(url, f"/api/failures/{where}", admin, unmask="1").json()
    assert unmasked["original"]["employee_name"] == "张伟 13812345678"
    dry = {"topic": "erp_dead_letter", "dry_run": True}
    assert _post(url, "/api/replay", viewer, dry).status_code == 403
    preview = _post(url, "/api/replay", operator, dry)
    assert preview.status_code == 200 and preview.json()["selected"] == 2
    assert _post(url, "/api/purge", operator, {"topic": "quarantine"}).status_code == 403

    # single sign-on: a JWT from the configured issuer, its role from a claim
    assert _post(url, "/api/replay", sso_jwt(key, "operator"), dry).status_code == 200
    assert _post(url, "/api/replay", sso_jwt(key, "viewer"), dry).status_code == 403
    assert _get(url, "/api/failures", sso_jwt(key, "admin", issuer="https://evil.test")
                ).status_code == 401  # fmt: skip
    assert _get(url, "/api/failures", sso_jwt(key, "admin", expires_in=-60)).status_code == 401
    other = RSAKey.generate_key(2048, parameters={"kid": "sso-1"})
    assert _get(url, "/api/failures", sso_jwt(other, "admin")).status_code == 401  # not its key

    trail = AuditTrail(settings).records()
    denied = [r for r in trail if r["action"] == "api.denied"]
    assert len(denied) >= 8 and all(r["outcome"] == "refused" for r in denied)
    assert {r["actor"] for r in trail} >= {"anonymous", "token:viewer", "token:operator",
                                           "token:admin", "sso:li.na"}  # fmt: skip
    assert verify(trail).ok
    assert httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]["/api/replay"]


def test_an_operator_works_the_console_in_a_real_browser(ops_server) -> None:
    url, settings, tokens, _, ids = ops_server
    shots = []
    with chromium_page() as page:
        page.goto(f"{url}/")
        page.fill("input[name=token]", "wrong")
        page.click("#sign-in")
        assert "not accepted" in page.content()
        page.fill("input[name=token]", tokens[Role.OPERATOR])
        page.click("#sign-in")
        page.select_option("select[name=topic]", "erp_dead_letter")
        page.click("button:has-text('Filter')")
        rows = page.locator("#failures tr")
        assert rows.count() == 3  # the header and two dead letters
        assert "13812345678" not in page.content()
        shots.append(_shot(page, "failures"))
        page.click("#failures tr:nth-child(2) a")
        assert "no account with code 9.9.9" in page.content()
        shots.append(_shot(page, "failure"))
        page.go_back()
        page.fill("input[name=set]", "lines.0.account_code=5.2.2")
        page.click("#preview")
        assert page.locator("#plan tr").count() == 3
        shots.append(_shot(page, "preview"))
        page.click("#confirm-replay")
        assert "2 replayed" in page.locator("#outcome").inner_text()
        page.click("text=See it in the audit trail")
        assert "intact" in page.locator("#verdict").inner_text()
        assert "dlq.replay" in page.locator("#audit").inner_text()
        shots.append(_shot(page, "audit"))
        page.goto(f"{url}/console/failures?since=yesterday")  # a filter that does not read
        refusal = page.locator("#refusal").inner_text()
        assert "422 invalid_request" in refusal and "since" in refusal
        shots.append(_shot(page, "refused"))
    print("console screenshots:", ", ".join(str(s) for s in shots))
    replayed = [
        r
        for r in read_all(settings, topics_of(settings).postings)
        if dict(r.headers or []).get("erpbridge.replay.by") == b"token:operator"
    ]
    assert sorted(r.key.decode() for r in replayed) == sorted(ids)
    assert all(s.stat().st_size > 10_000 for s in shots)


def _shot(page: Any, name: str) -> Path:
    return screenshot(page, f"ops-console-{name}")


def test_the_trail_refuses_nothing_silently(ops_server) -> None:
    url, settings, tokens, _, _ = ops_server
    before = len(AuditTrail(settings).records())
    assert _get(url, "/api/audit", tokens[Role.VIEWER]).json()["verified"] is True
    after = AuditTrail(settings).records()
    assert len(after) == before + 1 and after[-1]["action"] == "api.audit"
    assert after[-1]["at"] <= datetime.datetime.now(datetime.UTC)
