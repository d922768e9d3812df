"""Ledger throughput: RequestMetered facts recorded into PostgreSQL with tracking records.

python -m bench.bench_ledger --facts 100000 --batch 5000 --keys 200
Creates a throw-away database on 127.0.0.1:5432, records the facts in partition batches
exactly as the ledger worker does (one transaction per batch, with its bus position),
and prints facts/s. Drops the database at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, postgres_env
from domain.services.ledger import BusPosition
from domain.usage import RequestMetered, UsageSource
from testkit.postgres import temporary_database


def facts(n: int, keys: int) -> list[RequestMetered]:
    now = datetime.now(UTC)
    return [RequestMetered(str(uuid.uuid4()), now, f"key-{i % keys}", f"user-{i % (keys // 4 or 1)}",
                           f"team-{i % 8}", "sim", "/v1/chat/completions", 120, 40, 0, 12, 200,
                           UsageSource.UPSTREAM, 1, 100_000 + i % 977) for i in range(n)]


def run(n: int, batch: int, keys: int) -> float:
    with temporary_database("bench_ledger") as database_url:
        registry, ledger = open_applications(postgres_env(database_url), SystemClock())
        ledger.record_usage(facts(10, keys), BusPosition("meterline.usage", 99, 10))  # warm-up
        data = facts(n, keys)
        started = time.perf_counter()
        for i in range(0, n, batch):
            part = data[i:i + batch]
            ledger.record_usage(part, BusPosition("meterline.usage", 0, i + len(part)))
        elapsed = time.perf_counter() - started
        registry.close()
        ledger.close()
        return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--keys", type=int, default=200)
    args = ap.parse_args()
    rate = run(args.facts, args.batch, args.keys)
    print(f"ledger on PostgreSQL: {args.facts} facts in batches of {args.batch}, {args.keys} keys: "
          f"{rate:,.0f} RequestMetered/s")


if __name__ == "__main__":
    main()
