"""The books' ingest: records/s that ``books.ingest.sync`` stores, against a bare consume loop over
the same topic (the raw limit: kafka-python polling to the end, nothing decoded) and a consume
loop that also decodes each record (the contract's cost), same run, same topic.

    python -m bench.books_ingest [--postings 50000] [--postgres]

Needs Kafka and the schema registry (started if down). ``--postgres`` also syncs into a
PostgreSQL of its own (Debian's packages) to compare the two engines.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from bench.sink_throughput import posting_record
from books.ingest import sync
from books.store import BooksSettings, Store
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, ensure_topics


def _publish(settings: Settings, count: int) -> None:
    codecs, producer = TopicCodecs(settings), durable_producer(settings, linger_ms=20)
    try:
        serialize, topic = codecs.serializer("postings"), codecs.topic("postings")
        for n in range(count):
            record = posting_record(f"B{n}", n)
            record["department"], record["cost_centre"] = f"D{n % 7}", f"CC-{n % 13}"
            producer.send(topic, key=f"B{n}".encode(), value=serialize(record))
        producer.flush()
    finally:
        producer.close()
        codecs.close()


def consume_loop(settings: Settings, decode: bool) -> tuple[int, float]:
    """Records and seconds to read the postings topic from start to end (read_committed)."""
    codecs = TopicCodecs(settings)
    topic = codecs.topic("postings")
    deserialize = codecs.deserializer("postings")
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", max_poll_records=2000)  # fmt: skip
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        read, started = 0, time.perf_counter()
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if decode:
                        deserialize(record.value)
                    read += 1
        return read, time.perf_counter() - started
    finally:
        consumer.close()
        codecs.close()


def books_sync(settings: Settings, config: BooksSettings) -> tuple[int, float]:
    store = Store(config)
    try:
        started = time.perf_counter()
        report = sync(settings, config, store)
        took = time.perf_counter() - started
        (stored,) = store.query("select count(*) from postings")[0]
        assert int(stored) == report.read["postings"], (stored, report.read)
        return report.read["postings"], took
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=50_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    from deploy.local import kafka, registry

    for line in (kafka.up(), registry.up()):
        print(line)
    settings = Settings(topic_prefix=f"bench{uuid.uuid4().hex[:8]}", topic_partitions=3)
    ensure_topics(settings)
    started = time.perf_counter()
    _publish(settings, args.postings)
    print(f"published {args.postings:,} postings in {time.perf_counter() - started:.1f}s")
    work = Path(tempfile.mkdtemp(prefix="erpbridge-bench-books-"))
    rows: list[tuple[str, int, float]] = []
    try:
        rows.append(("bare consume loop (raw limit)", *consume_loop(settings, decode=False)))
        rows.append(("consume + decode (contract)", *consume_loop(settings, decode=True)))
        rows.append(("books sync -> DuckDB", *books_sync(settings, BooksSettings(
            path=work / "books.duckdb"))))  # fmt: skip
        if args.postgres:
            rows.append(("books sync -> PostgreSQL", *books_sync(settings, _postgres(work))))
    finally:
        _stop_postgres()
        shutil.rmtree(work, ignore_errors=True)
    raw = rows[0][1] / rows[0][2]
    print(f"\n{'':32} {'records':>9} {'seconds':>8} {'records/s':>10} {'vs raw':>7}")
    for name, read, took in rows:
        rate = read / took
        print(f"{name:32} {read:>9,} {took:>8.2f} {rate:>10,.0f} {rate / raw:>7.2f}")


_STOP: list = []


def _postgres(work: Path) -> BooksSettings:
    from deploy.local import postgres
    from deploy.local.process import ManagedProcess, free_port

    work.chmod(0o755)
    cfg = postgres.PostgresConfig(port=free_port(), data=work / "pg")
    service = postgres.service(cfg, ManagedProcess(f"postgres-bench-{cfg.port}"))
    print(service.up(lambda: postgres.server_argv(cfg)))
    _STOP.append(service)
    return BooksSettings(url=cfg.url)


def _stop_postgres() -> None:
    for service in _STOP:
        print(service.down())


if __name__ == "__main__":
    main()
