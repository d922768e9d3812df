"""kill -9 of the projector, again and again, under traffic: every analytics figure still equals the
ledger's, from the raw table and from each rollup, to the nano-unit.

The processes of `meterline up`, started apart on one data directory (gateway, ledger,
projector) so the test restarts the projector itself, at once, instead of waiting out the
supervisor's back-off. Kills land anywhere: half of them at a random moment, half while a
batch is under way (its intent written, its position not yet), between the intent and the
insert, inside the insert or after it. Each restart inserts that batch again; the views,
which fire on every insert, must count each fact once.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from adapters.analytics.chdb import ChdbAnalytics
from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, sqlite_env
from testkit.simulator.server import Simulator
from tests.support.deployment import write_config
from tests.support.embedded import ADMIN, CLIENTS, client, journal_ids, recorded, up_env
from tests.support.gateway import free_port
from tests.support.processes import MeterlineProcess, Processes
from tests.support.projector import figure_differences, midnight

pytestmark = [pytest.mark.slow]

KILLS = 6  # 3 at a random moment, 3 with a batch under way; each restart recovered a batch in
           # runs of 8, and each is a process start (~3 s)
RUNNING = "meterline projector running"


def on(data_dir: Path, process: MeterlineProcess) -> MeterlineProcess:
    """The process, moved onto the shared data directory, started."""
    process.data_dir = data_dir
    process.env["METERLINE_DATA_DIR"] = str(data_dir)
    return process.start()


def wait_for_intent(positions: Path, timeout_s: float = 5) -> bool:
    """Until the running projector has written a batch's intent (and not yet its position)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if orjson.loads(positions.read_bytes())["intent"]:
                return True
        time.sleep(0.0002)
    return False


def ledger_facts(data_dir: Path) -> list:
    registry, ledger = open_applications(sqlite_env(data_dir), SystemClock())
    try:
        return list(ledger.metered_facts())
    finally:
        ledger.close()
        registry.close()


def test_kill_9_of_the_projector_again_and_again_leaves_every_rollup_equal_to_the_ledger(
        tmp_path: Path) -> None:
    rng = random.Random()
    data_dir = tmp_path / "data"
    positions = data_dir / "projector" / "positions.json"
    with Simulator(port=0) as sim, Processes(tmp_path, up_env(write_config(tmp_path / "m.toml",
                                                                           sim.base_url))) as processes:
        gateway = on(data_dir, processes.spawn("gateway", "gateway", port=free_port(), start=False))
        gateway.wait_healthy(90)
        ledger = on(data_dir, processes.spawn("ledger", "ledger", start=False))
        projector = on(data_dir, processes.spawn("projector", "projector", start=False))
        projector.wait_log(RUNNING)
        with gateway.client(ADMIN) as admin:
            admin.post("/api/admin/users", json={"user_id": "u1"}).raise_for_status()
            keys = [admin.post("/api/keys", json={"name": f"k{i}", "models": ["sim"], "user_id": "u1"})
                    .raise_for_status().json() for i in range(3)]
        ok, broken, stop = Counter(), Counter(), threading.Event()
        threads = [threading.Thread(target=client, args=(gateway.url, keys, ok, broken, stop, n))
                   for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        mid_batch = 0
        try:
            for kill in range(KILLS):
                time.sleep(rng.uniform(0.1, 0.6))
                if kill % 2:
                    mid_batch += wait_for_intent(positions)
                projector.kill()
                projector.start()
                projector.wait_log(RUNNING)
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        journal = set(journal_ids(data_dir))
        deadline = time.monotonic() + 60
        while recorded(data_dir) < len(journal) and time.monotonic() < deadline:
            time.sleep(0.1)
        with gateway.client(ADMIN) as admin:
            while admin.get("/api/usage").raise_for_status().json()["totals"]["requests"] < len(journal) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
        processes.stop_all()
        log = projector.log_text()
        assert "Traceback" not in log + ledger.log_text() + gateway.log_text(), processes.logs()
    facts = ledger_facts(data_dir)
    assert {f.event_id for f in facts} == journal
    store = ChdbAnalytics(data_dir / "analytics")
    try:
        assert store.count_usage() == len(facts)
        now = facts[-1].occurred_at
        assert figure_differences(store, facts, midnight(now, -1), midnight(now, 2)) == []
    finally:
        store.close()
    repeated = log.count("was being inserted; recovering it first")
    print(f"\nprojector killed {KILLS} times under traffic ({mid_batch} with a batch under way): "
          f"{len(facts)} facts, {sum(ok.values())} answered; {repeated} restarts recovered a batch")
    assert sum(ok.values()) > 200
    assert repeated >= 1, "no kill landed inside a batch: the test did not test the repeat"
