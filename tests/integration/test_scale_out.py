"""Several workers of each kind in their groups (issue 19): a rebalance under load loses nothing
and books nothing twice, and a worker's table partitions move with its input partitions.

Claims are fed in waves (so many have inputs on both sides of each rebalance) to one streams
worker and one sink. A second of each joins while claims come; once the group gave the new
streams worker some partitions, the first streams worker and then the first sink are killed
(SIGKILL, not restarted). The survivor must take every partition over, restoring the killed
worker's table partitions from their changelogs: a claim whose claim came before the kill on a
partition the killed worker held, and whose approval came after, posts only if its case moved
with the partition. Every claim must be posted (read_committed) and booked in Tryton exactly
once, except those of a cost centre whose budget holds half of them, which two workers judge at
once: booked while the budget lasts, the rest held, never more than the budget booked. The seed
is printed; replay with ``ERPBRIDGE_CHAOS_SEED=N``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from erpbridge.kafka_io import ensure_topics
from erpbridge.topics import Topics
from tests.integration.claim_load import (
    Feeder,
    drain_and_check,
    kill,
    publish_budget_for,
    straddling,
    workload,
)
from tests.integration.pipeline import (
    Worker,
    assigned_partitions,
    make_settings,
    running_workers,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.long]

CLAIMS = int(os.environ.get("ERPBRIDGE_SCALE_CLAIMS", "400"))
PARTITIONS = 4
WAVES, WAVE_GAP_S = 5, 7.0  # claims come for 35 s
JOIN_AT_S, KILL_AT_S = 8.0, 22.0


def _partition(claim_id: str) -> int:
    """The partition the producers' default partitioner sends a claim's records to."""
    return (murmur2(claim_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def test_a_worker_added_then_one_killed_under_load_loses_nothing(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             topic_partitions=PARTITIONS, sink_breaker_threshold=3,
                             sink_retry_initial_s=0.2)  # fmt: skip
    seed = int(os.environ.get("ERPBRIDGE_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"scale-out test: seed {seed} ({CLAIMS} claims, {PARTITIONS} partitions)")
    claims = workload(random.Random(seed), f"{seed:06d}", CLAIMS, WAVES, budgeted_share=0.3)
    ensure_topics(settings)
    budget = publish_budget_for(settings, claims)  # two workers judge its claims at once
    claims_topic = Topics(settings.topic_prefix).claims_raw
    with running_workers(settings, tmp_path / "a", erp=erp.settings) as first:
        streams_a, sink_a = first
        started = time.monotonic()
        feeder = Feeder(settings, claims, random.Random(seed + 1), WAVE_GAP_S)
        feeder.start()
        time.sleep(JOIN_AT_S)
        with running_workers(settings, tmp_path / "b", erp=erp.settings, suffix="-b",
                             prepare=False) as second:  # fmt: skip
            streams_b, _ = second
            joined = time.monotonic()
            everyone = [*first, *second]
            wait_for(lambda: assigned_partitions(streams_b, claims_topic), 90,
                     "the second streams worker to be given partitions", everyone)  # fmt: skip
            shared = (assigned_partitions(streams_a, claims_topic),
                      assigned_partitions(streams_b, claims_topic))  # fmt: skip
            print(f"seed {seed}: after the join, claims partitions {shared[0]} on the first "
                  f"streams worker and {shared[1]} on the second")  # fmt: skip
            time.sleep(max(0.0, started + KILL_AT_S - time.monotonic()))
            held_by_a = assigned_partitions(streams_a, claims_topic) or set()
            assert held_by_a, f"seed {seed}: the first streams worker holds no partitions"
            kill(streams_a)
            killed = time.monotonic()
            time.sleep(3)
            kill(sink_a)
            survivors: list[Worker] = list(second)
            wait_for(lambda: assigned_partitions(streams_b, claims_topic) == set(
                range(PARTITIONS)), 90, "the survivor to hold every partition",
                survivors)  # fmt: skip
            feeder.join()
            assert feeder.error is None, f"seed {seed}: feeding failed: {feeder.error!r}"
            across_join = straddling(feeder.sent_at, [joined])
            moved = {claim_id for claim_id in straddling(feeder.sent_at, [killed])
                     if _partition(claim_id) in held_by_a}  # fmt: skip
            print(f"seed {seed}: {len(across_join)} claims have inputs on both sides of the "
                  f"join; {len(moved)} on both sides of the kill, on partitions {held_by_a} the "
                  "killed worker held")  # fmt: skip
            drain_and_check(settings, erp, claims, survivors, seed,
                            f"first streams worker held {held_by_a} when killed",
                            budget=budget)  # fmt: skip
    assert len(across_join) >= CLAIMS // 20, f"seed {seed}: too few claims straddle the join"
    assert len(moved) >= CLAIMS // 40, f"seed {seed}: too few claims straddle the kill"
