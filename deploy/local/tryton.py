"""Tryton ERP on 127.0.0.1: a SQLite template built once, copied per run, served over JSON-RPC."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local.process import LaunchError, ManagedProcess, Service, port_open, state_dir

TEMPLATE_DB = "template"
MODULES = (
    "account_invoice",
    "account_payment",
    "account_product",
    "analytic_account",
    "analytic_budget",
)


@dataclass(frozen=True)
class TrytonConfig:
    host: str = os.environ.get("ERPBRIDGE_ERP_LISTEN", "127.0.0.1")
    port: int = int(os.environ.get("ERPBRIDGE_ERP_PORT", "8000"))
    database: str = os.environ.get("ERPBRIDGE_ERP_DATABASE", "erpbridge")
    user: str = "admin"
    password: str = os.environ.get("ERPBRIDGE_ERP_PASSWORD", "admin")
    name: str = "tryton"
    home: Path = field(default_factory=lambda: state_dir() / "tryton")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def db_dir(self) -> Path:
        return self.home / "db"

    @property
    def conf(self) -> Path:
        return self.home / f"{self.name}.conf"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(self.name)


def _bin(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise LaunchError(f"{name} not found: pip install -e '.[erp]' installs Tryton")
    return found


def _write_conf(cfg: TrytonConfig) -> None:
    cfg.db_dir.mkdir(parents=True, exist_ok=True)
    cfg.conf.write_text(
        "[database]\nuri = sqlite://\n"
        f"path = {cfg.db_dir}\n"
        f"[web]\nlisten = {cfg.host}:{cfg.port}\n"
        "[session]\ntimeout = 3600\n"
    )


def template_path(cfg: TrytonConfig) -> Path:
    return cfg.db_dir / f"{TEMPLATE_DB}.sqlite"


def _template_recipe() -> list[str]:
    """What the template is built from; a change to any of it rebuilds the template."""
    script = Path(__file__).with_name("tryton_template.py").read_bytes()
    year = datetime.date.today().year
    return [
        ",".join(MODULES),
        str(year - 3),
        str(year + 1),
        hashlib.sha256(script).hexdigest()[:16],
    ]


def ensure_template(cfg: TrytonConfig) -> Path:
    """Initialise the template database once (modules, company, chart, fiscal years)."""
    template = template_path(cfg)
    ready = cfg.db_dir / f"{TEMPLATE_DB}.ready"
    recipe = _template_recipe()
    if template.exists() and ready.exists() and ready.read_text().split() == recipe:
        return template
    _write_conf(cfg)
    for stale in cfg.db_dir.glob(f"{TEMPLATE_DB}.sqlite*"):
        stale.unlink()
    template.touch()
    passfile = cfg.home / "admin.pass"
    passfile.write_text(cfg.password)
    env = {**os.environ, "TRYTONPASSFILE": str(passfile)}
    first_year, last_year = recipe[1], recipe[2]
    steps = [
        [
            _bin("trytond-admin"),
            "-c",
            str(cfg.conf),
            "-d",
            TEMPLATE_DB,
            "-u",
            *MODULES,
            "--activate-dependencies",
            "--email",
            "admin@example.com",
        ],
        [
            sys.executable,
            "-m",
            "deploy.local.tryton_template",
            str(cfg.conf),
            TEMPLATE_DB,
            first_year,
            last_year,
        ],
    ]
    for cmd in steps:
        _run_step(cmd, env)
    ready.write_text("\n".join(recipe))
    return template


def _run_step(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    if result.returncode != 0:
        raise LaunchError(
            f"Tryton template step failed: {' '.join(cmd[:3])}\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )


def _ensure_database(cfg: TrytonConfig, fresh: bool) -> None:
    """Copy the template to ``cfg.database`` when missing (or ``fresh``); a database copied
    from an older template is upgraded in place to the current books, keeping its data."""
    stamp = cfg.db_dir / f"{cfg.database}.recipe"
    recipe = "\n".join(_template_recipe())
    if fresh or not (cfg.db_dir / f"{cfg.database}.sqlite").exists():
        copy_database(cfg, cfg.database)
    elif not stamp.exists() or stamp.read_text() != recipe:
        module = "deploy.local.tryton_template"
        _run_step([sys.executable, "-m", module, str(cfg.conf), cfg.database, "--upgrade"])
    stamp.write_text(recipe)


def copy_database(cfg: TrytonConfig, database: str) -> Path:
    """Copy the template to ``database`` (sqlite backup API: consistent even while served)."""
    target = cfg.db_dir / f"{database}.sqlite"
    for stale in cfg.db_dir.glob(f"{database}.sqlite*"):
        stale.unlink()
    with sqlite3.connect(template_path(cfg)) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def erp_answers(cfg: TrytonConfig) -> bool:
    """True when the server logs us in to ``cfg.database`` (so the database is served)."""
    if not port_open(cfg.host, cfg.port):
        return False
    import httpx

    try:
        reply = httpx.post(
            f"{cfg.url}/{cfg.database}/rpc/",
            timeout=5,
            json={
                "id": 0,
                "method": "common.db.login",
                "params": [cfg.user, {"password": cfg.password}, "en"],
            },
        )
        return reply.status_code == 200 and bool(reply.json().get("result"))
    except (httpx.HTTPError, ValueError):
        return False


def service(cfg: TrytonConfig) -> Service:
    return Service(
        "tryton",
        cfg.process,
        cfg.host,
        cfg.port,
        "ERPBRIDGE_ERP_PORT",
        f"{cfg.url}/{cfg.database}",
        answers=lambda: erp_answers(cfg),
    )


def up(cfg: TrytonConfig | None = None, fresh: bool = False) -> str:
    """Serve ``cfg.database`` (copied from the template when missing or ``fresh``)."""
    cfg = cfg or TrytonConfig()

    def prepare() -> list[str]:
        ensure_template(cfg)
        _write_conf(cfg)
        _ensure_database(cfg, fresh)
        return [_bin("trytond"), "-c", str(cfg.conf), "-d", cfg.database]

    return service(cfg).up(prepare)


def serve_foreground(cfg: TrytonConfig | None = None) -> None:
    """For containers: prepare the database, then become the trytond process."""
    cfg = cfg or TrytonConfig()
    ensure_template(cfg)
    _write_conf(cfg)
    _ensure_database(cfg, fresh=False)
    trytond = _bin("trytond")
    os.execv(trytond, [trytond, "-c", str(cfg.conf), "-d", cfg.database])


def down(cfg: TrytonConfig | None = None) -> str:
    return service(cfg or TrytonConfig()).down()


def status(cfg: TrytonConfig | None = None) -> str:
    return service(cfg or TrytonConfig()).status()
