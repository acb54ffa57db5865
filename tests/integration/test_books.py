"""The books on the real broker: postings, feedback and statuses materialized idempotently
(reading the topics again, or from the start into a new store, changes no total) and resumably
(the read position is stored with the rows); on the embedded DuckDB file and on PostgreSQL, with
the same SQL, the same totals, reports and reconciliation."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from books.ingest import sync
from books.reconcile import ErpDocument, reconcile
from books.report import DIMENSIONS, report
from books.store import BooksSettings, Store
from erpbridge.kafka_io import end_offsets, ensure_topics
from tests.conftest import fresh_database
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


@pytest.fixture(params=["duckdb", "postgresql"])
def new_store(request, tmp_path: Path) -> Callable[[], BooksSettings]:
    """Settings for a new, empty store on the engine under test."""
    if request.param == "duckdb":
        names = iter(range(100))
        return lambda: BooksSettings(path=tmp_path / f"books-{next(names)}.duckdb")
    url = request.getfixturevalue("postgres_url")
    return lambda: BooksSettings(url=fresh_database(url))


def test_the_books_hold_each_posting_once_however_often_they_are_read(
    kafka_bootstrap, schema_registry_url, redis_url, tmp_path: Path, new_store
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    ids = [f"BK-{n}" for n in range(5)]
    publish(settings, "postings", [_posting(p, 1000 * (n + 1)) for n, p in enumerate(ids)])
    publish(settings, "erp_feedback", [_feedback(p, "BOOKED", 5) for p in ids[:3]])
    config = new_store()
    store = Store(config)
    try:
        report = sync(settings, config, store)
        assert report.read == {"postings": 5, "erp_feedback": 3, "claim_status": 0,
                               "claims_raw": 0, "approvals_raw": 0, "invoices_raw": 0,
                               "rejected": 0, "erp_dead_letter": 0,
                               "feedback_dead_letter": 0}  # fmt: skip
        assert _totals(store) == (5, 15000, 5, 3)
        assert sync(settings, config, store).read["postings"] == 0  # nothing new: nothing read
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
        # a payment answer is kept beside the booking's, which stands
        publish(settings, "erp_feedback", [(ids[1].encode(), dict(
            _feedback(ids[1], "PAID", 90)[1], paid_minor=2000, paid_on=T0.date(),
            payment_reference="付-0042"))])  # fmt: skip
        # following: what arrives on any topic after the catch-up is read too
        seen: dict[str, int] = {}
        stop = threading.Event()
        follower = threading.Thread(target=sync, args=(settings, config, store, stop, True,
                                                       seen.__setitem__))  # fmt: skip
        follower.start()
        try:
            time.sleep(2)
            publish(settings, "postings", [_posting("BK-LATE", 700)])
            publish(settings, "erp_feedback", [_feedback("BK-LATE", "BOOKED", 9)])
            deadline = time.monotonic() + 30
            while seen.get("postings", 0) < 1 or seen.get("erp_feedback", 0) < 2:
                assert time.monotonic() < deadline, f"the follower read only {seen}"
                time.sleep(0.2)
        finally:
            stop.set()
            follower.join(timeout=30)
        assert _totals(store) == (6, 15700, 6, 4)
        assert store.query("select status from feedback where posting_id = ?",
                           [ids[1]]) == [("BOOKED",)]  # fmt: skip
        assert store.query("select paid_minor, paid_on, payment_reference from payments") == [
            (2000, T0.date(), "付-0042")]  # fmt: skip
    finally:
        store.close()
    fresh = Store(new_store())  # from the start
    try:
        sync(settings, config, fresh)
        assert _totals(fresh) == (6, 15700, 6, 4)
    finally:
        fresh.close()


def test_postgresql_answers_every_report_and_reconciliation_as_duckdb_does(
    kafka_bootstrap, schema_registry_url, redis_url, postgres_url, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path)
    ensure_topics(settings)
    postings = []
    for n in range(12):
        key, posting = _posting(f"PG-{n}", 1000 + 137 * n)
        posting.update(department=f"D{n % 3}", cost_centre=f"CC-{n % 2}", employee_id=f"E{n % 4}",
                       posting_date=datetime.date(2026, 10 + n % 2, 1 + n))  # fmt: skip
        posting["lines"][0]["description"] = ("差旅", "-餐费", "办公")[n % 3] + ": x"
        postings.append((key, posting))
    publish(settings, "postings", postings)
    publish(settings, "erp_feedback", [_feedback(f"PG-{n}", ("BOOKED", "REFUSED")[n % 5 == 4],
                                                 n) for n in range(10)])  # fmt: skip
    ledger = _Ledger({f"PG-{n}": 1000 + 137 * n + (n == 3) for n in range(11)},
                     postings[0][1].get("tax_minor", 0))  # fmt: skip
    answers = []
    for config in (BooksSettings(path=tmp_path / "books.duckdb"),
                   BooksSettings(url=fresh_database(postgres_url))):  # fmt: skip
        store = Store(config)
        try:
            sync(settings, config, store)
            start, end = datetime.date(2026, 10, 1), datetime.date(2026, 11, 30)
            reports = [report(store, start, end, by).to_json() for by in DIMENSIONS]
            compared = reconcile(store, ledger, start, end, by="department",
                                 now=T0 + datetime.timedelta(days=1)).to_json()  # fmt: skip
            answers.append((store.engine, reports, compared))
        finally:
            store.close()
    (_, duck_reports, duck_result), (engine, pg_reports, pg_result) = answers
    assert engine == "postgresql"
    assert json.dumps(pg_reports, default=str) == json.dumps(duck_reports, default=str)
    assert json.dumps(pg_result, default=str) == json.dumps(duck_result, default=str)
    assert sorted((d["kind"], d["reference"]) for d in duck_result["differences"]) == [
        ("amount_mismatch", "PG-3"), ("missing_in_erp", "PG-11"), ("no_feedback", "PG-10"),
        ("no_feedback", "PG-11")]  # fmt: skip
    by_department = duck_reports[0]
    assert len(by_department["rows"]) == 3
    assert by_department["totals"]["CNY"]["total_minor"] == sum(1000 + 137 * n for n in range(12))


class _Ledger:
    def __init__(self, totals: dict[str, int], tax: int) -> None:
        self.totals, self.tax = totals, tax

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [ErpDocument(r, f"N{r}", "posted", self.totals[r], self.tax, None)
                for r in references if r in self.totals]  # fmt: skip

    def documents_between(self, start: datetime.date, end: datetime.date) -> None:
        return None

    def close(self) -> None:
        pass
