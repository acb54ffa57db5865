"""ERP sink: bookings/s into a real Tryton through the sink (Kafka in, commits, feedback, at
several concurrencies) vs a naive loop calling the ERP one posting at a time, same run.

    python -m bench.sink_throughput [--postings 200] [--concurrency 1 4 8]

Each side books its own fresh postings (new references) into the same Tryton database, so
neither finds the other's work already done. Needs the local stack; starts Kafka, the schema
registry and a Tryton of its own (on a free port, a fresh copy of the template database).
"""

from __future__ import annotations

import argparse
import datetime
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.stack import tryton_stack
from connectors.erp.tryton import TrytonWriter
from connectors.erp.tryton_rpc import TrytonRpc
from connectors.sinks.erp_target import ErpTarget
from connectors.sinks.runner import SinkRunner
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.model import Posting

CATEGORIES = [("travel", "5.2.2"), ("meals", "5.2.2"), ("lodging", "5.2.2")]


def posting_record(posting_id: str, n: int) -> dict:
    category, account = CATEGORIES[n % len(CATEGORIES)]
    amount = 10_000 + n
    return {
        "posting_id": posting_id, "claim_id": posting_id, "claim_version": 1,
        "source_system": "bench", "employee_id": f"E{1001 + n % 5}", "employee_name": "张伟",
        "cost_centre": None, "department": None, "posting_date": datetime.date(2026, 11, 2),
        "currency": "CNY", "total_minor": amount,
        "created_at": datetime.datetime.now(datetime.UTC),
        "lines": [{"account_code": account, "description": f"{category}: bench {n}",
                   "amount_minor": amount, "original_amount": Decimal(amount).scaleb(-2),
                   "original_currency": "CNY", "exchange_rate": Decimal(1), "invoice_refs": [],
                   "rate_date": None}],
    }  # fmt: skip


def naive_loop(writer: TrytonWriter, count: int) -> float:
    """bookings/s of book() called one after the other, no Kafka."""
    run = uuid.uuid4().hex[:6].upper()
    postings = [Posting.from_record(posting_record(f"N{run}-{n}", n)) for n in range(count)]
    started = time.perf_counter()
    for posting in postings:
        writer.book(posting)
    return count / (time.perf_counter() - started)


def through_sink(settings: Settings, tryton_url: str, database: str, count: int) -> float:
    """bookings/s of the sink runner into Tryton: from the first to the last booking."""
    writer = TrytonWriter(TrytonRpc(tryton_url, database, "admin", "admin"), "2.1.4")
    return sink_rate(settings, writer, "tryton", count)


def sink_rate(settings: Settings, writer: Any, label: str, count: int) -> float:
    """bookings/s of the sink runner with ``writer``: from the first to the last booking."""
    ensure_topics(settings)
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    run = uuid.uuid4().hex[:6].upper()
    for n in range(count):
        posting_id = f"S{run}-{n}"
        producer.send(
            codecs.topic("postings"),
            key=posting_id.encode(),
            value=codecs.serializer("postings")(posting_record(posting_id, n)),
        )
    producer.flush()
    producer.close()
    codecs.close()
    runner = SinkRunner(settings, ErpTarget(settings, writer, TopicCodecs(settings)))
    thread = threading.Thread(target=runner.run, daemon=True)
    from erpbridge.metrics import SINK_RECORDS

    def booked() -> float:
        return SINK_RECORDS.labels(label, "booked")._value.get()  # noqa: SLF001

    start_count = booked()
    thread.start()
    first, first_count = None, 0.0
    while booked() - start_count < count:
        if first is None and booked() > start_count:
            first, first_count = time.perf_counter(), booked() - start_count
        time.sleep(0.005)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    runner.stop.set()
    thread.join(timeout=60)
    return (count - first_count) / max(elapsed, 1e-9)  # from the first booking answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    with tryton_stack() as cfg:
        writer = TrytonWriter(TrytonRpc(cfg.url, cfg.database, cfg.user, cfg.password), "2.1.4")
        naive_loop(writer, 10)  # warm-up: parties, accounts, the server's caches
        naive = naive_loop(writer, args.postings)
        writer.close()
        print(f"{'mode':<22}{'bookings/s':>12}{'vs naive':>10}")
        print(f"{'naive loop':<22}{naive:>12.1f}{1.0:>10.2f}")
        for concurrency in args.concurrency:
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            settings = Settings(topic_prefix=prefix, sink_group_id=f"{prefix}-sink",
                                sink_concurrency=concurrency)  # fmt: skip
            rate = through_sink(settings, cfg.url, cfg.database, args.postings)
            print(f"{f'sink, concurrency {concurrency}':<22}{rate:>12.1f}{rate / naive:>10.2f}")


if __name__ == "__main__":
    main()
