"""How soon `meterline up`'s gateway learns what its other processes record (embedded default).

python -m bench.bench_up_lag --rate 1000 --seconds 10

Two halves, measured apart. (1) Response → ledger: an open-loop load, then each fact's lag
from its `occurred_at` to the timestamp of the batch event that recorded it (the ledger
process follows the journal into SQLite). (2) Store → the gateway's views: this process
changes a probe key's budget in the SQLite store, as the ledger or the scheduler would,
and polls the gateway's admin API until its in-memory view shows the new limit; probes run
during the load and after it. A fact's spend reaches the gateway's quota guard after
(1) + (2).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, sqlite_env
from bench.bench_gateway import ADMIN, up_on_simulator
from bench.bench_lag import lags, open_loop, percentile, report
from domain.money import to_nanos
from domain.quota_policy import BudgetPolicy, Scope


def probe_views(base_url: str, data_dir: Path, probes: int,
                stop: threading.Event | None = None) -> list[float]:
    """Seconds from a budget change written to the store by this process to the gateway showing it."""
    admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    key = admin.post("/api/keys", json={"name": "probe", "models": ["sim"], "user_id": "bench"})
    key_id = key.json()["id"]
    registry, ledger = open_applications(sqlite_env(data_dir), SystemClock())
    delays: list[float] = []
    try:
        for n in range(probes):
            if stop is not None and stop.is_set():
                break
            limit = f"{1000 + n}"
            started = time.perf_counter()
            ledger.set_budget(Scope.KEY, key_id, BudgetPolicy(limit=to_nanos(limit)))
            while admin.get(f"/api/admin/budgets/key/{key_id}").json().get("limit_usd") != limit:
                if time.perf_counter() - started > 10:
                    raise RuntimeError("the gateway did not see a budget change within 10 s")
                time.sleep(0.001)
            delays.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        registry.close()
        ledger.close()
        admin.close()
    return sorted(delays)


def run_up(args: argparse.Namespace, work: Path, procs: list) -> None:
    base, key = up_on_simulator(work, procs)
    up = procs[-1]
    under_load: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=lambda: under_load.extend(
        probe_views(base, work / "data", 10**6, stop)), daemon=True)
    prober.start()
    ok, failed = asyncio.run(open_loop(f"{base}/v1/chat/completions", key, args.rate, args.seconds))
    stop.set()
    prober.join(30)
    quiet = probe_views(base, work / "data", 40)
    time.sleep(3)  # let the ledger catch up before reading it
    report(args, ok, failed, sorted(lags(env=sqlite_env(work / "data"))))
    for name, delays in (("during the load", sorted(under_load)), ("after it", quiet)):
        ms = [d * 1000 for d in delays]
        print(f"store -> gateway views, {name}: {len(ms)} probes, p50 {percentile(ms, 50):.0f} ms, "
              f"p99 {percentile(ms, 99):.0f} ms, max {ms[-1]:.0f} ms")
    up.terminate()
    up.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    procs: list[subprocess.Popen] = []
    try:
        run_up(args, Path(tempfile.mkdtemp(prefix="meterline-up-lag-")), procs)
    finally:
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
