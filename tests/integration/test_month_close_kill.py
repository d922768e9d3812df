"""A month close killed (-9) at any moment leaves the month either open or closed whole.

`meterline period close` runs as a real process on a data directory with March's traffic and
is SIGKILLed while it renders, and the moment its billing store's files change (inside the
sealing transaction, or just after it commits). After every kill the billing store must hold
no close of March, or a close whose manifest names exactly the sealed files present, each
with the SHA-256 and size the manifest gives. The close after the last kill succeeds (or
finds March closed, if a killed one had committed), and its user chargeback is the API's file.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from adapters.clock import FixedClock
from adapters.eventstore.environments import sqlite_env
from domain.services.billing import Billing
from tests.integration.test_report_cli import data_dir  # noqa: F401  (the fixture)

MONTH = "2024-03"


def close_command(data: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "infra.cli", "period", "close", MONTH, "--data-dir", str(data),
            "--config", str(config)]


def sealed_state(data: Path) -> dict[str, bytes] | None:
    """March's sealed files by name, or None if March is open; fails on a partial close."""
    billing = Billing(FixedClock(datetime(2024, 4, 2, tzinfo=UTC)), env=sqlite_env(data))
    try:
        closing = billing.closed(MONTH)
        if closing is None:
            names = [n.originator_id for n in billing.notification_log.select(start=1, limit=1000)]
            assert names == [], f"{len(names)} sealed files stored without their month's close"
            return None
        files = {}
        for name, expected in closing.manifest["exports"].items():
            export = billing.export(MONTH, name)
            assert export is not None, f"the manifest names {name}, which was not sealed"
            assert hashlib.sha256(export.data).hexdigest() == expected["sha256"]
            assert len(export.data) == expected["bytes"]
            files[name] = export.data
        return files
    finally:
        billing.close()


def billing_bytes(data: Path) -> int:
    """The billing store's size with its write-ahead log (opening it changes only -shm)."""
    return sum(p.stat().st_size for p in (data / "billing.sqlite", data / "billing.sqlite-wal") if p.exists())


def kill_when_billing_is_written(data: Path, config: Path, deadline_s: float = 60) -> None:
    """Runs a close and SIGKILLs it the moment its billing store grows by a page or more (the
    sealed files are tens of kB): inside the sealing transaction, or just after its commit."""
    before = billing_bytes(data)
    proc = subprocess.Popen(close_command(data, config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    give_up = time.monotonic() + deadline_s
    while billing_bytes(data) < before + 4096 and proc.poll() is None and time.monotonic() < give_up:
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_a_close_killed_at_any_moment_leaves_the_month_open_or_closed_whole(data_dir):  # noqa: F811
    data, config, from_api = data_dir
    early = subprocess.Popen(close_command(data, config), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # opening the stores, or rendering the exports
    early.send_signal(signal.SIGKILL)
    early.wait(30)
    assert sealed_state(data) is None

    outcomes: list[str] = []
    for _ in range(3):  # killed while sealing, until a kill comes after the commit
        kill_when_billing_is_written(data, config)
        state = sealed_state(data)
        outcomes.append("closed" if state else "open")
        if state:
            break
    print(f"kills while sealing left March: {outcomes}")

    final = subprocess.run(close_command(data, config), capture_output=True, text=True, timeout=120)
    if outcomes[-1] == "closed":
        assert final.returncode == 1 and "already closed" in final.stdout + final.stderr
    else:
        assert final.returncode == 0, final.stdout + final.stderr
    sealed = sealed_state(data)
    assert sealed is not None and sealed["chargeback-by-user.csv"] == from_api
