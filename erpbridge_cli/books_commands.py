"""``erpbridge books sync``, ``erpbridge reconcile`` and ``erpbridge report``: the books, read
from the topics into the store (``ERPBRIDGE_BOOKS_*``), compared with the ERP and summed up for
finance. Tables by default; ``--format csv|json|html`` (and ``--out FILE``) for the rest."""

from __future__ import annotations

import datetime
import json
import sys
import threading
from pathlib import Path
from typing import Any

import click

from erpbridge.config import get_settings

FORMATS = click.Choice(["table", "csv", "json", "html"])
DAY = click.DateTime(["%Y-%m-%d"])
REPORT_DIMENSIONS = ("department", "cost_centre", "category", "employee", "month")


def emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a file
    click.echo(f"wrote {out}", err=True)


def generated_at() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _stop() -> threading.Event:
    from erpbridge_cli.cli import stop_on_signals

    return stop_on_signals(threading.Event())


@click.group()
def books() -> None:
    """The books: what was sent to the ERP and what it answered (ERPBRIDGE_BOOKS_*)."""


@books.command("sync")
@click.option("--follow", is_flag=True, help="Keep reading after catching up, until stopped.")
@click.option("--json", "as_json", is_flag=True)
def books_sync(follow: bool, as_json: bool) -> None:
    """Read postings, feedback and claim statuses into the store, from where it left off."""
    from tqdm import tqdm

    from books.ingest import sync
    from books.store import BooksSettings, Store

    settings, config = get_settings(), BooksSettings()
    if follow:  # a long-running worker: its metrics, /healthz and /readyz, as every worker's
        from erpbridge.metrics import serve_from

        serve_from(settings)
    store = Store(config)
    bar = tqdm(unit=" records", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)
    seen: dict[str, int] = {}

    def progress(role: str, read: int) -> None:
        bar.update(read - seen.get(role, 0))
        seen[role] = read
        bar.set_description(role)

    try:
        report = sync(settings, config, store, _stop(), follow, progress)
        found = store.query("select count(*), coalesce(sum(total_minor), 0) from postings")[0]
        totals = (int(found[0]), int(found[1]))  # PostgreSQL sums to Decimal
    finally:
        bar.close()
        store.close()
    result = {"read": report.read, "unreadable": report.unreadable,
              "postings": totals[0], "total_minor": totals[1]}  # fmt: skip
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"read {report.read} (unreadable {report.unreadable}); the store holds "
        f"{totals[0]} postings, {totals[1] / 100:,.2f} in all"
    )


@click.command()
@click.option("--from", "start", type=DAY, help="First posting date (required unless --schedule).")
@click.option("--to", "end", type=DAY, help="Last posting date, inclusive.")
@click.option("--by", type=click.Choice(["day", "cost_centre", "department", "employee"]),
              help="Group the tally by (default: ERPBRIDGE_RECONCILE_BY, day).")  # fmt: skip
@click.option("--erp", default=None, help="Which ERP to read back (tryton, rest). "
              "Default: ERPBRIDGE_RECONCILE_ERP (tryton).")  # fmt: skip
@click.option("--feedback-after-min", type=float, default=None,
              help="A posting with no answer from the sink after this long is a difference "
              "(default: ERPBRIDGE_RECONCILE_FEEDBACK_AFTER_MIN, 60).")  # fmt: skip
@click.option("--no-sync", is_flag=True, help="Do not bring the books up to date first.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (atomically) instead of standard output.")  # fmt: skip
@click.option("--publish", is_flag=True,
              help="Also publish the run's summary to <prefix>.reconciliation.")  # fmt: skip
@click.option("--schedule", is_flag=True, help="Run as a service at each time of "
              "ERPBRIDGE_RECONCILE_CRON, over the last ERPBRIDGE_RECONCILE_DAYS days; publish "
              "each summary and serve the metrics.")  # fmt: skip
def reconcile(start: datetime.datetime | None, end: datetime.datetime | None, by: str | None,
              erp: str | None, feedback_after_min: float | None, no_sync: bool, fmt: str,
              as_json: bool, out: Path | None, publish: bool, schedule: bool) -> None:  # fmt: skip
    """Compare what was sent with what the ERP holds; exit 1 when they differ."""
    from books.scheduled import ReconcileSettings

    overrides = {k: v for k, v in {"erp": erp, "feedback_after_min": feedback_after_min,
                                   "by": by}.items() if v is not None}  # fmt: skip
    config = ReconcileSettings(**overrides)  # type: ignore[arg-type]
    if schedule:
        _serve_schedule(config)
        return
    if start is None or end is None:
        raise click.UsageError("--from and --to are required (or --schedule)")
    result, event = _reconcile_once(config, start.date(), end.date(), no_sync, publish)
    fmt = "json" if as_json else fmt
    emit(_render_reconciliation(result, fmt), out)
    if event is not None and fmt == "table":
        click.echo(f"summary {event['run_id']} published to the reconciliation topic")
    sys.exit(0 if result.ok else 1)


def _reconcile_once(config: Any, start: datetime.date, end: datetime.date, no_sync: bool,
                    publish: bool) -> tuple[Any, dict[str, Any] | None]:  # fmt: skip
    from books import scheduled
    from books.store import BooksSettings
    from erpbridge_cli.ledgers import ledger_for

    return scheduled.run(get_settings(), BooksSettings(), config, lambda: ledger_for(config.erp),
                         start, end, sync_first=not no_sync, publish_summary=publish)  # fmt: skip


def _render_reconciliation(result: Any, fmt: str) -> str:
    from books import export

    if fmt == "json":
        return json.dumps(result.to_json(), ensure_ascii=False, default=str)
    if fmt == "csv":
        return export.reconciliation_csv(result)
    if fmt == "html":
        return export.reconciliation_html(result, generated_at())
    lines = [
        f"{result.start} .. {result.end}: sent {result.sent} "
        f"({result.sent_minor / 100:,.2f}), booked {result.booked} "
        f"({result.booked_minor / 100:,.2f}); {len(result.differences)} difference(s)"
    ]
    if not result.scope_checked:
        lines.append("  (the ERP cannot list its documents by date: unexpected_in_erp not checked)")
    lines += [f"  {kind}: {count}" for kind, count in result.counts().items() if count]
    lines += [f"  {d.kind:<18} {d.reference:<20} {d.document or '-':<10} {d.detail}"
              for d in result.differences]  # fmt: skip
    return "\n".join(lines)


def _serve_schedule(config: Any) -> None:
    from books import scheduled
    from books.store import BooksSettings
    from erpbridge.metrics import serve_from
    from erpbridge_cli.ledgers import ledger_for

    settings = get_settings()
    serve_from(settings)

    def said(event: dict[str, Any] | None) -> None:
        if event is None:
            click.echo("reconciliation failed (see the log); next run as scheduled", err=True)
            return
        found = {k: v for k, v in event["counts"].items() if v}
        click.echo(f"reconciled {event['period_from']}..{event['period_to']}: sent "
                   f"{event['sent']}, booked {event['booked']}, differences {found or 0}",
                   err=False)  # fmt: skip

    click.echo(f"reconciling at '{config.cron}' ({config.timezone}), the last {config.days} "
               f"day(s), against {config.erp}; next at "
               f"{config.next_run(datetime.datetime.now(datetime.UTC)).isoformat()}")  # fmt: skip
    scheduled.serve(settings, BooksSettings(), config, lambda: ledger_for(config.erp), _stop(),
                    on_run=said)  # fmt: skip


@click.command()
@click.option("--from", "start", type=DAY, required=True, help="First posting date.")
@click.option("--to", "end", type=DAY, required=True, help="Last posting date, inclusive.")
@click.option("--by", type=click.Choice(list(REPORT_DIMENSIONS)), default="department",
              show_default=True)  # fmt: skip
@click.option("--no-sync", is_flag=True, help="Do not bring the books up to date first.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (atomically) instead of standard output.")  # fmt: skip
def report(start: datetime.datetime, end: datetime.datetime, by: str, no_sync: bool, fmt: str,
           as_json: bool, out: Path | None) -> None:  # fmt: skip
    """Expense totals, counts, input VAT and booking latency by department, cost centre,
    category, employee or month, from the books."""
    from books import export
    from books.ingest import sync
    from books.report import report as build
    from books.store import BooksSettings, Store

    settings, config = get_settings(), BooksSettings()
    store = Store(config)
    try:
        if not no_sync:
            sync(settings, config, store)
        result = build(store, start.date(), end.date(), by)
    finally:
        store.close()
    fmt = "json" if as_json else fmt
    if fmt == "json":
        emit(json.dumps(result.to_json(), ensure_ascii=False, default=str), out)
    elif fmt == "csv":
        emit(export.report_csv(result), out)
    elif fmt == "html":
        emit(export.report_html(result, generated_at()), out)
    else:
        emit(_report_table(result), out)


def _report_table(result: Any) -> str:
    lines = [f"{result.start} .. {result.end}, by {result.by}",
             f"{result.by:<24} {'cur':<4} {'postings':>8} {'booked':>7} {'refused':>7} "
             f"{'total':>14} {'input VAT':>12} {'latency s':>10}"]  # fmt: skip
    for r in result.rows:
        latency = "" if r.avg_latency_s is None else f"{r.avg_latency_s:,.1f}"
        lines.append(f"{r.group[:24]:<24} {r.currency:<4} {r.postings:>8} {r.booked:>7} "
                     f"{r.refused:>7} {r.total_minor / 100:>14,.2f} "
                     f"{r.input_vat_minor / 100:>12,.2f} {latency:>10}")  # fmt: skip
    for currency, t in sorted(result.totals().items()):
        lines.append(
            f"{'total':<24} {currency:<4} {'':>8} {'':>7} {'':>7} "
            f"{t['total_minor'] / 100:>14,.2f} {t['input_vat_minor'] / 100:>12,.2f}"
        )
    return "\n".join(lines)


@click.command()
@click.argument("asked", required=False)
@click.option("--employee", default=None, help="List the claims of this employee id instead.")
@click.option("--from", "start", type=DAY, default=None, help="With --employee: first day.")
@click.option("--to", "end", type=DAY, default=None, help="With --employee: last day, inclusive.")
@click.option("--no-sync", is_flag=True, help="Do not bring the books up to date first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def trace(asked: str | None, employee: str | None, start: datetime.datetime | None,
          end: datetime.datetime | None, no_sync: bool, as_json: bool) -> None:  # fmt: skip
    """Where is a claim? ASKED is a claim id, an invoice number, a posting id, an ERP document
    number or an input's event id: every input (with its provenance), status, posting, ERP
    answer (booked, paid) and failure of its claim, in order, with the time between them. With
    --employee (and --from/--to): that employee's claims. Exit 1 when nothing is found."""
    from books import journey
    from books.ingest import sync
    from books.store import BooksSettings, Store

    if (asked is None) == (employee is None):
        raise click.UsageError("name one claim (ASKED) or --employee")
    settings, config = get_settings(), BooksSettings()
    store = Store(config)
    try:
        if not no_sync:
            sync(settings, config, store)
        if employee is not None:
            found = journey.search(store, employee, start and start.date(), end and end.date())
            click.echo(json.dumps(found, ensure_ascii=False) if as_json else _claims_table(found))
            sys.exit(0 if found else 1)
        assert asked is not None
        result = journey.trace(store, asked)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, default=str))
    else:
        click.echo(_journey_table(result))
    sys.exit(0 if result.events else 1)


def _journey_table(result: Any) -> str:
    if not result.events:
        return f"nothing found for {result.asked}"
    lines = [f"claim {', '.join(result.claims) or '?'} ({len(result.events)} events)",
             f"{'at (UTC)':<20} {'+s':>9}  {'stage':<8} {'event':<22} what"]  # fmt: skip
    for event in result.events:
        since = "" if event.since_previous_s is None else f"{event.since_previous_s:,.1f}"
        origin = ""
        if event.origin:
            origin = "  [" + ", ".join(f"{k}={v}" for k, v in sorted(event.origin.items())) + "]"
        lines.append(f"{event.at:%Y-%m-%d %H:%M:%S} {since:>9}  {event.stage:<8} "
                     f"{event.event[:22]:<22} {event.summary}{origin}")  # fmt: skip
    spans = ", ".join(f"{name.replace('_', ' ')} {s:,.1f} s" for name, s in
                      result.stages().items() if s is not None)  # fmt: skip
    return "\n".join(lines + ([f"time: {spans}"] if spans else []))


def _claims_table(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no claims found"
    lines = [f"{'claim':<24} {'employee':<12} {'first (UTC)':<20} {'events':>6}  last status"]
    for row in found:
        lines.append(f"{row['claim_id'][:24]:<24} {(row['employee_id'] or '')[:12]:<12} "
                     f"{row['first_at'][:19]:<20} {row['events']:>6}  "
                     f"{row['last_status'] or ''}")  # fmt: skip
    return "\n".join(lines)
