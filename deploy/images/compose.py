"""The compose stack with podman-compose and the images of ``make image``:
``python -m deploy.images compose up|demo|down``.

``up`` starts the stack, then waits until the broker, Redis, the registry, Tryton and every
worker pass their health checks: podman before 4.6 ignores ``condition: service_healthy``, and
without systemd it runs health checks only when asked, so here they are asked
(``podman healthcheck run``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from deploy.images.build import write_env
from deploy.images.engine import Engine
from deploy.local.process import PROJECT_ROOT, LaunchError

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
# the long-running services `up` starts (the profiles stay off) and those it waits for, in order
SERVICES = ("kafka", "redis", "schema-registry", "tryton", "streams", "sink-tryton", "books")
HEALTHY = ("kafka", "redis", "schema-registry", "tryton", "streams", "sink-tryton")
# The compose file's port variables, set here too: podman-compose 1.6 substitutes a default
# such as ${ERPBRIDGE_KAFKA_PORT:-9092} as a number and then fails to join it into the string
# (TypeError: sequence item 1: expected str instance, int found).
PORTS = {
    "ERPBRIDGE_KAFKA_PORT": "9092",
    "ERPBRIDGE_REGISTRY_PORT": "8081",
    "ERPBRIDGE_REDIS_PORT": "6379",
    "ERPBRIDGE_ERP_PORT": "8000",
    "ERPBRIDGE_STREAMS_METRICS_PORT": "9464",
    "ERPBRIDGE_SINK_METRICS_PORT": "9465",
}


def service_environment(service: str) -> dict[str, str]:
    """A service's environment as the compose file sets it, each ``${VAR:-default}`` at its
    default: the settings that run that service, for whoever runs it without compose."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    environment = compose["services"][service].get("environment", {})
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
            for key, value in environment.items()}  # fmt: skip


@dataclass(frozen=True)
class Stack:
    engine: Engine
    project: str = "erpbridge"
    env: Mapping[str, str] = field(default_factory=dict)  # compose variables (ports...)

    def compose(self, args: Sequence[str], *, capture: bool = False,
                timeout: float | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        command = [sys.executable, "-m", "podman_compose", "--env-file", str(write_env()),
                   "-p", self.project, "-f", str(COMPOSE_FILE), *args]  # fmt: skip
        result = subprocess.run(command, env={**PORTS, **self.engine.environ(), **self.env},
                                capture_output=capture, text=True, check=False,
                                timeout=timeout, cwd=PROJECT_ROOT)  # fmt: skip
        if result.returncode != 0:
            said = ((result.stdout or "") + (result.stderr or ""))[-4000:] if capture else ""
            raise LaunchError(f"podman-compose {' '.join(args)} failed "
                              f"({result.returncode}){said}")  # fmt: skip
        return result

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def healthy(self, service: str) -> bool:
        """Run the service's health check now; true when it passes."""
        return self.engine.run(["healthcheck", "run", self.container(service)], check=False,
                               timeout=60).returncode == 0  # fmt: skip

    def wait_healthy(self, services: Sequence[str] = HEALTHY,
                     timeout: float = 300) -> dict[str, float]:  # fmt: skip
        """Ask each service's health check until it passes; the seconds each took."""
        start, took = time.monotonic(), {}
        for service in services:
            while not self.healthy(service):
                if time.monotonic() - start > timeout:
                    raise LaunchError(f"{service}: not healthy within {timeout:.0f} s\n"
                                      f"{self.logs(service)}")  # fmt: skip
                time.sleep(2)
            took[service] = time.monotonic() - start
        return took

    def logs(self, service: str, lines: int = 40) -> str:
        out = self.engine.run(["logs", "--tail", str(lines), self.container(service)],
                              check=False)  # fmt: skip
        return f"--- {service} ---\n{out.stdout}{out.stderr}"

    def state(self, service: str) -> dict[str, object]:
        """The container's State (Status, ExitCode, ...)."""
        out = self.engine.run(["inspect", "--format", "{{json .State}}",
                               self.container(service)])  # fmt: skip
        return dict(json.loads(out.stdout))

    def up(self, timeout: float = 300) -> dict[str, float]:
        self.compose(["up", "-d", *SERVICES], capture=True)
        return self.wait_healthy(timeout=timeout)

    def demo(self, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return self.compose(["--profile", "demo", "run", "--rm", "demo"], capture=capture,
                            timeout=600)  # fmt: skip

    def down(self, volumes: bool = False) -> None:
        self.compose(["--profile", "demo", "down", "-t", "30", *(["-v"] if volumes else [])],
                     capture=True)  # fmt: skip
