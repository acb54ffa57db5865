"""Prometheus metrics of every stage, named in one place, and the endpoint that serves them
beside each worker's health (``/healthz``) and readiness (``/readyz``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from erpbridge.config import Settings

SOURCE_RECORDS = Counter(
    "erpbridge_source_records",
    "Records seen by a source connector, by outcome (read, published, rejected).",
    ["source", "outcome"],
)
SOURCE_PUBLISH_SECONDS = Histogram(
    "erpbridge_source_publish_seconds", "Time from reading a batch to the broker's ack.", ["source"]
)

WEBHOOK_SECRET_USED = Counter(
    "erpbridge_webhook_secret_used",
    "Authentic webhook requests, by source and by which of its secrets signed them (0: the"
    " first listed); while rotating, remove the old secret once its count stops growing.",
    ["source", "slot"],
)
STREAM_EVENTS = Counter(
    "erpbridge_stream_events",
    "Events through a stream agent, by outcome (in, out, duplicate, rejected, held, stalled,"
    " cancelled, redriven, flagged, purged).",
    ["agent", "outcome"],
)
STREAM_TABLE_KEYS = Gauge(
    "erpbridge_stream_table_keys",
    "Keys held in a processor's table on this worker (claims, invoices, reference.<kind>).",
    ["table"],
)
STREAM_ASSIGNED_PARTITIONS = Gauge(
    "erpbridge_stream_assigned_partitions",
    "Partitions assigned to this worker (1 each) since its last rebalance, by topic: its inputs,"
    " and the changelogs of the table partitions it holds.",
    ["topic", "partition"],
)
STREAM_OPEN_CLAIMS = Gauge(
    "erpbridge_stream_open_claims",
    "Claims waiting on this worker for an approval or invoices, by whether they have stalled.",
    ["stalled"],
)
STREAM_AUDIT_LOST = Gauge(
    "erpbridge_stream_audit_lost",
    "Inputs (claims, approvals, invoices) the processors consumed but their tables no longer"
    " hold, as of the last audit.",
)
STREAM_AUDIT_COMPLETE_NOT_POSTED = Gauge(
    "erpbridge_stream_audit_complete_not_posted",
    "Cases with every input in and valid but no posting, as of the last audit.",
)
STREAM_AUDIT_RUNS = Counter("erpbridge_stream_audit_runs", "Audits run, by outcome.", ["outcome"])
STREAM_TRANSACTIONS_BROKEN = Counter(
    "erpbridge_stream_transactions_broken",
    "Partition groups whose transaction could no longer commit (the worker then stops, exits"
    " with status 1 and replays them once started again).",
)
STREAM_PROCESS_SECONDS = Histogram(
    "erpbridge_stream_process_seconds", "Processing time of one event in an agent.", ["agent"]
)
STREAM_COMMIT_SECONDS = Histogram(
    "erpbridge_stream_commit_seconds",
    "Time of one commit of the direct runtime: the changelog records and offsets into the"
    " transaction and its commit (exactly_once), or the flush and the offset commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STREAM_RESTORE_SECONDS = Histogram(
    "erpbridge_stream_restore_seconds",
    "Time the direct runtime took to read newly assigned table partitions back from their"
    " changelogs (a worker handles none of their events meanwhile).",
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
STREAM_RESTORED_RECORDS = Counter(
    "erpbridge_stream_restored_records", "Changelog records the direct runtime read back."
)

SINK_RECORDS = Counter(
    "erpbridge_sink_records",
    "Records handled by a sink, by outcome (booked, already_booked, dead_lettered, retried,"
    " feedback).",
    ["sink", "outcome"],
)
SINK_BREAKER_STATE = Gauge(
    "erpbridge_sink_breaker_state",
    "Circuit breaker state of a sink: 0 closed, 1 half-open (probing), 2 open (paused).",
    ["sink"],
)
SINK_BREAKER_TRANSITIONS = Counter(
    "erpbridge_sink_breaker_transitions",
    "Circuit breaker state changes of a sink, by the state entered.",
    ["sink", "state"],
)
SINK_IN_FLIGHT = Gauge(
    "erpbridge_sink_in_flight", "Bookings being written to the ERP right now.", ["sink"]
)
SINK_ERP_SECONDS = Histogram(
    "erpbridge_sink_erp_seconds",
    "Duration of one booking in the ERP.",
    ["sink"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SINK_LAG = Gauge(
    "erpbridge_sink_lag_records",
    "Records of the sink's input not yet written, on the partitions this worker holds (the"
    " broker's end offsets less the consumer's positions; alert when it keeps growing).",
    ["sink"],
)
SINK_RECORD_AGE_SECONDS = Histogram(
    "erpbridge_sink_record_age_seconds",
    "Time from a record's publication (its Kafka timestamp) to its write: how long a posting"
    " waited before the ERP booked it.",
    ["sink"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
PAYMENTS_WATCHED = Gauge(
    "erpbridge_payments_watched",
    "Bookings the payment watcher waits to see paid in the ERP.",
    ["erp"],
)
MASTERDATA_SYNCS = Counter(
    "erpbridge_masterdata_syncs",
    "Master-data syncs from an ERP by outcome: published, unchanged, refused (the removal guard"
    " stopped it), dry_run.",
    ["source", "outcome"],
)
MASTERDATA_CHANGES = Counter(
    "erpbridge_masterdata_changes",
    "Reference entries a master-data sync published, by kind and change (add, change, remove).",
    ["source", "kind", "change"],
)
BUDGET_USED = Gauge(
    "erpbridge_budget_used",
    "A cost centre's budget used in a period (company currency), as the budget side last counted"
    " it: claims granted, warned or released over budget, less what was given back.",
    ["cost_centre", "period_start"],
)
BUDGET_HELD = Gauge(
    "erpbridge_budget_held_claims",
    "Claims held over budget, waiting for room in a cost centre's budget for a period.",
    ["cost_centre", "period_start"],
)
MASTERDATA_LAST_SYNC = Gauge(
    "erpbridge_masterdata_last_sync_timestamp_seconds",
    "When a master-data sync from this ERP last ended published or unchanged (Unix time).",
    ["source"],
)
PAYMENTS_PAID = Counter(
    "erpbridge_payments",
    "Payment watcher outcomes: paid (a PAID answer published), lookup_failed (the ERP did not"
    " answer a lookup; asked again next round).",
    ["erp", "outcome"],
)

WEBHOOK_RESPONSES = Counter(
    "erpbridge_webhook_responses",
    "Answers of the inbound webhook, by path and HTTP status code (alert on 5xx).",
    ["path", "code"],
)


BOOKS_RECORDS = Counter(
    "erpbridge_books_records",
    "Records the books (the analytic store) read, by topic role and outcome (stored, unreadable)",
    ["role", "outcome"],
)

RECONCILIATION_DIFFERENCES = Gauge(
    "erpbridge_reconciliation_differences",
    "Differences the last reconciliation run found, by kind (alert when above 0)",
    ["kind"],
)
RECONCILIATION_RUNS = Counter(
    "erpbridge_reconciliation_runs",
    "Reconciliation runs, by outcome (agreed, differences, failed)",
    ["outcome"],
)
RECONCILIATION_LAST_RUN = Gauge(
    "erpbridge_reconciliation_last_run_timestamp_seconds",
    "When the last reconciliation run finished, by outcome (alert when it gets old)",
    ["outcome"],
)


# Readiness: name -> a check saying why the worker is not ready (None: ready). Workers register
# theirs; /readyz answers 503 with the reasons while any says no.
_READINESS: dict[str, Callable[[], str | None]] = {}


def readiness_check(name: str, check: Callable[[], str | None]) -> None:
    _READINESS[name] = check


def not_ready() -> dict[str, str]:
    """The checks that say no, with why (a check that raises says so too)."""
    found = {}
    for name, check in list(_READINESS.items()):
        try:
            why = check()
        except Exception as exc:  # noqa: BLE001  a broken check is a reason, not a crash
            why = f"{type(exc).__name__}: {exc}"
        if why:
            found[name] = why
    return found


class _Endpoints(BaseHTTPRequestHandler):
    """/metrics (Prometheus), /healthz (the process answers), /readyz (every check says yes)."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path in ("/metrics", "/"):
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b'{"status": "alive"}', "application/json")
        elif path == "/readyz":
            failing = not_ready()
            body = json.dumps({"ready": not failing, "not_ready": failing}, ensure_ascii=False)
            self._send(503 if failing else 200, body.encode(), "application/json")
        else:
            self._send(404, b'{"error": "not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(port: int, host: str = "127.0.0.1") -> int | None:
    """Serve /metrics, /healthz and /readyz on ``host``:``port`` (0 = any free port, -1 = off);
    return the port."""
    if port < 0:
        return None
    server = ThreadingHTTPServer((host, port), _Endpoints)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_port)


def serve_from(settings: Settings) -> None:
    """Serve /metrics, /healthz and /readyz as configured and say where (the workers' first
    output line)."""
    port = serve(settings.metrics_port, settings.metrics_host)
    if port is not None:
        print(f"metrics on {settings.metrics_host}:{port}/metrics", flush=True)
