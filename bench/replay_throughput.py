"""Replay: postings/s from the dead-letter topic to booked ERP documents, against the sink's
normal booking rate for the same kind of postings, same run, same sink, same Tryton.

    python -m bench.replay_throughput [--postings 200]

1. normal: N postings on the postings topic, booked by the sink (first to last booking);
2. replay: N postings the ERP refuses (an unknown account) are dead-lettered by the same sink;
   then ``ops.replay`` sends them back with the account repaired (``--set``), and the sink books
   them: measured from the start of the replay to the last booking.

Needs the local stack; starts Kafka, the schema registry, Redis and a Tryton of its own.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.sink_throughput import posting_record
from bench.stack import tryton_stack
from connectors.erp.tryton import TrytonWriter
from connectors.erp.tryton_rpc import TrytonRpc
from connectors.sinks.erp_target import ErpTarget
from connectors.sinks.runner import SinkRunner
from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.metrics import SINK_RECORDS
from ops.audit import Actor, Role
from ops.dlq import Selection
from ops.replay import ReplayPlan, replay


def _count(outcome: str) -> Callable[[], float]:
    return lambda: SINK_RECORDS.labels("tryton", outcome)._value.get()  # noqa: SLF001


def _publish(settings: Settings, ids: list[str], account: str) -> None:
    codecs, producer = TopicCodecs(settings), durable_producer(settings)
    try:
        for n, posting_id in enumerate(ids):
            record = posting_record(posting_id, n)
            record["lines"][0]["account_code"] = account
            producer.send(codecs.topic("postings"), key=posting_id.encode(),
                          value=codecs.serializer("postings")(record))  # fmt: skip
        producer.flush()
    finally:
        producer.close()
        codecs.close()


def _wait(counter: Callable[[], float], start: float, count: int, timeout: float = 600) -> float:
    """Seconds until ``counter`` went ``count`` past ``start``, from when this was called."""
    began, deadline = time.perf_counter(), time.monotonic() + timeout
    while counter() - start < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{counter() - start:.0f} of {count} in {timeout:.0f}s")
        time.sleep(0.02)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=200)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    with tryton_stack() as cfg:
        _bench(cfg, tag, args.postings)


def _bench(cfg: Any, tag: str, count: int) -> None:
    prefix = f"bench{tag}"
    settings = Settings(topic_prefix=prefix, sink_concurrency=4)
    ensure_topics(settings)
    writer = TrytonWriter(TrytonRpc(cfg.url, cfg.database, cfg.user, cfg.password), "2.1.4")
    runner = SinkRunner(settings, ErpTarget(settings, writer, TopicCodecs(settings)))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        _publish(settings, [f"W{tag}-{n}" for n in range(10)], "5.2.2")  # warm-up
        _wait(_count("booked"), 0, 10)
        booked = _count("booked")()
        _publish(settings, [f"N{tag}-{n}" for n in range(count)], "5.2.2")
        normal = count / _wait(_count("booked"), booked, count)

        dead = _count("dead_lettered")()
        _publish(settings, [f"R{tag}-{n}" for n in range(count)], "9.9.9")
        _wait(_count("dead_lettered"), dead, count)
        booked = _count("booked")()
        began = time.perf_counter()
        plan = ReplayPlan(Selection(topic="erp_dead_letter"),
                          set_fields={"lines.0.account_code": "5.2.2"})  # fmt: skip
        report = replay(settings, plan, Actor("bench", Role.OPERATOR))
        republished = time.perf_counter() - began
        _wait(_count("booked"), booked, count)
        replayed = count / (time.perf_counter() - began)
        print(f"{'path':<44}{'postings/s':>12}{'vs normal':>11}")
        print(f"{'sink, normal booking':<44}{normal:>12.1f}{1.0:>11.2f}")
        print(f"{'dead letter -> replay -> booked':<44}{replayed:>12.1f}{replayed / normal:>11.2f}")
        print(
            f"(replay republished {report.replayed} in {republished:.1f}s: "
            f"{report.replayed / republished:.0f}/s; audited as action {report.action_id})"
        )
    finally:
        runner.stop.set()
        thread.join(timeout=60)


if __name__ == "__main__":
    main()
