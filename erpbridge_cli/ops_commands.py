"""``erpbridge dlq ...`` and ``erpbridge audit ...``: the operators' commands.

Every command is audited (who, role, selection, counts, outcome) on ``<prefix>.audit``. Human
tables by default, ``--json`` for scripts; personal data masked unless ``--unmask``.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from erpbridge.config import get_settings


def _selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--topic", default="all", show_default=True,
                     type=click.Choice(["all", "rejected", "erp_dead_letter",
                                        "feedback_dead_letter", "quarantine"]),
                     help="Which failure topic (by role)."),
        click.option("--reason", help="Only this reason code (undecodable, refused, ...)."),
        click.option("--stage", help="Only this stage (put, normalize, source.webhook, ...)."),
        click.option("--claim-id", help="Only this claim (or invoice) id."),
        click.option("--employee", help="Only this employee id."),
        click.option("--source-system", help="Only this source system."),
        click.option("--since", type=click.DateTime(), help="Last failed at or after (UTC)."),
        click.option("--until", type=click.DateTime(), help="Last failed before (UTC)."),
        click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
                     help="Only records with this header (repeatable)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _selection(topic: str, reason: str | None, stage: str | None, claim_id: str | None,
               employee: str | None, source_system: str | None, since: datetime.datetime | None,
               until: datetime.datetime | None, headers: tuple[str, ...]) -> Any:  # fmt: skip
    from ops.dlq import Selection

    def utc(moment: datetime.datetime | None) -> datetime.datetime | None:
        return moment.replace(tzinfo=datetime.UTC) if moment and not moment.tzinfo else moment

    pairs = dict(_pair(text) for text in headers)
    return Selection(topic, reason, stage, claim_id, employee, source_system, utc(since),
                     utc(until), pairs)  # fmt: skip


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}")
    return name, value


@click.group()
def dlq() -> None:
    """Failure records: list, show, replay, archive, purge (every action audited)."""


@dlq.command("list")
@_selection_options
@click.option("--limit", default=50, show_default=True, help="Rows in the table (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Counts and rows as JSON.")
@click.option("--unmask", is_flag=True, help="Show personal data (admin).")
def dlq_list(limit: int, as_json: bool, unmask: bool, **filters: Any) -> None:
    """Counts by failure topic, stage, reason, source and age; then the records."""
    from ops.audit import Actor, AuditTrail
    from ops.dlq import Summary, failures, row
    from ops.masking import mask

    settings, actor = get_settings(), Actor.local()
    selection = _selection(**filters)
    summary, rows = Summary(), list[dict[str, Any]]()
    now = datetime.datetime.now(datetime.UTC)
    for found in failures(settings, selection):
        summary.add(found, now)
        if not limit or len(rows) < limit:
            rows.append(row(found) if unmask else mask(row(found)))
    AuditTrail(settings).append(
        actor,
        "dlq.list",
        selection=selection.describe(),
        counts={"selected": summary.total, "unmasked": int(unmask)},
    )
    if as_json:
        click.echo(json.dumps({"summary": summary.to_json(), "records": rows},
                              ensure_ascii=False, indent=2))  # fmt: skip
        return
    _print_summary(summary.to_json())
    _print_table(rows)


def _print_summary(summary: dict[str, Any]) -> None:
    click.echo(f"{summary['total']} failure record(s)")
    for title in ("by_failure_topic", "by_stage", "by_reason", "by_source_topic", "by_age"):
        counts = summary[title]
        if counts:
            items = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda i: -i[1]))
            click.echo(f"  {title.removeprefix('by_').replace('_', ' ')}: {items}")


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    table = Table(show_lines=False)
    for column in ("where", "stage", "reason", "claim_id", "employee", "replays",
                   "last_failed_at", "problem"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for item in rows:
        table.add_row(*(str(item[c] if item[c] is not None else "-") for c in (
            "where", "stage", "reason", "claim_id", "employee", "replays", "last_failed_at",
            "problem")))  # fmt: skip
    Console(width=160).print(table)


@dlq.command("show")
@click.argument("where")
@click.option("--json", "as_json", is_flag=True)
@click.option("--unmask", is_flag=True, help="Show personal data (admin).")
def dlq_show(where: str, as_json: bool, unmask: bool) -> None:
    """One failure record (WHERE: topic[partition]@offset, as ``dlq list`` prints it)."""
    from ops.audit import Actor, AuditTrail
    from ops.dlq import describe, find

    settings = get_settings()
    found = find(settings, where)
    AuditTrail(settings).append(Actor.local(), "dlq.show", selection={"where": where},
                                counts={"found": int(found is not None),
                                        "unmasked": int(unmask)})  # fmt: skip
    if found is None:
        raise click.ClickException(f"no failure record at {where}")
    shown = describe(found, unmask)
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2, default=str))
        return
    for key, value in shown.items():
        text = json.dumps(value, ensure_ascii=False, indent=2, default=str) if isinstance(
            value, dict | list) else str(value)  # fmt: skip
        click.echo(f"{key}: {text}")


@dlq.command("replay")
@_selection_options
@click.option("--to", "target", help="Send to this topic instead of each record's origin.")
@click.option(
    "--set",
    "set_fields",
    multiple=True,
    metavar="PATH=VALUE",
    help="Fix-up: set a field of the decoded record, e.g. lines.0.account_code=5.2.2",
)
@click.option("--dry-run", is_flag=True, help="Say where each record would go; write nothing.")
@click.option("--rate", type=float, help="At most this many records per second.")
@click.option(
    "--max-replays",
    default=3,
    show_default=True,
    help="A record replayed this often already goes to the quarantine topic.",
)
@click.option("--action-id", help="Resume this replay (its committed progress is kept).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def dlq_replay(target: str | None, set_fields: tuple[str, ...], dry_run: bool,
               rate: float | None, max_replays: int, action_id: str | None, yes: bool,
               as_json: bool, **filters: Any) -> None:  # fmt: skip
    """Send the selected failure records back where they came from (never booked twice)."""
    from tqdm import tqdm

    from ops.audit import Actor, new_action_id
    from ops.replay import ReplayPlan, replay

    settings = get_settings()
    plan = ReplayPlan(_selection(**filters), action_id or new_action_id(), target,
                      dict(_pair(text) for text in set_fields), dry_run, rate,
                      max_replays, resume=action_id is not None)  # fmt: skip
    if not dry_run and not yes:
        click.confirm(f"replay {plan.selection.describe()} (action {plan.action_id})?",
                      abort=True)  # fmt: skip
    bar = tqdm(unit=" records", desc="replay", leave=False, disable=as_json or None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = replay(settings, plan, Actor.local(), progress)
    except Exception as exc:  # noqa: BLE001  reported (and audited) with its reason
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    finally:
        bar.close()
    result = {
        "action_id": report.action_id,
        "dry_run": dry_run,
        **report.counts(),
        "destinations": dict(report.destinations),
        "reasons": dict(report.reasons),
    }
    if dry_run:
        result["plan"] = report.plan
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"action {report.action_id}: {report.selected} selected, {verb} "
        f"{report.replayed if not dry_run else report.selected - report.not_replayable}, "
        f"quarantined {report.quarantined}, not replayable {report.not_replayable}, "
        f"unfixable {report.unfixable}"
    )
    if report.earlier is not None:
        earlier = report.earlier
        click.echo(f"  earlier runs of this action: {earlier.selected} selected, replayed "
                   f"{earlier.replayed}, quarantined {earlier.quarantined}")  # fmt: skip
    for name, counts in (("to", report.destinations), ("reasons", report.reasons)):
        for key, count in counts.most_common():
            click.echo(f"  {name} {key}: {count}")


@dlq.command("archive")
@_selection_options
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON Lines file to write (one failure record per line, bytes in base64).",
)
def dlq_archive(path: Path, **filters: Any) -> None:
    """Write the selected failure records to a file (nothing is removed)."""
    from ops.audit import Actor, AuditTrail
    from ops.dlq import archive_line, failures

    settings = get_settings()
    selection = _selection(**filters)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for found in failures(settings, selection):
            out.write(archive_line(found))
            count += 1
    AuditTrail(settings).append(Actor.local(), "dlq.archive",
                                selection={**selection.describe(), "file": path.name},
                                counts={"archived": count})  # fmt: skip
    click.echo(f"archived {count} failure record(s) to {path}")


@dlq.command("purge")
@click.option(
    "--topic",
    required=True,
    type=click.Choice(["rejected", "erp_dead_letter", "feedback_dead_letter", "quarantine"]),
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge(topic: str, yes: bool) -> None:
    """Delete every record of a failure topic up to now (archive them first)."""
    from ops.audit import Actor, AuditTrail
    from ops.dlq import purge

    settings = get_settings()
    if not yes:
        click.confirm(f"delete every record on the {topic} failure topic so far?", abort=True)
    deleted = purge(settings, topic)
    AuditTrail(settings).append(Actor.local(), "dlq.purge", selection={"topic": topic},
                                counts={"deleted": deleted})  # fmt: skip
    click.echo(f"purged {deleted} record(s) from {topic}")


@click.group()
def audit() -> None:
    """The operators' audit trail (<prefix>.audit), hash-chained."""


@audit.command("list")
@click.option("--json", "as_json", is_flag=True)
def audit_list(as_json: bool) -> None:
    """Every audited action, oldest first."""
    from ops.audit import AuditTrail, to_json_lines

    records = AuditTrail(get_settings()).records()
    if as_json:
        click.echo(to_json_lines(records), nl=False)
        return
    for r in records:
        counts = ", ".join(f"{k} {v}" for k, v in r["counts"].items())
        click.echo(
            f"{r['seq']:>5} {r['at'].isoformat()} {r['actor']} ({r['role']}) "
            f"{r['action']}{' dry-run' if r['dry_run'] else ''} {r['outcome']}: {counts}"
        )


@audit.command("verify")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify an export (audit export) instead of the topic.",
)
@click.option("--offline", is_flag=True,
              help="With --file: check the export's chain and end anchor only, not that it "
              "holds every record the live trail had when it was made.")  # fmt: skip
def audit_verify(path: Path | None, offline: bool) -> None:
    """Check the hash chain; name the first record that was changed or removed. An export is
    also checked for records cut from its end: its end anchor, and the live trail."""
    from ops.audit import AuditTrail, read_export, verify, verify_export

    trail = AuditTrail(get_settings())
    if path is None:
        verdict = verify(trail.records())
    else:
        records, anchor = read_export(path.read_text(encoding="utf-8"))
        verdict = verify_export(records, anchor, None if offline else trail.records())
        if offline and verdict.ok:
            click.echo("not checked against the live trail (--offline)", err=True)
    click.echo(verdict.describe())
    if not verdict.ok:
        sys.exit(1)


@audit.command("export")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def audit_export(path: Path) -> None:
    """Write the trail as JSON Lines, for auditors, anchored at its end (``audit verify --file``
    checks it)."""
    import datetime

    from ops.audit import AuditTrail, to_json_lines

    records = AuditTrail(get_settings()).records()
    path.write_text(to_json_lines(records, datetime.datetime.now(datetime.UTC)),
                    encoding="utf-8")  # fmt: skip
    click.echo(f"exported {len(records)} audit record(s) to {path}")


@click.group()
def ops() -> None:
    """The ops HTTP API and web console (ERPBRIDGE_OPS_*)."""


@ops.command("serve")
@click.option("--host", default=None, help="Default: ERPBRIDGE_OPS_HOST (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: ERPBRIDGE_OPS_PORT (8091).")
def ops_serve(host: str | None, port: int | None) -> None:
    """Serve the API (/api, /openapi.json) and the console (/) until stopped."""
    from ops.api import serve
    from ops.auth import OpsSettings

    base = OpsSettings()
    config = base.model_copy(update={k: v for k, v in {"host": host, "port": port}.items()
                                     if v is not None})  # fmt: skip
    if not config.tokens and not config.oidc_issuer:
        raise click.ClickException(
            "no credentials configured: set ERPBRIDGE_OPS_TOKENS (see "
            "`erpbridge ops token`) or ERPBRIDGE_OPS_OIDC_ISSUER"
        )
    click.echo(f"ops API and console on http://{config.host}:{config.port}/", err=True)
    serve(get_settings(), config)


@ops.command("token")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
def ops_token(name: str, role: str) -> None:
    """Make an API token: prints it once, and the entry to add to ERPBRIDGE_OPS_TOKENS."""
    from ops.audit import Role
    from ops.auth import new_token

    token, stored = new_token(Role(role))
    click.echo(f"token (shown once, keep it secret): {token}")
    click.echo("add to ERPBRIDGE_OPS_TOKENS: " + json.dumps({name: stored.model_dump(mode="json")}))


@dlq.command("auto-replay")
@click.option("--once", is_flag=True, help="One pass, then exit.")
def dlq_auto_replay(once: bool) -> None:
    """Replay dead letters of transient failures on a schedule (ERPBRIDGE_AUTO_REPLAY_*)."""
    import threading

    from ops.auto_replay import AutoReplaySettings, one_pass, run

    settings, config = get_settings(), AutoReplaySettings()
    if once:
        for report in one_pass(settings, config):
            click.echo(f"{report.action_id}: {report.counts()}")
        return
    from erpbridge_cli.cli import stop_on_signals

    stop = stop_on_signals(threading.Event())
    run(settings, config, stop)
