"""The containers suite: images built here from Debian's packages, run with podman."""

from __future__ import annotations

import pytest

from deploy.images.build import build
from deploy.images.engine import Engine, engine
from deploy.local.process import LaunchError


@pytest.fixture(scope="session")
def container_engine() -> Engine:
    """podman (or a Docker engine), with the project's images built; the suite is skipped, with
    the reason, only when no engine is installed or it cannot run a container here."""
    try:
        found = engine()
    except LaunchError as exc:
        pytest.skip(f"no container engine here: {exc}")
    for name in ("base", "app", "kafka", "redis"):
        build(found, name)  # already built: a lookup
    probe = found.run(["run", "--rm", "--network", "none", "localhost/erpbridge-base:bookworm",
                       "true"], check=False)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"{found.command} cannot run a container here: {probe.stderr.strip()}")
    return found
