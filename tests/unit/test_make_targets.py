"""What `make run` and `make test` would do on a fresh machine, read with `make -n -B` (nothing
is run): the demo never installs a browser (only the tests need one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str) -> str:
    done = subprocess.run(["make", "-n", "-B", "--no-print-directory", target], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_run_installs_no_browser_and_make_test_does() -> None:
    run = _dry_run("run")
    assert "chromium" not in run and "browser-deps" not in run and "fonts-noto-cjk" not in run
    assert "deploy.local workers-up" in run and "erpbridge demo" in run
    assert "chromium" in _dry_run("test")
