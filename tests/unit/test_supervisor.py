"""The supervisor of `meterline up`, with stand-in children (small Python commands)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from infra.supervisor import FATAL_EXIT, Child, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def crasher(code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


def test_a_child_that_dies_is_started_again_with_a_growing_delay_and_the_others_are_left_alone() -> None:
    steady, failing = Child("steady", SLEEPER), Child("failing", crasher(1))
    supervisor = Supervisor([steady, failing], first_delay_s=0.05, max_delay_s=0.4)
    timer = threading.Timer(2.0, supervisor.stop)
    timer.start()
    assert supervisor.run() == 0
    timer.join()
    assert steady.restarts == 0 and steady.popen is not None
    assert steady.popen.returncode == -signal.SIGTERM  # stopped with the others at the end
    assert 3 <= failing.restarts <= 12  # 0.05, 0.1, 0.2, 0.4, 0.4 ... s apart, not a busy loop
    assert failing.delay_s == 0.4


def test_a_configuration_error_stops_everything_with_its_exit_code() -> None:
    steady, broken = Child("steady", SLEEPER), Child("broken", crasher(FATAL_EXIT))
    started = time.monotonic()
    assert Supervisor([steady, broken]).run() == FATAL_EXIT
    assert time.monotonic() - started < 10
    assert broken.restarts == 0
    assert steady.popen is not None and steady.popen.returncode is not None


def test_sigterm_stops_every_child_and_restores_the_signal_handler() -> None:
    children = [Child(f"c{n}", SLEEPER) for n in range(3)]
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    assert Supervisor(children).run() == 0
    timer.join()
    assert all(c.popen is not None and c.popen.returncode == -signal.SIGTERM for c in children)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout() -> None:
    stubborn = Child("stubborn", [sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    supervisor = Supervisor([stubborn], stop_timeout_s=0.5)
    timer = threading.Timer(1.0, supervisor.stop)
    timer.start()
    supervisor.run()
    timer.join()
    assert stubborn.popen is not None and stubborn.popen.returncode == -signal.SIGKILL
