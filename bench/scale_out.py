"""Scale-out: throughput with one and with two workers of each kind on the local 3-broker cluster
(replication factor 3, ``min.insync.replicas`` 2), as a ratio measured in one run.

    python -m bench.scale_out [--claims 3000] [--postings 6000] [--partitions 4]

- **streams**: the fixed-seed workload (claims, approvals, invoices; bench.workload) is on the
  input topics before the workers start; the rate is input events/s between 10 % and 90 % of
  the postings a read_committed reader sees (start-up and the tail excluded, the group's
  rebalance when the second worker joins included).
- **sink**: postings are on the topic before the sinks start; they book into the REST gateway
  stand-in (its own process, fast enough not to be the limit), the rate is ERP answers/s on the
  feedback topic between 10 % and 90 %.

Every process here (three brokers, the workers, the stand-in, this reader) shares the machine:
on 2 cores a second worker adds no core of its own, so the ratio shows what a rebalance and a
second consumer cost or gain when CPU is already the limit, not what a second machine would
give. The cluster is started if it is not up, and stopped again at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from multiprocessing import Process, Queue
from pathlib import Path

from bench.streams_throughput import sustained_rate
from bench.suite import LOCAL, PeakRss, count_visible, process, worker_env
from deploy.local.kafka_cluster import KafkaCluster
from erpbridge.config import Settings


def _settings(cluster: KafkaCluster, tag: str, partitions: int) -> tuple[Settings, Path]:
    import uuid

    prefix = f"scale{tag}{uuid.uuid4().hex[:6]}"
    folder = (LOCAL / prefix).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return Settings(kafka_bootstrap=cluster.bootstrap, topic_prefix=prefix,
                    topic_partitions=partitions, topic_replication_factor=3,
                    topic_min_insync_replicas=2, streams_app_id=f"{prefix}-streams",
                    streams_datadir=str(folder / "state"), metrics_port=0), folder  # fmt: skip


def streams_rate(cluster: KafkaCluster, workers: int, claims: int, partitions: int,
                 rss: PeakRss) -> float:  # fmt: skip
    from contextlib import ExitStack

    from bench import workload
    from erpbridge.topics import Topics

    load = workload.build(claims)
    settings, folder = _settings(cluster, f"s{workers}", partitions)
    workload.publish(settings, load)
    with ExitStack() as stack:
        procs = [stack.enter_context(process(
            [sys.executable, "-m", "erpbridge", "streams"], folder, f"streams-{n}", rss,
            worker_env(settings, streams_datadir=folder / f"state-{n}"), kill=True))
            for n in range(workers)]  # fmt: skip
        samples = count_visible(cluster.bootstrap, Topics(settings.topic_prefix).postings,
                                claims, procs[0], timeout_s=600)  # fmt: skip
    return sustained_rate(samples, claims) * load.per_claim


def sink_rate(cluster: KafkaCluster, workers: int, postings: int, partitions: int, url: str,
              rss: PeakRss) -> float:  # fmt: skip
    from contextlib import ExitStack

    from bench.sink_throughput import posting_record
    from erpbridge.contracts.bindings import TopicCodecs
    from erpbridge.kafka_io import durable_producer, ensure_topics
    from erpbridge.topics import Topics

    settings, folder = _settings(cluster, f"k{workers}", partitions)
    ensure_topics(settings)
    codecs = TopicCodecs(settings)
    producer = durable_producer(settings, linger_ms=50)
    serialize = codecs.serializer("postings")
    for n in range(postings):
        posting_id = f"{settings.topic_prefix}-{n}"
        producer.send(codecs.topic("postings"), key=posting_id.encode(),
                      value=serialize(posting_record(posting_id, n)))  # fmt: skip
    producer.flush()
    producer.close()
    codecs.close()
    env = worker_env(settings, sink_batch_size=1, sink_concurrency=4)
    env["ERPBRIDGE_REST_ERP_BASE_URL"] = url
    with ExitStack() as stack:
        procs = [stack.enter_context(process(
            [sys.executable, "-m", "erpbridge", "sink", "rest"], folder, f"sink-{n}", rss,
            {**env, "ERPBRIDGE_METRICS_PORT": "0"}, kill=True))
            for n in range(workers)]  # fmt: skip
        samples = count_visible(cluster.bootstrap, Topics(settings.topic_prefix).erp_feedback,
                                postings, procs[0], timeout_s=600)  # fmt: skip
    return sustained_rate(samples, postings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=3000)
    parser.add_argument("--postings", type=int, default=6000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    from bench.reconcile_time import serve_gateway

    cluster = KafkaCluster(3)
    was_up = all(cluster.process(n).running() for n in range(1, 4))
    print("\n".join(cluster.up()), flush=True)
    rss = PeakRss().start()
    answer: Queue[str] = Queue()
    gateway = Process(target=serve_gateway, args=(0, answer), daemon=True)
    gateway.start()
    url = answer.get(timeout=60)
    rates: dict[str, dict[int, float]] = {"streams": {}, "sink": {}}
    try:
        for workers in (1, 2):
            rates["streams"][workers] = streams_rate(cluster, workers, args.claims,
                                                     args.partitions, rss)  # fmt: skip
            print(f"streams, {workers} worker(s): {rates['streams'][workers]:,.0f} input "
                  "events/s", flush=True)  # fmt: skip
            rates["sink"][workers] = sink_rate(cluster, workers, args.postings, args.partitions,
                                               url, rss)  # fmt: skip
            print(f"sink, {workers} worker(s): {rates['sink'][workers]:,.0f} bookings/s",
                  flush=True)  # fmt: skip
    finally:
        gateway.terminate()
        if not was_up:
            cluster.down()
    cores = os.cpu_count()
    print(f"\nscale-out on a 3-broker cluster, {args.partitions} partitions, {cores} cores")
    print(f"{'kind':<8} {'unit':<18} {'1 worker':>9} {'2 workers':>10} {'2 / 1':>7}")
    for kind, unit in (("streams", "input events/s"), ("sink", "bookings/s")):
        one, two = rates[kind][1], rates[kind][2]
        print(f"{kind:<8} {unit:<18} {one:>9,.0f} {two:>10,.0f} {two / one:>6.2f}x")
    peaks = rss.stop()
    print("peak RSS (with children): "
          f"{', '.join(f'{k} {v:.0f} MiB' for k, v in peaks.items())}")  # fmt: skip


if __name__ == "__main__":
    main()
