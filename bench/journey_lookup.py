"""How fast ``erpbridge trace`` (books.journey.trace) answers for one claim when the books hold
many: p50/p99 over random claims asked by claim id and by invoice number, against the raw limit
(the bare indexed select of the same rows, nothing assembled) in the same run and store.

    python -m bench.journey_lookup [--claims 1000000] [--lookups 2000] [--json]

The store is the embedded DuckDB file (a temporary one), filled in bulk inside DuckDB with seven
records per claim (claim, invoice, approval, status, posting, booked, paid: the journey table's
real schema and indexes); the lookups then go through the same code the CLI and the ops API use.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from books.journey import trace
from books.store import BooksSettings, Store

STAGES = [  # (offset in minutes, stage, event, reference expression)
    (0, "input", "claim", "'evt-' || n"),
    (3, "input", "invoice", "'2631' || lpad(cast(n as varchar), 16, '0')"),
    (40, "approval", "APPROVE", "'apr-' || n"),
    (41, "status", "POSTED", "null"),
    (41, "posting", "BOOKING", "'C' || n"),
    (42, "erp", "BOOKED", "cast(n as varchar)"),
    (1440, "erp", "PAID", "'PAY-' || n"),
]


def fill(store: Store, claims: int, chunk: int = 100_000) -> float:
    """Seven journey rows per claim, in bulk; returns the seconds it took."""
    started = time.perf_counter()
    for low in tqdm(range(0, claims, chunk), desc="filling the books", unit=" chunks"):
        high = min(claims, low + chunk)
        for number, (minutes, stage, event, reference) in enumerate(STAGES):
            store.db.execute(f"""
                insert into journey
                select 'bench.{stage}', {number}, n, 'C' || n,
                       timestamp '2026-01-01' + to_minutes(cast(n % 500000 + {minutes} as bigint)),
                       '{stage}', '{event}', '{event} of claim C' || n, {reference}, null,
                       'E' || (n % 5000)
                from range({low}, {high}) t(n)""")  # noqa: S608  constants only
    return time.perf_counter() - started


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3)}  # fmt: skip


def measure(store: Store, claims: int, lookups: int, seed: int = 7) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    asked = [rng.randrange(claims) for _ in range(lookups)]
    results: dict[str, dict[str, float]] = {}
    raw = []
    for n in asked:
        started = time.perf_counter()
        rows = store.query("select * from journey where claim_id = ? order by happened_at",
                           [f"C{n}"])  # fmt: skip
        raw.append(time.perf_counter() - started)
        assert len(rows) == len(STAGES), rows
    results["raw_select"] = _percentiles(raw)
    for name, key in (("trace_by_claim_id", lambda n: f"C{n}"),
                      ("trace_by_invoice_number", lambda n: f"2631{n:016d}")):  # fmt: skip
        took = []
        for n in asked:
            started = time.perf_counter()
            journey = trace(store, key(n))
            took.append(time.perf_counter() - started)
            assert len(journey.events) == len(STAGES), (key(n), journey.events)
        results[name] = _percentiles(took)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    store = Store(BooksSettings(path=folder / "books.duckdb"))
    try:
        filled = fill(store, args.claims)
        found = measure(store, args.claims, args.lookups)
    finally:
        store.close()
    size = (folder / "books.duckdb").stat().st_size
    result = {"claims": args.claims, "rows": args.claims * len(STAGES), "fill_s": round(filled, 1),
              "store_mb": round(size / 2**20, 1), "lookups": args.lookups, **found}  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    raw = found["raw_select"]["p99_ms"]
    print(f"{args.claims:,} claims ({result['rows']:,} journey rows, {result['store_mb']} MB, "
          f"filled in {filled:.0f} s); {args.lookups} lookups each")  # fmt: skip
    print(f"{'lookup':<26} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99 / raw':>10}")
    for name, p in found.items():
        print(f"{name:<26} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['max_ms']:>8.2f} "
              f"{p['p99_ms'] / raw:>10.2f}")  # fmt: skip
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
