"""Stream processors: sustained events/s for a mixed claim/approval/invoice stream, as a ratio to
a bare consume-and-produce loop over the same records on the same broker in the same run.

    python -m bench.streams_throughput [--claims 5000] [--guarantee exactly_once]

Per claim, three input events: its invoice, the claim citing it, and its final approval. They
are all on the broker before the worker starts, so the measure is processing, not producing.
Both sides are measured between 10 % and 90 % of the work (start-up and the tail excluded): the
worker's rate is postings out per second (its Prometheus counter) times the 3 input events each
claim took, internal round trips included; the bare loop (aiokafka, read_committed, acks=all,
one output per input, offsets committed every 2.8 s like Faust's default) counts in process.
Needs the local stack; starts it if not up. Worker logs stay in .local/bench/<prefix>/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx

from erpbridge.config import Settings

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples" / "reference"
POSTED = re.compile(r'erpbridge_stream_events_total\{agent="claims",outcome="out"\} ([0-9.e+]+)')


def publish_inputs(settings: Settings, claims: int) -> int:
    from connectors.sources.reference_file import publish_reference
    from erpbridge.contracts.bindings import TopicCodecs
    from erpbridge.kafka_io import durable_producer, ensure_topics

    ensure_topics(settings)
    for path in sorted(SAMPLES_DIR.glob("*.csv")):
        publish_reference(path, settings)
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings, linger_ms=50, batch_size=256 * 1024)
    now = datetime.datetime.now(datetime.UTC)
    sample = _sample_records()
    for n in range(claims):
        claim_id, number = f"BENCH-{n:07d}", f"9{n:019d}"
        invoice = dict(sample["invoice"], invoice_number=number, event_id=f"i{n}")
        claim = dict(sample["claim"], claim_id=claim_id, event_id=f"c{n}", submitted_at=now)
        claim["lines"] = [
            dict(
                claim["lines"][0],
                invoice_refs=[number],
                amount=Decimal(100 + n % 900).quantize(Decimal("0.0001")),
            )
        ]
        approval = dict(sample["approval"], claim_id=claim_id, event_id=f"a{n}", decided_at=now)
        for role, key, value in (
            ("invoices_raw", number, invoice),
            ("claims_raw", claim_id, claim),
            ("approvals_raw", claim_id, approval),
        ):
            producer.send(
                codecs.topic(role), key=key.encode(), value=codecs.serializer(role)(value)
            )
    producer.flush()
    producer.close()
    codecs.close()
    return 3 * claims


def _sample_records() -> dict[str, dict]:
    day = datetime.date(2026, 11, 12)
    now = datetime.datetime.now(datetime.UTC)
    line = {
        "line_no": 1,
        "category": "travel",
        "description": "高铁",
        "amount": Decimal("553.0000"),
        "currency": "CNY",
        "expense_date": day,
        "invoice_refs": [],
    }
    return {
        "claim": {
            "event_id": "",
            "claim_id": "",
            "source_system": "bench",
            "employee": {
                "id": "E1001",
                "name": "张伟",
                "department": "D10",
                "cost_centre": "CC-SH-01",
            },
            "project": None,
            "purpose": None,
            "lines": [line],
            "submitted_at": now,
            "origin": {},
        },
        "approval": {
            "event_id": "",
            "claim_id": "",
            "source_system": "oa",
            "step": 1,
            "step_name": "财务审核",
            "approver_id": "E0007",
            "approver_name": "李娜",
            "decision": "APPROVE",
            "comment": None,
            "decided_at": now,
            "final": True,
        },
        "invoice": {
            "event_id": "",
            "source_system": "bench",
            "invoice_type": "DIGITAL_GENERAL",
            "invoice_code": None,
            "invoice_number": "",
            "issue_date": day,
            "seller_name": "中国铁路上海局集团有限公司",
            "seller_tax_id": "91310000132211111P",
            "buyer_name": "ERPBridge Demo Co., Ltd.",
            "buyer_tax_id": None,
            "amount_net": Decimal("507.34"),
            "tax_rate": Decimal("0.0900"),
            "tax_amount": Decimal("45.66"),
            "total": Decimal("553.00"),
            "check_code": None,
            "lines": [],
            "claim_id": None,
            "received_at": now,
        },
    }


def sustained_rate(samples: list[tuple[float, float]], total: int) -> float:
    """events/s between the first samples at >= 10 % and >= 90 % of ``total``."""
    low = next(s for s in samples if s[1] >= 0.1 * total)
    high = next(s for s in samples if s[1] >= 0.9 * total)
    return (high[1] - low[1]) / max(high[0] - low[0], 1e-9)


def run_worker(settings: Settings, claims: int, workdir: Path) -> tuple[float, float]:
    """(sustained input events/s, seconds to post everything) of a real streams worker: the
    rate at which claims come out as postings, times the 3 input events each one took."""
    from deploy.local.process import free_port

    port = free_port()
    env = {**os.environ, **settings.to_env(), "ERPBRIDGE_METRICS_PORT": str(port)}
    log = (workdir / "streams.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "erpbridge", "streams"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        while not samples or samples[-1][1] < claims:
            if proc.poll() is not None or time.monotonic() - started > 900:
                raise SystemExit(f"worker stopped or too slow; see {workdir / 'streams.log'}")
            time.sleep(0.25)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
            samples.append((time.monotonic(), sum(float(v) for v in POSTED.findall(text))))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # keep the measure; dump the tasks, say so, kill
            proc.send_signal(signal.SIGUSR1)
            time.sleep(3)
            proc.kill()
            print(f"worker did not stop within 60 s; its tasks: {workdir / 'streams.log'}")
        log.close()
    first = next(t for t, count in samples if count > 0)
    return 3 * sustained_rate(samples, claims), samples[-1][0] - first


async def bare_loop(settings: Settings, total: int) -> float:
    """Sustained events/s of aiokafka consume -> produce over the same input topics."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from erpbridge.topics import Topics

    topics = Topics(settings.topic_prefix)
    out = f"{settings.topic_prefix}.bare-out"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(out, settings.topic_partitions, 1)])
    admin.close()
    consumer = AIOKafkaConsumer(
        topics.claims_raw,
        topics.approvals_raw,
        topics.invoices_raw,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    seen, samples, last_commit = 0, [], time.monotonic()
    try:
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    await producer.send(out, key=record.key, value=record.value)
                    seen += 1
                    if seen % 100 == 0:
                        samples.append((time.monotonic(), float(seen)))
            if time.monotonic() - last_commit > 2.8:
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
        await producer.flush()
        await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return sustained_rate(samples, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument(
        "--guarantee",
        choices=["exactly_once", "at_least_once"],
        nargs="+",
        default=["exactly_once", "at_least_once"],
    )
    args = parser.parse_args()
    from deploy.local import kafka, redis, registry
    from erpbridge.topic_reader import read_all
    from erpbridge.topics import Topics

    for line in (kafka.up(), registry.up(), redis.up()):
        print(line)
    print(
        f"{'guarantee':<15}{'events':>8}{'worker ev/s':>13}{'bare ev/s':>11}{'ratio':>8}"
        f"{'worker total s':>16}"
    )
    for guarantee in args.guarantee:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        folder = Path(".local/bench") / prefix  # kept: the worker's log is there
        folder.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            topic_prefix=prefix,
            streams_app_id=f"{prefix}-streams",
            streams_datadir=str(folder),
            streams_processing_guarantee=guarantee,
            metrics_port=0,
        )
        total = publish_inputs(settings, args.claims)
        worker_rate, worker_seconds = run_worker(settings, args.claims, Path(folder))
        postings = len(read_all(settings, Topics(prefix).postings, timeout_s=120))
        if postings != args.claims:
            raise SystemExit(f"{postings} postings for {args.claims} claims: not a valid run")
        bare_rate = asyncio.run(bare_loop(settings, total))
        print(
            f"{guarantee:<15}{total:>8,}{worker_rate:>13,.0f}{bare_rate:>11,.0f}"
            f"{worker_rate / bare_rate:>8.2f}{worker_seconds:>16.1f}"
        )


if __name__ == "__main__":
    main()
