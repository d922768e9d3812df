"""`meterline projections rebuild`: analytics rebuilt from the ledger, every table, or only the tail.

A SQLite ledger and chDB with its rollups, as the embedded default keeps them; the command
runs in this process, as a user would run it with `meterline up` stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.analytics.remote_server import AnalyticsServer
from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env, open_applications, sqlite_env
from domain.audit import AuditEntry, Head, chain
from domain.ports.audit_index import AuditFilter, AuditIndexQuery
from domain.services.audit_trail import AuditTrail
from domain.services.ledger import Ledger
from domain.usage_figures import AnalyticsQuery
from infra.cli import app
from infra.rebuild import start_moment
from infra.runner import analytics_socket
from projections.ledger_projector import LedgerProjector
from projections.positions_file import load_positions, lock_positions
from tests.support.deployment import write_config
from tests.support.projector import (
    GROUPINGS,
    SOURCES,
    T0,
    BatchedRollup,
    DiesAfterInsert,
    LedgerFeed,
    ProcessKilled,
    fact,
    figure_differences,
    midnight,
)

FACTS = [fact(n) for n in range(600)]  # 37 minutes apart: about 15 days from T0
START, END = midnight(T0), midnight(T0, 30)
TAIL = "2024-05-09"  # its midnight in UTC, the test's billing time zone


def every_figure(store: Any) -> dict[tuple, Any]:
    return {(group_by, source): store.figures(AnalyticsQuery(START, END, group_by=group_by, source=source))
            for group_by in GROUPINGS for source in SOURCES}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose ledger recorded FACTS in 12 batches, projected into chDB."""
    directory = tmp_path / "data"
    registry, ledger = open_applications(sqlite_env(directory), FixedClock(T0))
    feed = LedgerFeed(ledger)
    for start in range(0, len(FACTS), 50):
        feed.record(FACTS[start:start + 50])
    store = ChdbAnalytics(directory / "analytics")
    projector = LedgerProjector(ledger, store, directory / "projector" / "positions.json", max_facts=120)
    projector.start()
    while projector.run_once().notifications:
        pass
    projector.close()
    store.close()
    ledger.close()
    registry.close()
    yield directory


def rebuild(data_dir: Path, *extra: str) -> Any:
    config = write_config(data_dir.parent / "meterline.toml", "http://127.0.0.1:9/v1")
    return CliRunner().invoke(app, ["projections", "rebuild", "--data-dir", str(data_dir),
                                    "--config", str(config), *extra])


def said(result: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_a_rebuild_reproduces_every_table_and_hands_the_projector_a_new_generation(data_dir: Path) -> None:
    store = ChdbAnalytics(data_dir / "analytics")
    before = every_figure(store)
    assert figure_differences(store, FACTS, START, END) == []
    store.close()
    positions = load_positions(data_dir / "projector" / "positions.json")

    result = rebuild(data_dir)

    assert result.exit_code == 0, result.output
    assert "rebuilt analytics entirely: 600 rows" in said(result)
    assert "events/s" in said(result) and "reconciled:" in said(result)
    after = load_positions(data_dir / "projector" / "positions.json")
    assert (after.generation, after.next_id, after.intent, after.rebuild) == (
        positions.generation + 1, positions.next_id, None, None)
    store = ChdbAnalytics(data_dir / "analytics")
    try:
        assert every_figure(store) == before
        assert store.count_usage() == len(FACTS)
    finally:
        store.close()


def test_a_rebuild_projects_the_audit_trail_into_its_index_again_whole(data_dir: Path) -> None:
    trail = AuditTrail(FixedClock(T0), env=sqlite_env(data_dir))
    trail.append([AuditEntry(time=T0 + timedelta(days=n), actor="admin", action="KeyRevoked",
                             target=f"key:{n}") for n in range(40)])
    store = ChdbAnalytics(data_dir / "analytics")
    store.insert_audit(list(trail.records(upto=10)))
    stranger = AuditEntry(time=T0, actor="user:mallory", action="KeyIssued")
    store.insert_audit(chain(Head(11, "0" * 64), [stranger]))  # a copy edited behind its back
    store.close()

    result = rebuild(data_dir)

    assert result.exit_code == 0, result.output
    assert "rebuilt the audit index: 40 entries" in said(result)
    store = ChdbAnalytics(data_dir / "analytics")
    try:
        assert store.audit_position() == 40
        assert store.audit_entries(AuditIndexQuery(AuditFilter(), limit=100)) == list(reversed(list(
            trail.records())))
    finally:
        store.close()
        trail.close()


def test_a_rebuild_from_a_day_replaces_only_the_facts_from_its_midnight_on(data_dir: Path) -> None:
    tail_from = datetime(2024, 5, 9, tzinfo=UTC)
    stray_head = fact(10_000, occurred_at=tail_from - timedelta(hours=1))
    stray_tail = fact(10_001, occurred_at=tail_from + timedelta(hours=1))
    store = ChdbAnalytics(data_dir / "analytics")
    store.insert_usage([stray_head, stray_tail])  # no ledger knows them: the head's must stay
    store.close()

    result = rebuild(data_dir, "--from", TAIL)

    assert result.exit_code == 0, result.output
    tail = [f for f in FACTS if f.occurred_at >= tail_from]
    assert f"{len(tail)} rows" in said(result)
    store = ChdbAnalytics(data_dir / "analytics")
    try:
        assert store.count_usage() == len(FACTS) + 1
        assert figure_differences(store, [*FACTS, stray_head], START, END) == []
    finally:
        store.close()


def test_a_rebuild_is_refused_while_a_projector_holds_the_positions_or_serves_chdb(data_dir: Path) -> None:
    held = lock_positions(data_dir / "projector" / "positions.json")
    try:
        result = rebuild(data_dir)
    finally:
        held.close()
    assert result.exit_code == 2
    assert "refused" in said(result) and "stop it first" in said(result)

    with AnalyticsServer(InMemoryAnalytics(), analytics_socket(data_dir)):
        result = rebuild(data_dir)
    assert result.exit_code == 2
    assert "stop `meterline up` or `meterline projector` first" in said(result)


def test_a_rebuild_exits_non_zero_when_analytics_then_differs_from_the_ledger(data_dir: Path) -> None:
    """A fact the ledger holds but analytics cannot (a negative token count) is skipped by the
    replay and shows as a difference."""
    registry, ledger = open_applications(sqlite_env(data_dir), FixedClock(T0))
    LedgerFeed(ledger).record([fact(20_000, prompt_tokens=-5)], partition=3)
    ledger.close()
    registry.close()
    result = rebuild(data_dir)
    assert result.exit_code == 1, result.output
    assert "1 malformed facts skipped" in said(result)
    assert "MISMATCH" in said(result)


def test_a_from_in_another_zone_than_the_rollups_is_refused_before_anything_is_deleted(
        data_dir: Path) -> None:
    positions = load_positions(data_dir / "projector" / "positions.json")
    config = data_dir.parent / "paris.toml"
    config.write_text('billing_timezone = "Europe/Paris"\n' + write_config(
        data_dir.parent / "utc.toml", "http://127.0.0.1:9/v1").read_text())
    result = CliRunner().invoke(app, ["projections", "rebuild", "--data-dir", str(data_dir),
                                      "--config", str(config), "--from", TAIL])
    assert result.exit_code == 2, result.output
    assert "daily rollup sums days of UTC" in said(result)
    assert load_positions(data_dir / "projector" / "positions.json") == positions


def test_a_from_that_is_not_a_day_is_refused_with_the_format(data_dir: Path) -> None:
    result = rebuild(data_dir, "--from", "2024-05-40")
    assert result.exit_code == 2
    assert "is not a calendar day" in said(result)


def test_from_is_midnight_in_the_billing_time_zone() -> None:
    assert start_moment("2024-03-31", "Europe/Paris") == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert start_moment(None, "Europe/Paris") is None
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        start_moment("31/03/2024", "UTC")


@pytest.fixture
def memory_ledger() -> Iterator[Ledger]:
    registry, ledger = open_applications(memory_env(f"rebuild-{uuid.uuid4()}"), FixedClock(T0))
    yield ledger
    ledger.close()
    registry.close()


@pytest.mark.parametrize("since", [None, datetime(2024, 5, 9, tzinfo=UTC)])
def test_a_rebuild_interrupted_by_a_crash_is_finished_by_the_next_projector(
        memory_ledger: Ledger, tmp_path: Path, since: datetime | None) -> None:
    feed = LedgerFeed(memory_ledger)
    for start in range(0, len(FACTS), 100):
        feed.record(FACTS[start:start + 100])
    rollup = BatchedRollup(InMemoryAnalytics())
    positions = tmp_path / "positions.json"
    first = LedgerProjector(memory_ledger, rollup, positions, max_facts=100)
    first.start()
    while first.run_once().notifications:
        pass
    first.close()

    # it dies after its second insert: past the deletion, in the replay (for a rebuild from
    # May 9, the first two batches bring only what is left of their facts)
    doomed = LedgerProjector(memory_ledger, DiesAfterInsert(rollup, after=2), positions, max_facts=100)
    doomed.start()
    doomed.begin_rebuild(since)
    with pytest.raises(ProcessKilled):
        while doomed.run_once().notifications:
            pass
    doomed.close()

    again = LedgerProjector(memory_ledger, rollup, positions, max_facts=100)
    again.start()
    while again.run_once().notifications:
        pass
    assert again.positions.rebuild is None
    assert figure_differences(rollup, FACTS, START, END, sources=("raw",)) == []
    expected = [f for f in FACTS if since is None or f.occurred_at >= since]
    assert (rollup.requests, rollup.cost) == (len(expected), sum(f.cost for f in expected))
