"""Audit search over a large trail: through the ClickHouse index (chDB) vs the trail's own scan.

python -m bench.bench_audit_search --entries 1000000 --repeat 7

Appends `--entries` entries to a fresh SQLite trail (1,000 users, 50,000 keys, ten actions
of which KeyRevoked is 1 %, six months of times growing with seq), projects them into a chDB
audit index with the projector (entries/s), then answers the same searches both ways, each
`--repeat` times (the p50 is printed; the first answer of each is checked equal): the index
(`audit_index_search.search`, caught up) and the scan (`audit_search.newest_first`, one request:
at most 50,000 entries read, so a rare filter answers part of a page and a cursor) plus, once,
the scan paged to its full answer.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.analytics.chdb import ChdbAnalytics
from adapters.clock import SystemClock
from adapters.eventstore.environments import sqlite_env
from domain.audit import AuditEntry
from domain.ports.audit_index import AuditFilter
from domain.services.audit_index_search import search
from domain.services.audit_search import newest_first
from domain.services.audit_trail import AuditTrail
from projections.audit_projector import AuditProjector

START = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = ["AdminActionPerformed", "KeyIssued", "AuthFailed", "AccessDenied", "BudgetSet",
           "UserChanged", "KeyRotated", "BudgetThresholdCrossed", "UserTokenIssued"]


def entry(i: int, n: int) -> AuditEntry:
    action = "KeyRevoked" if i % 100 == 7 else ACTIONS[i % len(ACTIONS)]
    return AuditEntry(time=START + timedelta(seconds=i * (182 * 86_400 // n)), actor=f"user:u{i % 1000}",
                      action=action, target=f"key:{i % 50_000:08d}", details={"path": "/api/keys", "n": i},
                      source_ip="203.0.113.9", request_id=f"req-{i:012d}")


def p50_ms(work: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        answer = work()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    n = args.entries
    with tempfile.TemporaryDirectory(prefix="bench_audit_search_") as workdir:
        trail = AuditTrail(SystemClock(), env=sqlite_env(Path(workdir) / "store"))
        began = time.perf_counter()
        for start in range(0, n, 1000):
            trail.append([entry(i, n) for i in range(start, min(n, start + 1000))])
        print(f"appended {n:,} entries in {time.perf_counter() - began:.1f} s", flush=True)
        index = ChdbAnalytics(Path(workdir) / "chdb")
        index.ensure_schema()
        began = time.perf_counter()
        projected = AuditProjector(trail, index, page=5000).rebuild()
        seconds = time.perf_counter() - began
        print(f"projected {projected:,} entries into chDB in {seconds:.1f} s ({projected / seconds:,.0f}/s)")
        now = datetime.now(UTC)
        middle = START + timedelta(days=91)
        questions = {
            "newest 100, no filter": AuditFilter(),
            "actor = user:u17 (0.1 %)": AuditFilter(actor="user:u17"),
            "target = key:00012345 (20 entries)": AuditFilter(targets=frozenset({"key:00012345"})),
            "type = KeyRevoked (1 %)": AuditFilter(actions=frozenset({"KeyRevoked"})),
            "type = KeyRevoked, one day mid-trail": AuditFilter(
                actions=frozenset({"KeyRevoked"}), start=middle, end=middle + timedelta(days=1)),
            "actor + type, nothing matches": AuditFilter(actor="user:u17", actions=frozenset({"KeyRevoked"})),
        }
        print(f"\n{'search (limit 100, newest first)':<40} {'index p50':>10} {'scan p50':>10}  "
              "scan's one request")
        for label, where in questions.items():
            by_index, page = p50_ms(lambda w=where: search(trail, index, w, None, 100, now), args.repeat)
            by_scan, scanned = p50_ms(lambda w=where: newest_first(trail, w, None, 100),
                                      max(1, args.repeat // 3))
            found = len(page.entries)  # type: ignore[attr-defined]
            partial = len(scanned.entries)  # type: ignore[attr-defined]
            assert page.entries[:partial] == scanned.entries, label  # type: ignore[attr-defined]
            print(f"{label:<40} {by_index:>8.1f} ms {by_scan:>8.0f} ms  {partial}/{found} found"
                  f"{', then a cursor' if scanned.next_before and partial < 100 else ''}")  # type: ignore[attr-defined]
        where = questions["target = key:00012345 (20 entries)"]
        began = time.perf_counter()
        before, pages, total = None, 0, 0
        while True:
            page = newest_first(trail, where, before, 100)
            pages, total = pages + 1, total + len(page.entries)
            if page.next_before is None:
                break
            before = page.next_before
        print(f"\nthe scan paged to its full answer for one key: {pages} requests, {total} entries, "
              f"{time.perf_counter() - began:.1f} s (the index: one request, above)")
        index.close()
        trail.close()


if __name__ == "__main__":
    main()
