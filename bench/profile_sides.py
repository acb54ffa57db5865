"""Where each side of the streams bench spends its CPU: the worker and the Quix peer, run as
``bench.suite`` runs them (the same inputs, one after the other, the same commit interval), each
sampled by py-spy from its first posting to its last, its samples grouped by whose code ran.

    python -m bench.profile_sides [--claims 3000] [--guarantee exactly_once] [--rate 250] [--json]

A sample goes to the innermost frame that is the job's or a runtime's (the standard library's
frames count for their caller: ``json.dumps`` called by a rule is the rule's time):

- **rules**: the pure claim, invoice, budget and posting rules, the model and reference data;
- **Avro codec**: encoding and decoding with the contracts (the product's codec, fastavro);
- **job glue**: the agents (ours) or ``bench/quix_peer.py`` (the peer's handlers, its JSON
  between its two sides);
- **runtime**: the stream runtime driving the job: ``streams/direct.py`` and what it calls in
  ``confluent_kafka`` for the worker, Quix Streams (its state store, its producer and consumer
  over ``confluent_kafka``, its dataframe) for the peer;
- **other**: anything else (the event loop, logging, metrics).

Only the Python frames are seen: the time librdkafka or RocksDB take inside a call counts for
the line that called them. ``--idle`` is off, so a sample is a moment the process was on a CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
from collections import Counter

from rich.console import Console
from rich.table import Table

from bench import workload
from bench.suite import PeakRss, count_visible, fresh_settings, process, sides, sustained

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]+):(?P<line>\d+)\)$")
CATEGORIES = ("rules", "Avro codec", "job glue", "runtime", "other")
_RULES = ("streams/claim_case.py", "streams/invoice_case.py", "streams/budget_case.py",
          "streams/postings.py", "erpbridge/model.py", "erpbridge/reference",
          "erpbridge/china")  # fmt: skip
_CODEC = ("erpbridge/codec", "erpbridge/contracts/", "fastavro/")
_GLUE = ("quix_peer.py", "streams/agents/", "streams/table_writes.py",
         "streams/disk_state.py")  # fmt: skip
_RUNTIME = ("streams/direct.py", "quixstreams/", "confluent_kafka/")


def category(file: str) -> str | None:
    """The category of a frame's file, or None for the standard library and the rest."""
    for name, marks in (("rules", _RULES), ("Avro codec", _CODEC), ("job glue", _GLUE),
                        ("runtime", _RUNTIME)):  # fmt: skip
        if any(mark in file for mark in marks):
            return name
    return None


def classify(collapsed: str) -> Counter[str]:
    """Samples by category, from py-spy's raw (collapsed stack) output: a stack a line, its
    frames root first and separated by ``;``, then its count."""
    found: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        files = [m["file"] for frame in stack.split(";") if (m := FRAME.match(frame))]
        found[next((c for f in reversed(files) if (c := category(f))), "other")] += int(count)
    return found


def profile(claims: int, guarantee: str, rate: int) -> dict[str, dict[str, float]]:
    """For each side: its share of samples by category (%), its samples and its rate (input
    events/s, as the bench measures it, under the profiler)."""
    load = workload.build(claims)
    settings, folder = fresh_settings("p", streams_processing_guarantee=guarantee)
    workload.publish(settings, load)
    rss = PeakRss()
    measured: dict[str, dict[str, float]] = {}
    for name, (cmd, topic, env) in sides(settings, folder).items():
        out = folder / f"{name.replace(' ', '-')}.pyspy.txt"
        with process(cmd, folder, f"profiled-{name.replace(' ', '-')}", rss, env) as proc:
            count_visible(settings.kafka_bootstrap, topic, 1, proc)  # its start-up is over
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--rate",
                                    str(rate), "--format", "raw", "--nonblocking", "--output",
                                    str(out)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
            samples = count_visible(settings.kafka_bootstrap, topic, claims, proc,
                                    timeout_s=max(300, claims / 20))  # fmt: skip
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        counts = classify(out.read_text(encoding="utf-8"))
        total = sum(counts.values()) or 1
        measured[name] = {c: round(100 * counts[c] / total, 1) for c in CATEGORIES}
        measured[name]["samples"] = total
        measured[name]["events/s"] = round(sustained(samples, claims) * load.per_claim)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=3000)
    parser.add_argument("--guarantee", choices=["exactly_once", "at_least_once"],
                        default="exactly_once")  # fmt: skip
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from deploy.local import kafka, redis, registry

    for line in (kafka.up(), registry.up(), redis.up()):
        print(line, file=sys.stderr)
    measured = profile(args.claims, args.guarantee, args.rate)
    if args.json:
        print(json.dumps({"claims": args.claims, "guarantee": args.guarantee, **measured}))
        return
    names = list(measured)
    table = Table(title=f"CPU samples by whose code ran, {args.claims:,} mixed claims, "
                  f"{args.guarantee} (py-spy, {args.rate}/s)")  # fmt: skip
    table.add_column("category")
    for name in names:
        table.add_column(f"{name} %", justify="right")
    for row in (*CATEGORIES, "samples", "events/s"):
        table.add_row(row, *(f"{measured[n][row]:,.1f}" if row in CATEGORIES else
                             f"{measured[n][row]:,.0f}" for n in names))  # fmt: skip
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
