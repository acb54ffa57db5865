"""A real ops API process for the ops tests (console, fuzz): its fixture, the role tokens and an
SSO signing key."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from deploy.local.process import free_port
from erpbridge.config import Settings
from ops.audit import Role
from ops.auth import new_token
from tests.integration.dead_letters import write_dead_letters
from tests.integration.pipeline import Worker, fresh_topics, pipeline_env, serving

ISSUER = "https://sso.example.test"


def sso_jwt(key: RSAKey, role: str, *, issuer: str = ISSUER, expires_in: int = 600) -> str:
    claims = {"iss": issuer, "sub": "u-1", "preferred_username": "li.na", "aud": "erpbridge-ops",
              "erpbridge_role": role, "exp": int(time.time()) + expires_in}  # fmt: skip
    return jwt.encode({"alg": "RS256", "kid": "sso-1"}, claims, key)


@contextlib.contextmanager
def running_ops(settings: Settings, folder: Path) -> Iterator[tuple[str, dict[Role, str], RSAKey]]:
    """``erpbridge ops serve`` on ``settings`` as its own process: (its URL, a token per role,
    the SSO signing key its JWKS file names). Its books are its own, in ``folder``."""
    tokens, stored = {}, {}
    for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
        tokens[role], entry = new_token(role)
        stored[str(role)] = entry.model_dump(mode="json")
    key = RSAKey.generate_key(2048, parameters={"kid": "sso-1"})
    folder.mkdir(parents=True, exist_ok=True)
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}), encoding="utf-8")
    port = free_port()
    env = {**pipeline_env(settings), "ERPBRIDGE_OPS_TOKENS": json.dumps(stored),
           "ERPBRIDGE_OPS_PORT": str(port), "ERPBRIDGE_OPS_OIDC_ISSUER": ISSUER,
           "ERPBRIDGE_OPS_OIDC_AUDIENCE": "erpbridge-ops",
           "ERPBRIDGE_OPS_OIDC_JWKS_FILE": str(jwks),
           "ERPBRIDGE_BOOKS_PATH": str(folder / "ops-books.duckdb")}  # fmt: skip
    worker = Worker("ops", [sys.executable, "-m", "erpbridge", "ops", "serve"], env,
                    folder / "ops.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        serving(worker, url, "the ops API")
        yield url, tokens, key
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def ops_server(kafka_bootstrap, schema_registry_url, redis_url, tmp_path_factory):
    settings = fresh_topics(kafka_bootstrap, schema_registry_url, redis_url, "o")
    with running_ops(settings, tmp_path_factory.mktemp("ops")) as (url, tokens, key):
        yield (
            url,
            settings,
            tokens,
            key,
            write_dead_letters(settings, 2, "UI", employee_name="张伟 13812345678"),
        )
