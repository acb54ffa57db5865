"""The polling source against a fake upstream expense platform, on the real broker."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import ensure_topics
from erpbridge.topic_reader import read_all, read_rejections
from tests.integration.pipeline import Worker, pipeline_env, wait_for

pytestmark = pytest.mark.integration


class FakeExpensePlatform:
    """GET /claims?updated_since=&after_id=&limit= over items ordered by (updated_at, id)."""

    def __init__(
        self, items: list[dict], faults: dict[int, tuple[int, dict[str, str]]], delay_s: float = 0.0
    ) -> None:
        self.items, self.faults, self.delay_s = items, faults, delay_s
        self.calls: list[tuple[float, int]] = []
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                time.sleep(platform.delay_s)
                status, headers, body = platform.answer(parse_qs(urlparse(self.path).query))
                platform.calls.append((time.monotonic(), status))
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/claims"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        fault = self.faults.get(len(self.calls) + 1)
        if fault:
            return fault[0], fault[1], b'{"error": "try later"}'
        since = (query.get("updated_since", [""])[0], query.get("after_id", [""])[0])
        limit = int(query["limit"][0])
        page = [i for i in self.items if (i["updated_at"], i["claim_id"]) > since][:limit]
        return 200, {}, json.dumps({"items": page}, ensure_ascii=False).encode()

    def close(self) -> None:
        self.server.shutdown()


def _items(count: int, bad: set[int] = frozenset()) -> list[dict]:
    items = []
    for n in range(count):
        stamp = f"2026-11-{1 + n // 50:02d}T{(n % 50) // 10:02d}:{n % 10:02d}:00+08:00"
        items.append({"claim_id": f"P{n:05d}", "updated_at": stamp, "employee_id": "E1",
                      "employee_name": "张伟", "lines": [{
                          "category": "travel", "amount": "abc" if n in bad else f"{n + 1}.50",
                          "currency": "CNY", "expense_date": "2026-11-02"}]})  # fmt: skip
    return sorted(items, key=lambda i: (i["updated_at"], i["claim_id"]))


@pytest.fixture
def settings(kafka_bootstrap, schema_registry_url) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        schema_registry_url=schema_registry_url,
        topic_prefix=f"p{uuid.uuid4().hex[:10]}",
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def make_poller(settings, tmp_path: Path) -> Iterator:
    started: list[Worker] = []

    def make(url: str, *extra: str) -> Worker:
        argv = [
            sys.executable,
            "-m",
            "erpbridge",
            "source",
            "poll",
            "--url",
            url,
            "--source-name",
            "fake-platform",
            "--page-size",
            "10",
            *extra,
        ]
        worker = Worker(
            f"poller-{len(started)}",
            argv,
            pipeline_env(settings),
            tmp_path / f"poller-{len(started)}.log",
        )
        started.append(worker)
        worker.start()
        return worker

    yield make
    for worker in started:
        worker.stop()


def _claim_ids(settings: Settings) -> Counter:
    codecs = TopicCodecs(settings)
    try:
        return Counter(
            codecs.deserializer("claims_raw")(r.value)["claim_id"]
            for r in read_all(settings, codecs.topic("claims_raw"))
        )
    finally:
        codecs.close()


def test_every_item_arrives_once_through_rate_limits_and_errors(settings, make_poller) -> None:
    items = _items(45, bad={7})
    upstream = FakeExpensePlatform(items, faults={2: (429, {"Retry-After": "1"}), 4: (503, {})})
    try:
        poller = make_poller(upstream.url, "--once")
        assert poller.proc.wait(timeout=120) == 0, poller.tail()
    finally:
        upstream.close()
    ids = _claim_ids(settings)
    assert set(ids) == {i["claim_id"] for i in items} - {"P00007"}
    assert set(ids.values()) == {1}
    statuses = [status for _, status in upstream.calls]
    assert statuses[:5] == [200, 429, 200, 503, 200]
    after_429 = upstream.calls[2][0] - upstream.calls[1][0]
    assert after_429 >= 0.95, f"Retry-After: 1 not honoured ({after_429:.2f}s)"
    (rejected,) = [r for r in read_rejections(settings) if r.entity_id == "P00007"]
    assert rejected.stage == "source.poll"
    assert list(rejected.problems) == ["lines[0].amount: not a number: 'abc'"]


def test_a_poller_killed_mid_run_loses_and_duplicates_nothing(settings, make_poller) -> None:
    items = _items(150)
    upstream = FakeExpensePlatform(items, faults={}, delay_s=0.25)
    try:
        first = make_poller(upstream.url, "--interval", "0.5")
        wait_for(lambda: sum(_claim_ids(settings).values()) >= 20, timeout=60,
                 what="the first pages committed", workers=[first])  # fmt: skip
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        before_restart = sum(_claim_ids(settings).values())
        assert before_restart < len(items), "the poller finished before it could be killed"
        second = make_poller(upstream.url, "--once")
        assert second.proc.wait(timeout=120) == 0, second.tail()
    finally:
        upstream.close()
    ids = _claim_ids(settings)
    assert set(ids) == {i["claim_id"] for i in items}  # nothing lost
    assert [claim for claim, n in ids.items() if n > 1] == []  # nothing duplicated
