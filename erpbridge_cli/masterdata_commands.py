"""``erpbridge source masterdata --from ERP``: the reference data synced from the ERP, once or on
a schedule, each sync in the audit trail with its counts."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

import click

from erpbridge import metrics
from erpbridge.archive import Archive
from erpbridge.config import Settings, get_settings
from ops.audit import Actor, AuditTrail

if TYPE_CHECKING:
    from connectors.erp.base import MasterDataSource
    from connectors.sources.masterdata import SyncReport

log = logging.getLogger(__name__)


@click.command("masterdata")
@click.option("--from", "erp_name", required=True, metavar="ERP",
              help="The ERP writer to read from (tryton, rest...).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would change; publish nothing.")
@click.option("--every", type=float, default=None, metavar="SECONDS",
              help="Sync again every SECONDS until stopped (ERPBRIDGE_MASTERDATA_EVERY_S when "
                   "given as 0).")  # fmt: skip
@click.option("--max-removal-share", type=click.FloatRange(0, 1), default=None,
              help="Refuse a sync removing more than this share of a kind at once (default "
                   "ERPBRIDGE_MASTERDATA_MAX_REMOVAL_SHARE, 0.2).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def source_masterdata(erp_name: str, dry_run: bool, every: float | None,
                      max_removal_share: float | None, as_json: bool) -> None:  # fmt: skip
    """Publish to the reference topic what changed in the ERP's employees and exchange rates
    since the last sync (removals as tombstones). A sync that would remove too much at once is
    refused whole and exits 3."""
    from connectors.erp.base import MasterDataSource
    from connectors.erp.registry import build_writer

    settings = get_settings()
    try:
        writer = build_writer(erp_name, archive=Archive(settings.archive_dir))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not isinstance(writer, MasterDataSource):
        writer.close()
        raise click.ClickException(f"the {erp_name} writer cannot read master data")
    try:
        if every is None:
            if not _sync_once(settings, writer, dry_run, max_removal_share, as_json):
                raise SystemExit(3)
            return
        from erpbridge_cli.cli import stop_on_signals

        metrics.serve_from(settings)
        stop = stop_on_signals(threading.Event())
        pause = every or settings.masterdata_every_s
        while not stop.is_set():
            try:
                _sync_once(settings, writer, dry_run, max_removal_share, as_json)
            except Exception:  # the ERP or the broker away: said, and tried again next round
                log.exception("master-data sync from %s failed; next in %.0f s", erp_name, pause)
            stop.wait(pause)
    finally:
        writer.close()


def _sync_once(settings: Settings, writer: MasterDataSource, dry_run: bool,
               max_removal_share: float | None, as_json: bool) -> bool:  # fmt: skip
    """One sync, audited and printed; False when the removal guard refused it."""
    from connectors.erp.errors import ErpError
    from connectors.sources.masterdata import sync

    name = writer.name
    try:
        listed = writer.master_data()
    except ErpError as exc:  # the ERP did not answer, or not in a shape that reads
        AuditTrail(settings).append(Actor.local(), "masterdata.sync", dry_run=dry_run,
                                    selection={"source": name}, outcome="failed",
                                    detail=str(exc)[:500])  # fmt: skip
        raise click.ClickException(f"master data from {name} not read: {exc}") from exc
    report = sync(settings, listed, name, dry_run=dry_run, max_removal_share=max_removal_share)
    AuditTrail(settings).append(
        Actor.local(), "masterdata.sync", action_id=report.sync_id, dry_run=dry_run,
        selection={"source": name, "kinds": sorted(report.kinds)}, counts=report.counts(),
        outcome="refused" if report.refused else "ok",
        detail="; ".join(report.refused) or None,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, default=str))
    else:
        _print_report(report)
    return not report.refused


def _print_report(report: SyncReport) -> None:
    click.echo(f"master data from {report.source} (sync {report.sync_id}): {report.outcome}, "
               f"{report.published} published in {report.took_s:.1f} s")  # fmt: skip
    click.echo(f"  {'kind':<10}{'listed':>8}{'added':>8}{'changed':>9}{'removed':>9}"
               f"{'unchanged':>11}")  # fmt: skip
    for kind, c in report.kinds.items():
        click.echo(f"  {kind:<10}{c.listed:>8}{c.added:>8}{c.changed:>9}{c.removed:>9}"
                   f"{c.unchanged:>11}")  # fmt: skip
    for why in report.refused:
        click.echo(f"  refused: {why}", err=True)
    for what in report.skipped:
        click.echo(f"  skipped: {what}")
    if report.dry_run or report.refused:
        for change in report.changes:
            mark = {"add": "+", "change": "~", "remove": "-"}[change.op]
            shown = change.after if change.after is not None else change.before
            click.echo(f"  {mark} {change.key} {json.dumps(shown, ensure_ascii=False)}")
