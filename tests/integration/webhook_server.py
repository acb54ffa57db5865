"""A real webhook source process for the webhook tests: its fixture and a signed POST."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import pytest

from connectors.sources.signatures import signed_headers
from deploy.local.process import free_port
from erpbridge.config import Settings
from tests.integration.pipeline import Worker, fresh_topics, pipeline_env, serving

SECRET = "s3cr3t-for-tests"


@pytest.fixture(scope="module")
def webhook(kafka_bootstrap, schema_registry_url, redis_url,
            tmp_path_factory) -> Iterator[tuple[str, Settings, Worker]]:  # fmt: skip
    settings = fresh_topics(kafka_bootstrap, schema_registry_url, redis_url, "w")
    port = free_port()
    env = {**pipeline_env(settings), "ERPBRIDGE_REDIS_URL": redis_url,
           "ERPBRIDGE_WEBHOOK_SECRETS": json.dumps({"travel-platform": SECRET}),
           "ERPBRIDGE_WEBHOOK_MAX_SKEW_S": "300"}  # fmt: skip
    log = tmp_path_factory.mktemp("webhook") / "webhook.log"
    worker = Worker("webhook", [sys.executable, "-m", "erpbridge", "source", "webhook",
                                "--port", str(port)], env, log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        serving(worker, url, "the webhook source")
        yield url, settings, worker
    finally:
        worker.stop()


def post_signed(
    url: str,
    path: str,
    payload: object,
    *,
    secret: str = SECRET,
    now: float | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    signed = signed_headers("travel-platform", secret, body, now)
    return httpx.post(
        f"{url}{path}",
        content=body,
        timeout=30,
        headers={**signed, "Content-Type": "application/json", **(headers or {})},
    )
