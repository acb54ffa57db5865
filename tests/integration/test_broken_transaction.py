"""A partition group's transaction closed behind the worker's back (issue 28): the worker stops
and exits with status 1, and once started again (as Kubernetes or compose would) every claim is
posted and booked exactly once (see :mod:`streams.broken_transactions`).

The transaction is closed the way a second instance taking the group over closes it: a producer
with the same transactional id calls ``init_transactions``, which aborts the open transaction
and fences the worker's producer. Before the repair the group's sends failed with
``IllegalOperation`` for good and its claims were never posted. The seed is printed; replay
with ``ERPBRIDGE_CHAOS_SEED=N``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from erpbridge.config import Settings
from erpbridge.kafka_security import client_options
from tests.integration.claim_load import Feeder, drain_and_check, workload
from tests.integration.pipeline import Worker, make_settings, running_workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

CLAIMS, WAVES, WAVE_GAP_S = 80, 5, 3.0
PAUSE_S = 75  # aiokafka's transaction timeout is 60 s (the direct runtime's 10 s); the
# broker checks every 10 s
STOP_WITHIN_S = 90  # the next commit (or send) of the group finds it closed, then a clean stop
PARTITIONS = 4


def transactional_ids(settings: Settings, partition: int) -> list[str]:
    """The ids of the transactions that hold ``partition``'s work: the direct runtime's one
    producer (its id kept in the worker's data folder), or Faust's, one per input group and
    partition (numbered from 0; absent ones cost nothing)."""
    app_id = settings.streams_app_id
    if settings.streams_runtime == "direct":
        kept = Path(settings.streams_datadir) / app_id / "direct-worker-id"
        return [f"{app_id}-{kept.read_text().strip()}"]
    return [f"{app_id}-{group}-{partition}" for group in range(4)]


def fence(settings: Settings, partition: int) -> list[str]:
    """Take over ``partition``'s transactions, as another instance would."""
    fenced = []
    for transactional_id in transactional_ids(settings, partition):
        producer = KafkaProducer(transactional_id=transactional_id, **client_options(settings))
        producer.init_transactions()
        producer.close()
        fenced.append(transactional_id)
    return fenced


def pause(streams: Worker, seconds: float) -> None:
    """Freeze the worker past its transaction timeout (a VM paused, a starved container): the
    broker aborts its open transaction and bumps the producer's epoch meanwhile."""
    assert streams.proc is not None
    streams.proc.send_signal(signal.SIGSTOP)
    time.sleep(seconds)
    streams.proc.send_signal(signal.SIGCONT)


# paused takes 3-4 minutes (the pause outlasts the transaction timeout): make chaos runs it
@pytest.mark.parametrize("fault", ["fenced", pytest.param("paused", marks=pytest.mark.long)])
def test_a_transaction_closed_under_the_worker_stops_it_and_its_restart_loses_nothing(
    kafka_bootstrap, schema_registry_url, redis_url, erp, tmp_path: Path, fault: str
) -> None:
    # paused: a session that outlasts the pause, so the group keeps the member (below 90 s,
    # Faust's request timeout, which aiokafka requires)
    session_s = 88.0 if fault == "paused" else 6.0
    settings = make_settings(kafka_bootstrap, schema_registry_url, redis_url, tmp_path,
                             topic_partitions=PARTITIONS,
                             streams_session_timeout_s=session_s)  # fmt: skip
    seed = int(os.environ.get("ERPBRIDGE_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    partition = rng.randrange(PARTITIONS)
    print(f"broken transaction: seed {seed} ({CLAIMS} claims; {fault}, partition {partition})")
    claims = workload(rng, f"{seed:06d}", CLAIMS, WAVES)
    with running_workers(settings, tmp_path, erp=erp.settings) as workers:
        streams = workers[0]
        wait_for(lambda: (streams.readiness() or (0,))[0] == 200, 90, "streams ready", workers)
        feeder = Feeder(settings, claims, random.Random(seed + 1), WAVE_GAP_S)
        feeder.start()
        time.sleep(WAVE_GAP_S * 1.5)
        if fault == "fenced":
            what = f"{fence(settings, partition)} fenced"
        else:
            pause(streams, PAUSE_S)
            what = f"paused {PAUSE_S:.0f} s"
        assert streams.proc is not None
        try:
            status = streams.proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            status = None
        log = streams.tail(400)
        if status is None and fault == "paused" and settings.streams_runtime == "direct":
            # The direct runtime's transaction is registered with its coordinator only once the
            # first record of it is sent, and it commits every 0.5 s: a worker frozen between
            # commits (nearly always, between waves) holds no open transaction, nothing times
            # out, and it carries on. Every claim once is what is checked then.
            assert "cannot commit" not in log, f"seed {seed}: {what}\n{log}"
            what += ", no transaction open: the worker carried on"
        else:
            assert status == 1, (f"seed {seed}: {what}; the worker's exit status {status} "
                                 f"(None: still running after {STOP_WITHIN_S} s), not 1\n"
                                 f"{log}")  # fmt: skip
            assert "cannot commit" in log, f"seed {seed}: the stop does not say why\n{log}"
            streams.start()  # what its supervisor does
        feeder.join()
        assert feeder.error is None, f"seed {seed}: feeding failed: {feeder.error!r}"
        drain_and_check(settings, erp, claims, workers, seed, f"{what}; worker restarted")
