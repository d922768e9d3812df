"""Audit search through the ClickHouse index equals the trail's own scan, however far behind the
projection is; and the projector, killed with -9 mid-page again and again, loses and doubles nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.clock import FixedClock
from adapters.eventstore import memory
from adapters.eventstore.environments import memory_env, sqlite_env
from domain.audit import AuditEntry
from domain.ports.audit_index import AuditFilter, AuditIndexQuery
from domain.services.audit_index_search import search
from domain.services.audit_search import newest_first
from domain.services.audit_trail import AuditTrail
from projections.audit_projector import AuditProjector
from tests.support.audit_entries import ACTIONS, ACTORS, T0, TARGETS, random_entries

NOW = datetime(2025, 3, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def filters() -> st.SearchStrategy[AuditFilter]:
    moments = st.integers(0, 7 * 86_400).map(lambda s: T0 + timedelta(seconds=s))
    return st.builds(AuditFilter, actions=st.frozensets(st.sampled_from(ACTIONS), max_size=2),
                     actor=st.none() | st.sampled_from(ACTORS),
                     targets=st.frozensets(st.sampled_from(TARGETS), max_size=2),
                     start=st.none() | moments, end=st.none() | moments)


def pages(read, where: AuditFilter, limit: int) -> list[tuple[list, int | None]]:
    """Every page of a search, newest first, as (seqs, next_before)."""
    found, before = [], None
    for _ in range(500):
        page = read(where, before, limit)
        found.append(([c.as_record() for c in page.entries], page.next_before))
        if page.next_before is None:
            return found
        before = page.next_before
    raise AssertionError("the paging did not end")


def test_search_through_clickhouse_pages_exactly_as_the_trail_scan_for_random_trails(tmp_path: Path) -> None:
    index = ChdbAnalytics(tmp_path / "chdb")

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(entries=random_entries(60), where=filters(), limit=st.integers(1, 25),
           projected=st.integers(0, 3), page=st.integers(1, 30))
    def check(entries: list[AuditEntry], where: AuditFilter, limit: int, projected: int, page: int) -> None:
        name = f"audit-{uuid.uuid4().hex}"
        trail = AuditTrail(FixedClock(NOW), env=memory_env(name))
        try:
            for start in range(0, len(entries), 7):  # several appends, as the writers make them
                trail.append(entries[start:start + 7])
            index.delete_audit()
            projector = AuditProjector(trail, index, page=page)
            for _ in range(projected):  # the projection some pages behind the head, or caught up
                projector.run_once()
            by_scan = pages(lambda w, b, n: newest_first(trail, w, b, n), where, limit)
            sources = set()

            def through_index(w: AuditFilter, b: int | None, n: int):
                page = search(trail, index, w, b, n, NOW)
                sources.add(page.source)
                return page
            by_index = pages(through_index, where, limit)
            assert by_index == by_scan
            assert "trail" not in sources  # the index answered every page (no silent fallback)
            if projector.position == trail.head().seq and trail.head().seq:
                assert search(trail, index, where, None, limit, NOW).source == "index"
        finally:
            trail.close()
            memory.forget(name)

    try:
        check()
    finally:
        index.close()


def test_a_search_says_how_far_behind_the_index_is_and_answers_from_the_trail_when_it_is_away() -> None:
    name = f"audit-{uuid.uuid4().hex}"
    trail = AuditTrail(FixedClock(NOW), env=memory_env(name))
    try:
        trail.append([AuditEntry(time=NOW - timedelta(minutes=10 - i), actor="admin", action="KeyIssued",
                                 target=f"key:{i}") for i in range(10)])
        index = InMemoryAnalytics()
        AuditProjector(trail, index, page=6).run_once()
        page = search(trail, index, AuditFilter(), None, 3, NOW)
        assert [c.seq for c in page.entries] == [10, 9, 8] and page.next_before == 8
        assert page.projection() == {"source": "index+trail", "head_seq": 10, "indexed_seq": 6,
                                     "lag_entries": 4, "lag_seconds": 240.0}  # seq 7, 4 min old
        assert [c.seq for c in search(trail, index, AuditFilter(), 8, 3, NOW).entries] == [7, 6, 5]
        assert search(trail, index, AuditFilter(), 6, 3, NOW).source == "index"
        exactly = search(trail, index, AuditFilter(), None, 4, NOW)  # the page ends at seq 7: 6 + 1
        assert ([c.seq for c in exactly.entries], exactly.next_before, exactly.source) == (
            [10, 9, 8, 7], 7, "index+trail")
        assert [c.seq for c in search(trail, index, AuditFilter(), 7, 4, NOW).entries] == [6, 5, 4, 3]

        class Away(InMemoryAnalytics):
            def audit_position(self) -> int:
                raise ConnectionError("the projector is not running")

        away = search(trail, Away(), AuditFilter(), None, 3, NOW)
        assert ([c.seq for c in away.entries], away.source, away.position) == ([10, 9, 8], "trail", None)
        ahead = InMemoryAnalytics()
        other = AuditTrail(FixedClock(NOW), env=memory_env(name + "-other"))
        other.append([AuditEntry(time=NOW, actor="system", action="BudgetSet")] * 12)
        AuditProjector(other, ahead).run_once()  # an index made from another, longer trail
        assert search(trail, ahead, AuditFilter(), None, 3, NOW).source == "trail"
        other.close()
        memory.forget(name + "-other")
    finally:
        trail.close()
        memory.forget(name)


def test_a_projector_starting_on_an_index_of_another_trail_projects_its_own_again() -> None:
    names = [f"audit-{uuid.uuid4().hex}" for _ in range(2)]
    trails = [AuditTrail(FixedClock(NOW), env=memory_env(name)) for name in names]
    try:
        for n, trail in enumerate(trails):
            trail.append([AuditEntry(time=NOW, actor=f"user:{n}", action="KeyIssued")] * 5)
        index = InMemoryAnalytics()
        AuditProjector(trails[0], index).run_once()
        projector = AuditProjector(trails[1], index)
        projector.start()
        assert projector.position == 0
        projector.run_once()
        held = index.audit_entries(AuditIndexQuery(AuditFilter(), limit=100))
        assert {c.entry.actor for c in held} == {"user:1"} and len(held) == 5
    finally:
        for trail, name in zip(trails, names, strict=True):
            trail.close()
            memory.forget(name)


# ----- kill -9 ----------------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from adapters.analytics.chdb import ChdbAnalytics
from adapters.clock import SystemClock
from adapters.eventstore.environments import sqlite_env
from domain.services.audit_trail import AuditTrail
from projections.audit_projector import AuditProjector
data = Path(sys.argv[1])
trail = AuditTrail(SystemClock(), env=sqlite_env(data))
projector = AuditProjector(trail, ChdbAnalytics(data / "chdb"), page=int(sys.argv[2]))
projector.start()
print("started", projector.position, flush=True)
while projector.run_once():
    pass
print("done", projector.position, flush=True)
"""


def test_kill_9_of_the_audit_projector_mid_page_loses_and_doubles_no_entry(tmp_path: Path) -> None:
    rng = random.Random()
    data = tmp_path / "data"
    trail = AuditTrail(FixedClock(NOW), env=sqlite_env(data))
    moments = [datetime(2025, 1, 25, tzinfo=UTC) + timedelta(minutes=3 * i) for i in range(48_000)]
    for start in range(0, len(moments), 2000):  # 100 days: pages cross three month ends
        trail.append([AuditEntry(time=at, actor=f"user:u{i % 13}", action="KeyIssued", target=f"key:{i}",
                                 details={"i": i})
                      for i, at in enumerate(moments[start:start + 2000], start)])
    head = trail.head().seq
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills, positions = 0, []
    # four kills (each a process start, ~2 s), more while none has yet landed after an insert (a
    # loaded machine), at most 15
    while len(positions) < 15 and not (kills >= 4 and positions[-1] > 0):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(rng.choice([100, 150, 250]))],
                                 stdout=subprocess.PIPE, env=env, cwd=ROOT)
        started = child.stdout.readline().split()
        assert started[0] == b"started", started
        positions.append(int(started[1]))
        # its first insert takes ~0.25 s, the next ~20 ms each (several times that on a loaded
        # machine): each restart that found nothing projected yet waits longer before its kill
        time.sleep(rng.uniform(0.2, 1.0) + 0.3 * positions.count(0))
        if child.poll() is not None:
            break  # it finished first: the kills so far are the test
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
    final = subprocess.run([sys.executable, "-c", CHILD, str(data), "1000"], capture_output=True, env=env,
                           cwd=ROOT, timeout=300, check=True)
    assert final.stdout.split()[-2:] == [b"done", str(head).encode()], final.stderr[-2000:]
    assert positions == sorted(positions)  # each restart went on from where the index stood
    assert kills >= 3 and any(0 < p < head for p in positions)  # the kills landed while it worked
    index = ChdbAnalytics(data / "chdb")
    try:
        assert index.audit_position() == head
        held = [c for before in range(head + 1, 1, -10_000)
                for c in index.audit_entries(AuditIndexQuery(AuditFilter(), before=before, limit=10_000))]
        assert held == list(reversed(list(trail.records())))
        index.query_rows("OPTIMIZE TABLE audit_entries FINAL", {})
        assert index.query_rows("SELECT count(), uniqExact(seq) FROM audit_entries", {}) == [[head, head]]
    finally:
        index.close()
        trail.close()
