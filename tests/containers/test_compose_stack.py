"""The compose stack, run for real (issue 28): docker-compose.yml started with podman-compose on
the images `make image` built from Debian's packages; the demo fed through it; its 5 claims read
back from the stack's own Tryton, each booked once; then the workers stopped as a deploy stops
them (SIGTERM, 30 s grace), each exiting by itself.
"""

from __future__ import annotations

import time

import pytest

from connectors.erp.tryton import TrytonSettings
from deploy.images.compose import PORTS, Stack
from deploy.images.engine import Engine
from deploy.local.process import LaunchError, free_port
from tests.containers.demo import demo_booking_problems

pytestmark = pytest.mark.containers


@pytest.fixture
def stack(container_engine: Engine) -> Stack:
    ports = {name: str(free_port()) for name in PORTS}  # every published port, moved
    stack = Stack(container_engine, project="erpbridge-test", env=ports)
    stack.down(volumes=True)  # what an earlier run left
    yield stack
    stack.down(volumes=True)


def test_the_compose_stack_books_the_demo_and_its_workers_stop_on_sigterm(stack: Stack) -> None:
    healthy = stack.up()
    print("healthy after (s):", {k: round(v, 1) for k, v in healthy.items()})
    try:
        demo = stack.demo(capture=True)
    except LaunchError as exc:  # what the workers said, and how long a name takes to resolve
        raise AssertionError(
            (
                str(exc)[-2000:],
                stack.logs("streams", 60),
                stack.logs("sink-tryton", 30),
                _resolving(stack),
            )
        ) from None
    print(demo.stdout[-3000:])
    erp = TrytonSettings(url=f"http://127.0.0.1:{stack.env['ERPBRIDGE_ERP_PORT']}",
                         database="erpbridge")  # fmt: skip
    problems = demo_booking_problems(erp)
    assert not problems, (problems, stack.logs("sink-tryton"))
    for service in ("streams", "sink-tryton", "books"):
        started = time.monotonic()
        stack.engine.run(["stop", "-t", "30", stack.container(service)], timeout=60)
        took = time.monotonic() - started
        state = stack.state(service)
        print(f"{service}: stopped in {took:.1f} s, exit code {state['ExitCode']}")
        assert state["ExitCode"] == 0 and took < 30, (service, took, state, stack.logs(service))


def _resolving(stack: Stack) -> str:
    """Seconds the streams container takes to resolve the registry's name (podman's DNS server,
    aardvark-dns, drops queries while it reloads as containers come and go)."""
    probe = (
        "import socket, time; t = time.monotonic(); socket.getaddrinfo('schema-registry', "
        "8081); print(f'schema-registry resolved in {time.monotonic() - t:.2f} s')"
    )
    out = stack.engine.run(["exec", stack.container("streams"), "python3", "-c", probe],
                           check=False, timeout=120)  # fmt: skip
    return (out.stdout + out.stderr).strip()
