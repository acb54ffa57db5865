"""``erpbridge budget``: budgets as the processors count them (budget, consumed, reserved,
available, held claims), and an operator's release of a claim held over budget (audited)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from erpbridge.config import get_settings


@click.group()
def budget() -> None:
    """Budget control: what each cost centre's budget has left, and claims held over it."""


@budget.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable rows.")
def budget_status(as_json: bool) -> None:
    """Each budget (cost centre and period): the ERP's amount, what postings consumed, what
    approved claims reserved, what is left, and the claims held waiting for room."""
    from ops.budgets import budgets

    lines = budgets(get_settings())
    if as_json:
        click.echo(json.dumps([line.to_json() for line in lines], ensure_ascii=False))
        return
    if not lines:
        click.echo("no budget is known (sync master data from the ERP: erpbridge source "
                   "masterdata --from tryton)")  # fmt: skip
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    numbers = ("budget", "consumed", "reserved", "available", "claims")
    for column in ("cost centre", "period", "policy", *numbers, "held"):
        table.add_column(column, overflow="fold", justify="right" if column in numbers else "left")
    for line in lines:
        table.add_row(line.cost_centre, f"{line.start}..{line.end or '?'}", line.policy,
                      _money(line.budget_minor), _money(line.consumed_minor),
                      _money(line.reserved_minor), _money(line.available_minor),
                      str(line.claims), ", ".join(line.held) or "-")  # fmt: skip
    Console(width=160).print(table)
    click.echo(f"amounts in {lines[0].currency}")


def _money(minor: int | None) -> str:
    return "-" if minor is None else f"{minor / 100:,.2f}"


@budget.command("report")
@click.option("--no-sync", is_flag=True, help="Do not bring the books up to date first.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]),
              default="table", show_default=True)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (atomically) instead of standard output.")  # fmt: skip
def budget_report(no_sync: bool, fmt: str, as_json: bool, out: Path | None) -> None:
    """Budget vs actual per cost centre and period: the ERP's budget, what it booked against it
    (from the books), what the processors consumed and reserved, what is left."""
    from books import export
    from books.budget_report import budget_vs_actual
    from books.ingest import sync
    from books.store import BooksSettings, Store
    from erpbridge_cli.books_commands import emit, generated_at
    from ops.budgets import budgets

    settings, config = get_settings(), BooksSettings()
    lines = budgets(settings)
    store = Store(config)
    try:
        if not no_sync:
            sync(settings, config, store)
        rows = budget_vs_actual(store, lines)
    finally:
        store.close()
    fmt = "json" if as_json else fmt
    if fmt == "json":
        emit(json.dumps([r.to_json() for r in rows], ensure_ascii=False), out)
    elif fmt == "csv":
        emit(export.budget_csv(rows), out)
    elif fmt == "html":
        emit(export.budget_html(rows, generated_at()), out)
    else:
        text = [f"{'cost centre':<14} {'period':<23} {'budget':>14} {'booked':>14} "
                f"{'reserved':>12} {'available':>14} {'used':>7} {'held':>5}"]  # fmt: skip
        for r in rows:
            used = "" if r.used_pct is None else f"{r.used_pct:.1f}%"
            period = f"{r.line.start}..{r.line.end or '?'}"
            text.append(f"{r.line.cost_centre[:14]:<14} {period:<23} "
                        f"{_money(r.line.budget_minor):>14} {_money(r.booked_minor):>14} "
                        f"{_money(r.line.reserved_minor):>12} {_money(r.available_minor):>14} "
                        f"{used:>7} {len(r.line.held):>5}")  # fmt: skip
        emit("\n".join(text), out)


@budget.command("release")
@click.argument("claim_id")
@click.option("--reason", required=True, help="Why it may exceed its budget (kept in the audit).")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for its posting (0: do not wait).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable outcome.")
def budget_release(claim_id: str, reason: str, wait_s: float, as_json: bool) -> None:
    """Release CLAIM_ID, held over budget: it is counted although it exceeds, and booked. Exits 3
    when the claim is not held over budget."""
    from ops.audit import Actor
    from ops.budgets import NotHeld, release

    settings = get_settings()
    try:
        record = release(settings, claim_id, Actor.local(), reason)
    except NotHeld as exc:
        if as_json:
            click.echo(json.dumps({"claim_id": claim_id, "outcome": "refused", "why": str(exc)}))
        else:
            click.echo(f"not released: {exc}", err=True)
        raise SystemExit(3) from exc
    posted = _wait_for_posting(settings, claim_id, wait_s) if wait_s > 0 else None
    outcome = {"claim_id": claim_id, "outcome": "released", "action_id": record["action_id"],
               "budget": record["selection"].get("budget"), "detail": record["detail"],
               "posted": posted is not None,
               "status": None if posted is None else posted["detail"]}  # fmt: skip
    if as_json:
        click.echo(json.dumps(outcome, ensure_ascii=False))
        return
    click.echo(f"released {claim_id} ({record['detail']}); audit {record['action_id']}")
    if wait_s > 0:
        click.echo(f"{claim_id} posted" if posted else
                   f"{claim_id} not posted within {wait_s:.0f} s: is the streams worker "
                   "running? (erpbridge trace " + claim_id + ")")  # fmt: skip


def _wait_for_posting(settings: Any, claim_id: str, wait_s: float) -> dict[str, Any] | None:
    from erpbridge.topic_reader import read_statuses

    deadline = time.monotonic() + wait_s
    while True:
        posted = [s for s in read_statuses(settings)
                  if s["claim_id"] == claim_id and s["status"] == "POSTED"]  # fmt: skip
        if posted or time.monotonic() > deadline:
            return posted[-1] if posted else None
        time.sleep(1.0)
