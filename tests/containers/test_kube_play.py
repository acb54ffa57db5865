"""The Kubernetes manifests played with podman (issue 28): ``deploy/k8s`` rendered into what
``podman kube play`` takes (:mod:`deploy.images.kube_play`) and played on the images built
here; the demo books its 5 claims; then, while 150 more claims come in waves, one streams pod is
deleted (SIGTERM, 30 s grace) and recreated on its own volume as its StatefulSet would, and every
claim is still posted and booked exactly once. The seed is printed; replay with
``ERPBRIDGE_CHAOS_SEED=N``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from connectors.erp.tryton import TrytonSettings
from deploy.images.engine import Engine
from deploy.images.kube_play import NETWORK, KubePlay, play
from deploy.local.process import free_port
from deploy.local.tryton import TrytonConfig, erp_answers
from erpbridge.config import Settings
from ops.audit import Role
from ops.auth import new_token
from tests.containers.demo import CLAIMS as DEMO_CLAIMS
from tests.containers.demo import demo_booking_problems
from tests.integration.claim_load import Feeder, drain_and_check, workload

pytestmark = pytest.mark.containers

CLAIMS = int(os.environ.get("ERPBRIDGE_KUBE_CLAIMS", "150"))
WAVES, WAVE_GAP_S = 8, 5.0


@pytest.fixture
def kube(container_engine: Engine) -> Iterator[tuple[KubePlay, dict[str, int]]]:
    ports = {"kafka": free_port(), "registry": free_port(), "tryton": free_port()}
    host_listener = {  # the broker published to the host, for the test's feeder
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:9094",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://kafka:9092,HOST://127.0.0.1:{ports['kafka']}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "HOST:PLAINTEXT",
    }
    _, stored = new_token(Role("viewer"))  # the ops console refuses to start without one
    tokens = json.dumps({"test": stored.model_dump(mode="json")})
    played = play(container_engine,
                  host_ports={"kafka": {9094: ports["kafka"]},
                              "schema-registry": {8081: ports["registry"]},
                              "tryton": {8000: ports["tryton"]}},
                  overrides={"kafka": host_listener,
                             "ops": {"ERPBRIDGE_OPS_TOKENS": tokens}})  # fmt: skip
    played.down()  # what an earlier run left
    played.up()
    yield played, ports
    played.down()


def ready(kube: KubePlay, pod: str, what: str = "readyz") -> bool:
    probe = kube.engine.run(["exec", kube.container(pod), "python3", "-m",
                             "deploy.images.probe", what], check=False, timeout=30)  # fmt: skip
    return probe.returncode == 0


def wait_ready(kube: KubePlay, pods: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for pod in pods:
        while not ready(kube, pod):
            if time.monotonic() > deadline:
                logs = kube.engine.run(["logs", "--tail", "40", kube.container(pod)], check=False)
                raise AssertionError(f"{pod} not ready in {timeout:.0f} s\n{logs.stdout}"
                                     f"{logs.stderr}")  # fmt: skip
            time.sleep(3)


def test_the_manifests_played_book_the_demo_and_a_deleted_streams_pod_loses_nothing(
    kube: tuple[KubePlay, dict[str, int]],
) -> None:
    played, ports = kube
    workers = ["streams-0", "streams-1", "sink-tryton-0", "sink-tryton-1"]
    wait_ready(played, workers)
    tryton = TrytonConfig(host="127.0.0.1", port=ports["tryton"], database="erpbridge",
                          password=played.rendering.env["ERPBRIDGE_ERP_PASSWORD"])  # fmt: skip
    deadline = time.monotonic() + 600  # a first start builds the database (minutes when busy)
    while not erp_answers(tryton):
        assert time.monotonic() < deadline, "Tryton did not answer in 600 s"
        time.sleep(5)
    env = [arg for key, value in played.rendering.env.items() for arg in ("-e", f"{key}={value}")]
    demo = played.engine.run(check=False, args=
        # the demo's source archives the originals where the sinks read them: the archive claim
        ["run", "--rm", "--network", NETWORK, "-v", "archive:/archive", *env,
         "localhost/erpbridge:latest", "demo",
         "samples/claims.csv", "--approvals", "samples/approvals.jsonl", "--invoices",
         "samples/einvoices.xml", "--timeout", "180"], timeout=300)  # fmt: skip
    print(demo.stdout[-2500:])
    assert demo.returncode == 0, f"{demo.stdout[-2500:]}{demo.stderr[-1500:]}\n" + "\n".join(
        played.logs(pod) for pod in workers
    )
    erp = TrytonSettings(url=f"http://127.0.0.1:{ports['tryton']}", database="erpbridge")
    problems = demo_booking_problems(erp)
    assert not problems, problems

    seed = int(os.environ.get("ERPBRIDGE_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"kube play: seed {seed} ({CLAIMS} claims; streams-1 deleted under load)")
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{ports['kafka']}",
                        schema_registry_url=f"http://127.0.0.1:{ports['registry']}")  # fmt: skip
    claims = workload(random.Random(seed), f"{seed:06d}", CLAIMS, WAVES)
    feeder = Feeder(settings, claims, random.Random(seed + 1), WAVE_GAP_S)
    feeder.start()
    time.sleep(12)
    started = time.monotonic()
    stopped = played.delete_pod("streams-1")
    played.recreate("streams-1")
    wait_ready(played, ["streams-1"])
    print(f"streams-1 deleted in {stopped.seconds:.1f} s (exit {stopped.exit_code}), back and "
          f"ready {time.monotonic() - started:.1f} s after the delete began")  # fmt: skip
    feeder.join()
    assert feeder.error is None, f"seed {seed}: feeding failed: {feeder.error!r}"
    print("restarts after an exit (a broken transaction exits 1): "
          + ", ".join(f"{pod} {played.restarts(pod)}" for pod in workers))  # fmt: skip
    # first what a stop must never cost, then how long it took
    drain_and_check(settings, SimpleNamespace(settings=erp), claims, [], seed,
                    f"streams-1 deleted ({stopped.seconds:.1f} s, exit {stopped.exit_code}) "
                    "and recreated", earlier=DEMO_CLAIMS)  # fmt: skip
    assert stopped.exit_code == 0 and stopped.seconds < 30, (
        "\n".join(played.logs(pod) for pod in workers)
        + f"streams-1 did not stop by itself within its 30 s grace: {stopped.seconds:.1f} s, "
        f"exit {stopped.exit_code}\n{stopped.log_tail}")  # fmt: skip
