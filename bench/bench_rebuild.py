"""Rebuild speed: `meterline projections rebuild` over a ledger of `--facts` recorded facts.

python -m bench.bench_rebuild --facts 2000000

Records the facts into an embedded (SQLite) ledger in batches of 5,000, as the ledger worker
does, then runs the rebuild command's own code (`infra.rebuild.run`) into chDB with its
rollups: the ledger's log read back, each fact checked, Arrow-framed and inserted with a batch
id. It is also the projector's steady-state ingest path (the same `LedgerProjector.run_once`),
so its events/s is the projector's ingest rate from the ledger into chDB with the rollups.
Prints the recording rate, the rebuild's events/s (the command's own line) and its process CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, sqlite_env
from bench.bench_rollups import synthetic_facts
from infra.config.env_settings import Settings
from infra.config.toml_file import parse_config


def record(data_dir: Path, count: int, batch: int = 5_000) -> None:
    registry, ledger = open_applications(sqlite_env(data_dir), SystemClock())
    try:
        started = time.perf_counter()
        for first in range(0, count, batch):
            ledger.record_usage(synthetic_facts(min(batch, count - first), seed=first))
        elapsed = time.perf_counter() - started
        print(f"recorded {count:,} facts into the SQLite ledger in {elapsed:.1f} s "
              f"({count / elapsed:,.0f} facts/s, batches of {batch:,})")
    finally:
        registry.close()
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=2_000_000)
    args = parser.parse_args()
    from infra.rebuild import run  # after the arguments: it loads the stores' code

    with tempfile.TemporaryDirectory(prefix="meterline-bench-rebuild-") as directory:
        data_dir = Path(directory)
        record(data_dir, args.facts)
        settings = Settings(data_dir=data_dir, dev=True)
        cpu = time.process_time()
        code = run(settings, parse_config("", source="<bench>"), None, Console())
        print(f"rebuild exit code {code}; process CPU {time.process_time() - cpu:.1f} s")


if __name__ == "__main__":
    main()
