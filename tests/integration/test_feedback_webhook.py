"""Feedback delivery upstream: signed POSTs, retried on 503, a 400 dead-lettered, offsets
committed only after delivery or the DLQ's ack."""

from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.sinks.webhook_out import FeedbackWebhook
from connectors.sources.signatures import verify
from erpbridge.kafka_io import committed_offsets, ensure_topics
from erpbridge.topic_reader import read_all
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
    def __init__(self) -> None:
        self.answers = [503]  # the first request fails, then 200 (or 400 for REFUSE-ME)
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verify(dict(self.headers), body, {"erpbridge": SECRET}, 300)
                event = json.loads(body)
                status = receiver.answers.pop(0) if receiver.answers else 200
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


def test_feedback_is_delivered_signed_retried_and_refusals_dead_lettered(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = make_settings(
        kafka_bootstrap,
        schema_registry_url,
        redis_url,
        "http://127.0.0.1:9",
        "unused",
        tmp_path,
        sink_retry_initial_s=0.1,
    )
    ensure_topics(settings)
    publish(settings, "erp_feedback", [
        (posting_id.encode(), dict(SAMPLES["erp_feedback"], posting_id=posting_id,
                                   claim_id=posting_id,
                                   answered_at=datetime.datetime.now(datetime.UTC)))
        for posting_id in ("F-1", "REFUSE-ME", "F-2")
    ])  # fmt: skip

    receiver = Receiver()
    delivery = FeedbackWebhook(settings, receiver.url, SECRET)
    thread = threading.Thread(target=delivery.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(receiver.received) == 2, timeout=60, what="two deliveries")
        topic = topics_of(settings).erp_feedback
        wait_for(
            lambda: (
                sum(
                    committed_offsets(
                        settings, f"{settings.topic_prefix}-feedback-webhook", topic
                    ).values()
                )
                == 3
            ),
            timeout=30,
            what="three offsets committed",
        )
    finally:
        delivery.stop.set()
        thread.join(timeout=30)
        receiver.server.shutdown()
    assert [event["posting_id"] for event, _ in receiver.received] in (
        ["F-1", "F-2"],
        ["F-2", "F-1"],
    )
    event, headers = receiver.received[0]
    assert event["status"] == "BOOKED" and event["voucher_number"] == "记-0012"
    assert headers["Idempotency-Key"] == f"{event['posting_id']}:BOOKED"
    (dead,) = read_all(settings, topics_of(settings).feedback_dead_letter)
    dead_headers = {k: v.decode() for k, v in dead.headers}
    assert dead.key == b"REFUSE-ME"
    assert dead_headers["__connect.errors.stage"] == "deliver"
    assert "HTTP 400" in dead_headers["__connect.errors.exception.message"]
