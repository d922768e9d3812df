"""Real `meterline <role>` processes on a Kafka-protocol broker and a fresh PostgreSQL database.

Every process gets its own data directory and log file, is started with the METERLINE_*
environment a deployment would use, and is stopped on teardown (SIGTERM, then SIGKILL),
even when the test fails. Children are also asked (prctl PR_SET_PDEATHSIG) to die with
the test runner, so a runner killed outright leaves no orphans.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from domain.ports.bus import BusMessage
from testkit.postgres import temporary_database

if TYPE_CHECKING:
    from domain.services.ledger import Ledger

ADMIN_TOKEN = "proc-admin-token-0123456789abcdef"
KEY_SECRET = "proc-key-secret-0123456789abcdef0123456789abcdef"
METERLINE = Path(sys.executable).with_name("meterline")
_PR_SET_PDEATHSIG = 1
_START_MARK = "===== start "
_live: set[subprocess.Popen[bytes]] = set()


# ----- PostgreSQL ------------------------------------------------------------------------

@contextmanager
def fresh_database(prefix: str = "meterline_proc") -> Iterator[str]:
    """A new, empty database on the local server; dropped (WITH FORCE) afterwards."""
    with temporary_database(prefix) as url:
        yield url


@contextmanager
def ledger_store(database_url: str) -> Iterator[Ledger]:
    """The ledger application on `database_url`, read from the test process.

    Opening it creates the tables, so open it before starting processes on a fresh
    database, or after they are up.
    """
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications, postgres_env

    registry, ledger = open_applications(postgres_env(database_url), SystemClock())
    try:
        yield ledger
    finally:
        ledger.close()
        registry.close()


def stored_facts(ledger: Ledger) -> list[dict[str, Any]]:
    """The data of every RequestMetered fact in the ledger, in recording order."""
    return [fact.to_data() for fact in ledger.metered_facts()]


# ----- configuration ---------------------------------------------------------------------

def write_config(path: Path, upstream_url: str, max_output_tokens: int = 64) -> Path:
    """One chat model 'sim' at $1 / $2 per million input / output tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""[[models]]
name = "sim"
upstream_url = "{upstream_url}"
upstream_model = "sim-model"
input_price_per_million = "1"
output_price_per_million = "2"
max_output_tokens = {max_output_tokens}
""")
    return path


def meterline_env(bootstrap: str, database_url: str, config: Path, **extra: str) -> dict[str, str]:
    """The environment of a distributed deployment: Kafka bus, PostgreSQL event store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update(METERLINE_BUS="kafka", METERLINE_KAFKA_BOOTSTRAP=bootstrap,
               METERLINE_DATABASE_URL=database_url, METERLINE_ADMIN_TOKEN=ADMIN_TOKEN,
               METERLINE_KEY_SECRET=KEY_SECRET, METERLINE_CONFIG=str(config),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


# ----- processes -------------------------------------------------------------------------

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


# ----- a bus client on its own event loop --------------------------------------------------

class BusThread:
    """A KafkaBus run on an event loop in a thread, for synchronous tests."""

    def __init__(self, bootstrap: str, partitions: dict[str, int] | None = None) -> None:
        from adapters.bus.kafka import KafkaBus
        self.bus = KafkaBus(bootstrap, partitions=partitions, client_id="test-publisher")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bus", daemon=True)

    def run(self, coroutine: Any, timeout_s: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout_s)

    def publish(self, topic: str, messages: Sequence[BusMessage], chunk: int = 500) -> None:
        for start in range(0, len(messages), chunk):
            self.run(self.bus.publish(topic, messages[start:start + chunk]))

    def read_all(self, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
        """Every delivery on `topic` from the beginning, once `expected` have arrived."""
        return self.run(self._read_all(topic, expected, timeout_s), timeout_s + 10)

    async def _read_all(self, topic: str, expected: int, timeout_s: float) -> list[Any]:
        consumer = self.bus.consumer(topic, f"test-reader-{uuid.uuid4().hex[:8]}")
        await consumer.start()
        try:
            for partition in await consumer.partitions():
                consumer.seek(partition, 0)
            deliveries: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                fetched = await consumer.fetch(10_000, 300)
                deliveries += fetched
                if len(deliveries) >= expected and not fetched:
                    break  # all that was expected, and then a quiet fetch: no surplus pending
            return deliveries
        finally:
            await consumer.stop()

    def __enter__(self) -> BusThread:
        self._thread.start()
        self.run(self.bus.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.bus.stop(), 15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
