"""Feedback delivery upstream, driven by the sink runner: signed POSTs, retried on 503, a 400
dead-lettered, offsets committed only after delivery or the DLQ's ack; the breaker opens while
the receiver is down and closes once it is back."""

from __future__ import annotations

import datetime
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.sinks.runner import SinkRunner
from connectors.sinks.webhook_out import FeedbackWebhook, FeedbackWebhookSettings
from connectors.sources.signatures import verify
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.failures import Stage, State
from erpbridge.kafka_io import committed_offsets, ensure_topics
from erpbridge.topic_reader import read_failures
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import (
    make_settings,
    publish,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration
SECRET = "feedback-secret"


class Receiver:
    def __init__(self, answers: list[int] | None = None, down_s: float = 0.0) -> None:
        # the first request fails, then 200 (or 400 for REFUSE-ME); everything answers 503
        # for the first ``down_s`` seconds
        self.answers = [503] if answers is None else answers
        self.down_until = time.monotonic() + down_s
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.seen: list[tuple[float, str, str]] = []  # (time, method, breaker state)
        self.breaker_state = lambda: "?"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802  the breaker's probe
                receiver.seen.append((time.monotonic(), "HEAD", receiver.breaker_state()))
                self.send_response(503 if time.monotonic() < receiver.down_until else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                receiver.seen.append((time.monotonic(), "POST", receiver.breaker_state()))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verify(dict(self.headers), body, {"erpbridge": SECRET}, 300)
                event = json.loads(body)
                status = receiver.answers.pop(0) if receiver.answers else 200
                if time.monotonic() < receiver.down_until:
                    status = 503
                if event["posting_id"] == "REFUSE-ME":
                    status = 400
                if status == 200:
                    receiver.received.append((event, dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/feedback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _settings(kafka_bootstrap: str, registry: str, redis_url: str, tmp_path: Path,
              **extra: Any) -> Settings:  # fmt: skip
    return make_settings(kafka_bootstrap, registry, redis_url, tmp_path, sink_retry_initial_s=0.1,
                         **extra)  # fmt: skip


def _publish(settings: Settings, posting_ids: list[str]) -> None:
    publish(settings, "erp_feedback", [
        (posting_id.encode(), dict(SAMPLES["erp_feedback"], posting_id=posting_id,
                                   claim_id=posting_id,
                                   answered_at=datetime.datetime.now(datetime.UTC)))
        for posting_id in posting_ids
    ])  # fmt: skip


def _runner(settings: Settings, receiver: Receiver) -> SinkRunner:
    config = FeedbackWebhookSettings(url=receiver.url, secret=SECRET)
    runner = SinkRunner(settings, FeedbackWebhook(config, TopicCodecs(settings)))
    receiver.breaker_state = lambda: runner.retry.breaker.state.name
    return runner


def _all_committed(settings: Settings, count: int) -> bool:
    topic = topics_of(settings).erp_feedback
    group = settings.sink_group("feedback_webhook")
    return sum(committed_offsets(settings, group, topic).values()) == count


def test_feedback_is_delivered_signed_retried_and_refusals_dead_lettered(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    _publish(settings, ["F-1", "REFUSE-ME", "F-2"])
    receiver = Receiver()
    runner = _runner(settings, receiver)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(receiver.received) == 2, timeout=60, what="two deliveries")
        wait_for(lambda: _all_committed(settings, 3), timeout=30, what="three offsets committed")
    finally:
        runner.stop.set()
        thread.join(timeout=30)
        receiver.server.shutdown()
    assert [event["posting_id"] for event, _ in receiver.received] in (
        ["F-1", "F-2"],
        ["F-2", "F-1"],
    )
    event, headers = receiver.received[0]
    assert event["status"] == "BOOKED" and event["voucher_number"] == "记-0012"
    assert headers["Idempotency-Key"] == f"{event['posting_id']}:BOOKED"
    (dead,) = read_failures(settings, "feedback_dead_letter")
    assert dead.key == b"REFUSE-ME" and dead.stage is Stage.DELIVER
    assert dead.reason == "refused" and dead.connector == "feedback_webhook"
    # 2 attempts when it waited behind the 503 in its batch (the rest of a batch is not sent
    # to a receiver that just failed), else 1
    assert "HTTP 400" in dead.message and dead.attempts in (1, 2)
    assert dead.origin["topic"] == topics_of(settings).erp_feedback
    assert dead.value is not None and dead.value[:1] == b"\x00"  # the ErpFeedback, as it was


def test_the_webhook_breaker_opens_while_the_receiver_is_down_and_closes_after(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    """Before the runner drove it, the webhook's breaker never heard of a failure: it stayed
    closed and every record was retried against the dead receiver on its own schedule."""
    settings = _settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                         sink_breaker_threshold=3, sink_breaker_probe_interval_s=1.0,
                         sink_retry_max_s=0.2, sink_concurrency=1)  # fmt: skip
    ensure_topics(settings)
    ids = [f"B-{n}" for n in range(6)]
    _publish(settings, ids)
    receiver = Receiver(answers=[], down_s=4.0)
    runner = _runner(settings, receiver)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(receiver.received) == len(ids), timeout=90, what="all delivered")
        wait_for(lambda: _all_committed(settings, len(ids)), timeout=30, what="all committed")
    finally:
        runner.stop.set()
        thread.join(timeout=30)
        receiver.server.shutdown()
    seen = receiver.seen
    first_open = next((n for n, (_, _, state) in enumerate(seen) if state == "OPEN"), None)
    assert first_open is not None, f"the breaker never opened: {seen}"
    assert all(state == "CLOSED" for _, _, state in seen[:first_open])  # failures that opened it
    while_open = [method for _, method, state in seen if state == "OPEN"]
    assert set(while_open) == {"HEAD"} and len(while_open) >= 2  # only probes; one failed
    assert [m for _, m, state in seen if state == "HALF_OPEN"][:1] == ["POST"]  # the test call
    assert runner.retry.breaker.state is State.CLOSED  # closed again once the receiver answered
    assert read_failures(settings, "feedback_dead_letter") == []
    assert {event["posting_id"] for event, _ in receiver.received} == set(ids)
