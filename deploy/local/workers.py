"""The pipeline's workers (stream processors, ERP sink) as background processes for ``make run``."""

from __future__ import annotations

import shutil
import sys

from deploy.local.process import LaunchError, ManagedProcess

# name -> (erpbridge arguments, Prometheus port)
WORKERS: dict[str, tuple[list[str], int]] = {
    "streams": (["streams"], 9464),
    "sink-tryton": (["sink", "tryton"], 9465),
}


def _erpbridge() -> list[str]:
    found = shutil.which("erpbridge")
    return [found] if found else [sys.executable, "-m", "erpbridge"]


def up() -> list[str]:
    lines = []
    for name, (args, metrics_port) in WORKERS.items():
        proc = ManagedProcess(f"worker-{name}")
        if proc.running():
            lines.append(f"worker {name}: already running (pid {proc.pid()})")
            continue
        started = proc.start(
            [*_erpbridge(), *args], env={"ERPBRIDGE_METRICS_PORT": str(metrics_port)}
        )
        if started.poll() is not None:
            raise LaunchError(f"worker {name} exited at once; see {proc.logfile}")
        lines.append(
            f"worker {name}: started (pid {started.pid}, log {proc.logfile.name}, "
            f"metrics 127.0.0.1:{metrics_port}/metrics)"
        )
    return lines


def down() -> list[str]:
    return [
        f"worker {name}: {'stopped' if ManagedProcess(f'worker-{name}').stop() else 'not running'}"
        for name in WORKERS
    ]


def status() -> list[str]:
    lines = []
    for name in WORKERS:
        pid = ManagedProcess(f"worker-{name}").pid()
        lines.append(f"worker {name}: " + (f"running (pid {pid})" if pid else "down"))
    return lines
