"""`make bench`: every benchmark of docs/benchmarks.md, one after another, with its output.

python -m bench.run_all [--only gateway,ledger] [--list]

Each runs in its own process with the command docs/benchmarks.md gives, so a figure there
can be checked by running this and reading the same lines. Nothing else should run on the
machine meanwhile: the load generator, the servers and the broker share its cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = {
    "hot-path": ["bench.bench_hot_path", "--requests", "30000"],
    "gateway": ["bench.bench_gateway", "--duration", "10", "--kafka"],
    "ledger": ["bench.bench_ledger", "--facts", "200000", "--batch", "5000", "--keys", "200"],
    "lag": ["bench.bench_lag", "--rate", "1000", "--seconds", "10"],
    "up-lag": ["bench.bench_up_lag", "--rate", "1000", "--seconds", "10"],
    "bus": ["bench.bench_bus"],
    "analytics": ["bench.bench_analytics", "--paths"],
    "simulator": ["bench.bench_simulator", "--duration", "5", "--pin"],
    "streams": ["bench.bench_streams", "--streams", "500,2000"],
    "audit": ["bench.bench_audit", "--single", "2000", "--batched", "100000", "--postgres"],
    "audit-search": ["bench.bench_audit_search", "--entries", "1000000", "--repeat", "7"],
    "rollups": ["bench.bench_rollups", "--rows", "10000000", "--repeat", "7", "--ingest", "1000000"],
    "freshness": ["bench.bench_freshness", "--rate", "1000", "--seconds", "20"],
    "rebuild": ["bench.bench_rebuild", "--facts", "1000000"],
    "refusals": ["bench.bench_refusals", "--duration", "10"],
    "anomaly": ["bench.bench_anomaly", "--users", "5000", "--days", "36", "--repeat", "7", "--merged"],
    "apis": ["bench.bench_apis", "--duration", "4", "--rounds", "5"],
    "apis-hot-path": ["bench.bench_apis_hot_path", "--requests", "30000", "--rounds", "3"],
    "alerts": ["bench.bench_alerts", "--crossings", "50"],
    "reports": ["bench.bench_reports", "--rows", "10000000", "--repeat", "5"],
    "jobs": ["bench.bench_jobs", "--duration", "5", "--rounds", "3", "--jobs", "200"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    args = ap.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    failed = []
    for name in chosen:
        command = [sys.executable, "-m", *BENCHMARKS[name]]
        print(f"\n== {name}: PYTHONPATH=. {' '.join(['.venv/bin/python', *command[1:]])}", flush=True)
        if args.list:
            continue
        started = time.monotonic()
        if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
