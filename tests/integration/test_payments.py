"""The payment loop on the real Tryton: postings booked by the sink, paid in Tryton through its
own Pay wizard (JSON-RPC), are answered PAID (amount, date, payment voucher) by the payment
watcher, once each across a restart of the watcher, and the feedback webhook delivers each PAID
upstream once."""

from __future__ import annotations

import datetime
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from connectors.erp.tryton_rpc import TrytonRpc
from connectors.sinks.runner import SinkRunner
from connectors.sinks.webhook_out import FeedbackWebhook, FeedbackWebhookSettings
from erpbridge.config import Settings, env_of
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.topic_reader import read_records
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import (
    Worker,
    make_settings,
    pipeline_env,
    posted_in_tryton,
    publish,
    running_workers,
    wait_for,
)
from tests.integration.test_feedback_webhook import SECRET, Receiver
from tests.integration.tryton_pay import pay

pytestmark = pytest.mark.integration


def _paid(settings: Settings) -> list[dict]:
    return [f for f in read_records(settings, "erp_feedback") if f["status"] == "PAID"]


def test_paid_in_tryton_is_answered_paid_once_and_delivered_upstream_once(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             sink_retry_initial_s=0.2)  # fmt: skip
    ids = [f"PAY-{tmp_path.name[-6:]}-{n}" for n in range(3)]
    totals = {posting_id: 10000 + n for n, posting_id in enumerate(ids)}
    records = []
    for posting_id in ids:
        record = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                      total_minor=totals[posting_id], tax_minor=0,
                      created_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
        record["lines"] = [dict(record["lines"][0], amount_minor=totals[posting_id],
                                input_vat=[])]  # fmt: skip
        records.append((posting_id.encode(), record))
    watcher = Worker("payments", [sys.executable, "-m", "erpbridge", "payments", "watch", "tryton",
                                  "--poll-s", "1"],
                     {**pipeline_env(settings), **env_of(erp.settings)},
                     tmp_path / "payments.log")  # fmt: skip
    receiver = Receiver(answers=[])
    delivery = SinkRunner(
        settings,
        FeedbackWebhook(
            FeedbackWebhookSettings(url=receiver.url, secret=SECRET), TopicCodecs(settings)
        ),
    )
    rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
    with running_workers(settings, tmp_path / "sink", streams=False, erp=erp.settings) as (sink,):
        publish(settings, "postings", records)
        wait_for(lambda: len(posted_in_tryton(erp.settings, ids)) == 3, 120, "3 bookings", [sink])
        thread = threading.Thread(target=delivery.run, daemon=True)
        thread.start()
        watcher.start()
        try:
            wait_for(lambda: (watcher.readiness() or (0,))[0] == 200, 60, "the watcher ready",
                     [watcher])  # fmt: skip
            for posting_id in ids[:2]:
                assert pay(rpc, posting_id)["state"] == "paid"
            wait_for(lambda: len(_paid(settings)) == 2, 60, "2 PAID answers", [watcher])
            watcher.stop()  # started again, it must not answer them a second time
            watcher.start()
            wait_for(lambda: (watcher.readiness() or (0,))[0] == 200, 60, "the watcher ready",
                     [watcher])  # fmt: skip
            time.sleep(3)  # three lookups
            assert len(_paid(settings)) == 2, watcher.tail()
            pay(rpc, ids[2])
            wait_for(lambda: len(_paid(settings)) == 3, 60, "the third PAID", [watcher])
            wait_for(lambda: sum(e["status"] == "PAID" for e, _ in receiver.received) == 3, 60,
                     "3 PAID delivered")  # fmt: skip
            time.sleep(2)
            metrics = watcher.metrics()
        finally:
            watcher.stop()
            delivery.stop.set()
            thread.join(timeout=30)
            receiver.server.shutdown()
            rpc.close()
    paid = {f["posting_id"]: f for f in _paid(settings)}
    assert sorted(paid) == ids
    for posting_id, answer in paid.items():
        assert answer["paid_minor"] == totals[posting_id], answer
        assert answer["paid_on"] == datetime.date.today()
        assert answer["payment_reference"] and answer["document_number"]
    delivered = Counter(headers["Idempotency-Key"] for event, headers in receiver.received
                        if event["status"] == "PAID")  # fmt: skip
    assert delivered == Counter({f"{posting_id}:PAID": 1 for posting_id in ids})
    assert 'erpbridge_payments_total{erp="tryton",outcome="paid"} 1.0' in metrics
    assert 'erpbridge_payments_watched{erp="tryton"} 0.0' in metrics
