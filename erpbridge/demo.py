"""``erpbridge demo FILE``: feed an export to the running pipeline and show where each claim went.

It waits until every claim id in the file is booked in the ERP or rejected (whenever that
happened: a re-run finds the rows already imported), then prints both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from erpbridge.config import Settings


def run_demo(path: Path, settings: Settings, timeout: float,
             echo: Callable[[str], None]) -> list[str]:  # fmt: skip
    """Return the claim ids that did not get through in time (empty: all did)."""
    from connectors.erp.tryton import TrytonWriter
    from connectors.sources.batch_file import import_file
    from connectors.sources.file_formats import read_rows
    from erpbridge.rejections import describe
    from erpbridge.topic_reader import read_rejections

    report = import_file(path, settings, "demo")
    echo(f"fed {report.summary()}")
    wanted = {row["claim_id"].strip() for _, row in read_rows(path) if row.get("claim_id")}
    writer = TrytonWriter.from_settings(settings)
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    mine: dict[tuple[Any, ...], dict[str, Any]] = {}
    try:
        while True:
            booked = {inv["reference"] for inv in writer.find_invoices(wanted)
                      if inv["state"] == "posted"}  # fmt: skip
            mine = {
                (r["entity_id"], r["stage"], r["origin"].get("line")): r
                for r in read_rejections(settings)
                if r["entity_id"] in wanted or r["origin"].get("file") == path.name
            }  # fmt: skip
            done = booked | {entity for entity, _, _ in mine}
            if done >= wanted or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        writer.close()
    from erpbridge.cli import print_invoices
    from erpbridge.topics import Topics

    print_invoices(settings, sorted(wanted))
    echo(f"{len(mine)} rejection(s) on {Topics(settings.topic_prefix).rejected}:")
    for rejection in sorted(mine.values(), key=lambda r: int(r["origin"].get("line") or 0)):
        where = f"{rejection['origin'].get('file', '?')}:{rejection['origin'].get('line', '?')}"
        echo(f"  {rejection['entity_id'] or '(no id)':<14} {where:<16} "
             f"{rejection['stage']}: {describe(rejection)}")  # fmt: skip
    return sorted(wanted - done)
