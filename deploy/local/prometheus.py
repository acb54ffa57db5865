"""Prometheus from Debian's packages, scraping the local workers with erpbridge's rules
(``deploy/prometheus``): ``python -m deploy.local up prometheus`` starts it beside the stack,
and tests start their own on a free port (:class:`PrometheusConfig`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy.local.process import ManagedProcess, Service, debian_binary, port_open, state_dir
from deploy.local.workers import WORKERS

RULES = Path(__file__).resolve().parents[1] / "prometheus" / "rules.yml"


def _local_workers() -> dict[str, list[str]]:
    return {f"erpbridge-{name}": [f"127.0.0.1:{port}"] for name, (_, port) in WORKERS.items()}


@dataclass(frozen=True)
class PrometheusConfig:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("ERPBRIDGE_PROMETHEUS_PORT", "9090"))
    name: str = "prometheus"  # its process and state folder (tests run their own)
    interval_s: float = 15.0  # scrape and rule evaluation
    jobs: dict[str, list[str]] = field(default_factory=_local_workers)  # job -> host:port
    rules: tuple[Path, ...] = (RULES,)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def folder(self) -> Path:
        return state_dir() / self.name


def config_text(cfg: PrometheusConfig) -> str:
    """prometheus.yml: every job's targets scraped, the rules loaded (JSON is YAML)."""
    import json

    interval = f"{cfg.interval_s:g}s"
    return json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in cfg.rules],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in sorted(cfg.jobs.items())],
    }, indent=2)  # fmt: skip


def answers(cfg: PrometheusConfig) -> bool:
    if not port_open(cfg.host, cfg.port):
        return False
    try:
        return httpx.get(f"{cfg.url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def service(cfg: PrometheusConfig | None = None) -> Service:
    cfg = cfg or PrometheusConfig()
    return Service(cfg.name, ManagedProcess(cfg.name), cfg.host, cfg.port,
                   "ERPBRIDGE_PROMETHEUS_PORT", cfg.url, answers=lambda: answers(cfg),
                   ready_timeout=60)  # fmt: skip


def up(cfg: PrometheusConfig | None = None) -> str:
    cfg = cfg or PrometheusConfig()

    def prepare() -> list[str]:
        binary = debian_binary("prometheus", "prometheus")
        cfg.folder.mkdir(parents=True, exist_ok=True)
        config = cfg.folder / "prometheus.yml"
        config.write_text(config_text(cfg))
        return [binary, f"--config.file={config}", f"--storage.tsdb.path={cfg.folder / 'data'}",
                f"--web.listen-address={cfg.host}:{cfg.port}", "--log.level=warn"]  # fmt: skip

    return service(cfg).up(prepare)


def down(cfg: PrometheusConfig | None = None) -> str:
    return service(cfg).down()


def status(cfg: PrometheusConfig | None = None) -> str:
    return service(cfg).status()


def alerts(cfg: PrometheusConfig) -> list[dict[str, Any]]:
    """The alerts pending or firing now (Prometheus' /api/v1/alerts)."""
    answer = httpx.get(f"{cfg.url}/api/v1/alerts", timeout=5).json()
    return list(answer["data"]["alerts"])


def query(cfg: PrometheusConfig, expr: str) -> dict[str, Any]:
    """An instant query's answer (status and data, or errorType and error)."""
    return dict(httpx.get(f"{cfg.url}/api/v1/query", params={"query": expr}, timeout=10).json())
