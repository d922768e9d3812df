"""`meterline up`: the embedded default as supervised processes sharing one data directory.

    meterline up (this supervisor: starts, restarts and stops the others; no data)
      ├── gateway            /v1 and /api; appends every fact to the journal (fdatasync) before answering
      ├── ledger+scheduler   follows the journal from disk into the SQLite event store, exactly once
      └── projector          follows the ledger's store into chDB; answers the gateway's usage queries

The gateway keeps a core (and a GIL) to itself: the ledger's transactions and chDB's
inserts run in the other processes. A child that dies is started again (after 0.5 s,
doubling to 5 s while it keeps failing); SIGTERM or SIGINT stops them all. Each child is
asked by the kernel (PR_SET_PDEATHSIG) to die with the supervisor, so a kill -9 of `up`
leaves no orphan holding the port, the journal or chDB's directory. Nothing is lost when
any of them is killed: the journal is the log, and each follower resumes from its own
positions (the ledger's in the event store, in the same transaction as its writes; the
projector's in data_dir/projector/positions.json, with the batch it was inserting).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
FATAL_EXIT = 2  # a child's configuration error: starting it again cannot help


@dataclass
class Child:
    """One supervised process: its command, and how it has fared."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay_s: float = 0.0
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None


class Supervisor:
    """Runs `children` until SIGTERM/SIGINT (or `stop()`), starting again any that die."""

    def __init__(self, children: list[Child], first_delay_s: float = 0.5, max_delay_s: float = 5,
                 healthy_after_s: float = 30, stop_timeout_s: float = 20, poll_s: float = 0.1) -> None:
        self.children = children
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.healthy_after_s = healthy_after_s  # a child up this long starts again at once
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self.exit_code = 0
        self._stopping = False

    def run(self, on_started: Callable[[], None] | None = None) -> int:
        """Supervises until stopped; returns the exit code (2 if a child's configuration failed)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            if on_started is not None:
                on_started()
            while not self._stopping:
                self._check()
                time.sleep(self.poll_s)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def stop(self) -> None:
        self._stopping = True

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("meterline up: %s received; stopping every process", signal.Signals(signum).name)
        self._stopping = True

    def _check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            code = child.popen.poll() if child.popen is not None else 0
            if code is None:
                continue
            if code == FATAL_EXIT:
                log.error("%s (pid %s) failed on its configuration (exit 2); stopping", child.name, child.pid)
                self.exit_code = FATAL_EXIT
                self._stopping = True
                return
            ran = now - child.started_at
            child.delay_s = self.first_delay_s if ran >= self.healthy_after_s or not child.delay_s \
                else min(child.delay_s * 2, self.max_delay_s)
            child.restart_at = now + child.delay_s
            log.warning("%s (pid %s) exited with %s after %.1f s; starting it again in %.1f s",
                        child.name, child.pid, code, ran, child.delay_s)

    def _start(self, child: Child) -> None:
        child.popen = subprocess.Popen(child.args, env={**os.environ, **child.env}, stdin=subprocess.DEVNULL,
                                       start_new_session=True, preexec_fn=_die_with(os.getpid()))
        child.restarts += child.started_at > 0
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("meterline up: %s started (pid %d)", child.name, child.popen.pid)

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.popen is not None and c.popen.poll() is None]
        for child in running:
            child.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            try:
                child.popen.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) did not stop in %.0f s; killing it", child.name, child.pid,
                            self.stop_timeout_s)
                child.popen.kill()  # type: ignore[union-attr]
                child.popen.wait()  # type: ignore[union-attr]


def _die_with(parent: int) -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGKILL when the supervisor dies, even by kill -9 (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the child
    except (OSError, AttributeError):
        return lambda: None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the supervisor died before the line above: so do we
            os._exit(1)

    return hook
