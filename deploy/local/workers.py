"""The pipeline's workers (stream processors, ERP sink) as background processes for ``make run``."""

from __future__ import annotations

import shutil
import sys

from deploy.local.process import LaunchError, ManagedProcess

WORKERS: dict[str, list[str]] = {
    "streams": ["streams"],
    "sink-tryton": ["sink", "tryton"],
}


def _erpbridge() -> list[str]:
    found = shutil.which("erpbridge")
    return [found] if found else [sys.executable, "-m", "erpbridge"]


def up() -> list[str]:
    lines = []
    for name, args in WORKERS.items():
        proc = ManagedProcess(f"worker-{name}")
        if proc.running():
            lines.append(f"worker {name}: already running (pid {proc.pid()})")
            continue
        started = proc.start([*_erpbridge(), *args])
        if started.poll() is not None:
            raise LaunchError(f"worker {name} exited at once; see {proc.logfile}")
        lines.append(f"worker {name}: started (pid {started.pid}, log {proc.logfile.name})")
    return lines


def down() -> list[str]:
    return [f"worker {name}: {'stopped' if ManagedProcess(f'worker-{name}').stop() else 'not running'}"
            for name in WORKERS]


def status() -> list[str]:
    lines = []
    for name in WORKERS:
        pid = ManagedProcess(f"worker-{name}").pid()
        lines.append(f"worker {name}: {'running (pid %d)' % pid if pid else 'down'}")
    return lines
