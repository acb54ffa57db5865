"""The ``erpbridge`` command: run sources, processors and sinks; see what reached the ERP."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from erpbridge import metrics, redaction, tracing
from erpbridge.archive import Archive
from erpbridge.config import get_settings
from erpbridge.contracts.compatibility import Mode
from erpbridge_cli import books_commands, budget_commands, masterdata_commands, ops_commands

if TYPE_CHECKING:
    from connectors.sinks.target import Target


def stop_on_signals(stop: threading.Event) -> threading.Event:
    """Set ``stop`` on SIGTERM or SIGINT (a worker then finishes what it holds and exits)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _setup_logging(level: str) -> None:
    redaction.install()  # no secret setting's value in any log line, whoever logs it
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for chatty in ("kafka", "aiokafka", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    # kafka-python 3.0 warns whenever its IO loop was busy for over 0.1 s (a busy CPU does it):
    # a client-internal diagnostic, not something an operator can act on.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    # Readers without a group (inspection, audit) are told on every start that auto-commit is
    # off, which is what they asked for.
    logging.getLogger("kafka.coordinator.consumer").setLevel(logging.ERROR)


@click.group()
@click.option("--log-level", default="info", show_default=True)
def main(log_level: str) -> None:
    """erpbridge: expense claims and e-invoices from upstream systems into the ERP, over Kafka."""
    _setup_logging(log_level)


@main.command()
def topics() -> None:
    """Create the pipeline's topics (no-op for those that exist)."""
    from erpbridge.kafka_io import ensure_topics

    created = ensure_topics(get_settings())
    click.echo(f"created: {', '.join(created)}" if created else "topics: all present")


@main.group()
def schemas() -> None:
    """Event contracts (avro_schemas/)."""


@schemas.command("check")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=None,
    help="Compatibility mode (default: ERPBRIDGE_SCHEMA_COMPATIBILITY).",
)
@click.option(
    "--dir",
    "schema_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Contracts folder (default: the project's avro_schemas/).",
)
def schemas_check(mode: str | None, schema_dir: Path | None) -> None:
    """Check that each contract version is compatible with the versions before it."""
    from erpbridge.contracts.catalog import SCHEMA_DIR, load_catalog
    from erpbridge.contracts.evolution import check_catalog

    chosen = Mode(mode) if mode else get_settings().schema_compatibility
    schema_dir = schema_dir or SCHEMA_DIR
    reports = check_catalog(load_catalog(schema_dir), chosen)
    failed = [r for r in reports if r.problems]
    for report in reports:
        verdict = "breaks compatibility" if report.problems else "ok"
        click.echo(f"{report.contract} v{report.version}: {verdict}")
        for problem in report.problems:
            click.echo(f"    {problem}")
    if failed:
        raise click.ClickException(
            f"{len(failed)} contract version(s) in {schema_dir.name}/ break {chosen.value} "
            "compatibility; make the change compatible or publish it as a new contract"
        )
    click.echo(f"{len(reports)} contract version(s) are {chosen.value} compatible")


@main.group()
def registry() -> None:
    """The embedded schema registry (Confluent REST API, state in a Kafka topic)."""


@registry.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
def registry_serve(host: str, port: int) -> None:
    """Serve the registry until stopped."""
    from erpbridge.registry.server import serve

    settings = get_settings()
    serve(
        settings,
        settings.schema_registry_topic,
        host,
        port,
        settings.schema_compatibility,
        (settings.topic_replication_factor, settings.topic_min_insync_replicas),
    )


@main.group()
def source() -> None:
    """Source connectors."""


@source.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
def source_webhook(host: str, port: int) -> None:
    """Serve the signed webhook endpoints (claims, approvals, invoices) until stopped."""
    from connectors.sources.webhook import serve

    settings = get_settings()
    if not settings.webhook_secrets:
        raise click.ClickException(
            "no ERPBRIDGE_WEBHOOK_SECRETS configured: every request would be refused"
        )
    metrics.serve_from(settings)
    tracing.configure(settings, "webhook")
    serve(settings, host, port)


@source.command("poll")
@click.option(
    "--url",
    required=True,
    help="Upstream endpoint listing claims changed since a "
    "cursor (?updated_since=&after_id=&limit=).",
)
@click.option("--source-name", required=True, help="Names the upstream; keys its cursor.")
@click.option("--page-size", default=100, show_default=True, type=int)
@click.option(
    "--interval",
    default=5.0,
    show_default=True,
    type=float,
    help="Seconds between polls once caught up.",
)
@click.option("--once", is_flag=True, help="Stop once caught up instead of polling on.")
def source_poll(url: str, source_name: str, page_size: int, interval: float, once: bool) -> None:
    """Poll an upstream REST API for changed claims, publishing each page atomically."""
    from connectors.sources.poll import Poller

    settings = get_settings()
    metrics.serve_from(settings)
    tracing.configure(settings, "poll")
    poller = Poller(settings, source_name, url, page_size, interval)
    stop_on_signals(poller.stop)
    click.echo(f"{source_name}: {poller.run(once=once)} record(s) published")


@source.command("watch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--source-system", default="batch_file", show_default=True)
@click.option("--kind", type=click.Choice(["claims", "approvals", "invoices"]), default=None)
@click.option("--interval", default=10.0, show_default=True, help="Seconds between passes.")
@click.option(
    "--stable",
    default=5.0,
    show_default=True,
    help="Seconds a file must stay unchanged (without a .done marker) to be taken.",
)
@click.option("--once", is_flag=True, help="One pass, then exit.")
def source_watch(folder: Path, source_system: str, kind: str | None, interval: float,
                 stable: float, once: bool) -> None:  # fmt: skip
    """Import files dropped into FOLDER once complete; move them to done/ or failed/."""
    import threading

    from connectors.sources.landing import pick_up, watch

    settings = get_settings()
    if once:
        click.echo(pick_up(settings, folder, source_system, kind=kind, stable_s=stable).summary())
        return
    stop = stop_on_signals(threading.Event())
    watch(settings, folder, source_system, stop, kind=kind, interval_s=interval, stable_s=stable)


@source.command("file")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--source-system", default="batch_file", show_default=True)
@click.option(
    "--kind",
    type=click.Choice(["claims", "approvals", "invoices"]),
    default=None,
    help="What the file holds (default: claims; invoices for .xml).",
)
@click.option("--watch", is_flag=True, help="PATH is a landing folder: import the files dropped "
              "into it, as `source watch PATH` does.")  # fmt: skip
@click.pass_context
def source_file(ctx: click.Context, path: Path, source_system: str, kind: str | None,
                watch: bool) -> None:  # fmt: skip
    """Import an export: CSV claims, JSON Lines (claims, approvals, invoices) or 数电票 XML."""
    from connectors.sources.batch_file import import_file

    if watch or path.is_dir():
        if not path.is_dir():
            raise click.BadParameter(f"{path} is a file; --watch takes a folder", param_hint="PATH")
        if not watch:
            raise click.BadParameter(f"{path} is a folder: add --watch to take the files "
                                     "dropped into it", param_hint="PATH")  # fmt: skip
        ctx.invoke(source_watch, folder=path, source_system=source_system, kind=kind)
        return
    from connectors.sources.file_formats import FileFormatError

    try:
        report = import_file(path, get_settings(), source_system, kind=kind)
    except FileFormatError as exc:
        raise click.ClickException(f"{exc} (refused whole; recorded on the rejection "
                                   "topic)") from exc  # fmt: skip
    click.echo(report.summary())


@main.group()
def reference() -> None:
    """Reference data the processors map codes and convert currencies with."""


@reference.command("load")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
def reference_load(paths: tuple[Path, ...]) -> None:
    """Publish rate / employee / department / cost-centre CSV files (checked whole first)."""
    from connectors.sources.reference_file import ReferenceFileError, publish_reference

    for path in paths:
        try:
            kind, count = publish_reference(path, get_settings())
        except ReferenceFileError as exc:
            raise click.ClickException(f"nothing published from {path.name}:\n{exc}") from exc
        click.echo(f"{path.name}: {count} {kind} entr{'y' if count == 1 else 'ies'} published")


@main.group(invoke_without_command=True)
@click.pass_context
def streams(ctx: click.Context) -> None:
    """Run the stream processors (a Faust worker) until stopped; `streams audit` checks them."""
    if ctx.invoked_subcommand is None:
        from streams.worker import main as worker_main

        worker_main()


@streams.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("--every", type=float, default=None,
              help="Audit every N seconds (serving metrics) instead of once.")  # fmt: skip
def streams_audit(as_json: bool, every: float | None) -> None:
    """Is every input the processors consumed still in their tables? Exit 1 when not."""
    import json
    import time

    from streams.audit import audit, record_metrics, render

    settings = get_settings()
    if every is not None:
        metrics.serve_from(settings)
    while True:
        report = audit(settings)
        record_metrics(report)
        click.echo(json.dumps(report.to_json(), ensure_ascii=False) if as_json else render(report))
        if every is None:
            sys.exit(0 if report.ok else 1)
        time.sleep(every)


@main.group()
def access() -> None:
    """Who may read and write what on Kafka (each component's ACLs)."""


@access.command("plan")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: grants and bindings.")
def access_plan(as_json: bool) -> None:
    """Print each component's grants for this deployment's topics, groups and transactional
    ids, to apply as ACLs on a broker that authorizes."""
    import json

    from erpbridge.access import bindings, plan, render

    grants = plan(get_settings())
    if as_json:
        click.echo(json.dumps([{**grant.to_dict(), "bindings": [
            dict(zip(("resource_type", "name", "pattern_type", "operation"), b, strict=True))
            for b in bindings(grant)]} for grant in grants], ensure_ascii=False))  # fmt: skip
    else:
        click.echo(render(grants))


@main.group()
def archive() -> None:
    """The archive of original e-invoice documents, kept so that tampering shows."""


@archive.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def archive_verify(as_json: bool) -> None:
    """Re-read every archived document and the manifest's hash chain; exit 1 on any change."""
    import json

    result = Archive(get_settings().archive_dir).verify()
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "documents": result.documents,
                               "entries": result.entries, "head": result.head,
                               "problems": [vars(p) for p in result.problems]}))  # fmt: skip
    else:
        click.echo(f"{result.documents} documents, {result.entries} manifest entries, chain head "
                   f"{result.head}")  # fmt: skip
        for problem in result.problems:
            click.echo(f"  CHANGED  {problem.where}: {problem.what}")
        click.echo("archive intact" if result.ok else f"{len(result.problems)} problem(s)")
    sys.exit(0 if result.ok else 1)


@main.group()
def sink() -> None:
    """Sink connectors: one command per registered ERP writer (connectors.erp.registry)."""


def _sink_command(name: str, summary: str) -> None:
    @sink.command(name, help=f"{summary} Runs until stopped.")
    def run() -> None:
        from connectors.erp.registry import build_writer
        from connectors.sinks.erp_target import ErpTarget
        from erpbridge.contracts.bindings import TopicCodecs

        settings = get_settings()
        writer = build_writer(name, archive=Archive(settings.archive_dir))
        _run_sink(ErpTarget(settings, writer, TopicCodecs(settings)), "sink")


def _register_sink_commands() -> None:
    from connectors.erp.registry import WRITERS

    for kind in WRITERS.values():
        _sink_command(kind.name, kind.summary)


def _run_sink(target: Target, component: str) -> None:
    from connectors.sinks.runner import SinkRunner, SinkStopped

    settings = get_settings()
    metrics.serve_from(settings)
    tracing.configure(settings, component)
    runner = SinkRunner(settings, target)
    stop_on_signals(runner.stop)
    try:
        runner.run()
    except SinkStopped as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def feedback() -> None:
    """Deliver the ERP's answers (ErpFeedback) back upstream."""


@feedback.command("webhook")
@click.option("--url", default=None, help="The expense platform's feedback endpoint "
              "(default: ERPBRIDGE_FEEDBACK_WEBHOOK_URL).")  # fmt: skip
@click.option("--secret-env", default="ERPBRIDGE_FEEDBACK_WEBHOOK_SECRET", show_default=True,
              help="Environment variable holding the HMAC secret.")  # fmt: skip
@click.option("--source", default=None, help="X-Erpbridge-Source (default: erpbridge).")
def feedback_webhook(url: str | None, secret_env: str, source: str | None) -> None:
    """POST every ErpFeedback event to URL, signed, with retries and a DLQ, until stopped."""
    import os

    from pydantic import SecretStr

    from connectors.sinks.webhook_out import FeedbackWebhook, FeedbackWebhookSettings
    from erpbridge.contracts.bindings import TopicCodecs

    try:
        base = FeedbackWebhookSettings()
        config = FeedbackWebhookSettings(
            url=url or base.url,
            source=source or base.source,
            secret=SecretStr(os.environ.get(secret_env) or base.secret.get_secret_value()),
        )
        target = FeedbackWebhook(config, TopicCodecs(get_settings()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    _run_sink(target, "feedback")


@main.group()
def payments() -> None:
    """The payment loop: booked postings watched in the ERP until paid."""


@payments.command("watch")
@click.argument("erp_name", metavar="ERP")
@click.option(
    "--poll-s",
    type=float,
    default=None,
    help="Seconds between lookups (default: ERPBRIDGE_PAYMENTS_POLL_S, 300).",
)
def payments_watch(erp_name: str, poll_s: float | None) -> None:
    """Publish an ErpFeedback PAID for each posting ERP booked once it is paid there (amount,
    date, payment reference), for the feedback webhook to deliver. Runs until stopped."""
    from connectors.erp.base import PaymentLookup
    from connectors.erp.registry import build_writer
    from connectors.payment_watch import PaymentWatcher
    from erpbridge.contracts.bindings import TopicCodecs

    settings = get_settings()
    writer = build_writer(erp_name, archive=Archive(settings.archive_dir))
    if not isinstance(writer, PaymentLookup):
        raise click.ClickException(f"the {erp_name} writer cannot look up payments")
    metrics.serve_from(settings)
    watcher = PaymentWatcher(settings, writer, TopicCodecs(settings), poll_s=poll_s)
    stop_on_signals(watcher.stop)
    try:
        watcher.run()
    finally:
        writer.close()


@main.group()
def erp() -> None:
    """Look into the ERP."""


@erp.command("invoices")
@click.argument("references", nargs=-1)
def erp_invoices(references: tuple[str, ...]) -> None:
    """Print the ERP invoices whose reference is one of REFERENCES."""
    print_invoices(list(references))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--approvals", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines of approval decisions to feed too.")  # fmt: skip
@click.option("--invoices", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="数电票 XML (or invoice JSON Lines) to feed too.")  # fmt: skip
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the ERP.")
def demo(path: Path, approvals: Path | None, invoices: Path | None, timeout: float) -> None:
    """Feed the claims in PATH (and approvals, invoices) to the running pipeline; wait until each
    claim is booked, rejected or cancelled; print where each went."""
    from erpbridge_cli.demo import run_demo

    missing = run_demo(path, get_settings(), timeout, click.echo, approvals, invoices)
    if missing:
        raise click.ClickException(f"not through after {timeout:.0f}s: {missing}")


def print_invoices(references: list[str]) -> None:
    from connectors.erp.tryton import TrytonSettings, TrytonWriter

    config = TrytonSettings()
    writer = TrytonWriter.from_settings(config)
    try:
        invoices = writer.find_invoices(references)
    finally:
        writer.close()
    click.echo(f"{len(invoices)} invoice(s) in Tryton {config.url}/{config.database}:")
    click.echo(
        f"  {'reference':<14}{'number':<8}{'state':<9}{'date':<12}{'total':>12}"
        f"{'input VAT':>10} {'cur':<4} employee"
    )
    for inv in invoices:
        click.echo(
            f"  {inv['reference']:<14}{inv['number'] or '-':<8}{inv['state']:<9}"
            f"{inv['invoice_date'].isoformat():<12}{inv['total_amount']:>12,.2f}"
            f"{inv['tax_amount']:>10,.2f} "
            f"{inv['currency.']['code']:<4} {inv['party.']['code']} {inv['party.']['name']}"
        )


_register_sink_commands()
source.add_command(masterdata_commands.source_masterdata)
main.add_command(ops_commands.dlq)
main.add_command(budget_commands.budget)
main.add_command(ops_commands.audit)
main.add_command(ops_commands.ops)
main.add_command(books_commands.books)
main.add_command(books_commands.reconcile)
main.add_command(books_commands.report)
main.add_command(books_commands.trace)
