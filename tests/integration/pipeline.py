"""A running pipeline for integration tests: unique topics, real worker processes, bounded waits."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from connectors.erp.tryton import TrytonSettings
from connectors.sources.reference_file import publish_reference
from deploy.local.process import free_port
from erpbridge.config import Settings, env_of
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.topics import Topics
from tests.contract_samples import SAMPLES

T = TypeVar("T")
SAMPLE_REFERENCE = Path(__file__).resolve().parents[2] / "samples" / "reference"


def pipeline_env(settings: Settings) -> dict[str, str]:
    return settings.to_env()


def fresh_topics(kafka_bootstrap: str, registry_url: str, redis_url: str,
                 letter: str) -> Settings:  # fmt: skip
    """Settings of a pipeline of its own (a new topic prefix starting with ``letter``), its
    topics created."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{letter}"
                        f"{uuid.uuid4().hex[:10]}", schema_registry_url=registry_url,
                        redis_url=redis_url)  # fmt: skip
    ensure_topics(settings)
    return settings


def make_settings(
    kafka_bootstrap: str, registry_url: str, redis_url: str, workdir: Path, **overrides: Any
) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    defaults: dict[str, Any] = {
        "sink_retry_max_s": 2.0,
        "archive_dir": str(workdir / "archive"),
        "topic_partitions": 3,
    }
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        streams_app_id=f"{prefix}-streams",
        streams_datadir=str(workdir / "faust"),
        schema_registry_url=registry_url,
        redis_url=redis_url,
        **{**defaults, **overrides},
    )


@dataclass
class Worker:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    metrics_port: int = field(default_factory=free_port)

    def metrics(self) -> str:
        """The worker's Prometheus exposition text."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """The worker's /readyz answer (status, body), or None while it does not answer."""
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=5)
        except httpx.HTTPError:
            return None
        return reply.status_code, reply.json()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "ERPBRIDGE_METRICS_PORT": str(self.metrics_port)},
                cwd=self.log.parent,
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} ---\n" + "\n".join(text[-lines:])


def tryton_settings(erp: Any) -> TrytonSettings:
    """The Tryton writer's settings section for the test server ``erp`` (url, database)."""
    return TrytonSettings(url=erp.url, database=erp.database)


def pipeline_workers(settings: Settings, workdir: Path, *, streams: bool = True,
                     sink: bool = True, erp: TrytonSettings | None = None,
                     suffix: str = "") -> list[Worker]:  # fmt: skip
    """A streams worker and a Tryton sink (not started), logging in ``workdir``. Give each
    extra worker of a kind its own ``suffix``: its name, and its own table directory (one RocksDB
    store per worker, as on separate machines)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "erpbridge"]
    env = {**pipeline_env(settings), **(env_of(erp) if erp is not None else {})}
    if suffix:
        env["ERPBRIDGE_STREAMS_DATADIR"] = str(workdir / f"faust{suffix}")
    workers = []
    if streams:
        workers.append(Worker(f"streams{suffix}", [*cli, "streams"], env,
                              workdir / f"streams{suffix}.log"))  # fmt: skip
    if sink:
        workers.append(Worker(f"sink{suffix}", [*cli, "sink", "tryton"], env,
                              workdir / f"sink{suffix}.log"))  # fmt: skip
    return workers


@contextmanager
def running_workers(
    settings: Settings,
    workdir: Path,
    *,
    streams: bool = True,
    sink: bool = True,
    erp: TrytonSettings | None = None,
    suffix: str = "",
    prepare: bool = True,
) -> Iterator[list[Worker]]:
    """Start a streams worker and a sink (after creating the topics and publishing the sample
    reference data, unless ``prepare`` is false: a second set joining running ones); stop them
    at the end."""
    if prepare:
        ensure_topics(settings)
        for path in sorted(SAMPLE_REFERENCE.glob("*.csv")):
            publish_reference(path, settings)
    workers = pipeline_workers(settings, workdir, streams=streams, sink=sink, erp=erp,
                               suffix=suffix)  # fmt: skip
    for worker in workers:
        worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def assigned_partitions(worker: Worker, topic: str) -> set[int] | None:
    """The partitions of ``topic`` a streams worker holds (its gauge), or None while its
    /metrics does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = worker.metrics()
    except httpx.HTTPError:
        return None
    return {int(sample.labels["partition"])
            for family in text_string_to_metric_families(text)
            if family.name == "erpbridge_stream_assigned_partitions"
            for sample in family.samples
            if sample.labels.get("topic") == topic and sample.value == 1}  # fmt: skip


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, workers: list[Worker] | None = None
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` s or when a
    worker process died, with the workers' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        dead = [w.name for w in workers or [] if w.proc is not None and w.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"worker(s) {dead} exited" if dead else f"timed out after {timeout:.0f}s"
            logs = "\n".join(worker.tail() for worker in workers or [])
            raise AssertionError(f"{why} waiting for {what}\n{logs}")
        time.sleep(0.5)


def serving(worker: Worker, url: str, what: str) -> None:
    """Start a server process and wait until its ``/healthz`` answers."""
    worker.start()

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=30, what=what, workers=[worker])


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


def plain_posting(posting_id: str, day: datetime.date, amount: int) -> tuple[bytes, dict[str, Any]]:
    """A one-line posting of ``amount`` (minor units) dated ``day``, no invoice and no VAT."""
    record = dict(SAMPLES["erp_posting"], posting_id=posting_id, claim_id=posting_id,
                  posting_date=day, total_minor=amount,
                  created_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
    record["lines"] = [dict(record["lines"][0], amount_minor=amount, invoice_refs=[],
                            input_vat=[])]  # fmt: skip
    record["tax_minor"] = 0
    return posting_id.encode(), record


def publish_budget(settings: Settings, cost_centre: str, amount: Decimal, year: int) -> None:
    """A cost centre's budget for ``year``, as the master-data sync publishes it from Tryton's
    analytic budgets."""
    value = {"amount": str(amount), "end": f"{year}-12-31", "name": f"{cost_centre} 预算",
             "source": "tryton", "source_ref": "analytic_account.budget.line,1"}  # fmt: skip
    producer = durable_producer(settings)
    try:
        producer.send(Topics(settings.topic_prefix).reference,
                      key=f"budget:{cost_centre}:{year}-01-01".encode(),
                      value=json.dumps(value).encode())  # fmt: skip
        producer.flush()
    finally:
        producer.close()


def publish(settings: Settings, role: str, records: Iterable[tuple[bytes, dict[str, Any]]]) -> None:
    """Send (key, record) pairs to a pipeline topic in its contract's encoding, acknowledged."""
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings)
    try:
        for key, value in records:
            producer.send(codecs.topic(role), key=key, value=codecs.serializer(role)(value))
        producer.flush()
    finally:
        producer.close()
        codecs.close()


def posted_in_tryton(erp: TrytonSettings, references: list[str]) -> list[dict[str, Any]]:
    """The posted supplier invoices Tryton holds for these references (claim ids)."""
    from connectors.erp.errors import RetryableErpError
    from connectors.erp.tryton import TrytonWriter

    for attempt in range(10):  # Tryton on SQLite may be busy with the sink's writes: look again
        writer = TrytonWriter.from_settings(erp)
        try:
            return [inv for inv in writer.find_invoices(references) if inv["state"] == "posted"]
        except RetryableErpError:
            if attempt == 9:
                raise
            time.sleep(0.5)
        finally:
            writer.close()
    raise AssertionError("unreachable")
