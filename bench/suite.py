"""``make bench``: the whole pipeline against its limits and a peer, in one run, on one broker.

    python -m bench.suite [--claims 4000] [--only limits streams sink latency state]

Starts what it needs (Kafka, the schema registry, Redis; a Tryton of its own for the sink), runs
the fixed-seed workload of :mod:`bench.workload`, prints one table and writes every figure,
absolute and as a ratio, with versions and machine facts, to ``bench/results/<time>.json``.

Sections:

- **limits**: produce and consume-and-produce rates of kafka-python, aiokafka and confluent-kafka
  on the workload's own records (:mod:`bench.limits`);
- **streams**: sustained input events/s of the erpbridge worker under exactly_once and
  at_least_once, and of the same job in Quix Streams (:mod:`bench.quix_peer`), on the same
  input topics: claims/s seen on each one's postings topic by a read_committed reader (10 %
  to 90 % of the claims), times the workload's input events per claim;
- **sink**: bookings/s into Tryton through the sink, against Tryton's own limit measured in the
  same run (one RPC create of all the invoices and one post of all of them); and into the REST
  gateway stand-in, one request per posting and in batch mode;
- **state**: the claims table with 10k, 100k and 1M cases in its changelog: the worker's
  start-up (recovery) time and RSS, first on an empty disk (all of the changelog read), then
  after a SIGKILL (only what is newer than the store on disk);
- **peak RSS** of every process the bench ran or used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.streams_throughput import sustained_rate as sustained
from erpbridge.config import Settings

RESULTS = Path(__file__).resolve().parent / "results"
LOCAL = Path(".local/bench")


# peak RSS -----------------------------------------------------------------------------------
class PeakRss:
    """Samples the RSS of named processes (and their children) every 0.2 s; keeps the peaks."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self._watched: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._watched[name] = pid

    def start(self) -> PeakRss:
        import psutil

        for proc in psutil.process_iter(["pid", "cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            for name, mark in (("kafka broker", "kafka.Kafka"),
                               ("schema registry", "deploy.local.registry_server"),
                               ("schema registry", "schema_registry"),
                               ("redis", "redis-server"), ("tryton", "trytond")):  # fmt: skip
                if mark in line:
                    self._watched.setdefault(name, proc.info["pid"])
        self.watch("bench", os.getpid())
        self._thread.start()
        return self

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            for name, pid in list(self._watched.items()):
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss + sum(
                        child.memory_info().rss for child in proc.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss / 2**20)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        return dict(sorted(self.peaks.items()))


# processes ----------------------------------------------------------------------------------
@contextmanager
def process(cmd: list[str], folder: Path, name: str, rss: PeakRss,
            env: dict[str, str] | None = None,
            kill: bool = False) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """Run ``cmd`` (log in ``folder``); stop it at the end: SIGTERM, or with ``kill`` SIGKILL
    (once what was measured is done, a graceful stop only costs the bench time)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / f"{name}.log").open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})  # fmt: skip
    rss.watch(name, proc.pid)
    try:
        yield proc
    finally:
        if proc.poll() is None and kill:
            proc.kill()
        if proc.poll() is None:
            STOPS.append((name, stop_time(proc, 30.0)))
        log.close()


GUARANTEES = ("exactly_once", "at_least_once")
# (process, seconds from SIGTERM to its exit; None: killed after 30 s), for the stop section
STOPS: list[tuple[str, float | None]] = []


def count_visible(bootstrap: str, topic: str, total: int, proc: subprocess.Popen[bytes],
                  timeout_s: float = 300) -> list[tuple[float, int]]:  # fmt: skip
    """(time, records) as a read_committed reader sees ``topic`` fill up to ``total``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             isolation_level="read_committed", enable_auto_commit=False,
                             fetch_max_wait_ms=50)  # fmt: skip
    samples, seen, started = [], 0, time.monotonic()
    try:
        while seen < total:
            if proc.poll() is not None:
                raise SystemExit(f"{topic}: the process stopped after {seen} of {total}")
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"{topic}: {seen} of {total} after {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=100).values():
                seen += len(records)
            samples.append((time.monotonic(), seen))
    finally:
        consumer.close()
    return samples


def worker_env(settings: Settings, **extra: Any) -> dict[str, str]:
    from deploy.local.process import free_port

    return {**settings.to_env(), "ERPBRIDGE_METRICS_PORT": str(free_port()),
            **{f"ERPBRIDGE_{k.upper()}": str(v) for k, v in extra.items()}}  # fmt: skip


def fresh_settings(tag: str, **overrides: Any) -> tuple[Settings, Path]:
    prefix = f"bench{tag}{uuid.uuid4().hex[:6]}"
    folder = (LOCAL / prefix).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return Settings(topic_prefix=prefix, streams_app_id=f"{prefix}-streams",
                    streams_datadir=str(folder / "state"), metrics_port=0,
                    **overrides), folder  # fmt: skip


# sections -----------------------------------------------------------------------------------
Row = dict[str, Any]


def limits_section(claims: int, rss: PeakRss) -> list[Row]:
    from bench import limits, workload

    settings, _ = fresh_settings("l")
    measured = limits.measure(settings, workload.build(claims))
    rows = []
    for client, rates in measured.items():
        rows.append(_row("limits", f"{client} produce", rates["produce"], "records/s"))
        rows.append(_row("limits", f"{client} consume→produce", rates["consume_produce"],
                         "records/s"))  # fmt: skip
    return rows


def streams_section(sizes: list[int], rss: PeakRss, raw: float, shape: str = "mixed",
                    guarantees: tuple[str, ...] = GUARANTEES) -> list[Row]:  # fmt: skip
    """For each workload size and guarantee, the worker and the Quix peer on the same input
    topics, one after the other, at the same commit interval: the sustained rate (10 % to 90 %
    of the claims, as a read_committed reader sees their postings) and the wall time from the
    first posting to the last; the postings compared field by field (a ratio counts only when
    they are equal); each process stopped with SIGTERM and timed. ``shape``: the workload,
    ``mixed`` (:mod:`bench.workload`) or ``simple`` (one invoice, the claim citing it and its
    final approval per claim: :func:`bench.streams_throughput.publish_inputs`)."""
    from bench import workload
    from bench.streams_throughput import publish_inputs

    rows = []
    for claims in sizes:
        load = workload.build(claims) if shape == "mixed" else None
        for guarantee in guarantees:
            settings, folder = fresh_settings("s", streams_processing_guarantee=guarantee)
            if load is None:
                events, per_claim = publish_inputs(settings, claims), 3.0
            else:
                events, per_claim = workload.publish(settings, load), load.per_claim
            interval = settings.streams_commit_interval_s
            runs = sides(settings, folder)
            rates, stops = {}, {}
            for name, (cmd, topic, env) in runs.items():
                label = f"{name} ({guarantee}, {claims:,} {shape} claims)"
                with process(cmd, folder, label.replace(" ", "-").replace(",", ""), rss,
                             env) as proc:  # fmt: skip
                    samples = count_visible(settings.kafka_bootstrap, topic, claims, proc,
                                            timeout_s=max(300, claims / 20))  # fmt: skip
                    stops[name] = stop_time(proc)
                rates[name] = sustained(samples, claims) * per_claim
                first = next(t for t, seen in samples if seen > 0)
                rows.append(_row("streams", label, rates[name], "input events/s",
                                 {"raw consume→produce": raw}))  # fmt: skip
                rows[-1].update({"events": events, "commit_interval_s": interval,
                                 "first_to_last_s": round(samples[-1][0] - first, 2),
                                 "stop_s": stops[name]})  # fmt: skip
            differences = compare_postings(settings, *(topic for _, topic, _ in runs.values()))
            rows[-2]["postings_differ"] = differences
            if not differences:  # the ratio counts only for the same output
                rows[-2]["ratios"]["quix streams"] = rates["erpbridge"] / rates["quix streams"]
    return rows


def sides(settings: Settings, folder: Path) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """The two sides of the streams section on ``settings``' topics: name -> (command, the
    topic its postings go to, its environment)."""
    from erpbridge.topics import Topics

    guarantee, interval = settings.streams_processing_guarantee, settings.streams_commit_interval_s
    return {
        "erpbridge": ([sys.executable, "-m", "erpbridge", "streams"],
                      Topics(settings.topic_prefix).postings, worker_env(settings)),
        "quix streams": ([sys.executable, "-m", "bench.quix_peer", settings.topic_prefix,
                          guarantee, str(folder / "quix-state"), str(interval)],
                         f"{settings.topic_prefix}.quix.postings", {}),
    }  # fmt: skip


def stop_time(proc: subprocess.Popen[bytes], limit_s: float = 60.0) -> float | None:
    """Seconds from SIGTERM to exit (None: still running after ``limit_s``; then killed)."""
    started = time.monotonic()
    proc.terminate()
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    return round(time.monotonic() - started, 2)


def compare_postings(settings: Settings, ours: str, theirs: str) -> int:
    """How many claims' postings differ between the two topics (``created_at`` aside), or are
    on one only."""
    from erpbridge.contracts.bindings import TopicCodecs
    from erpbridge.topic_reader import read_all

    codecs = TopicCodecs(settings)
    decode = codecs.deserializer("postings")
    try:
        sides = []
        for topic in (ours, theirs):
            found: dict[str, list[dict[str, Any]]] = {}
            for record in read_all(settings, topic, timeout_s=120):
                posting = decode(record.value)
                posting.pop("created_at", None)
                found.setdefault(posting["claim_id"], []).append(posting)
            sides.append(found)
    finally:
        codecs.close()
    keys = set(sides[0]) | set(sides[1])
    return sum(1 for key in keys if sides[0].get(key) != sides[1].get(key))


def sink_section(postings: int, rss: PeakRss) -> list[Row]:
    from multiprocessing import Process, Queue

    from bench.reconcile_time import serve_gateway
    from bench.sink_throughput import posting_record, sink_rate
    from bench.stack import tryton_stack
    from connectors.erp.rest import RestErpSettings, RestErpWriter
    from connectors.erp.tryton import TrytonWriter
    from connectors.erp.tryton_rpc import TrytonRpc
    from erpbridge.model import Posting

    rows = []
    with tryton_stack() as cfg:
        rss.watch("tryton (bench)", _pid_listening(cfg.port))

        def writer() -> TrytonWriter:
            return TrytonWriter(TrytonRpc(cfg.url, cfg.database, cfg.user, cfg.password),
                                "2.1.4")  # fmt: skip

        warm = writer()
        warm.book_many([Posting.from_record(posting_record(f"W{n}", n)) for n in range(5)])
        # Tryton's own limit: one create of every invoice, one post of all of them
        run = uuid.uuid4().hex[:6].upper()
        values = [warm.invoice_values(Posting.from_record(posting_record(f"L{run}-{n}", n)))
                  for n in range(postings)]  # fmt: skip
        started = time.perf_counter()
        ids = warm._rpc.call("model.account.invoice.create", values)  # noqa: SLF001
        warm._rpc.call("model.account.invoice.post", ids)  # noqa: SLF001
        limit = postings / (time.perf_counter() - started)
        warm.close()
        rows.append(_row("sink", "Tryton RPC limit (1 create + 1 post)", limit, "invoices/s"))
        for batch in (1, 20, 100):
            settings, _ = fresh_settings("k", sink_batch_size=batch, sink_concurrency=4)
            count = postings if batch > 1 else max(20, postings // 8)  # one a call is slow
            rate = sink_rate(settings, writer(), "tryton", count)
            rows.append(_row("sink", f"sink → Tryton, batches of {batch}", rate, "bookings/s",
                             {"Tryton RPC limit": limit}))  # fmt: skip
    answer: Queue[str] = Queue()
    server = Process(target=serve_gateway, args=(0, answer), daemon=True)
    server.start()
    url = answer.get(timeout=60)
    rss.watch("REST gateway stand-in", server.pid or 0)
    try:
        one = None
        for batched in (False, True):
            extra = {"batch_create_path": "/vouchers/batch",
                     "batch_lookup_path": "/vouchers?external_refs={references}"} if batched \
                else {}  # fmt: skip
            settings, _ = fresh_settings("r", sink_batch_size=100 if batched else 1,
                                         sink_concurrency=4)  # fmt: skip
            rate = sink_rate(settings, RestErpWriter(RestErpSettings(base_url=url, **extra)),
                             "rest", postings * 10)  # fmt: skip
            one = one or rate
            mode = "batch mode" if batched else "one request a posting"
            rows.append(_row("sink", f"sink → REST stand-in, {mode}", rate, "bookings/s",
                             {"one request a posting": one}))  # fmt: skip
    finally:
        server.terminate()
    return rows


def latency_section(rss: PeakRss, seconds: float) -> list[Row]:
    from multiprocessing import Process, Queue

    from bench import latency
    from bench.reconcile_time import serve_gateway
    from bench.stack import tryton_stack

    rows = []
    answer: Queue[str] = Queue()
    server = Process(target=serve_gateway, args=(0, answer), daemon=True)
    server.start()
    url = answer.get(timeout=60)
    rss.watch("REST gateway stand-in (latency)", server.pid or 0)
    runs: list[tuple[str, float, dict[str, str]]] = [
        ("rest", rate, {"ERPBRIDGE_REST_ERP_BASE_URL": url}) for rate in (20.0, 100.0)
    ]
    try:
        for erp, rate, env in runs:
            settings, folder = fresh_settings("a")
            figures = latency.measure(settings, folder, rate, seconds, env, erp, rss)
            rows += _latency_rows(f"REST stand-in, {rate:.0f} claims/s", figures)
    finally:
        server.terminate()
    with tryton_stack() as cfg:
        env = {
            "ERPBRIDGE_ERP_URL": cfg.url,
            "ERPBRIDGE_ERP_DATABASE": cfg.database,
            "ERPBRIDGE_ERP_USER": cfg.user,
            "ERPBRIDGE_ERP_PASSWORD": cfg.password,
        }
        rate = 5.0  # under Tryton's own limit (about 14 invoices/s here): a load it can take
        settings, folder = fresh_settings("a")
        figures = latency.measure(settings, folder, rate, seconds, env, "tryton", rss)
        rows += _latency_rows(f"Tryton, {rate:.0f} claims/s", figures)
    return rows


def _latency_rows(where: str, figures: dict[str, float]) -> list[Row]:
    return [_row("latency", f"approval → ERP ack, {where}: {cut}", figures[cut], "s")
            for cut in ("p50", "p95", "p99", "max")]  # fmt: skip


def _pid_listening(port: int) -> int:
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return int(conn.pid)
    return 0


def state_section(sizes: list[int], rss: PeakRss) -> list[Row]:
    from bench import state_load

    rows = []
    for size in sizes:
        # the direct runtime keeps its tables in memory; Faust on disk, or in memory at 100k
        for runtime, store in (("direct", "memory"), ("faust", "rocksdb"), ("faust", "memory")):
            if runtime == "faust" and store == "memory" and size != 100_000:
                continue  # the comparison at 100k (it grows linearly; 1M does not fit the budget)
            settings, folder = fresh_settings("t", streams_runtime=runtime, streams_store=store)
            state_load.fill_claims_changelog(settings, size)
            for start in ("first start", "restart after SIGKILL"):
                label = f"{runtime} {store} {size:,} claims, {start}"
                seconds, mib = state_load.time_recovery(settings, folder, label, rss)
                rows.append(_row("state", f"{label}: recovery", seconds, "s"))
                rows.append(_row("state", f"{label}: worker RSS", mib, "MiB"))
    return rows


def _row(section: str, name: str, value: float, unit: str,
         ratios: dict[str, float] | None = None) -> Row:  # fmt: skip
    return {"section": section, "name": name, "value": value, "unit": unit,
            "ratios": {k: value / v for k, v in (ratios or {}).items() if v}}  # fmt: skip


# report -------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    import psutil

    packages = ("faust-streaming", "aiokafka", "kafka-python", "confluent-kafka", "quixstreams",
                "rocksdict", "fastavro", "trytond")  # fmt: skip
    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except Exception:  # noqa: BLE001
            versions[package] = None
    from deploy.local import kafka

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kafka": getattr(kafka, "KAFKA_VERSION", None), "packages": versions}  # fmt: skip


def print_table(rows: list[Row], peaks: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="erpbridge bench", show_lines=False)
    for column in ("section", "measure", "value", "unit", "ratios"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for row in rows:
        ratios = ", ".join(f"{r:.2f}× {k}" if r >= 0.1 else f"{r:.1%} of {k}"
                           for k, r in row["ratios"].items())  # fmt: skip
        value = f"{row['value']:,.1f}" if row["value"] < 100 else f"{row['value']:,.0f}"
        extra = [f"{k.replace('_', ' ')} {row[k]}" for k in ("first_to_last_s",
                 "commit_interval_s", "stop_s", "postings_differ") if k in row]  # fmt: skip
        ratios = "; ".join(filter(None, [ratios, ", ".join(extra)]))
        table.add_row(row["section"], row["name"], value, row["unit"], ratios)
    for name, mib in peaks.items():
        table.add_row("peak RSS", name, f"{mib:,.0f}", "MiB", "")
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=4000, help="for the limits")
    parser.add_argument(
        "--streams-claims",
        type=int,
        nargs="+",
        default=[3_000, 20_000],
        help="workload sizes of the streams section (100000 for the long one)",
    )
    parser.add_argument("--streams-guarantees", nargs="+", choices=GUARANTEES,
                        default=list(GUARANTEES))  # fmt: skip
    parser.add_argument("--postings", type=int, default=200, help="per sink measure")
    parser.add_argument("--state-sizes", type=int, nargs="+",
                        default=[10_000, 100_000, 1_000_000])  # fmt: skip
    parser.add_argument("--streams-workload", choices=["mixed", "simple"], default="mixed",
                        help="mixed: 1-5 invoices per claim, multi-step approvals, repeats; "
                             "simple: one invoice and one approval per claim")  # fmt: skip
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--only", nargs="+",
                        default=["limits", "streams", "sink", "latency", "state"])  # fmt: skip
    args = parser.parse_args()
    from deploy.local import kafka, redis, registry

    for line in (kafka.up(), registry.up(), redis.up()):
        print(line)
    rss = PeakRss().start()
    started = time.monotonic()
    rows: list[Row] = []
    raw = 0.0
    if "limits" in args.only:
        rows += limits_section(args.claims, rss)
        raw = max(r["value"] for r in rows if "consume→produce" in r["name"])
        print(f"limits done at {time.monotonic() - started:.0f} s", flush=True)
    if "streams" in args.only:
        rows += streams_section(args.streams_claims, rss, raw, args.streams_workload,
                                tuple(args.streams_guarantees))  # fmt: skip
        print(f"streams done at {time.monotonic() - started:.0f} s", flush=True)
    if "sink" in args.only:
        rows += sink_section(args.postings, rss)
        print(f"sink done at {time.monotonic() - started:.0f} s", flush=True)
    if "latency" in args.only:
        rows += latency_section(rss, args.latency_seconds)
        print(f"latency done at {time.monotonic() - started:.0f} s", flush=True)
    if "state" in args.only:
        rows += state_section(args.state_sizes, rss)
        print(f"state done at {time.monotonic() - started:.0f} s", flush=True)
    rows += [_row("stop", f"{name}: SIGTERM to exit", 30.0 if seconds is None else seconds, "s")
             for name, seconds in STOPS]  # fmt: skip
    peaks = rss.stop()
    print_table(rows, peaks)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({"at": stamp, "seconds": time.monotonic() - started,
                               "machine": machine(), "args": vars(args), "rows": rows,
                               "peak_rss_mib": peaks}, indent=2, ensure_ascii=False))  # fmt: skip
    print(f"written: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # run as the importable module, so that the sections importing from it (latency) record
    # their processes' stops in the same STOPS as this one reports
    from bench import suite

    suite.main()
