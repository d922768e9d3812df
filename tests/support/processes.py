"""Real `meterline <role>` processes for tests, started and stopped one by one or all together.

Every process gets its own data directory and log file, is started with the METERLINE_*
environment a deployment would use (tests.support.deployment), and is stopped on teardown
(SIGTERM, then SIGKILL), even when the test fails. Children are also asked (prctl
PR_SET_PDEATHSIG) to die with the test runner, so a runner killed outright leaves no orphans.
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.deployment import ADMIN_TOKEN

METERLINE = Path(sys.executable).with_name("meterline")
_PR_SET_PDEATHSIG = 1
_START_MARK = "===== start "
_live: set[subprocess.Popen[bytes]] = set()


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that has the child SIGKILLed when the test runner dies (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the child
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


@atexit.register
def _kill_leftovers() -> None:
    for popen in list(_live):
        if popen.poll() is None:
            popen.kill()
            popen.wait()


class MeterlineProcess:
    """One `meterline <role>` process; start() again after kill() to restart it."""

    def __init__(self, role: str, name: str, base_dir: Path, env: dict[str, str],
                 port: int | None = None) -> None:
        self.role = role
        self.name = name
        self.port = port
        self.data_dir = base_dir / name
        self.log_path = base_dir / f"{name}.log"
        self.env = {**env, "METERLINE_DATA_DIR": str(self.data_dir),
                    "METERLINE_GATEWAY_ID": name}
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> MeterlineProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [str(METERLINE), self.role] + (["--port", str(self.port)] if self.port else [])
        with self.log_path.open("ab") as log:
            log.write(f"\n{_START_MARK}{self.starts + 1}: {' '.join(args)} =====\n".encode())
            log.flush()
            self.popen = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=_death_signal())
        _live.add(self.popen)
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut or an OOM kill."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self._reap(10)

    def terminate(self, timeout_s: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within `timeout_s`."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self._reap(10)

    def _reap(self, timeout_s: float) -> None:
        if self.popen is not None:
            self.popen.wait(timeout_s)
            _live.discard(self.popen)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def _check_running(self) -> None:
        if not self.alive:
            code = self.popen.returncode if self.popen else None
            raise RuntimeError(f"{self.name} ({self.role}) exited with {code}:\n{self.log_tail()}")

    def wait_healthy(self, timeout_s: float = 60) -> float:
        """Waits until /healthz answers 200; returns the seconds it took."""
        if self.port is None:
            raise ValueError(f"{self.name} serves no HTTP port")
        started = time.monotonic()
        wait_healthy(self.port, timeout_s, self._check_running)
        return time.monotonic() - started

    def current_log(self) -> str:
        """The log of the latest start only."""
        return self.log_text().rpartition(_START_MARK)[2]

    def wait_log(self, text: str, timeout_s: float = 60) -> float:
        """Waits until the latest start has logged `text`; returns the seconds it took."""
        started = time.monotonic()
        while text not in self.current_log():
            self._check_running()
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{self.name} did not log {text!r} in {timeout_s} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.02)
        return time.monotonic() - started

    def client(self, token: str = ADMIN_TOKEN, timeout_s: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token}"},
                            timeout=timeout_s)


def wait_healthy(port: int, timeout_s: float = 60,
                 check: Callable[[], None] | None = None) -> None:
    """Polls http://127.0.0.1:port/healthz until it answers 200; `check` may raise to give up."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing healthy on port {port} after {timeout_s} s")
        time.sleep(0.05)


class Processes:
    """The processes of one test: spawned on demand, all stopped on exit."""

    def __init__(self, base_dir: Path, env: dict[str, str]) -> None:
        self.base_dir = base_dir
        self.env = env
        self.all: list[MeterlineProcess] = []

    def spawn(self, role: str, name: str, port: int | None = None,
              start: bool = True, **env: str) -> MeterlineProcess:
        process = MeterlineProcess(role, name, self.base_dir, {**self.env, **env}, port)
        self.all.append(process)
        return process.start() if start else process

    def stop_all(self) -> None:
        # SIGTERM everyone first so they shut down in parallel, then reap
        for process in self.all:
            if process.alive:
                process.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for process in self.all:
            process.terminate(15)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def logs(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(chars)}" for p in self.all)
