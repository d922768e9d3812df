"""What recording refusals costs the hot path: req/s at 64 connections, 50 % refused vs 0 %.

python -m bench.bench_refusals [--duration 10]

Starts the simulator and `meterline up` (as bench_gateway does), then measures
  1. 0 % refused: 64 connections with a key that has no budget;
  2. 50 % refused: 64 connections, each sending in turn a request with that key and one
     with a key whose hard budget is spent (a 429 with a request id and a decision record:
     the first 20 of a minute written whole, the rest counted, gateway/views/refusal_log.py);
and prints both and their ratio. A refusal does less work than a served request (no
upstream call, no metering), so a ratio above 1 is expected; what it bounds is that
recording them does not make refusals the expensive path. Beside it, in this process, the
cost of `refused()` itself per call: a record queued whole, and one only counted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import timeit
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import httpx
import uvloop

from bench.bench_gateway import ADMIN, BODY, free_port, meterline, spawn, wait_http
from testkit.loadgen import _Connection, build_request, run_load
from testkit.loadstats import LoadStats, Recorder


def refused_key(base_url: str) -> str:
    """A key whose hard budget is a nano-dollar: every request is refused for quota."""
    admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN}"})
    key = admin.post("/api/keys", json={"name": "refused", "models": ["sim"], "user_id": "bench",
                                        "budget_usd": "0.000000001", "budget_mode": "hard"})
    key.raise_for_status()
    return key.json()["key"]


class _Alternating(_Connection):
    """A load-generator connection that sends its requests in turn: every other one refused."""

    def __init__(self, requests: list[bytes], rec: Recorder, done: asyncio.Future) -> None:
        super().__init__(requests[0], rec, done)
        self._turns = itertools.cycle(requests)

    def _send(self) -> None:
        self._request = next(self._turns)
        super()._send()


async def _alternate(url: str, secrets: list[str], duration: float) -> LoadStats:
    requests = [build_request(url, BODY, {"authorization": f"Bearer {s}"}, None) for s in secrets]
    host, port = requests[0][0], requests[0][1]
    rec = Recorder(None, duration)
    loop = asyncio.get_running_loop()

    async def drive() -> None:
        while not rec.finished():
            done = loop.create_future()
            await loop.create_connection(partial(_Alternating, [r[2] for r in requests], rec, done),
                                         host, port)
            await done

    await asyncio.gather(*(drive() for _ in range(64)))
    return rec.stats()


def mixed(url: str, secrets: list[str], duration: float) -> dict:
    """64 connections, each sending the keys' requests in turn (one key: none refused)."""
    stats = uvloop.run(_alternate(url, secrets, duration))
    return {"rps_64": round(stats.rps, 1),
            "refused_share": round(stats.statuses.get(429, 0) / max(1, stats.requests), 3),
            "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
            "p50_ms": round(stats.percentile(50), 2), "p99_ms": round(stats.percentile(99), 2)}


def refusal_cost_us() -> dict:
    """µs per `refused()` call: building the error's id and the record, queueing or counting."""
    from gateway.errors import insufficient_quota
    from gateway.v1.refusals import refused
    from gateway.views.refusal_log import RefusalLog
    now = datetime.now(UTC)
    keys = [SimpleNamespace(id=f"k{i}", user_id="u", team_id="t") for i in range(1_000_000)]
    log, counter = RefusalLog(None), iter(keys)

    def kept() -> None:  # a new key each call: always under the per-minute quota, so queued
        refused(log, insufficient_quota("budget"), next(counter), {"model": "sim"}, now)

    def counted() -> None:  # the same key: past its 20 records a minute, so only counted
        refused(log, insufficient_quota("budget"), keys[0], {"model": "sim"}, now)

    n = 50_000
    return {"queued_us": round(timeit.timeit(kept, number=n) / n * 1e6, 2),
            "counted_us": round(timeit.timeit(counted, number=n) / n * 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-bench-refusals-"))
    sim_port, port = free_port(), free_port()
    sim = spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)], work / "sim.log")
    procs = [sim]
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/health")
        gw, good = meterline(work, f"http://127.0.0.1:{sim_port}/v1", port)
        procs.append(gw)
        base = f"http://127.0.0.1:{port}"
        bad = refused_key(base)
        url = base + "/v1/chat/completions"
        run_load(url, BODY, connections=8, duration_s=2, headers={"authorization": f"Bearer {good}"})
        none = mixed(url, [good], args.duration)
        half = mixed(url, [good, bad], args.duration)
        result = {"name": "refusals: 64 connections", "duration_s": args.duration,
                  "refused_0": none, "refused_50": half,
                  "ratio_50_over_0": round(half["rps_64"] / none["rps_64"], 3),
                  "refused_in_process": refusal_cost_us()}
        print(json.dumps(result), flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except Exception:  # noqa: BLE001 - a bench must not hang on a stuck child
                proc.kill()


if __name__ == "__main__":
    main()
