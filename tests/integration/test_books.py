"""The books on the real broker: postings, feedback and statuses materialized idempotently
(reading the topics again, or from the start into a new store, changes no total) and resumably
(the read position is stored with the rows)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from books.ingest import sync
from books.store import BooksSettings, Store
from erpbridge.kafka_io import end_offsets, ensure_topics
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import make_settings, publish, topics_of

pytestmark = pytest.mark.integration
T0 = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)


def _posting(posting_id: str, amount: int) -> tuple[bytes, dict]:
    posting = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                   total_minor=amount, created_at=T0)  # fmt: skip
    posting["lines"] = [dict(posting["lines"][0], amount_minor=amount)]
    return posting_id.encode(), posting


def _feedback(posting_id: str, status: str, minutes: int) -> tuple[bytes, dict]:
    return posting_id.encode(), dict(
        SAMPLES["erp_feedback"],
        posting_id=posting_id,
        claim_id=posting_id,
        status=status,
        answered_at=T0 + datetime.timedelta(minutes=minutes),
    )


def _totals(store: Store) -> tuple:
    return store.query("""select count(*), sum(total_minor), (select count(*) from posting_lines),
                          (select count(*) from feedback) from postings""")[0]  # fmt: skip


def test_the_books_hold_each_posting_once_however_often_they_are_read(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    ids = [f"BK-{n}" for n in range(5)]
    publish(settings, "postings", [_posting(p, 1000 * (n + 1)) for n, p in enumerate(ids)])
    publish(settings, "erp_feedback", [_feedback(p, "BOOKED", 5) for p in ids[:3]])
    config = BooksSettings(path=tmp_path / "books.duckdb")
    store = Store(config)
    try:
        report = sync(settings, config, store)
        assert report.read == {"postings": 5, "erp_feedback": 3, "claim_status": 0}
        assert _totals(store) == (5, 15000, 5, 3)
        # the same postings again (a replay), and an older answer arriving late
        publish(settings, "postings", [_posting(p, 1000 * (n + 1)) for n, p in enumerate(ids)])
        publish(settings, "erp_feedback", [_feedback(ids[0], "FAILED", 1)])
        assert sync(settings, config, store).read["postings"] == 5  # only the new records
        assert _totals(store) == (5, 15000, 5, 3)
        assert store.query("select status from feedback where posting_id = ?",
                           [ids[0]]) == [("BOOKED",)]  # the newest answer stands  # fmt: skip
        ends = end_offsets(settings, topics_of(settings).postings)
        assert store.positions(topics_of(settings).postings) == {
            p: o for p, o in ends.items() if o}  # fmt: skip
        assert sync(settings, config, store).read["postings"] == 0  # caught up
    finally:
        store.close()
    fresh = Store(BooksSettings(path=tmp_path / "again.duckdb"))  # from the start
    try:
        sync(settings, config, fresh)
        assert _totals(fresh) == (5, 15000, 5, 3)
    finally:
        fresh.close()
