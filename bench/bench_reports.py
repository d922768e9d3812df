"""Chargeback for a month of 10 M usage rows: every grouping in every format, through the rollups
beside the same report over the raw table, in one run.

Run: `python -m bench.bench_reports [--rows 10000000] [--repeat 5]`.

Generates the month of bench_rollups (1,000 users in 50 teams, 5,000 keys, 10 models, 40
applications) in chDB, then for each grouping times the figures query alone (rollup vs raw) and
each format end to end (query + writer), median and p90 of `--repeat` runs; checks the rollup
and raw reports are the same bytes. Targets (issue 14): JSON/CSV/Parquet ≤ 300 ms, XLSX/PDF ≤ 2 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from adapters.analytics.chdb import ChdbAnalytics
from bench.bench_rollups import generate, timed
from reports.chargeback import GROUPS, chargeback
from reports.exports import FOCUS_FORMATS, FORMATS
from reports.report_period import parse_period
from reports.writers.focus import focus_frame

PERIOD = parse_period("2025-03", "UTC")  # the generated month


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterline-bench-reports-") as directory:
        store = ChdbAnalytics(Path(directory) / "month")
        store.ensure_schema()
        generate(store, args.rows)
        print(f"\n{'grouping':<12} {'rows':>6} {'query p50':>10} {'raw p50':>9} {'raw/rollup':>10}   "
              + "  ".join(f"{fmt:>13}" for fmt in [*FORMATS, *FOCUS_FORMATS]))
        for group_by in GROUPS:
            query, _, report = timed(lambda g=group_by: chargeback(store, PERIOD, g), args.repeat)
            raw, _, raw_report = timed(lambda g=group_by: chargeback(store, PERIOD, g, source="raw"),
                                       max(2, args.repeat // 2))
            same = all(f.write(report) == f.write(raw_report) for f in FORMATS.values())
            makers = [lambda f=f, g=group_by: f.write(chargeback(store, PERIOD, g)) for f in FORMATS.values()]
            makers += [lambda f=f, g=group_by: f.write(focus_frame(store, PERIOD, g))
                       for f in FOCUS_FORMATS.values()]
            cells = []
            for make in makers:
                p50, p90, _ = timed(make, args.repeat)
                cells.append(f"{p50 * 1000:>6.0f}/{p90 * 1000:<4.0f}ms")
            print(f"{group_by:<12} {len(report.rows):>6} {query * 1000:>8.1f}ms {raw * 1000:>7.0f}ms "
                  f"{raw / query:>9.1f}x   " + "  ".join(cells) + ("" if same else "  DIFFERENT ANSWERS"))
        print("(format cells: end to end, query + writer, p50/p90)")
        store.close()


if __name__ == "__main__":
    main()
