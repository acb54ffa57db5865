"""Approval-to-ERP latency (``bench.suite``'s latency section): from a final approval accepted by
the webhook (its 202) to the ERP's acknowledgement (the ``answered_at`` of the sink's
ErpFeedback), at fixed offered loads, through real processes: the webhook source, the streams
worker, and the sink with the REST writer against the gateway stand-in (a process of its own),
or with Tryton.

The claims and their 数电票 are on the broker, processed, before the timed phase; in it, the final
approvals are posted at the offered rate (an open loop: each is sent at its time, whatever the
answers before it), so what is timed is the path an approval takes to become a booking.
"""

from __future__ import annotations

import datetime
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from erpbridge.config import Settings

SECRET = "bench-webhook-secret"


def _approvals(load: Any) -> dict[str, dict[str, Any]]:
    """claim id -> its final approval, as the webhook takes it (JSON)."""
    out = {}
    for role, key, record in load.events:
        if role == "approvals_raw" and record["final"]:
            out[key] = {"claim_id": key, "step": record["step"], "step_name": record["step_name"],
                        "approver_id": record["approver_id"],
                        "approver_name": record["approver_name"], "decision": "APPROVE",
                        "decided_at": datetime.datetime.now(datetime.UTC).isoformat(),
                        "final": True}  # fmt: skip
    return out


def _without_final_approvals(load: Any) -> Any:
    from bench.workload import Workload

    return Workload(load.claims, [e for e in load.events
                                  if not (e[0] == "approvals_raw" and e[2]["final"])])  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


def measure(settings: Settings, folder: Path, rate: float, seconds: float, erp_env: dict[str, str],
            erp: str, rss: Any) -> dict[str, float]:  # fmt: skip
    """p50/p95/p99/max seconds at ``rate`` claims/s for ``seconds``."""
    from bench import workload
    from bench.suite import count_visible, process, worker_env
    from connectors.sources.signatures import signed_headers
    from deploy.local.process import free_port
    from erpbridge.topics import Topics

    claims = int(rate * seconds)
    load = workload.build(claims, tag=f"L{int(rate)}")
    workload.publish(settings, _without_final_approvals(load))
    approvals = _approvals(load)
    port = free_port()
    env = {**worker_env(settings), "ERPBRIDGE_WEBHOOK_SECRETS": json.dumps({"bench": SECRET})}
    url = f"http://127.0.0.1:{port}"
    topics = Topics(settings.topic_prefix)
    with process([sys.executable, "-m", "erpbridge", "streams"], folder, f"worker-{erp}-{rate}",
                 rss, worker_env(settings)) as worker, \
            process([sys.executable, "-m", "erpbridge", "sink", erp], folder,
                    f"sink-{erp}-{rate}", rss, {**worker_env(settings), **erp_env}), \
            process([sys.executable, "-m", "erpbridge", "source", "webhook", "--port",
                     str(port)], folder, f"webhook-{rate}", rss, env):  # fmt: skip
        _wait_for(f"{url}/healthz")
        # every claim waits for its final approval (a status each) before the timed phase
        count_visible(settings.kafka_bootstrap, topics.claim_status, claims, worker, 300)
        time.sleep(2.0)
        accepted: dict[str, float] = {}
        client = httpx.Client(timeout=30)

        def send(claim_id: str, body: bytes) -> None:
            reply = client.post(f"{url}/v1/approvals", content=body,
                                headers={**signed_headers("bench", SECRET, body),
                                         "Content-Type": "application/json"})  # fmt: skip
            if reply.status_code != 202:
                raise SystemExit(f"webhook answered {reply.status_code}: {reply.text[:200]}")
            accepted[claim_id] = time.time()

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            for n, (claim_id, approval) in enumerate(approvals.items()):
                body = json.dumps(approval, ensure_ascii=False).encode()
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, claim_id, body)
        answered = _answers(settings, topics.erp_feedback, set(approvals), worker)
        client.close()
    latencies = [answered[c] - accepted[c] for c in approvals if c in answered]
    return {**percentiles(latencies), "claims": float(len(latencies))}


def _answers(settings: Settings, topic: str, wanted: set[str], proc: Any,
             timeout_s: float = 180) -> dict[str, float]:  # fmt: skip
    """claim id -> the ERP's answered_at (epoch s), for every wanted claim."""
    from kafka import KafkaConsumer

    from erpbridge.contracts.bindings import TopicCodecs

    codecs = TopicCodecs(settings)
    decode = codecs.deserializer("erp_feedback")
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", isolation_level="read_committed",
                             enable_auto_commit=False)  # fmt: skip
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= set(found):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{len(set(found) & wanted)} of {len(wanted)} answered")
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    feedback = decode(record.value)
                    if feedback["status"] in ("BOOKED", "ALREADY_BOOKED"):
                        found.setdefault(feedback["claim_id"], feedback["answered_at"].timestamp())
    finally:
        consumer.close()
        codecs.close()
    return found


def _wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")
