"""Run the stream processors: ``erpbridge streams`` (the direct runtime's loop, or a Faust
worker)."""

from __future__ import annotations

import sys
from typing import Any

from erpbridge import metrics, tracing
from streams.direct import DirectApp

OUTPUTS = ("postings", "claim_status", "claim_events", "invoice_refs", "budget_requests")


def main(log_level: str = "info") -> None:
    from streams import (
        agents,  # noqa: F401  (registers the agents on the app)
        framework,
    )
    from streams.app import app, codecs, settings

    _wait_for_inputs(settings)
    direct = isinstance(app, DirectApp)
    if not direct:
        framework.check()  # the repairs' framework members are there (or the worker refuses)
        framework.check_when_started(app)  # and the consumer's, once the worker made it
    # fails fast when the registry is missing
    codecs.register_all(*OUTPUTS)
    metrics.readiness_check("streams", lambda: _not_ready(app))
    # mode types a signal's receivers narrower than it calls them
    app.on_partitions_assigned.connect(_note_assignment)  # type: ignore[arg-type]
    metrics.serve_from(settings)
    tracing.configure(settings, "streams")
    try:
        if direct:
            app.run()  # its own loop (streams.direct)
        else:
            sys.argv = [sys.argv[0], "worker", "--loglevel", log_level, "--without-web"]
            app.main()
    finally:
        broken = app.broken.exit_reason()  # see streams.broken_transactions, streams.direct
        if broken:
            raise SystemExit(broken)  # status 1: its supervisor starts it again


def _wait_for_inputs(settings: Any) -> None:
    """Start only once the input topics exist: a consumer that subscribed before they did
    learns of them at its next metadata refresh, five minutes later, and meanwhile holds no
    input partition and says it is ready (measured: a Kubernetes pod started before the topics
    Job finished processed nothing for minutes)."""
    from erpbridge.kafka_io import wait_for_topics
    from streams.app import budget_inputs, claim_inputs, invoice_inputs

    inputs = [*claim_inputs.topics, *invoice_inputs.topics, *budget_inputs.topics]
    missing = wait_for_topics(settings, inputs, settings.streams_topics_wait_s)
    if missing:
        raise SystemExit(f"the input topics {missing} do not exist after "
                         f"{settings.streams_topics_wait_s:.0f} s: create them with "
                         "`erpbridge topics` (exiting, to be started again)")  # fmt: skip


def _note_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
    """After each rebalance, which partitions this worker holds (its gauge, one series each):
    the signal's argument is the whole assignment."""
    metrics.STREAM_ASSIGNED_PARTITIONS.clear()
    for tp in args[0] if args else kwargs.get("assigned", ()):
        metrics.STREAM_ASSIGNED_PARTITIONS.labels(tp.topic, str(tp.partition)).set(1)


def _not_ready(app: Any) -> str | None:
    """Why the worker is not processing yet: starting, rebalancing, restoring its tables, or
    reading the reference data."""
    from streams.app import reference

    why = app.not_ready() if isinstance(app, DirectApp) else _faust_not_ready(app)
    if why is None and not reference.loaded:
        return "reading the reference data"
    return why


def _faust_not_ready(app: Any) -> str | None:
    """It runs on the metrics thread, so it reads plain attributes only and creates nothing:
    ``app.tables.recovery`` is made on first use, and made from this thread (a probe before the
    worker made it) it was bound to the wrong event loop and the worker hung at "Recovery:
    Starting" for good (seen in the end-to-end test, which probes /readyz from the first
    second)."""
    recovery = app.tables._recovery  # None until the worker made it (checked in framework)
    if recovery is None:
        return "starting"
    if app.rebalancing:
        return "rebalancing"
    if not recovery.completed.is_set():
        return "restoring its tables from their changelogs"
    return None


if __name__ == "__main__":
    main()
