"""A claims table of a given size, and the worker's start-up against it (``bench.suite``'s state
section).

The table is filled the way a long-running worker leaves it: its compacted changelog holds one
closed (posted) case per claim, as the claims agent writes it (the JSON of a
:class:`streams.claim_case.ClaimCase` with the claim's Avro bytes), about 1 KB each. A worker
then starts on it and is timed until it says it is ready (its tables recovered), its RSS
read then; it is SIGKILLed, so the next start measures a restart after a crash.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from erpbridge.config import Settings
from erpbridge.topics import table_changelog

READY = (b"Worker ready", b"stream worker ready")  # Faust's, the direct runtime's


def case_json(claim_id: str, claim_bytes: bytes, now_ms: int) -> bytes:
    from streams.claim_case import ClaimCase

    case = ClaimCase(claim_id=claim_id, partition=0, opened_ms=now_ms, touched_ms=now_ms,
                     version=1, hash="9f" * 16,
                     claim_b64=base64.b64encode(claim_bytes).decode(), submitted_ms=now_ms,
                     refs=[f"INV-{claim_id}"],
                     invoices={f"INV-{claim_id}": ["valid", None, claim_id]},
                     decision="APPROVE_FINAL", decided_ms=now_ms, posted=True)  # fmt: skip
    return case.to_json()


def fill_claims_changelog(settings: Settings, size: int) -> None:
    from confluent_kafka import Producer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.partitioner.default import murmur2
    from tqdm import tqdm

    from bench import workload
    from erpbridge.contracts.bindings import TopicCodecs
    from erpbridge.kafka_io import ensure_topics

    ensure_topics(settings)
    topic = table_changelog(settings.streams_app_id, "claims")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, settings.topic_partitions, 1,
                                  topic_configs={"cleanup.policy": "compact"})])  # fmt: skip
    admin.close()
    codecs = TopicCodecs(settings)
    sample = workload.build(1)
    role, _, record = next(e for e in sample.events if e[0] == "claims_raw")
    claim_bytes = bytes(codecs.serializer(role)(record))
    codecs.close()
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20,
                         "batch.size": 1 << 20})  # fmt: skip
    now_ms = int(time.time() * 1000)
    template = case_json("S-000000000", claim_bytes, now_ms)  # each case differs by its id only
    partition_field = b'"partition":0,'
    assert partition_field in template
    for n in tqdm(range(size), desc=f"claims changelog, {size:,} cases", unit="case",
                  mininterval=2, file=sys.stdout):  # fmt: skip
        claim_id = f"S-{n:09d}"
        while True:
            try:
                key = claim_id.encode()
                partition = (murmur2(key) & 0x7FFFFFFF) % settings.topic_partitions  # the key's
                value = template.replace(b"S-000000000", key).replace(
                    partition_field, b'"partition":%d,' % partition
                )  # as the agent stores it
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush()


def time_recovery(settings: Settings, folder: Path, label: str, rss: Any) -> tuple[float, float]:
    """(seconds from the worker's start to its tables recovered, its RSS then in MiB); then the
    worker is SIGKILLed."""
    import psutil

    from bench.suite import worker_env

    log_path = folder / "worker.log"
    start_at = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "erpbridge", "streams"], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ,
                                                               **worker_env(settings)})  # fmt: skip
        rss.watch(f"worker ({label})", proc.pid)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"{label}: the worker stopped; see {log_path}")
                if time.monotonic() - started > 600:
                    raise SystemExit(f"{label}: not ready after 600 s; see {log_path}")
                with log_path.open("rb") as reader:
                    reader.seek(start_at)
                    text = reader.read()
                    if any(ready in text for ready in READY):
                        break
                time.sleep(0.2)
            seconds = time.monotonic() - started
            mib = psutil.Process(proc.pid).memory_info().rss / 2**20
        finally:
            proc.kill()
            proc.wait()
    return seconds, mib
