"""Encode+decode throughput of our Avro codec (Confluent framing, schema resolution) as a ratio
to plain json.dumps/json.loads of the same records, measured in one run.

    python bench/codec_vs_json.py [--records 20000] [--rounds 5]

The registry is an in-process stand-in: after the first record the codec never calls it (ids
and writer schemas are cached), so the loop measured is the one production runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer
from tests.contract_samples import SAMPLES


class _Registry:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}

    def register(self, subject: str, schema: str) -> int:
        self.schemas.setdefault(1 + len(self.schemas), schema)
        return max(self.schemas)

    def schema_by_id(self, schema_id: int) -> str:
        return self.schemas[schema_id]


def _records(name: str, count: int) -> list[dict[str, Any]]:
    records = []
    for n in range(count):
        record = copy.deepcopy(SAMPLES[name])
        if name == "expense_claim":
            record["claim_id"] = f"EXP-{n:08d}"
            record["lines"][0]["amount"] = Decimal(n % 100000) / 100 + Decimal("0.0100")
        elif name == "erp_posting":
            record["posting_id"] = record["claim_id"] = f"EXP-{n:08d}"
            record["lines"][0]["amount_minor"] = record["total_minor"] = n
        records.append(record)
    return records


def _rate(work: Callable[[], None], count: int, rounds: int) -> float:
    """Median records/s over ``rounds`` runs of ``work`` on ``count`` records."""
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def _measure(name: str, count: int, rounds: int) -> tuple[float, float, int, int]:
    """(avro records/s, json records/s, avro bytes, json bytes) for one contract."""
    records = _records(name, count)
    registry = _Registry()
    version = contract(name).latest
    serialize = AvroSerializer(registry, f"{name}-value", version)  # type: ignore[arg-type]
    deserialize = AvroDeserializer(registry, version)  # type: ignore[arg-type]

    def avro_round_trip() -> None:
        for record in records:
            deserialize(serialize(record))

    def json_round_trip() -> None:
        for record in records:
            json.loads(json.dumps(record, default=str).encode())

    return (
        _rate(avro_round_trip, len(records), rounds),
        _rate(json_round_trip, len(records), rounds),
        len(serialize(records[0])),
        len(json.dumps(records[0], default=str).encode()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'contract':<15}{'avro rec/s':>12}{'json rec/s':>12}{'avro/json':>11}"
        f"{'avro bytes':>12}{'json bytes':>12}"
    )
    for name in ("expense_claim", "erp_posting", "invoice"):
        avro_rate, json_rate, avro_size, json_size = _measure(name, args.records, args.rounds)
        print(
            f"{name:<15}{avro_rate:>12,.0f}{json_rate:>12,.0f}{avro_rate / json_rate:>11.2f}"
            f"{avro_size:>12}{json_size:>12}"
        )


if __name__ == "__main__":
    main()
