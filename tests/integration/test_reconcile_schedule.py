"""Reconciliation on a schedule, as a real process: ``erpbridge reconcile --schedule`` against the
REST gateway stand-in (read back by lookup and by its listing by date) runs at each time of its
cron expression, publishes each run's summary to ``<prefix>.reconciliation`` and serves the
differences as a Prometheus gauge an alert can fire on."""

from __future__ import annotations

import datetime
import os
import sys
import uuid
from pathlib import Path

import pytest

from books.scheduled import ReconcileSettings
from connectors.erp.rest import RestErpSettings, RestErpWriter
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import ensure_topics
from erpbridge.model import Posting
from erpbridge.topic_reader import read_all
from tests.fakes.erp_gateway import Gateway
from tests.integration.pipeline import (
    Worker,
    make_settings,
    pipeline_env,
    plain_posting,
    publish,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_scheduled_run_publishes_its_summary_and_the_differences_gauge(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    gateway = Gateway()
    server, url = gateway.serve()
    zone = "Asia/Shanghai"
    today = ReconcileSettings(timezone=zone, days=1).period(datetime.datetime.now(datetime.UTC))[1]
    run = uuid.uuid4().hex[:6].upper()
    sent = [plain_posting(f"SC{run}-{n}", today, 1000 * (n + 1)) for n in range(3)]
    publish(settings, "postings", sent)
    writer = RestErpWriter(RestErpSettings(base_url=url))
    for _, record in sent[:2]:  # the third never reaches the ERP
        writer.book(Posting.from_record(record))
    writer.close()
    gateway.vouchers[f"SC{run}-1"]["total"] = "21.00"  # and one is changed there by hand

    env = {**pipeline_env(settings), "ERPBRIDGE_BOOKS_PATH": str(tmp_path / "books.duckdb"),
           "ERPBRIDGE_RECONCILE_CRON": "* * * * * */2", "ERPBRIDGE_RECONCILE_TIMEZONE": zone,
           "ERPBRIDGE_RECONCILE_DAYS": "1", "ERPBRIDGE_RECONCILE_ERP": "rest",
           "ERPBRIDGE_RECONCILE_FEEDBACK_AFTER_MIN": "600",
           "ERPBRIDGE_REST_ERP_BASE_URL": url}  # fmt: skip
    service = Worker("reconcile", [sys.executable, "-m", "erpbridge", "reconcile", "--schedule"],
                     env, tmp_path / "reconcile.log")  # fmt: skip
    codecs = TopicCodecs(settings)
    topic = topics_of(settings).reconciliation

    def summaries() -> list[dict]:
        return [codecs.deserializer("reconciliation")(r.value) for r in read_all(settings, topic)]

    service.start()
    try:
        found = wait_for(lambda: [s for s in summaries() if s["sent"] == 3], timeout=90,
                         what="a scheduled run's summary", workers=[service])  # fmt: skip
        first = found[0]
        assert (first["period_from"], first["period_to"], first["erp"]) == (today, today, "rest")
        assert first["scope_checked"] and not first["ok"] and first["booked"] == 2
        assert sorted((d["kind"], d["reference"]) for d in first["differences"]) == [
            ("amount_mismatch", f"SC{run}-1"), ("missing_in_erp", f"SC{run}-2")]  # fmt: skip
        ran = "erpbridge_reconciliation_runs_total{outcome="
        metrics = wait_for(lambda: ran in service.metrics() and service.metrics(), timeout=30,
                           what="the metrics")  # fmt: skip
        assert 'erpbridge_reconciliation_differences{kind="missing_in_erp"} 1.0' in metrics
        assert 'erpbridge_reconciliation_differences{kind="amount_mismatch"} 1.0' in metrics
        assert 'erpbridge_reconciliation_differences{kind="no_feedback"} 0.0' in metrics

        gateway.vouchers[f"SC{run}-1"]["total"] = "20.00"  # put right in the ERP...
        writer = RestErpWriter(RestErpSettings(base_url=url))
        writer.book(Posting.from_record(sent[2][1]))  # ...and the missing one booked
        writer.close()
        wait_for(lambda: any(s["ok"] for s in summaries()), timeout=60,
                 what="a run that agrees", workers=[service])  # fmt: skip
        assert 'erpbridge_reconciliation_differences{kind="missing_in_erp"} 0.0' in (
            service.metrics()
        )
        assert service.proc is not None and service.proc.poll() is None  # a service: still up
    finally:
        service.stop()
        server.shutdown()
        codecs.close()
    assert service.proc is not None and service.proc.returncode == 0, service.tail()
    assert os.path.exists(tmp_path / "books.duckdb")
