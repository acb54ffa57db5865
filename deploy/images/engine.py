"""The container engine (podman here; Docker where one runs) and the settings a host without
systemd needs.

On a host whose init is not systemd, podman's default cgroup manager (systemd) is absent, and
where the hard open-files limit is below podman's default container limit (1,048,576), the
runtime fails at ``setrlimit`` before the container starts. Unless ``CONTAINERS_CONF`` is set,
:func:`engine` writes a ``containers.conf`` into the state folder with the cgroupfs manager and
the host's own hard limits, and points podman at it.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.process import LaunchError, state_dir

NPROC = 16384


@dataclass(frozen=True)
class Engine:
    command: str  # "podman" or "docker"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_podman(self) -> bool:
        return Path(self.command).name == "podman"

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(
        self, args: Sequence[str], *, check: bool = True, capture: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        result = subprocess.run(
            [self.command, *args], env=self.environ(), capture_output=capture, text=True,
            check=False, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            said = ((result.stdout or "")[-2000:] + (result.stderr or "")[-3000:]).strip()
            raise LaunchError(f"{self.command} {' '.join(args[:3])}... failed:\n{said}")
        return result

    def has_image(self, name: str) -> bool:
        return self.run(["image", "exists" if self.is_podman else "inspect", name],
                        check=False).returncode == 0  # fmt: skip

    def image_label(self, name: str, key: str) -> str | None:
        """A label of image ``name`` (None: no such image or label)."""
        out = self.run(["image", "inspect", "--format", f'{{{{index .Labels "{key}"}}}}', name],
                       check=False)  # fmt: skip
        value = out.stdout.strip()
        return value if out.returncode == 0 and value and value != "<no value>" else None

    def image_size(self, name: str) -> int:
        out = self.run(["image", "inspect", "--format", "{{.Size}}", name]).stdout.strip()
        return int(out or 0)


def containers_conf() -> Path:
    """A containers.conf for this host: cgroupfs without systemd, the host's hard limits."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # the runtime may not raise a container's process limit near the host's own (measured in a
    # sandboxed host: nproc 16384 taken, 50000 refused with the hard limit at 96367)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], NPROC)
    limits = [f'"nofile={_limit(nofile)}:{_limit(nofile)}"', f'"nproc={nproc}:{nproc}"']
    lines = ["[containers]", f"default_ulimits = [{', '.join(limits)}]", "", "[engine]"]
    if not Path("/run/systemd/system").is_dir():
        lines += ['cgroup_manager = "cgroupfs"', 'events_logger = "file"']
    path = state_dir() / "containers" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _limit(value: int) -> int:
    return 1048576 if value == resource.RLIM_INFINITY else min(value, 1048576)


def engine() -> Engine:
    """podman when installed (with :func:`containers_conf` unless CONTAINERS_CONF is set), else
    a Docker engine that answers; LaunchError says what is missing."""
    podman = shutil.which("podman")
    if podman:
        env = {} if os.environ.get("CONTAINERS_CONF") else {
            "CONTAINERS_CONF": str(containers_conf())}  # fmt: skip
        return Engine(podman, env)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True,
                                 check=False).returncode == 0:  # fmt: skip
        return Engine(docker)
    raise LaunchError(
        "no container engine: install podman (make container-deps) or start a Docker engine"
    )
