"""What a master-data sync from Tryton costs (issue 30): N employees hired in a Tryton of the
bench's own, then three syncs into a fresh reference topic: the first (every employee new), a
repeat with nothing changed (changes only: nothing written), and one after 1 % of them left.

    python -m bench.masterdata_sync [--employees 10000] [--json]

Each sync is split into reading the ERP (``TrytonWriter.master_data``) and the rest (reading the
reference topic, planning, publishing in one transaction). The raw limit, measured in the same
run: the bare ``search_read`` of the same rows, and a bare transactional publish of N records of
the same size followed by a bare read of them back.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import uuid
from typing import Any

from tqdm import tqdm

from bench.stack import tryton_stack


def _hire(rpc: Any, company: int, count: int, chunk: int = 500) -> None:
    for low in tqdm(range(0, count, chunk), desc="hiring in Tryton", unit=" batches"):
        batch = range(low, min(count, low + chunk))
        parties = rpc.call("model.party.party.create",
                           [{"name": f"员工{n}", "code": f"E{n:06d}"} for n in batch])  # fmt: skip
        rpc.call("model.company.employee.create",
                 [{"party": party, "company": company} for party in parties])  # fmt: skip


def _timed(what: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = what()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from connectors.erp.tryton import TrytonSettings, TrytonWriter
    from connectors.sources.masterdata import current_entries, sync
    from erpbridge.config import Settings
    from erpbridge.kafka_io import durable_producer, ensure_topics
    from erpbridge.topic_reader import read_all
    from erpbridge.topics import Topics

    with tryton_stack() as cfg:
        settings = Settings(topic_prefix=f"bench-md-{uuid.uuid4().hex[:8]}")
        ensure_topics(settings)
        writer = TrytonWriter.from_settings(TrytonSettings(url=cfg.url, database=cfg.database))
        rpc = writer._rpc  # noqa: SLF001  the bench hires through the writer's own session
        rpc.login()
        company = int(rpc.context["company"])
        _, hire_s = _timed(lambda: _hire(rpc, company, args.employees))
        rows: list[dict[str, Any]] = []

        def one_sync(name: str) -> None:
            listed, read_s = _timed(writer.master_data)
            report, rest_s = _timed(lambda: sync(settings, listed, "tryton"))
            rows.append({"sync": name, "listed": len(listed.entries), "outcome": report.outcome,
                         "published": report.published, "read_erp_s": round(read_s, 2),
                         "plan_publish_s": round(rest_s, 2),
                         "total_s": round(read_s + rest_s, 2)})  # fmt: skip

        one_sync("first (all new)")
        one_sync("repeat (nothing changed)")
        leavers = rpc.call("model.company.employee.search", [("company", "=", company)], 0,
                           max(1, args.employees // 100), [("id", "ASC")])  # fmt: skip
        rpc.call("model.company.employee.write", leavers,
                 {"end_date": datetime.date.today() - datetime.timedelta(days=1)})  # fmt: skip
        one_sync("after 1% left")

        # the raw limit: the bare ERP read, a bare transactional publish and read-back
        _, bare_read_s = _timed(lambda: rpc.call(
            "model.company.employee.search_read", [("company", "=", company)], 0, None,
            [("id", "ASC")], ["party.code", "party.name", "end_date"],
            context={"active_test": False}))  # fmt: skip
        entries = current_entries(settings)
        raw_topic = Topics(f"{settings.topic_prefix}-raw").reference
        raw = Settings(topic_prefix=f"{settings.topic_prefix}-raw")
        ensure_topics(raw)
        producer = durable_producer(raw, transactional_id=f"{raw.topic_prefix}.bench")

        def bare_publish() -> None:
            producer.init_transactions()
            producer.begin_transaction()
            for key, value in entries.items():
                producer.send(raw_topic, key=key.encode(), value=json.dumps(value).encode())
            producer.commit_transaction()

        _, bare_publish_s = _timed(bare_publish)
        producer.close()
        _, bare_back_s = _timed(lambda: read_all(raw, raw_topic, timeout_s=120))
        writer.close()

    raw_limit = bare_read_s + bare_publish_s + bare_back_s
    result = {"employees": args.employees, "hire_s": round(hire_s, 1), "syncs": rows,
              "raw": {"erp_search_read_s": round(bare_read_s, 2),
                      "publish_s": round(bare_publish_s, 2), "read_back_s": round(bare_back_s, 2),
                      "total_s": round(raw_limit, 2)},
              "first_sync_vs_raw": round(rows[0]["total_s"] / raw_limit, 2)}  # fmt: skip
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"\nmaster-data sync from Tryton, {args.employees:,} employees "
          f"(hired in {hire_s:.0f} s):")  # fmt: skip
    print(f"  {'sync':<26}{'listed':>8}{'published':>11}{'read ERP':>10}{'plan+publish':>14}"
          f"{'total':>8}")  # fmt: skip
    for row in rows:
        print(
            f"  {row['sync']:<26}{row['listed']:>8,}{row['published']:>11,}"
            f"{row['read_erp_s']:>9.2f}s{row['plan_publish_s']:>13.2f}s{row['total_s']:>7.2f}s"
        )
    print(f"  raw limit: search_read {bare_read_s:.2f} s + transactional publish "
          f"{bare_publish_s:.2f} s + read back {bare_back_s:.2f} s = {raw_limit:.2f} s; "
          f"first sync {result['first_sync_vs_raw']}x that")  # fmt: skip


if __name__ == "__main__":
    main()
