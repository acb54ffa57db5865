"""Batch-file import: rows/s and peak RSS for 10,000 and 100,000-row CSVs, each in a fresh
process, plus the import's throughput as a ratio to a bare kafka-python produce loop of the
same number of records on the same broker in the same run.

    python -m bench.file_import [--rows 10000 100000]

Needs the local stack (Kafka, schema registry, Redis): it starts it when it is not up.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HEADER = "claim_id,employee_id,employee_name,expense_date,category,description,amount,currency"
NAMES = ["张伟", "李娜", "王芳", "刘洋", "陈静", "杨帆", "赵敏", "黄磊"]
CATEGORIES = ["travel", "lodging", "meals", "transport", "office"]


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write(HEADER + "\n")
        for n in range(rows):
            amount = f"{rng.randint(100, 2_000_000) / 100:,.2f}"
            out.write(f"B{n:07d},E{rng.randint(1000, 1999)},{rng.choice(NAMES)},"
                      f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d},"
                      f"{rng.choice(CATEGORIES)},出差 第{n}笔,\"{amount}\",CNY\n")  # fmt: skip


def child(path: str, prefix: str) -> None:
    """Import one file in this (fresh) process; print rows/s and peak RSS as JSON."""
    from connectors.sources.batch_file import import_file
    from erpbridge.config import Settings
    from erpbridge.kafka_io import ensure_topics

    settings = Settings(topic_prefix=prefix)
    ensure_topics(settings)
    started = time.perf_counter()
    report = import_file(Path(path), settings, f"bench-{prefix}", keep_ids=False, progress=False)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": report.rows, "published": report.published, "seconds": seconds,
                      "peak_rss_mib": peak_kib / 1024}))  # fmt: skip


def raw_produce(count: int, prefix: str) -> float:
    """records/s of a bare kafka-python producer (acks=all, idempotent) sending 200-byte values."""
    from erpbridge.config import Settings
    from erpbridge.kafka_io import durable_producer

    producer = durable_producer(Settings(topic_prefix=prefix))
    value = b"x" * 200
    started = time.perf_counter()
    futures = [producer.send(f"{prefix}.raw-baseline", value=value, key=str(n).encode())
               for n in range(count)]  # fmt: skip
    producer.flush()
    for future in futures[-1:]:
        future.get(timeout=60)
    rate = count / (time.perf_counter() - started)
    producer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from deploy.local import kafka, redis, registry

    for line in (kafka.up(), registry.up(), redis.up()):
        print(line)
    with tempfile.TemporaryDirectory() as folder:
        print(
            f"{'rows':>9}{'import rows/s':>15}{'peak RSS MiB':>14}{'raw produce/s':>15}"
            f"{'import/raw':>12}"
        )
        for rows in args.rows:
            path = Path(folder) / f"claims-{rows}.csv"
            write_csv(path, rows)
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            out = subprocess.run(
                [sys.executable, "-m", "bench.file_import", "--child", str(path), prefix],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            assert result["published"] == rows, result
            import_rate = rows / result["seconds"]
            raw_rate = raw_produce(rows, prefix)
            print(
                f"{rows:>9,}{import_rate:>15,.0f}{result['peak_rss_mib']:>14.0f}"
                f"{raw_rate:>15,.0f}{import_rate / raw_rate:>12.2f}"
            )


if __name__ == "__main__":
    main()
