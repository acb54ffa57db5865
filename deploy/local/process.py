"""Process bookkeeping shared by the local services: state folder, pidfiles, ports, waits."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Project-local, git-ignored folder for binaries, data, logs and pidfiles."""
    path = Path(os.environ.get("ERPBRIDGE_STATE_DIR", PROJECT_ROOT / ".local"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class LaunchError(RuntimeError):
    """A local service could not be installed or started; the message says why."""


def debian_install(package: str) -> None:
    """apt-get install ``package`` (as root, or with sudo)."""
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        raise LaunchError(f"{package} is missing and we are not root: apt-get install {package}")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(prefix + cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise LaunchError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")


def debian_binary(name: str, package: str) -> str:
    """``name`` from PATH, installed from Debian's ``package`` when missing."""
    found = shutil.which(name)
    if found:
        return found
    debian_install(package)
    found = shutil.which(name)
    if not found:
        raise LaunchError(f"{name} still missing after apt-get install {package}")
    return found


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux's default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free loopback ports, below the ephemeral range.

    A port the kernel hands out (bind to 0) lies in the range it also gives to every outgoing
    connection, so a busy machine's clients can take it before the server binds it: a broker
    then dies with "Address already in use". Ports below that range are taken only by servers.
    """
    low, high = 20000, _ephemeral_low() - count
    rng = random.Random(os.urandom(8))
    for _ in range(200):
        base = rng.randrange(low, max(high, low + 1))
        if all(_bindable(base + n) for n in range(count)):
            return base
    raise LaunchError(f"no {count} consecutive free ports between {low} and {high + count}")


def free_port() -> int:
    return free_ports(1)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> float:
    """Poll ``check`` until true; return the seconds it took. Fail fast if ``alive`` turns false."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise LaunchError(f"{what}: process exited during start-up{_log_tail(log)}")
        time.sleep(0.2)
    raise LaunchError(f"{what}: not ready after {timeout:.0f}s{_log_tail(log)}")


def _log_tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log.name} ---\n" + "\n".join(tail)


@dataclass(frozen=True)
class ManagedProcess:
    """A background process we started, tracked by a pidfile under the state folder."""

    name: str

    @property
    def pidfile(self) -> Path:
        return state_dir() / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return state_dir() / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))
        return proc

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait, then SIGKILL. Returns True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Service:
    """One local service: how to tell it answers, and the same up/down/status flow for all."""

    label: str
    process: ManagedProcess
    host: str
    port: int
    port_env: str
    address: str
    answers: Callable[[], bool]
    ready_timeout: float = 60.0
    stop_timeout: float = 30.0

    def up(self, prepare: Callable[[], Sequence[str]], env: dict[str, str] | None = None) -> str:
        """Start it unless it already answers. ``prepare`` installs/initialises and returns argv."""
        if self.answers():
            owner = "ours" if self.process.running() else "not started by us, reused"
            return f"{self.label}: already up at {self.address} ({owner})"
        if port_open(self.host, self.port):
            raise LaunchError(
                f"port {self.port} is taken by something that is not {self.label}; "
                f"set {self.port_env} to another port"
            )
        proc = self.process.start(prepare(), env=env)
        took = wait_until(
            self.answers,
            self.ready_timeout,
            self.label,
            alive=lambda: proc.poll() is None,
            log=self.process.logfile,
        )
        return f"{self.label}: started at {self.address} in {took:.1f}s (pid {proc.pid})"

    def down(self) -> str:
        stopped = self.process.stop(timeout=self.stop_timeout)
        return f"{self.label}: {'stopped' if stopped else 'not running'}"

    def status(self) -> str:
        pid = self.process.pid()
        state = "up" if self.answers() else "down"
        return f"{self.label}: {state} at {self.address}" + (f" (pid {pid})" if pid else "")
