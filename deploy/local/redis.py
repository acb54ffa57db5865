"""Redis from Debian's packages, on loopback, data under the state folder."""

from __future__ import annotations

import os
from dataclasses import dataclass

from deploy.local.process import ManagedProcess, Service, debian_binary, port_open, state_dir

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
    return debian_binary("redis-server", "redis-server")


def service(cfg: RedisConfig | None = None) -> Service:
    cfg = cfg or RedisConfig()
    return Service(
        "redis",
        SERVER,
        cfg.host,
        cfg.port,
        "ERPBRIDGE_REDIS_PORT",
        cfg.url,
        answers=lambda: redis_answers(cfg),
        ready_timeout=20,
    )


def up(cfg: RedisConfig | None = None) -> str:
    cfg = cfg or RedisConfig()

    def prepare() -> list[str]:
        data = state_dir() / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # No persistence: the local Redis is a cache; Kafka and the ERP hold the truth.
        return [
            ensure_installed(), "--bind", cfg.host, "--port", str(cfg.port), "--dir", str(data),
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        ]  # fmt: skip

    return service(cfg).up(prepare)


def down() -> str:
    return service().down()


def status(cfg: RedisConfig | None = None) -> str:
    return service(cfg).status()
