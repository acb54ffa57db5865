"""``erpbridge demo CLAIMS [--approvals FILE] [--invoices FILE]``: feed exports to the running
pipeline and show where each claim went.

It waits until every claim id in the claims file is booked in the ERP, rejected (on the
rejection topic) or closed by its approval (cancelled), whenever that happened (a re-run finds
the rows already imported), then prints all three.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from erpbridge.config import Settings
from erpbridge.failures import FailureRecord


def run_demo(claims: Path, settings: Settings, timeout: float, echo: Callable[[str], None],
             approvals: Path | None = None, invoices: Path | None = None) -> list[str]:  # fmt: skip
    """Return the claim ids that did not get through in time (empty: all did)."""
    from connectors.erp.tryton import TrytonSettings, TrytonWriter
    from connectors.sources.batch_file import import_file
    from connectors.sources.file_formats import read_rows
    from erpbridge.topic_reader import read_rejections, read_statuses

    for path, kind in ((invoices, "invoices"), (claims, "claims"), (approvals, "approvals")):
        if path is not None:
            echo(f"fed {import_file(path, settings, 'demo', kind=kind).summary()}")
    wanted = {row["claim_id"].strip() for _, row in read_rows(claims) if row.get("claim_id")}
    writer = TrytonWriter.from_settings(TrytonSettings())
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    rejections: dict[tuple[Any, ...], FailureRecord] = {}
    closed: dict[str, dict[str, Any]] = {}
    try:
        while True:
            booked = {inv["reference"] for inv in writer.find_invoices(wanted)
                      if inv["state"] == "posted"}  # fmt: skip
            rejections = {
                (r.entity_id, r.stage, r.reason, r.origin.get("line")): r
                for r in read_rejections(settings)
                if r.entity_id in wanted or r.origin.get("file") == claims.name
            }  # fmt: skip
            closed = {s["claim_id"]: s for s in read_statuses(settings)
                      if s["claim_id"] in wanted and s["status"] == "CANCELLED"}  # fmt: skip
            done = booked | {key[0] for key in rejections} | set(closed)
            if done >= wanted or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        writer.close()
    _print(settings, sorted(wanted), rejections, closed, echo)
    return sorted(wanted - done)


def _print(settings: Settings, wanted: list[str],
           rejections: dict[tuple[Any, ...], FailureRecord], closed: dict[str, dict[str, Any]],
           echo: Callable[[str], None]) -> None:  # fmt: skip
    from erpbridge.topics import Topics
    from erpbridge_cli.cli import print_invoices

    print_invoices(wanted)
    topics = Topics(settings.topic_prefix)
    echo(f"{len(rejections)} rejection(s) on {topics.rejected}:")

    def by_line(r: FailureRecord) -> tuple[int, str]:
        return int(r.origin.get("line") or 0), r.entity_id or ""

    for rejection in sorted(rejections.values(), key=by_line):
        where = f"{rejection.origin.get('file', '?')}:{rejection.origin.get('line', '?')}"
        echo(f"  {rejection.entity_id or '(no id)':<14} {where:<16} "
             f"{rejection.stage}/{rejection.reason}: {rejection.describe()}")  # fmt: skip
    echo(f"{len(closed)} cancelled in approval (on {topics.claim_status}):")
    for claim_id, status in sorted(closed.items()):
        echo(f"  {claim_id:<14} {status['reason']}: {'; '.join(status['detail'])}")
