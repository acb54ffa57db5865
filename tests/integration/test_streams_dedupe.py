"""Deduplication in the stream processor: duplicates from two sources pass once, a content change
is a new version, and the seen-set survives a restart (it lives in a changelog-backed table)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.topic_reader import read_all, read_rejections
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import committed_offsets, make_settings, running_workers, wait_for

pytestmark = pytest.mark.integration


def _claim(claim_id: str, source: str, amount: str = "553.0000", currency: str = "CNY") -> dict:
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, source_system=source,
                 event_id=f"{source}:{uuid.uuid4().hex}", origin={"via": source})  # fmt: skip
    claim["lines"] = [dict(claim["lines"][0], amount=Decimal(amount), currency=currency)]
    return claim


def _send(settings: Settings, *claims: dict) -> None:
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    for claim in claims:
        producer.send(codecs.topic("claims_raw"), key=claim["claim_id"].encode(),
                      value=codecs.serializer("claims_raw")(claim))  # fmt: skip
    producer.flush()
    producer.close()
    codecs.close()


def _postings(settings: Settings) -> list[dict]:
    codecs = TopicCodecs(settings)
    try:
        return [codecs.deserializer("postings")(r.value)
                for r in read_all(settings, codecs.topic("postings"))]  # fmt: skip
    finally:
        codecs.close()


def _processed(settings: Settings, count: int) -> bool:
    offsets = committed_offsets(settings, settings.streams_app_id,
                                f"{settings.topic_prefix}.claims.raw")  # fmt: skip
    return sum(offsets.values()) >= count


def test_duplicates_updates_and_restarts(kafka_bootstrap, schema_registry_url, redis_url,
                                         tmp_path: Path) -> None:  # fmt: skip
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url,
                             "http://127.0.0.1:9", "unused", tmp_path)  # fmt: skip
    ensure_topics(settings)
    _send(
        settings,
        _claim("D-1", "webhook"),
        _claim("D-1", "file"),  # the same claim from two sources
        _claim("D-2", "webhook"),
        _claim("D-2", "webhook", amount="600.0000"),  # changed later
        _claim("D-3", "poll", currency="USD"),
        _claim("D-3", "poll"),
    )  # refused, then fixed
    with running_workers(settings, tmp_path / "first", sink=False) as (worker,):
        wait_for(lambda: _processed(settings, 6), timeout=90, what="six claims processed",
                 workers=[worker])  # fmt: skip
        metrics = worker.metrics()
    postings = _postings(settings)
    assert sorted((p["claim_id"], p["claim_version"], p["total_minor"]) for p in postings) == [
        ("D-1", 1, 55300),
        ("D-2", 1, 55300),
        ("D-3", 2, 55300),
    ]
    assert 'erpbridge_stream_events_total{agent="normalize_claims",outcome="duplicate"} 1.0' in (
        metrics
    )
    held = {r["entity_id"]: r for r in read_rejections(settings)}
    assert held["D-2"]["reason"] == "changed_after_posting"
    assert held["D-2"]["problems"] == [
        "claim D-2 changed after version 1 was posted; this is version 2: amend the booking in "
        "the ERP, or send it as a new claim"
    ]
    assert held["D-3"]["reason"] == "no_exchange_rate"

    # After a restart the table is restored from its changelog: D-1 again is still a duplicate.
    _send(settings, _claim("D-1", "replayed-dlq"), _claim("D-4", "file"))
    with running_workers(settings, tmp_path / "second", sink=False) as (worker,):
        wait_for(lambda: _processed(settings, 8), timeout=120, what="the replay processed",
                 workers=[worker])  # fmt: skip
    assert sorted(p["claim_id"] for p in _postings(settings)) == ["D-1", "D-2", "D-3", "D-4"]
