"""The REST writer: postings/s booked into the gateway stand-in (a process of its own) one request
per posting (``book``: a lookup, then a create) against its batch mode (``book_many``: one batch
lookup and one batch create per 100 postings), same run, same postings.

    python -m bench.rest_writer [--postings 3000] [--batch 100]
"""

from __future__ import annotations

import argparse
import time
from multiprocessing import Process, Queue

from bench.reconcile_time import serve_gateway
from bench.sink_throughput import posting_record
from connectors.erp.rest import RestErpSettings, RestErpWriter
from erpbridge.model import Posting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    answer: Queue = Queue()
    server = Process(target=serve_gateway, args=(0, answer), daemon=True)
    server.start()
    url = answer.get(timeout=60)
    rows = []
    try:
        for mode in ("one", "batch"):
            postings = [Posting.from_record(posting_record(f"{mode}-{n}", n))
                        for n in range(args.postings)]  # fmt: skip
            extra = ({"batch_create_path": "/vouchers/batch",
                      "batch_lookup_path": "/vouchers?external_refs={references}"}
                     if mode == "batch" else {})  # fmt: skip
            writer = RestErpWriter(RestErpSettings(base_url=url, **extra))
            started = time.perf_counter()
            if mode == "one":
                for posting in postings:
                    writer.book(posting)
            else:
                for n in range(0, len(postings), args.batch):
                    outcomes = writer.book_many(postings[n : n + args.batch])
                    assert all(not isinstance(o, Exception) for o in outcomes), outcomes[:3]
            rows.append((mode, args.postings / (time.perf_counter() - started)))
            writer.close()
    finally:
        server.terminate()
    print(f"\n{'':36} {'postings/s':>11} {'ratio':>6}")
    for mode, rate in rows:
        name = "one request a posting" if mode == "one" else f"batch mode ({args.batch} a request)"
        print(f"{name:36} {rate:>11,.0f} {rate / rows[0][1]:>6.1f}")


if __name__ == "__main__":
    main()
