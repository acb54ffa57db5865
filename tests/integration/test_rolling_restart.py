"""A rolling restart under load (issue 28): what a deploy does to every worker.

Two streams workers and two sinks run while claims come in waves. One at a time, each gets
SIGTERM (what Kubernetes and compose send first), must exit by itself with status 0 within the
grace period (30 s, Kubernetes' default; SIGKILL after it is a crash, not a stop), and is
started again; the next one is stopped once the restarted one is ready. Every claim must then be
posted (read_committed) and booked in Tryton exactly once. The seed is printed; replay with
``ERPBRIDGE_CHAOS_SEED=N``. ``ERPBRIDGE_ROLLING_CLAIMS`` sets the size (default 300).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.claim_load import Feeder, drain_and_check, straddling, workload
from tests.integration.pipeline import Worker, make_settings, running_workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.long]

CLAIMS = int(os.environ.get("ERPBRIDGE_ROLLING_CLAIMS", "300"))
GRACE_S = 30.0
WAVES, WAVE_GAP_S = 14, 6.0  # claims come for about 80 s, across the whole roll


def ready(worker: Worker) -> bool:
    answer = worker.readiness()
    return answer is not None and answer[0] == 200


def stop_gracefully(worker: Worker) -> tuple[float, int | None]:
    """SIGTERM, then wait up to the grace period: (seconds to exit, exit status), the status
    None when the worker was still running and had to be killed."""
    assert worker.proc is not None
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        status: int | None = worker.proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()
        status = None
    return time.monotonic() - started, status


def test_a_rolling_restart_under_load_stops_each_worker_in_its_grace_and_loses_nothing(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             topic_partitions=4, sink_breaker_threshold=3,
                             sink_retry_initial_s=0.2)  # fmt: skip
    seed = int(os.environ.get("ERPBRIDGE_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"rolling restart: seed {seed} ({CLAIMS} claims)")
    claims = workload(random.Random(seed), f"{seed:06d}", CLAIMS, WAVES)
    with (
        running_workers(settings, tmp_path / "a", erp=erp.settings) as first,
        running_workers(settings, tmp_path / "b", erp=erp.settings, suffix="-b",
                        prepare=False) as second,
    ):  # fmt: skip
        workers = [*first, *second]
        for worker in workers:
            wait_for(lambda w=worker: ready(w), 90, f"{worker.name} ready", workers)
        feeder = Feeder(settings, claims, random.Random(seed + 1), WAVE_GAP_S)
        feeder.start()
        stops: dict[str, tuple[float, int | None]] = {}
        restarted_at = []
        time.sleep(5)
        for worker in (first[0], first[1], second[0], second[1]):  # streams, sink, streams, sink
            stops[worker.name] = stop_gracefully(worker)
            restarted_at.append(time.monotonic())
            worker.start()
            wait_for(lambda w=worker: ready(w), 90, f"{worker.name} ready again", workers)
            time.sleep(3)
        feeder.join()
        assert feeder.error is None, f"seed {seed}: feeding failed: {feeder.error!r}"
        split = len(straddling(feeder.sent_at, restarted_at))
        print(f"seed {seed}: stops {stops}; {split} claims straddle a restart")
        slow = {name: took for name, (took, status) in stops.items() if status != 0}
        assert not slow, (
            f"seed {seed}: not stopped cleanly within {GRACE_S:.0f} s of SIGTERM (seconds; "
            f"status: {stops})\n" + "\n".join(w.tail(60) for w in workers)
        )
        drain_and_check(settings, erp, claims, workers, seed, f"rolling restart {stops}")
    assert split >= CLAIMS // 20, f"seed {seed}: too few claims straddle a restart ({split})"
