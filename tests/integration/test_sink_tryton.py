"""The ERP sink against a real Tryton: killed between the ERP write and the offset commit it books
nothing twice; an ERP outage opens the circuit breaker, loses nothing and books everything once
after; a refused posting lands in the DLQ with every header; feedback matches the bookings."""

from __future__ import annotations

import datetime
import json
import shutil
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.erp.tryton_rpc import TrytonRpc
from deploy.local import prometheus as local_prometheus
from deploy.local.process import free_port
from deploy.local.prometheus import RULES, PrometheusConfig
from erpbridge.config import Settings
from erpbridge.kafka_io import committed_offsets, end_offsets, ensure_topics
from erpbridge.topic_reader import read_all, read_records
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import (
    Worker,
    make_settings,
    posted_in_tryton,
    publish,
    running_workers,
    topics_of,
    wait_for,
)

pytestmark = pytest.mark.integration
GRAFANA = RULES.parents[1] / "grafana"


def _settings(kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path, **extra) -> Settings:
    return make_settings(
        kafka_bootstrap,
        schema_registry_url,
        redis_url,
        tmp_path,
        sink_breaker_threshold=3,
        sink_breaker_probe_interval_s=1.0,
        sink_retry_initial_s=0.2,
        **extra,
    )


def _publish(settings: Settings, ids: list[str], account: str = "5.2.2") -> None:
    records = []
    for n, posting_id in enumerate(ids, 1):
        record = dict(
            SAMPLES["erp_posting"],
            posting_id=posting_id,
            claim_id=posting_id,
            total_minor=1000 + n,
            created_at=datetime.datetime.now(datetime.UTC),
        )
        record["lines"] = [dict(record["lines"][0], amount_minor=1000 + n, account_code=account)]
        records.append((posting_id.encode(), record))
    publish(settings, "postings", records)


def _invoice_lines(erp: Any, ids: list[str]) -> list[dict[str, Any]]:
    rpc = TrytonRpc(erp.url, erp.database, erp.user, erp.password)
    try:
        return list(rpc.call("model.account.invoice.line.search_read",
                             [("invoice.reference", "in", ids)], 0, None, None,
                             ["account.code", "invoice.reference", "amount"]))  # fmt: skip
    finally:
        rpc.close()


def _feedback(settings: Settings) -> list[dict[str, Any]]:
    return read_records(settings, "erp_feedback")


def _ids(tag: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:6].upper()
    return [f"{tag}{run}-{n:03d}" for n in range(count)]


def _all_committed(settings: Settings) -> bool:
    topic = topics_of(settings).postings
    end = end_offsets(settings, topic)
    committed = committed_offsets(settings, settings.sink_group("tryton"), topic)
    return all(committed.get(p, 0) >= offset for p, offset in end.items())


def _wait_booked_and_committed(settings: Settings, erp: Any, ids: list[str],
                               sink: Worker) -> list[dict]:  # fmt: skip
    """Wait until every id is a posted invoice and the sink committed its offsets."""
    booked = wait_for(
        lambda: (found := posted_in_tryton(erp.settings, ids)) and len(found) >= len(ids) and found,
        timeout=120,
        what=f"{len(ids)} bookings",
        workers=[sink],
    )
    wait_for(lambda: _all_committed(settings), timeout=60, what="offsets committed",
             workers=[sink])  # fmt: skip
    return booked


def _assert_feedback_matches(settings: Settings, ids: list[str], invoices: list[dict]) -> None:
    by_ref = {inv["reference"]: inv for inv in invoices}
    last = {f["posting_id"]: f for f in _feedback(settings) if f["posting_id"] in ids}
    assert sorted(last) == sorted(ids)
    for posting_id, feedback in last.items():
        assert feedback["status"] in ("BOOKED", "ALREADY_BOOKED")
        assert feedback["document_number"] == by_ref[posting_id]["number"]
        assert feedback["document_id"] == str(by_ref[posting_id]["id"])
        assert feedback["voucher_number"]  # the Tryton move's number


def test_killed_between_erp_write_and_commit_books_each_posting_once(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    crashing = _settings(
        kafka_bootstrap,
        schema_registry_url,
        redis_url,
        erp,
        tmp_path,
        sink_test_exit_after_writes=3,
    )
    ensure_topics(crashing)
    ids = _ids("K", 12)
    _publish(crashing, ids)
    with running_workers(crashing, tmp_path / "first", streams=False, erp=erp.settings) as (sink,):
        assert sink.proc is not None
        assert sink.proc.wait(timeout=120) == 137  # died right after its 3rd ERP write
    written = posted_in_tryton(erp.settings, ids)
    assert len(written) >= 3 and not _all_committed(crashing)

    settings = crashing.model_copy(update={"sink_test_exit_after_writes": 0})
    with running_workers(settings, tmp_path / "second", streams=False, erp=erp.settings) as (sink,):
        booked = _wait_booked_and_committed(settings, erp, ids, sink)
        metrics = sink.metrics()
    assert Counter(inv["reference"] for inv in booked) == Counter(ids)  # each exactly once
    assert {inv["total_amount"] for inv in booked} == {Decimal(1000 + n).scaleb(-2)
                                                       for n in range(1, 13)}  # fmt: skip
    assert all(inv["description"].endswith("; invoices 26312000000123456789") for inv in booked)
    lines = _invoice_lines(erp, ids)
    assert {(line["account."]["code"], line["invoice."]["reference"]) for line in lines} == {
        ("5.2.2", posting_id) for posting_id in ids
    }  # one line each, on the mapped account
    already = float(metrics.split('outcome="already_booked",sink="tryton"} ')[1].split()[0])
    assert already >= 1  # the write whose commit never came was found in the ERP, not rebooked
    _assert_feedback_matches(settings, ids, booked)


def _prometheus(sink: Worker, tmp_path: Path) -> PrometheusConfig:
    """A real Prometheus scraping the sink every second with our rules, the breaker alert's
    ``for: 5m`` shortened to 5 s (the same rule at a test's scale)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ErpbridgeSinkBreakerOpen":
                rule["for"] = "5s"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    return PrometheusConfig(port=free_port(), name=f"prometheus-{tmp_path.name}", interval_s=1,
                            jobs={"erpbridge-sink": [f"127.0.0.1:{sink.metrics_port}"]},
                            rules=(path,))  # fmt: skip


def _breaker_alert(prometheus: PrometheusConfig) -> str | None:
    """The state of the sink's breaker alert (pending, firing), None when it is not raised."""
    for alert in local_prometheus.alerts(prometheus):
        if alert["labels"].get("alertname") == "ErpbridgeSinkBreakerOpen":
            assert alert["labels"]["sink"] == "tryton" and alert["labels"]["severity"] == "page"
            return str(alert["state"])
    return None


def _every_expression_is_accepted(prometheus: PrometheusConfig) -> None:
    """Each expression of our dashboards and rules, queried: Prometheus accepts it."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    expressions = [rule["expr"] for group in groups for rule in group["rules"]]
    for path in sorted(GRAFANA.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            expressions += [target["expr"].replace("$sink", ".*") for target in panel["targets"]]
    refused = {}
    for expr in expressions:
        answer = local_prometheus.query(prometheus, expr)
        if answer.get("status") != "success":
            refused[expr] = answer.get("error")
    assert not refused, refused


def test_an_erp_outage_opens_the_breaker_and_loses_nothing(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    """... and a real Prometheus scraping the sink raises the breaker alert, then resolves it."""
    settings = _settings(kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path)
    ensure_topics(settings)
    before, during = _ids("O", 5), _ids("P", 15)
    with running_workers(settings, tmp_path / "sink", streams=False, erp=erp.settings) as (sink,):
        prometheus = _prometheus(sink, tmp_path)
        print(local_prometheus.up(prometheus))
        try:
            _publish(settings, before)
            wait_for(
                lambda: len(posted_in_tryton(erp.settings, before)) == 5,
                timeout=120,
                what="the first 5 booked",
                workers=[sink],
            )
            _every_expression_is_accepted(prometheus)
            assert _breaker_alert(prometheus) is None
            erp.stop()
            try:
                _publish(settings, during)
                opened = wait_for(
                    lambda: 'erpbridge_sink_breaker_state{sink="tryton"} 2.0' in sink.metrics(),
                    timeout=60,
                    what="the breaker open",
                    workers=[sink],
                )
                assert opened
                wait_for(lambda: _breaker_alert(prometheus) == "firing", 30, "the alert firing")
                time.sleep(12)  # the ERP stays down for 20 s or more; the sink must not give up
                metrics = sink.metrics()
                assert 'erpbridge_sink_breaker_state{sink="tryton"} 2.0' in metrics
                assert 'outcome="dead_lettered"' not in metrics
            finally:
                erp.start()
            booked = _wait_booked_and_committed(settings, erp, before + during, sink)
            metrics = sink.metrics()
            wait_for(lambda: _breaker_alert(prometheus) is None, 30, "the alert resolved")
        finally:
            print(local_prometheus.down(prometheus))
            shutil.rmtree(prometheus.folder, ignore_errors=True)
    assert Counter(inv["reference"] for inv in booked) == Counter(before + during)
    assert 'erpbridge_sink_breaker_state{sink="tryton"} 0.0' in metrics
    assert 'erpbridge_sink_breaker_transitions_total{sink="tryton",state="open"}' in metrics
    assert 'erpbridge_sink_breaker_transitions_total{sink="tryton",state="closed"}' in metrics
    assert read_all(settings, topics_of(settings).erp_dead_letter) == []
    _assert_feedback_matches(settings, before + during, booked)


def test_a_refused_posting_lands_in_the_dlq_with_every_header(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path)
    ensure_topics(settings)
    (bad,), good = _ids("X", 1), _ids("Y", 2)
    _publish(settings, [bad], account="9.9.9")
    _publish(settings, good)
    with running_workers(settings, tmp_path / "sink", streams=False, erp=erp.settings) as (sink,):
        dead = wait_for(
            lambda: read_all(settings, topics_of(settings).erp_dead_letter),
            timeout=120,
            what="the DLQ record",
            workers=[sink],
        )
        wait_for(
            lambda: len(posted_in_tryton(erp.settings, good)) == 2,
            timeout=120,
            what="the good postings booked",
            workers=[sink],
        )
        wait_for(
            lambda: _all_committed(settings), timeout=60, what="offsets committed", workers=[sink]
        )
    (record,) = dead
    headers = {key: value.decode() for key, value in record.headers}
    assert record.key == bad.encode()
    assert {
        k: headers[k]
        for k in (
            "__connect.errors.topic",
            "__connect.errors.stage",
            "__connect.errors.class.name",
            "__connect.errors.exception.class.name",
            "erpbridge.errors.attempts",
        )
    } == {
        "__connect.errors.topic": topics_of(settings).postings,
        "__connect.errors.stage": "put",
        "__connect.errors.class.name": "tryton",
        "__connect.errors.exception.class.name": "PermanentErpError",
        "erpbridge.errors.attempts": "1",
    }
    for key in (
        "__connect.errors.partition",
        "__connect.errors.offset",
        "__connect.errors.exception.message",
        "__connect.errors.exception.stacktrace",
        "erpbridge.errors.first_failed_at",
        "erpbridge.errors.last_failed_at",
    ):
        assert headers[key], key
    assert "9.9.9" in headers["__connect.errors.exception.message"]
    feedback = {f["posting_id"]: f for f in _feedback(settings)}
    assert (feedback[bad]["status"], feedback[bad]["document_number"]) == ("REFUSED", None)
    assert "9.9.9" in feedback[bad]["message"]
    assert {feedback[g]["status"] for g in good} == {"BOOKED"}
