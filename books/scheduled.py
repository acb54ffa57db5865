"""Reconciliation on a schedule: at each time of a cron expression (``ERPBRIDGE_RECONCILE_CRON``,
in ``ERPBRIDGE_RECONCILE_TIMEZONE``), bring the books up to date, reconcile the last
``ERPBRIDGE_RECONCILE_DAYS`` days up to today against the ERP, publish a summary to
``<prefix>.reconciliation`` and set the Prometheus gauges an alert watches
(``erpbridge_reconciliation_differences{kind}``, ``..._last_run_timestamp_seconds{outcome}``).

A run that fails (the ERP unreachable...) is counted and logged, and the service waits for the
next time; it does not stop.
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any, Literal

from croniter import croniter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from books.ingest import sync
from books.reconcile import KINDS, ErpLedger, Reconciliation, reconcile
from books.store import BooksSettings, Store
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer
from erpbridge.metrics import (
    RECONCILIATION_DIFFERENCES,
    RECONCILIATION_LAST_RUN,
    RECONCILIATION_RUNS,
)

log = logging.getLogger(__name__)
LISTED = 1000  # differences carried in a summary event


class ReconcileSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_RECONCILE_", frozen=True,
                                      extra="ignore")  # fmt: skip

    cron: str = "30 2 * * *"  # every night at 02:30
    timezone: str = "Asia/Shanghai"  # the cron's and the period's ("today") time zone
    days: int = Field(2, ge=1, le=366)  # the period: the last ``days`` days up to today
    erp: str = "tryton"  # which writer's ERP to read back
    by: Literal["day", "cost_centre", "department", "employee"] = "day"
    feedback_after_min: float = Field(60.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai, UTC)") from None
        return value

    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def period(self, now: datetime.datetime) -> tuple[datetime.date, datetime.date]:
        today = now.astimezone(self.zone()).date()
        return today - datetime.timedelta(days=self.days - 1), today

    def next_run(self, after: datetime.datetime) -> datetime.datetime:
        moment: datetime.datetime = croniter(self.cron, after.astimezone(self.zone())).get_next(
            datetime.datetime
        )
        return moment


def summary(result: Reconciliation, erp: str, started: datetime.datetime,
            run_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The ReconciliationSummary event of a run."""
    return {
        "run_id": run_id or uuid.uuid4().hex[:16], "erp": erp,
        "period_from": result.start, "period_to": result.end,
        "started_at": started, "finished_at": datetime.datetime.now(datetime.UTC),
        "sent": result.sent, "sent_minor": result.sent_minor, "booked": result.booked,
        "booked_minor": result.booked_minor, "ok": result.ok,
        "scope_checked": result.scope_checked, "counts": result.counts(),
        "differences": [{"kind": d.kind, "reference": d.reference, "document": d.document,
                         "detail": d.detail} for d in result.differences[:LISTED]],
        "truncated": len(result.differences) > LISTED,
    }  # fmt: skip


def publish(settings: Settings, event: dict[str, Any]) -> None:
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    try:
        producer.send(codecs.topic("reconciliation"), key=event["run_id"].encode(),
                      value=codecs.serializer("reconciliation")(event)).get(timeout=30)  # fmt: skip
    finally:
        producer.close()
        codecs.close()


def record_metrics(result: Reconciliation | None) -> None:
    now = datetime.datetime.now(datetime.UTC).timestamp()
    if result is None:
        RECONCILIATION_RUNS.labels("failed").inc()
        RECONCILIATION_LAST_RUN.labels("failed").set(now)
        return
    for kind, count in result.counts().items():
        RECONCILIATION_DIFFERENCES.labels(kind).set(count)
    outcome = "agreed" if result.ok else "differences"
    RECONCILIATION_RUNS.labels(outcome).inc()
    RECONCILIATION_LAST_RUN.labels(outcome).set(now)


def run(settings: Settings, books: BooksSettings, config: ReconcileSettings,
        ledger: Callable[[], ErpLedger], start: datetime.date, end: datetime.date, *,
        sync_first: bool = True,
        publish_summary: bool = True) -> tuple[Reconciliation, dict[str, Any] | None]:  # fmt: skip
    """One run over ``start``..``end``: bring the books up to date, reconcile, record the metrics
    and publish the summary; the result and the summary event (None when not published)."""
    started = datetime.datetime.now(datetime.UTC)
    store, erp = Store(books), ledger()
    try:
        if sync_first:
            sync(settings, books, store)
        result = reconcile(
            store,
            erp,
            start,
            end,
            by=config.by,
            feedback_after=datetime.timedelta(minutes=config.feedback_after_min),
        )
    except Exception:
        record_metrics(None)
        raise
    finally:
        store.close()
        erp.close()
    record_metrics(result)
    event = None
    if publish_summary:
        event = summary(result, config.erp, started)
        publish(settings, event)
    log.info(
        "reconciled %s..%s: sent %d, booked %d, differences %s",
        start,
        end,
        result.sent,
        result.booked,
        {k: v for k, v in result.counts().items() if v} or "none",
    )
    return result, event


def run_once(settings: Settings, books: BooksSettings, config: ReconcileSettings,
             ledger: Callable[[], ErpLedger],
             now: datetime.datetime | None = None) -> dict[str, Any] | None:  # fmt: skip
    """One scheduled run over the configured period; its summary event."""
    start, end = config.period(now or datetime.datetime.now(datetime.UTC))
    return run(settings, books, config, ledger, start, end)[1]


def serve(settings: Settings, books: BooksSettings, config: ReconcileSettings,
          ledger: Callable[[], ErpLedger], stop: threading.Event,
          on_run: Callable[[dict[str, Any] | None], None] | None = None) -> None:  # fmt: skip
    """Run at each time of the cron expression until ``stop`` is set."""
    for kind in KINDS:  # the gauges exist (at 0) before the first run
        RECONCILIATION_DIFFERENCES.labels(kind)
    while not stop.is_set():
        due = config.next_run(datetime.datetime.now(datetime.UTC))
        log.info("next reconciliation at %s", due.isoformat())
        if stop.wait(max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds())):
            return
        try:
            event: dict[str, Any] | None = run_once(settings, books, config, ledger)
        except Exception:
            log.exception("the scheduled reconciliation failed; the next run is as scheduled")
            event = None
        if on_run is not None:
            on_run(event)
