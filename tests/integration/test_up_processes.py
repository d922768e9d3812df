"""`meterline up` runs supervised processes on the embedded default (journal, SQLite, chDB).

A kill -9 of any child mid-traffic loses and duplicates nothing: the ledger child (several
times), the projector child and the gateway child are killed while clients send requests;
the supervisor starts each again, and afterwards the ledger and analytics hold every fact
of the journal exactly once, and every answered request is among them. SIGTERM stops all
the children; a kill -9 of `up` itself takes them with it.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, sqlite_env
from testkit.simulator.server import Simulator
from tests.support.deployment import stored_facts, write_config
from tests.support.embedded import ADMIN, CLIENTS, client, journal_ids, recorded, up_env
from tests.support.gateway import free_port
from tests.support.processes import MeterlineProcess, Processes

pytestmark = [pytest.mark.slow]

LEDGER = "ledger,scheduler,alerts"


def children(pid: int) -> dict[str, int]:
    """The supervisor's children by their roles (`meterline run <roles>`)."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"run" in args:
            found[args[args.index(b"run") + 1].decode()] = int(child)
    return found


def kill_child(up: MeterlineProcess, role: str, timeout_s: float = 30) -> float:
    """SIGKILLs the child running `role`; returns how long the supervisor took to start another."""
    assert up.popen is not None
    victim = children(up.popen.pid)[role]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    while children(up.popen.pid).get(role) in (None, victim):
        assert time.monotonic() - killed < timeout_s, f"{role} was not started again"
        time.sleep(0.02)
    return time.monotonic() - killed


def test_kill_9_of_any_child_mid_traffic_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random()
    with Simulator(port=0) as sim, Processes(tmp_path, up_env(write_config(tmp_path / "m.toml",
                                                                           sim.base_url))) as processes:
        up = processes.spawn("up", "up", port=free_port())
        up.wait_healthy(90)
        with up.client(ADMIN) as admin:
            admin.post("/api/admin/users", json={"user_id": "u1"}).raise_for_status()
            keys = [admin.post("/api/keys", json={"name": f"k{i}", "models": ["sim"], "user_id": "u1"})
                    .raise_for_status().json() for i in range(3)]
        ok, broken, stop = Counter(), Counter(), threading.Event()
        threads = [threading.Thread(target=client, args=(up.url, keys, ok, broken, stop, n))
                   for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        restarts = {}
        try:
            # The ledger three times: the supervisor doubles a child's restart delay for each
            # death within 30 s (0.5, 1, 2, 4, 5 s), so its fourth and fifth kills cost ~9 s of
            # waiting for a start and tried nothing the first three do not
            for role in [LEDGER, "projector", LEDGER, "gateway", LEDGER]:
                time.sleep(rng.uniform(0.4, 1.2))
                restarts.setdefault(role, []).append(kill_child(up, role))
            if "gateway" in restarts:
                up.wait_healthy(60)
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        journal = journal_ids(up.data_dir)
        deadline = time.monotonic() + 60
        while recorded(up.data_dir) < len(set(journal)) and time.monotonic() < deadline:
            time.sleep(0.1)
        with up.client(ADMIN) as admin:
            while (usage := admin.get("/api/usage", params={"group_by": "key"}).raise_for_status().json())[
                    "totals"]["requests"] < len(journal) and time.monotonic() < deadline:
                time.sleep(0.2)
        up.terminate()
        assert "Traceback" not in up.log_text(), up.log_tail()
    registry, ledger = open_applications(sqlite_env(up.data_dir), SystemClock())
    try:
        facts = stored_facts(ledger)
    finally:
        ledger.close()
        registry.close()
    print(f"\nup children killed (restart s): {restarts}; {sum(ok.values())} answered, "
          f"{sum(broken.values())} broken; journal {len(journal)} facts")
    assert len(journal) == len(set(journal)), "the journal holds an event twice"
    ids = [f["event_id"] for f in facts]
    assert len(ids) == len(set(ids)), "the ledger holds an event twice"
    assert set(ids) == set(journal), "the ledger does not hold exactly the journal's facts"
    per_key = Counter(f["key_id"] for f in facts)
    for key in keys:  # every answered request is billed; at most the broken ones besides
        assert ok[key["id"]] <= per_key[key["id"]] <= ok[key["id"]] + broken[key["id"]], (key, ok, broken)
    assert {row["group"]: row["requests"] for row in usage["data"]} == dict(per_key)
    assert sum(ok.values()) > 200


def test_sigterm_stops_every_child_and_kill_9_of_up_takes_them_along(tmp_path: Path) -> None:
    with Processes(tmp_path, up_env(write_config(tmp_path / "m.toml", "http://127.0.0.1:9/v1"))) as processes:
        up = processes.spawn("up", "up", port=free_port())
        up.wait_healthy(90)
        assert up.popen is not None
        first = children(up.popen.pid)
        assert set(first) == {"gateway", LEDGER, "projector"}
        up.kill()
        deadline = time.monotonic() + 10
        # _alive, not /proc/<pid> existing: a killed child stays a zombie there until something
        # reaps it, and this loop then waited out its 10 s
        while any(_alive(pid) for pid in first.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in first.values() if _alive(pid)], "children outlived a kill -9 of up"
        up.start()  # on the same directory: the journal lock, chDB and the port are free again
        up.wait_healthy(90)
        second = children(up.popen.pid)
        up.terminate()
        assert up.popen.returncode == 0
        assert not [pid for pid in second.values() if _alive(pid)], "children outlived up's SIGTERM"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
