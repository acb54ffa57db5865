"""Reconciliation of 100,000 postings: the time ``books.reconcile`` takes against the ERP lookups it
needs, against the comparison alone (an in-process ledger: the raw limit), same books, same run.

    python -m bench.reconcile_time [--postings 100000] [--tryton-booked 200]

1. in-process: the ERP's documents in a dict (no I/O): what the comparison itself costs;
2. REST gateway: the stand-in gateway (a process of its own, HTTP/1.1) holding a voucher for each
   posting, read back one lookup per posting, then with its batch lookup (200 references a
   request), ``lookup_workers`` requests at a time, plus its listing by date;
3. Tryton: a Tryton of the bench's own with ``--tryton-booked`` of the postings booked; every
   posting looked up by reference (``search_read``, 1,000 references a call) and the expense
   journal listed by date. Tryton cannot hold 100,000 invoices in a bench's time (about 83 ms
   each to book), so most lookups find nothing: the lookups' cost, not the reading of 100,000
   documents.

The books are a DuckDB file filled directly (the ingest has its own bench).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import tempfile
import threading
import time
from multiprocessing import Process, Queue
from pathlib import Path

from books.reconcile import ErpDocument, reconcile
from books.store import BooksSettings, Store
from connectors.erp.rest import RestErpSettings
from connectors.erp.tryton import TrytonSettings, TrytonWriter
from erpbridge.model import Posting, PostingLine
from erpbridge_cli.ledgers import RestLedger, TrytonLedger
from tests.fakes.erp_gateway import Gateway

DAY = datetime.date(2026, 11, 2)
T0 = datetime.datetime(2026, 11, 2, 8, 0, tzinfo=datetime.UTC)


def _books(path: Path, count: int) -> Store:
    store = Store(BooksSettings(path=path))
    for start in range(0, count, 20_000):
        n_range = range(start, min(count, start + 20_000))
        store.upsert("postings", [(f"R{n}", f"R{n}", 1, "bench", f"E{n % 50}", "张伟",
                                   f"D{n % 7}", f"CC-{n % 13}", DAY, "CNY", 10_000 + n % 997,
                                   0, T0, "t", 0, n) for n in n_range])  # fmt: skip
        store.upsert("feedback", [(f"R{n}", "bench", "BOOKED", f"N{n}", str(n), None,
                                   10_000 + n % 997, None, T0) for n in n_range])  # fmt: skip
    return store


class InProcess:
    def __init__(self, count: int) -> None:
        self.found = {f"R{n}": ErpDocument(f"R{n}", f"N{n}", "posted", 10_000 + n % 997, 0, DAY)
                      for n in range(count)}  # fmt: skip

    def documents(self, references: list[str]) -> list[ErpDocument]:
        return [self.found[r] for r in references if r in self.found]

    def documents_between(self, start: datetime.date, end: datetime.date) -> list[ErpDocument]:
        return list(self.found.values())

    def close(self) -> None:
        pass


def serve_gateway(count: int, answer: Queue) -> None:
    """The stand-in gateway in a process of its own (not sharing the bench's interpreter lock)."""
    gateway = Gateway()
    for n in range(count):
        gateway.vouchers[f"R{n}"] = {"id": n, "number": f"N{n}", "status": "posted",
                                     "external_ref": f"R{n}", "date": DAY.isoformat(),
                                     "total": f"{(10_000 + n % 997) / 100:.2f}",
                                     "input_vat": "0.00"}  # fmt: skip
    server, url = gateway.serve()
    answer.put(url)
    threading.Event().wait()


def _timed(store: Store, ledger: object) -> tuple[float, int, int]:
    started = time.perf_counter()
    result = reconcile(store, ledger, DAY, DAY, now=T0)  # type: ignore[arg-type]
    return time.perf_counter() - started, result.sent, len(result.differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=100_000)
    parser.add_argument("--tryton-booked", type=int, default=200)
    parser.add_argument("--no-tryton", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="erpbridge-bench-reconcile-"))
    rows: list[tuple[str, float, int, int]] = []
    try:
        store = _books(work / "books.duckdb", args.postings)
        rows.append(("in-process ledger (raw limit)", *_timed(store, InProcess(args.postings))))
        answer: Queue = Queue()
        server = Process(target=serve_gateway, args=(args.postings, answer), daemon=True)
        server.start()
        url = answer.get(timeout=120)
        try:
            batch = "/vouchers?external_refs={references}"
            for config in (RestErpSettings(base_url=url),
                           RestErpSettings(base_url=url, batch_lookup_path=batch)):  # fmt: skip
                ledger = RestLedger(config)
                how = (f"{config.batch_lookup_size} a request" if config.batch_lookup_path
                       else "one a request")  # fmt: skip
                try:
                    rows.append((f"REST gateway ({how}, {config.lookup_workers} at a time)",
                                 *_timed(store, ledger)))  # fmt: skip
                finally:
                    ledger.close()
        finally:
            server.terminate()
        if not args.no_tryton:
            rows.append(("Tryton (JSON-RPC search_read)", *_tryton(store, args.tryton_booked)))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raw = rows[0][1]
    print(f"\n{'':40} {'postings':>9} {'seconds':>8} {'postings/s':>11} {'vs raw':>7} "
          f"{'differences':>12}")  # fmt: skip
    for name, took, sent, differences in rows:
        print(f"{name:40} {sent:>9,} {took:>8.2f} {sent / took:>11,.0f} {raw / took:>7.3f} "
              f"{differences:>12,}")  # fmt: skip


def _posting(n: int) -> Posting:
    amount = 10_000 + n % 997
    return Posting(f"R{n}", f"R{n}", "bench", f"E{n % 50}", "张伟", DAY, "CNY",
                   (PostingLine("5.2.2", "bench", amount, ()),), amount)  # fmt: skip


def _tryton(store: Store, booked: int) -> tuple[float, int, int]:
    from bench.stack import tryton_stack

    with tryton_stack() as cfg:
        config = TrytonSettings(url=cfg.url, database=cfg.database)
        writer = TrytonWriter.from_settings(config)
        started = time.perf_counter()
        for first in range(0, booked, 50):
            writer.book_many([_posting(n) for n in range(first, min(booked, first + 50))])
        print(f"booked {booked} postings in Tryton in {time.perf_counter() - started:.1f}s")
        writer.close()
        ledger = TrytonLedger(config)
        try:
            return _timed(store, ledger)
        finally:
            ledger.close()


if __name__ == "__main__":
    main()
