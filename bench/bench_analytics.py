"""Insert and query speed of ChdbAnalytics, and what each way of not double counting costs.

Run: `python -m bench.bench_analytics [--facts 1000000] [--batch 10000] [--redeliver 0.1] [--paths]`.
Inserts synthetic facts for one month in batches (as the projector does), redelivers a
share of them (so the table holds unmerged copies, as after a crash), then times usage
questions through the adapter and, for comparison, the same totals deduplicated by a
GROUP BY event_id subquery, and not deduplicated at all (wrong, the floor).
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

import orjson
from chdb.session import Session

from adapters.analytics.arrow import arrow_stream_bytes, facts_to_arrow
from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.migrate import load_migrations
from adapters.analytics.schema import USAGE_COLUMNS, USAGE_TABLE
from adapters.analytics.sql import escape_param, format_time
from domain.ports.analytics import UsageQuery
from domain.usage import RequestMetered, UsageSource

MONTH = UsageQuery(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
MODELS = ["gemma-3-270m", "llama-3.1-8b", "qwen-2.5-7b", "mistral-7b"]
BY_EVENT = ("SELECT user_id, count(), sum(prompt_tokens), sum(cost) FROM (SELECT event_id, "
            "any(user_id) AS user_id, any(prompt_tokens) AS prompt_tokens, any(cost) AS cost "
            "FROM usage_events WHERE occurred_at >= {start:DateTime64(6, 'UTC')} "
            "AND occurred_at < {end:DateTime64(6, 'UTC')} GROUP BY event_id) GROUP BY user_id")
NO_DEDUP = ("SELECT user_id, count(), sum(prompt_tokens), sum(cost) FROM usage_events "
            "WHERE occurred_at >= {start:DateTime64(6, 'UTC')} "
            "AND occurred_at < {end:DateTime64(6, 'UTC')} GROUP BY user_id")


def synthetic_facts(count: int, seed: int = 7) -> list[RequestMetered]:
    """Facts spread over March 2025: 500 keys of 120 users in 12 teams, four models."""
    rng = random.Random(seed)
    seconds = int((MONTH.end - MONTH.start).total_seconds())
    facts = []
    for _ in range(count):
        key = rng.randrange(500)
        facts.append(RequestMetered(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            occurred_at=MONTH.start + timedelta(seconds=rng.randrange(seconds),
                                                microseconds=rng.randrange(10**6)),
            key_id=f"key-{key:03d}", user_id=f"user-{key % 120:03d}", team_id=f"team-{key % 12:02d}",
            model=rng.choice(MODELS), endpoint="/v1/chat/completions", prompt_tokens=rng.randrange(4000),
            completion_tokens=rng.randrange(1000), cached_tokens=rng.randrange(500),
            latency_ms=rng.randrange(3000),
            status=200, usage_source=UsageSource.UPSTREAM, price_version=1, cost=rng.randrange(10**7)))
    return facts


def timed(action: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """Best and median wall seconds over `repeat` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def insert_all(store: ChdbAnalytics, facts: list[RequestMetered], batch: int, redeliver: float) -> None:
    """Inserts the facts batch by batch, then redelivers a share of them; prints the rates."""
    batches = [facts[i:i + batch] for i in range(0, len(facts), batch)]
    facts_to_arrow(batches[0])  # pyarrow's first conversion pays a one-off start-up (~1 s)
    started = time.perf_counter()
    for chunk in batches:
        facts_to_arrow(chunk)
    framing = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    for chunk in batches:
        store.insert_usage(chunk)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"insert {len(facts):,} facts in batches of {batch:,}: {elapsed:.2f} s, "
          f"{len(facts) / elapsed:,.0f} rows/s (process CPU {cpu:.2f} s; "
          f"the Arrow framing alone runs at {len(facts) / framing:,.0f} rows/s)")
    copies = facts[:int(len(facts) * redeliver)]
    started = time.perf_counter()
    for i in range(0, len(copies), batch):
        store.insert_usage(copies[i:i + batch])
    if copies:
        rate = len(copies) / (time.perf_counter() - started)
        print(f"redeliver {len(copies):,} copies: {rate:,.0f} rows/s")
    assert store.count_usage() == len(facts), "a redelivered copy was counted"


def ask_all(store: ChdbAnalytics) -> None:
    """Times the usage questions, and the same totals deduplicated another way, or not at all."""
    params = {"start": "2025-03-01 00:00:00.000000", "end": "2025-04-01 00:00:00.000000"}
    questions: list[tuple[str, Callable[[], object]]] = [
        ("month total (FINAL)", lambda: store.usage(MONTH)),
        ("month by user (FINAL)", lambda: store.usage(replace(MONTH, group_by="user"))),
        ("month by day, Europe/Berlin (FINAL)",
         lambda: store.usage(replace(MONTH, group_by="day", timezone="Europe/Berlin"))),
        ("one user's month by day (FINAL)",
         lambda: store.usage(replace(MONTH, user_id="user-007", group_by="day"))),
        ("count_usage (FINAL)", store.count_usage),
        ("month by user, GROUP BY event_id subquery", lambda: store.query_rows(BY_EVENT, params)),
        ("month by user, no dedup (wrong; the floor)", lambda: store.query_rows(NO_DEDUP, params)),
    ]
    parts = store.query_rows("SELECT count() FROM system.parts WHERE active AND table = {t:String}",
                             {"t": "usage_events"})[0][0]
    print(f"queries over {parts} active parts:")
    for name, question in questions:
        best, median = timed(question)
        print(f"  {name:<46} best {best:.3f} s, median {median:.3f} s")


def compare_insert_paths(directory: Path, facts: list[RequestMetered], batch: int) -> None:
    """Rows/s of each way into chDB, serialisation included, each into a scratch table."""
    session = Session(str(directory))  # a second session on the open directory is allowed
    columns = ", ".join(USAGE_COLUMNS)
    batches = [facts[i:i + batch] for i in range(0, len(facts), batch)]

    def stream(chunk: list[RequestMetered], table: str, settings: str) -> None:
        payload = arrow_stream_bytes(facts_to_arrow(chunk))
        with session._conn.send_insert(f"INSERT INTO {table} ({columns}) {settings}", "ArrowStream") as ins:
            ins.append(payload)
            ins.finish()

    def python_table(chunk: list[RequestMetered], table: str, _: str) -> None:
        frame = facts_to_arrow(chunk)  # noqa: F841 - chDB's Python() finds it by name
        session.query(f"INSERT INTO {table} ({columns}) SELECT * FROM Python(frame)")

    def json_rows(chunk: list[RequestMetered], table: str, _: str) -> None:
        lines = b"\n".join(orjson.dumps({**f.to_data(), "occurred_at": format_time(f.occurred_at),
                                          "team_id": f.team_id or "", "job_id": f.job_id or ""})
                            for f in chunk)
        with session._conn.send_insert(f"INSERT INTO {table} ({columns})", "JSONEachRow") as ins:
            ins.append(lines)
            ins.finish()

    def row_by_row(chunk: list[RequestMetered], table: str, _: str) -> None:
        for f in chunk[:200]:  # ~100 rows/s: a sample is enough
            session.query(f"INSERT INTO {table} (event_id, occurred_at, user_id, cost) VALUES "
                          "({e:String}, {t:DateTime64(6, 'UTC')}, {u:String}, {c:Int64})",
                          params={"e": f.event_id, "t": format_time(f.occurred_at),
                                  "u": escape_param(f.user_id), "c": str(f.cost)})

    ways = [("ArrowStream, optimize_on_insert=0 (used)", stream, "SETTINGS optimize_on_insert = 0"),
            ("ArrowStream, optimize_on_insert=1", stream, ""), ("Python(arrow table)", python_table, ""),
            ("JSONEachRow via orjson", json_rows, ""), ("one INSERT per row", row_by_row, "")]
    print(f"ways to insert {len(facts):,} facts in batches of {batch:,}:")
    (usage_events_ddl,) = load_migrations("UTC")[0].statements  # the bare raw table, no views
    for n, (name, insert, settings) in enumerate(ways):
        table = f"bench_insert_{n}"
        session.query(f"DROP TABLE IF EXISTS {table}")
        session.query(usage_events_ddl.replace(USAGE_TABLE, table, 1))
        started, cpu = time.perf_counter(), time.process_time()
        rows = 0
        for chunk in batches[:1] if insert is row_by_row else batches:
            insert(chunk, table, settings)
            rows += min(len(chunk), 200) if insert is row_by_row else len(chunk)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        # per CPU second too: on a shared box the wall rate says as much about the neighbours
        print(f"  {name:<42} {rows / elapsed:>10,.0f} rows/s, {rows / cpu:>10,.0f} rows/CPU-s")
        session.query(f"DROP TABLE {table}")
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--redeliver", type=float, default=0.1, help="share of facts inserted twice")
    parser.add_argument("--dir", type=Path, default=None, help="chDB data directory (default: a temp dir)")
    parser.add_argument("--paths", action="store_true", help="also compare ways to insert, on 100k facts")
    args = parser.parse_args()

    print(f"generating {args.facts:,} facts ...", flush=True)
    facts = synthetic_facts(args.facts)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch) / "chdb"
        store = ChdbAnalytics(directory)
        store.ensure_schema()
        insert_all(store, facts, args.batch, args.redeliver)
        ask_all(store)
        started = time.perf_counter()
        store.query_rows("OPTIMIZE TABLE usage_events FINAL", {})  # what background merges converge to
        print(f"OPTIMIZE TABLE ... FINAL: {time.perf_counter() - started:.2f} s")
        ask_all(store)
        if args.paths:
            compare_insert_paths(directory, facts[:100_000], args.batch)
        store.close()


if __name__ == "__main__":
    main()
