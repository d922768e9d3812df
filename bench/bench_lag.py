"""End-to-end lag: from a response leaving the gateway to its fact recorded by the ledger.

python -m bench.bench_lag --rate 1000 --seconds 10

Runs the simulator, a tansu broker, a fresh PostgreSQL database, `meterline ledger` and
`meterline gateway` apart (bench_gateway.kafka_gateway), sends an open-loop load at
`--rate` requests/s, then reads the ledger: a fact's lag is the timestamp of the batch event
that recorded it minus the fact's `occurred_at` (set just before the response is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg

from adapters.clock import SystemClock
from adapters.eventstore import open_applications, postgres_env
from bench.bench_gateway import BODY, kafka_gateway, spawn, wait_http
from domain.ledger import USAGE_BATCH_TOPIC
from domain.usage import facts_of
from tests.support.tansu import running_tansu


async def open_loop(url: str, key: str, rate: int, seconds: float) -> tuple[int, int]:
    """Sends `rate` requests per second for `seconds`, whatever the answers take."""
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


def lags(database_url: str) -> list[float]:
    registry, ledger = open_applications(postgres_env(database_url), SystemClock())
    try:
        found, start = [], 1
        while batch := ledger.notification_log.select(start=start, limit=200, topics=[USAGE_BATCH_TOPIC]):
            for notification in batch:
                event = ledger.mapper.to_domain_event(notification)
                found += [(event.timestamp - fact.occurred_at).total_seconds()
                          for fact in facts_of(event.columns, event.rows)]
            start = batch[-1].id + 1
        return found
    finally:
        registry.close()
        ledger.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-lag-"))
    name = f"bench_lag_{os.getpid()}"
    database_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as pg:
        pg.execute(f"CREATE DATABASE {name}")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn([sys.executable, "-m", "bench.simulator", "--port", "19200"], work / "sim.log"))
        wait_http("http://127.0.0.1:19200/health")
        with running_tansu() as bootstrap:
            ledger, gateway, key = kafka_gateway(work, "http://127.0.0.1:19200/v1", bootstrap, database_url)
            procs += [ledger, gateway]
            ok, failed = asyncio.run(open_loop("http://127.0.0.1:19203/v1/chat/completions", key,
                                               args.rate, args.seconds))
            time.sleep(3)  # let the ledger catch up before reading it
            measured = sorted(lags(database_url))
            for proc in (gateway, ledger):
                proc.terminate()
                proc.wait(15)
        pct = lambda p: measured[min(len(measured) - 1, int(p / 100 * len(measured)))] * 1000  # noqa: E731
        print(f"open loop {args.rate} req/s for {args.seconds:g} s: {ok} answered, {failed} failed; "
              f"{len(measured)} facts in the ledger; lag p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, "
              f"max {measured[-1] * 1000:.0f} ms")
    finally:
        for proc in procs:
            proc.terminate()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as pg:
            pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
