"""The owner's dashboard over a month of 10 M requests: through the rollups, and over the raw table.

Run: `python -m bench.bench_rollups [--rows 10000000] [--repeat 7] [--ingest 1000000]`.

1. Generates a month of usage in chDB (1,000 users in 50 teams, 5,000 keys, 10 models, 40
   applications; each key calls three models) with INSERT … SELECT from `numbers()` in chunks
   of a million rows, so the materialized views fold every chunk as the projector's inserts
   would; prints the rows/s of that.
2. Times each question the admin analytics API asks (`AnalyticsStore.figures`), with
   `source="auto"` (the planner picks a rollup) beside `source="raw"` (usage_events FINAL),
   median and p90 of `--repeat` runs, and checks both give the same figures.
3. Ingest: `--ingest` Python facts through `insert_usage` in batches of 20,000 with batch ids,
   the projector's path into chDB with the rollups attached (events/s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.sql import INSERT_SETTINGS
from domain.usage import RequestMetered, UsageSource
from domain.usage_figures import AnalyticsQuery

START = datetime(2025, 3, 1, tzinfo=UTC)
END = datetime(2025, 4, 1, tzinfo=UTC)
PREVIOUS = datetime(2025, 1, 29, tzinfo=UTC)  # the 31 days before: the summary's comparison
CHUNK = 1_000_000
USERS, KEYS, MODELS, TEAMS, APPS = 1_000, 5_000, 10, 50, 40

# Columns from hashes of the row number: the same month every run, no Python in the loop.
GENERATE = """
INSERT INTO usage_events (event_id, occurred_at, key_id, user_id, team_id, model, endpoint,
    prompt_tokens, completion_tokens, cached_tokens, latency_ms, status, usage_source,
    price_version, cost, job_id, stream, client_disconnected, gateway_id, schema_version,
    labels, request_id, requests, final)
SELECT
    toString(generateUUIDv4(number)),
    toDateTime64('{start}', 6, 'UTC') + toIntervalMicrosecond(cityHash64(number, 1) % {span_us}),
    concat('key-', toString(k)), concat('user-', toString(k % {users})),
    concat('team-', toString((k % {users}) % {teams})),
    concat('model-', toString((k + cityHash64(number, 3) % 3) % {models})),
    '/v1/chat/completions',
    prompt, completion, cityHash64(number, 5) % 200,
    50 + cityHash64(number, 6) % 3000,
    multiIf(cityHash64(number, 7) % 200 = 0, 500, cityHash64(number, 7) % 200 = 1, 429, 200),
    'upstream', 1, prompt * 150 + completion * 600, '', false, false, 'bench', 1,
    map('app', concat('app-', toString(k % {apps})), 'env', 'prod'), '', 1, true
FROM (SELECT number, cityHash64(number, 2) % {keys} AS k,
             cityHash64(number, 4) % 4000 AS prompt, cityHash64(number, 8) % 1000 AS completion
      FROM numbers({first}, {count}))
SETTINGS {settings}
"""


def generate(store: ChdbAnalytics, rows: int) -> None:
    span_us = int((END - START).total_seconds() * 10**6)
    settings = ", ".join(f"{name} = {value}" for name, value in INSERT_SETTINGS.items())  # the projector's
    started = time.perf_counter()
    for first in range(0, rows, CHUNK):
        count = min(CHUNK, rows - first)
        store.query_rows(GENERATE.format(start="2025-03-01 00:00:00", span_us=span_us, users=USERS,
                                         teams=TEAMS, models=MODELS, keys=KEYS, apps=APPS,
                                         first=first, count=count, settings=settings), {})
    elapsed = time.perf_counter() - started
    print(f"generated {rows:,} rows in {elapsed:.1f} s: {rows / elapsed:,.0f} rows/s into usage_events "
          "with the rollup views attached (INSERT … SELECT, chunks of 1 M)")
    for table in ("usage_events", "usage_hourly", "usage_daily"):
        try:
            count = store.query_rows(f"SELECT count() FROM {table}", {})[0][0]  # noqa: S608 - fixed names
            print(f"  {table}: {int(count):,} rows")
        except RuntimeError as error:
            print(f"  {table}: {error}")


def questions() -> list[tuple[str, list[AnalyticsQuery]]]:
    """What each dashboard view asks the store, as the admin analytics API asks it."""
    month = AnalyticsQuery(START, END)
    before = AnalyticsQuery(PREVIOUS, START)
    user = "user-7"
    return [
        ("summary (this and the previous period)", [month, before]),
        ("timeseries, day", [replace(month, group_by=("day",), latency=False)]),
        ("top users (by user; the top 10 users by day)",
         [replace(month, group_by=("user",), latency=False),
          replace(month, group_by=("user", "day"), latency=False,
                  user_ids=tuple(f"user-{n}" for n in range(10)))]),
        ("models", [replace(month, group_by=("model",))]),
        ("user deep dive (totals, models, keys, previous)",
         [replace(month, user_id=user), replace(month, user_id=user, group_by=("model",)),
          replace(month, user_id=user, group_by=("key",)), replace(before, user_id=user)]),
        ("users table (by user, this and the previous period)",
         [replace(month, group_by=("user",), latency=False),
          replace(before, group_by=("user",), latency=False)]),
        ("one team, one application, by model", [replace(month, team_id="team-3", application="app-3",
                                                         group_by=("model",))]),
        ("timeseries, hour (hourly rollup)", [replace(month, group_by=("hour",), latency=False)]),
        ("timeseries, day in Europe/Paris (hourly rollup)",
         [replace(month, group_by=("day",), timezone="Europe/Paris", latency=False)]),
    ]


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], result


def ask(store: ChdbAnalytics, repeat: int) -> None:
    print(f"{'question':<52} {'rollup p50':>10} {'p90':>7} {'raw p50':>9} {'raw/rollup':>10}")
    for name, asked in questions():
        def through(source: str, asked: list[AnalyticsQuery] = asked) -> Callable[[], object]:
            return lambda: [store.figures(replace(q, source=source)) for q in asked]
        fast, fast90, fast_answer = timed(through("auto"), repeat)
        slow, _, slow_answer = timed(through("raw"), max(2, repeat // 3))
        same = "" if fast_answer == slow_answer else "  DIFFERENT ANSWERS"
        print(f"{name:<52} {fast * 1000:>8.1f}ms {fast90 * 1000:>5.1f}ms {slow * 1000:>7.1f}ms "
              f"{slow / fast:>9.1f}x{same}")


def synthetic_facts(count: int, seed: int = 11) -> list[RequestMetered]:
    """`count` facts of the generated month's shape (users, teams, keys, three models a key)."""
    rng = random.Random(seed)
    span = int((END - START).total_seconds())
    facts = []
    for _ in range(count):
        key = rng.randrange(KEYS)
        facts.append(RequestMetered(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            occurred_at=START + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6)),
            key_id=f"key-{key}", user_id=f"user-{key % USERS}", team_id=f"team-{key % USERS % TEAMS}",
            model=f"model-{(key + rng.randrange(3)) % MODELS}", endpoint="/v1/chat/completions",
            prompt_tokens=rng.randrange(4000), completion_tokens=rng.randrange(1000),
            cached_tokens=rng.randrange(200), latency_ms=50 + rng.randrange(3000), status=200,
            usage_source=UsageSource.UPSTREAM, price_version=1, cost=rng.randrange(10**7),
            labels={"app": f"app-{key % APPS}"}))
    return facts


def ingest(directory: Path, count: int, batch: int = 20_000) -> None:
    facts = synthetic_facts(count)
    store = ChdbAnalytics(directory)
    store.ensure_schema()
    store.insert_usage(facts[:batch], batch_id="warm-up")  # pyarrow's first conversion pays ~1 s
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(batch, len(facts), batch):
        store.insert_usage(facts[i:i + batch], batch_id=f"bench:{i}")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = len(facts) - batch
    print(f"ingest {done:,} facts in batches of {batch:,} with batch ids, rollups attached: "
          f"{done / elapsed:,.0f} events/s (process CPU {cpu:.1f} s for {elapsed:.1f} s)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ingest", type=int, default=1_000_000, help="0 to skip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterline-bench-rollups-") as directory:
        if args.ingest:
            ingest(Path(directory) / "ingest", args.ingest)
        store = ChdbAnalytics(Path(directory) / "month")
        store.ensure_schema()
        generate(store, args.rows)
        ask(store, args.repeat)
        # Background merges fold a month's inserts into fewer rows over the month; force them to
        # see the figures of a rollup as merged as it gets.
        for table in ("usage_events", "usage_hourly", "usage_daily"):
            store.query_rows(f"OPTIMIZE TABLE {table} FINAL", {})
        print("after OPTIMIZE TABLE … FINAL (every part merged):")
        for table in ("usage_events", "usage_hourly", "usage_daily"):
            count = store.query_rows(f"SELECT count() FROM {table}", {})[0][0]  # noqa: S608 - fixed names
            print(f"  {table}: {int(count):,} rows")
        ask(store, args.repeat)
        store.close()


if __name__ == "__main__":
    main()
