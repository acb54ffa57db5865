"""podman's Docker-compatible API on a socket in the state folder, for Docker clients
(testcontainers, the docker SDK): ``python -m deploy.images docker-api up|down``; ``up`` prints
the ``DOCKER_HOST`` to export.
"""

from __future__ import annotations

from deploy.images.engine import Engine
from deploy.local.process import LaunchError, ManagedProcess, state_dir, wait_until

SERVICE = ManagedProcess("podman-docker-api")


def socket_path() -> str:
    return str(state_dir() / "run" / "podman.sock")


def docker_host() -> str:
    return f"unix://{socket_path()}"


def answers() -> bool:
    try:
        import docker

        return bool(docker.DockerClient(base_url=docker_host(), timeout=3).ping())
    except Exception:  # noqa: BLE001  no socket or no answer: not up
        return False


def up(engine: Engine) -> str:
    if not engine.is_podman:
        raise LaunchError("the Docker API socket is podman's; a Docker engine has its own")
    if answers():
        return f"podman Docker API: already up, DOCKER_HOST={docker_host()}"
    proc = SERVICE.start([engine.command, "system", "service", "--time=0", docker_host()],
                         env=engine.env)  # fmt: skip
    wait_until(answers, 30, "podman system service", alive=lambda: proc.poll() is None,
               log=SERVICE.logfile)  # fmt: skip
    return f"podman Docker API: up (pid {proc.pid}), DOCKER_HOST={docker_host()}"


def down() -> str:
    return "podman Docker API: " + ("stopped" if SERVICE.stop() else "not running")
