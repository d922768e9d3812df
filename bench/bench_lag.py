"""End-to-end lag: from a response leaving the gateway to its fact recorded by the ledger.

python -m bench.bench_lag --rate 1000 --seconds 10

Runs the simulator, a tansu broker, a fresh PostgreSQL database, `meterline ledger` and
`meterline gateway` apart (bench_gateway.kafka_gateway), sends an open-loop load at
`--rate` requests/s, then reads the ledger: a fact's lag is the timestamp of the batch event
that recorded it minus the fact's `occurred_at` (set just before the response is sent).
`bench_up_lag` measures the same for `meterline up` on the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, postgres_env
from bench.bench_gateway import BODY, free_port, kafka_gateway, spawn, wait_http
from domain.usage import facts_of
from testkit.postgres import temporary_database
from testkit.tansu import running_tansu


async def open_loop(url: str, key: str, rate: int, seconds: float,
                    answered: list[float] | None = None) -> tuple[int, int]:
    """Sends `rate` requests per second for `seconds`, whatever the answers take; appends each
    200's arrival time (perf_counter) to `answered` if given."""
    ok = failed = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector,
                                     headers={"authorization": f"Bearer {key}"}) as session:
        async def one() -> None:
            nonlocal ok, failed
            try:
                async with session.post(url, json=BODY) as response:
                    await response.read()
                    ok, failed = (ok + 1, failed) if response.status == 200 else (ok, failed + 1)
                    if response.status == 200 and answered is not None:
                        answered.append(time.perf_counter())
            except aiohttp.ClientError:
                failed += 1

        tasks, start = [], time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    return ok, failed


def lags(database_url: str | None = None, env: dict[str, str] | None = None) -> list[float]:
    registry, ledger = open_applications(env or postgres_env(database_url or ""), SystemClock())
    try:
        return [(batch.timestamp - fact.occurred_at).total_seconds()
                for batch in ledger.usage_batches(page=200)
                for fact in facts_of(batch.columns, batch.rows)]
    finally:
        registry.close()
        ledger.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-lag-"))
    procs: list[subprocess.Popen] = []
    with temporary_database("bench_lag") as database_url:
        try:
            run(args, work, database_url, procs)
        finally:
            for proc in procs:
                proc.terminate()


def run(args: argparse.Namespace, work: Path, database_url: str, procs: list) -> None:
    sim_port, port = free_port(), free_port()
    procs.append(spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)],
                       work / "sim.log"))
    wait_http(f"http://127.0.0.1:{sim_port}/health")
    with running_tansu() as bootstrap:
        ledger, gateway, key = kafka_gateway(work, f"http://127.0.0.1:{sim_port}/v1", bootstrap,
                                             database_url, port)
        procs += [ledger, gateway]
        ok, failed = asyncio.run(open_loop(f"http://127.0.0.1:{port}/v1/chat/completions", key,
                                           args.rate, args.seconds))
        time.sleep(3)  # let the ledger catch up before reading it
        measured = sorted(lags(database_url))
        for proc in (gateway, ledger):
            proc.terminate()
            proc.wait(15)
    report(args, ok, failed, measured)


def report(args: argparse.Namespace, ok: int, failed: int, measured: list[float]) -> None:
    ms = [lag * 1000 for lag in measured]
    print(f"open loop {args.rate} req/s for {args.seconds:g} s: {ok} answered, {failed} failed; "
          f"{len(ms)} facts in the ledger; lag p50 {percentile(ms, 50):.0f} ms, "
          f"p99 {percentile(ms, 99):.0f} ms, max {ms[-1]:.0f} ms")


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


if __name__ == "__main__":
    main()
