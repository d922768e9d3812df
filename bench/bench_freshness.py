"""Freshness on the embedded default: a response sent → the request counted in the owner's summary.

python -m bench.bench_freshness --rate 1000 --seconds 20

`meterline up` in front of the simulator; an open-loop load at `--rate` requests/s while a
second client asks `GET /api/admin/analytics/summary` every `--poll-ms`. Each response's
freshness is the time from its arrival at the client to the first summary answered after it
whose `total_requests` counts at least as many requests as had been answered by then (an
upper bound: the summary may count it earlier and a poll only sees it at the next tick; the
tick is part of the figure). The path measured: gateway → journal → ledger (SQLite) →
projector (the ledger's recorded batches → chDB and its rollups) → the gateway's API asking
the projector's chDB over its socket.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench.bench_gateway import ADMIN, up_on_simulator
from bench.bench_lag import open_loop, percentile


async def poll(base: str, poll_s: float, done: asyncio.Event, seen: list[tuple[float, int]]) -> None:
    """Asks the summary every `poll_s` until `done` and the count stops growing."""
    today = datetime.now(UTC).date()
    params = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=2)).isoformat(),
              "timezone": "UTC"}
    async with aiohttp.ClientSession(headers={"authorization": f"Bearer {ADMIN}"}) as session:
        quiet_since = None
        while True:
            async with session.get(f"{base}/api/admin/analytics/summary", params=params) as response:
                body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"summary answered {response.status}: {body}")
            seen.append((time.perf_counter(), int(body["total_requests"])))
            if done.is_set():
                grew = len(seen) > 1 and seen[-1][1] != seen[-2][1]
                quiet_since = None if grew else quiet_since or time.perf_counter()
                if quiet_since and time.perf_counter() - quiet_since > 3:
                    return
            await asyncio.sleep(poll_s)


def freshness(answered: list[float], seen: list[tuple[float, int]], baseline: int) -> list[float]:
    """Per response: seconds until a summary counted as many requests as were answered by then."""
    answered = sorted(answered)
    times = [t for t, _ in seen]
    delays = []
    for rank, at in enumerate(answered, start=1):
        i = bisect.bisect_right(times, at)
        while i < len(seen) and seen[i][1] - baseline < rank:
            i += 1
        delays.append(seen[i][0] - at if i < len(seen) else float("inf"))
    return delays


async def measure(base: str, key: str, args: argparse.Namespace) -> None:
    answered: list[float] = []
    seen: list[tuple[float, int]] = []
    done = asyncio.Event()
    poller = asyncio.ensure_future(poll(base, args.poll_ms / 1000, done, seen))
    await asyncio.sleep(0.5)
    baseline = seen[-1][1] if seen else 0
    _, failed = await open_loop(f"{base}/v1/chat/completions", key, args.rate, args.seconds, answered)
    done.set()
    await poller
    delays = sorted(d * 1000 for d in freshness(answered, seen, baseline))
    lost = sum(d == float("inf") for d in delays)
    finite = [d for d in delays if d != float("inf")]
    print(f"{len(answered):,} answered, {failed} failed, {len(seen)} summary polls "
          f"every {args.poll_ms} ms; final count {seen[-1][1] - baseline:,} (never counted: {lost})")
    print(f"response -> visible in summary: p50 {percentile(finite, 50):.0f} ms, "
          f"p90 {percentile(finite, 90):.0f} ms, p99 {percentile(finite, 99):.0f} ms, "
          f"max {finite[-1]:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--poll-ms", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-freshness-"))
    procs = []
    try:
        base, key = up_on_simulator(work, procs)
        asyncio.run(measure(base, key, args))
    finally:
        for proc in procs:
            proc.terminate()


if __name__ == "__main__":
    main()
