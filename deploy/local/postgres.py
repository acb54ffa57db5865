"""PostgreSQL from Debian's packages, on loopback: the books' production engine
(``ERPBRIDGE_BOOKS_URL``). Not part of the default stack (the books default to an embedded DuckDB
file); ``python -m deploy.local postgres-up`` starts one, and the tests start a throw-away cluster
of their own through :func:`service`.

PostgreSQL refuses to run as root: as root, the cluster is initialised and run as the
``postgres`` user the Debian package creates (``setpriv``, no extra process in between).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local.process import LaunchError, ManagedProcess, Service, debian_install, state_dir

SERVER = ManagedProcess("postgres")
USER = "erpbridge"
DATABASE = "erpbridge"


@dataclass(frozen=True)
class PostgresConfig:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("ERPBRIDGE_POSTGRES_PORT", "5433"))  # 5432 may be the system's
    data: Path | None = None  # default: <state>/postgres

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@{self.host}:{self.port}/{DATABASE}"

    def data_dir(self) -> Path:
        return self.data or state_dir() / "postgres"


def binary(name: str) -> str:
    """``initdb``/``postgres`` from PATH or Debian's versioned folder, installing if missing."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                                   reverse=True)), None)  # fmt: skip
    if found:
        return found
    debian_install("postgresql")
    return binary(name)


def _as_owner(argv: Sequence[str]) -> list[str]:
    if os.geteuid() != 0:
        return list(argv)
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def _owner_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise LaunchError("running as root, and there is no postgres user to run PostgreSQL as "
                          "(apt-get install postgresql creates it)") from None  # fmt: skip
    return entry.pw_uid, entry.pw_gid


def initialise(data: Path) -> None:
    """``initdb`` once (trust on loopback only: a local, throw-away engine)."""
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    owner = _owner_ids()
    if owner is not None:
        os.chown(data, *owner)
    done = subprocess.run(
        _as_owner([binary("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                   "--no-locale"]), capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise LaunchError(f"initdb failed:\n{done.stderr[-2000:]}")


def server_argv(cfg: PostgresConfig) -> list[str]:
    data = cfg.data_dir()
    initialise(data)
    return _as_owner([binary("postgres"), "-D", str(data), "-h", cfg.host, "-p", str(cfg.port),
                      "-k", str(data)])  # fmt: skip


def answers(cfg: PostgresConfig) -> bool:
    """It answers and the database exists (created on first answer)."""
    import psycopg

    try:
        with psycopg.connect(f"postgresql://{USER}@{cfg.host}:{cfg.port}/postgres",
                             autocommit=True, connect_timeout=2) as conn:  # fmt: skip
            found = conn.execute("select 1 from pg_database where datname = %s", [DATABASE])
            if found.fetchone() is None:
                conn.execute(f"create database {DATABASE}")
            return True
    except psycopg.OperationalError:
        return False


def service(cfg: PostgresConfig | None = None, process: ManagedProcess = SERVER) -> Service:
    cfg = cfg or PostgresConfig()
    return Service("postgres", process, cfg.host, cfg.port, "ERPBRIDGE_POSTGRES_PORT", cfg.url,
                   answers=lambda: answers(cfg), ready_timeout=60)  # fmt: skip


def up(cfg: PostgresConfig | None = None) -> str:
    cfg = cfg or PostgresConfig()
    return service(cfg).up(lambda: server_argv(cfg))


def down() -> str:
    return service().down()


def status(cfg: PostgresConfig | None = None) -> str:
    return service(cfg).status()
