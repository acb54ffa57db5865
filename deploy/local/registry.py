"""The embedded schema registry (``erpbridge registry serve``) on 127.0.0.1, after Kafka."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from deploy.local.kafka import KafkaConfig
from deploy.local.process import ManagedProcess, Service, port_open


@dataclass(frozen=True)
class RegistryConfig:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("ERPBRIDGE_REGISTRY_PORT", "8081"))
    name: str = "schema-registry"
    env: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def registry_answers(cfg: RegistryConfig) -> bool:
    if not port_open(cfg.host, cfg.port):
        return False
    import httpx

    try:
        reply = httpx.get(f"{cfg.url}/config", timeout=3)
        return reply.status_code == 200 and "compatibilityLevel" in reply.json()
    except (httpx.HTTPError, ValueError):
        return False


def service(cfg: RegistryConfig | None = None) -> Service:
    cfg = cfg or RegistryConfig()
    return Service(
        "schema-registry", ManagedProcess(cfg.name), cfg.host, cfg.port,
        "ERPBRIDGE_REGISTRY_PORT", cfg.url, answers=lambda: registry_answers(cfg),
    )  # fmt: skip


def up(cfg: RegistryConfig | None = None) -> str:
    cfg = cfg or RegistryConfig()
    argv = [sys.executable, "-m", "erpbridge", "registry", "serve",
            "--host", cfg.host, "--port", str(cfg.port)]  # fmt: skip
    env = {"ERPBRIDGE_KAFKA_BOOTSTRAP": KafkaConfig().bootstrap, **dict(cfg.env)}  # env wins
    return service(cfg).up(lambda: argv, env=env)


def down(cfg: RegistryConfig | None = None) -> str:
    return service(cfg).down()


def status(cfg: RegistryConfig | None = None) -> str:
    return service(cfg).status()
