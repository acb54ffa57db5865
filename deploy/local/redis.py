"""Redis from Debian's packages, on loopback, data under the state folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from deploy.local.process import LaunchError, ManagedProcess, port_open, state_dir, wait_until

SERVER = ManagedProcess("redis")


@dataclass(frozen=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("ERPBRIDGE_REDIS_PORT", "6379"))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def redis_answers(cfg: RedisConfig) -> bool:
    if not port_open(cfg.host, cfg.port):
        return False
    import redis

    try:
        return bool(redis.Redis(host=cfg.host, port=cfg.port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_installed() -> str:
    binary = shutil.which("redis-server")
    if binary:
        return binary
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        raise LaunchError(
            "redis-server is missing and we are not root: apt-get install redis-server"
        )
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(prefix + cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise LaunchError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    binary = shutil.which("redis-server")
    if not binary:
        raise LaunchError("redis-server still missing after apt-get install redis-server")
    return binary


def up(cfg: RedisConfig | None = None) -> str:
    cfg = cfg or RedisConfig()
    if redis_answers(cfg):
        owner = "ours" if SERVER.running() else "not started by us, reused"
        return f"redis: already up at {cfg.url} ({owner})"
    if port_open(cfg.host, cfg.port):
        raise LaunchError(
            f"port {cfg.port} is taken by something that is not Redis; "
            "set ERPBRIDGE_REDIS_PORT to another port"
        )
    binary = ensure_installed()
    data = state_dir() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = SERVER.start(
        [
            binary,
            "--bind",
            cfg.host,
            "--port",
            str(cfg.port),
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
    )
    took = wait_until(
        lambda: redis_answers(cfg),
        20,
        "redis",
        alive=lambda: proc.poll() is None,
        log=SERVER.logfile,
    )
    return f"redis: started at {cfg.url} in {took:.1f}s (pid {proc.pid})"


def down() -> str:
    return "redis: stopped" if SERVER.stop() else "redis: not running"


def status(cfg: RedisConfig | None = None) -> str:
    cfg = cfg or RedisConfig()
    return f"redis: {'up' if redis_answers(cfg) else 'down'} at {cfg.url}"
