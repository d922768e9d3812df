"""The anomaly scan over a month and more of hourly rollups standing for 10 M requests.

Run: `python -m bench.bench_anomaly [--users 5000] [--days 36] [--repeat 7] [--merged]`.

1. Fills chDB's `usage_hourly` directly (INSERT … SELECT from `numbers()`, hashes of the row
   number, the same rows every run): `--users` users with two keys each, active in about 40 % of
   the hours of `--days` days, one model per active hour and a second one in half of them, 1-7
   requests a row (4 on average): about 2.5 M rollup rows holding about 10 M requests, which is
   what the rollup of 10 M raw rows of such users looks like. One user in 500 spikes in the last
   hour (8x its requests and spend) and one in 700 also sends 8x and fails 60 % of them, so the
   scan finds some.
2. Times the scan the projector runs (`scan_anomalies`: the SQL of `adapters/analytics/anomaly_sql.py`
   for users and keys, the judgement in Python, the incidents recorded in an in-memory store)
   at a day hour and at a night hour (which also reads the night profile over the trailing
   4 weeks), `--repeat` runs each: median, min, max and spread (p90 - p10). Most of these users
   are below the minimum volume (55 requests a day on average), which the SQL leaves out; so it
   also times the read of every active user and key without a minimum: the worst case, where
   every user is busy enough to be judged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.analytics.anomaly_sql import SqlAnomalySignals
from adapters.analytics.chdb import ChdbAnalytics
from domain.ports.anomaly_signals import SignalQuery
from domain.services.anomalies import Anomalies
from domain.services.anomaly_scan import scan_anomalies

ZONE = "Europe/Paris"
CHUNK_HOURS = 24  # one INSERT per day of hours: a part per day, as a month of inserts leaves it

GENERATE = """
INSERT INTO usage_hourly (hour, user_id, team_id, key_id, model, application, requests, prompt_tokens,
    completion_tokens, cached_tokens, cost, finished, errors, latency_ms_sum, latency_histogram)
SELECT hour, concat('user-', toString(u)), concat('team-', toString(u % 50)),
       concat('key-', toString(u), '-', toString(cityHash64(u, h) % 2)),
       concat('model-', toString((u + m) % 10)), '', r, r * 700, r * 250, 0,
       toInt64(r * (20000000 + u % 13 * 1000000)), r,
       intDiv(r * (failing ? 60 : 1 + cityHash64(u, h, 9) % 3), 100), toUInt128(r * 400),
       map(toUInt32(400), toUInt64(r))
FROM (
    SELECT toDateTime('{start}', 'UTC') + toIntervalHour(h) AS hour, u, h, m,
           toUInt64((1 + cityHash64(u, h, m) % 7) * (spike OR failing ? 8 : 1)) AS r,
           h = {last} AND u % 500 = 7 AS spike, h = {last} AND u % 700 = 3 AS failing
    FROM (SELECT number % {users} AS u, {first} + intDiv(number, {users}) AS h FROM numbers({count}))
    ARRAY JOIN [0, 1] AS m
    WHERE cityHash64(u, h) % 100 < 40 AND (m = 0 OR cityHash64(u, h, 2) % 2 = 0)
)
"""


def fill(store: ChdbAnalytics, users: int, days: int, start: datetime) -> tuple[int, int]:
    hours = days * 24
    began = time.perf_counter()
    for first in range(0, hours, CHUNK_HOURS):
        count = users * min(CHUNK_HOURS, hours - first)
        # only integers and a formatted time go into the text
        store.query_rows(GENERATE.format(start=start.strftime("%Y-%m-%d %H:%M:%S"), users=users, first=first,
                                         count=count, last=hours - 1), {})
    rows, requests = store.query_rows("SELECT count(), sum(requests) FROM usage_hourly", {})[0]
    print(f"rollup: {int(rows):,} rows of usage_hourly holding {int(requests):,} requests "
          f"({users:,} users, {days} days) made in {time.perf_counter() - began:.1f} s", flush=True)
    return int(rows), int(requests)


def timed(label: str, run: Callable[[], str], repeat: int) -> None:
    """Wall time, and the process's CPU time (all its threads: chDB's too), which another load on
    the machine disturbs less."""
    times, cpu, said = [], [], ""
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        said = run()
        times.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    deciles = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    print(f"{label}: median {statistics.median(times):.3f} s, min {min(times):.3f}, max {max(times):.3f}, "
          f"spread p90-p10 {deciles[-1] - deciles[0]:.3f} s over {repeat} runs (CPU median "
          f"{statistics.median(cpu):.3f} s); {said}; load average {os.getloadavg()[0]:.1f}", flush=True)


def scan(signals: SqlAnomalySignals, now: datetime) -> str:
    report = scan_anomalies(signals, Anomalies(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}), now, ZONE)
    return f"{report.scopes:,} users and keys above the minimum volume read, {len(report.abnormal)} abnormal"


def read_everyone(signals: SqlAnomalySignals, now: datetime) -> str:
    return f"{len(signals.read(SignalQuery(now, 4, ZONE))):,} users and keys read"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--days", type=int, default=36)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--merged", action="store_true",
                    help="time again after OPTIMIZE TABLE usage_hourly FINAL (what merges converge to)")
    args = ap.parse_args()
    end = datetime(2026, 2, 9, 15, tzinfo=UTC)  # a Monday, 16:00 in Paris: the scan judges 15:00 local
    start = end - timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as directory:
        store = ChdbAnalytics(Path(directory) / "chdb", rollup_timezone=ZONE)
        try:
            fill(store, args.users, args.days, start)
            parts = store.query_rows("SELECT count() FROM system.parts WHERE active "
                                     "AND table = 'usage_hourly'", {})
            print(f"usage_hourly: {parts[0][0]} active parts", flush=True)
            signals = SqlAnomalySignals(store)
            for parts in ("parts as inserted", "parts merged") if args.merged else ("parts as inserted",):
                if parts == "parts merged":
                    store.query_rows("OPTIMIZE TABLE usage_hourly FINAL", {})
                for label, now in (("day hour", end + timedelta(minutes=5)),
                                   ("night hour", end - timedelta(hours=13, minutes=55))):
                    timed(f"{parts}: scan at a {label}", lambda now=now: scan(signals, now), args.repeat)
                    timed(f"{parts}: read of every active scope at a {label} (no minimum volume)",
                          lambda now=now: read_everyone(signals, now), args.repeat)
        finally:
            store.close()


if __name__ == "__main__":
    main()
