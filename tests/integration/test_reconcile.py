"""`meterline reconcile` over real stores: the ledger's facts against analytics, to the nano-unit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from typer.testing import CliRunner

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.analytics.remote_server import AnalyticsServer
from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env, open_applications, sqlite_env
from domain.services.ledger import BusPosition
from domain.usage import RequestMetered, UsageSource
from infra.cli import app
from infra.reconcile import reconcile, report
from infra.runner import analytics_socket
from tests.support.deployment import write_config

START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)


def fact(n: int, **fields: Any) -> RequestMetered:
    defaults: dict[str, Any] = dict(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconcile/{n}")), occurred_at=AT,
        key_id=f"k{n % 3}", user_id=f"u{n % 2}", team_id=None if n % 4 == 0 else "red",
        model=("gemma-3", "qwen")[n % 2], endpoint="/v1/chat/completions", prompt_tokens=100 + n,
        completion_tokens=20 + n, cached_tokens=0, latency_ms=10, status=200,
        usage_source=UsageSource.UPSTREAM, price_version=1, cost=1_000_003 * n)
    return RequestMetered(**{**defaults, **fields})


def traffic() -> list[RequestMetered]:
    """Ten requests, one a stream metered in three parts, and one fact of the month before."""
    stream = [fact(100, request_id="s", requests=1, final=False),
              fact(101, request_id="s", requests=0, final=False, prompt_tokens=0),
              fact(102, request_id="s", requests=0, prompt_tokens=0)]
    before = fact(200, occurred_at=datetime(2026, 2, 27, tzinfo=UTC))
    return [fact(n) for n in range(1, 10)] + stream + [before]


def test_a_ledger_and_analytics_fed_the_same_facts_reconcile_until_analytics_gains_one() -> None:
    registry, ledger = open_applications(memory_env(f"reconcile-{uuid.uuid4()}"), FixedClock(AT))
    analytics = InMemoryAnalytics()
    facts = traffic()
    ledger.record_usage(facts, BusPosition("meterline.usage", 0, len(facts)))
    analytics.insert_usage(facts)
    console = Console(record=True, width=200)

    rows = reconcile(ledger.metered_facts(), analytics, START, END)
    assert report(rows, START, END, "UTC", console) == 0
    assert sum(row.ledger.requests for row in rows if row.grouping == "user") == 10

    analytics.insert_usage([fact(300, user_id="u1", key_id="k0", team_id="red", model="qwen", cost=1)])
    rows = reconcile(ledger.metered_facts(), analytics, START, END)

    assert report(rows, START, END, "UTC", console) == 1
    assert [(row.grouping, row.group) for row in rows if not row.matches] == [
        ("user", "u1"), ("key", "k0"), ("team", "red"), ("model", "qwen")]
    assert "MISMATCH: 4 of" in console.export_text()
    registry.close()
    ledger.close()


def ledger_with_traffic(tmp_path: Path) -> tuple[Path, list[str], list]:
    """A data directory whose SQLite ledger holds `traffic()`, and the command's arguments."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "meterline.toml", "http://127.0.0.1:9/v1")
    registry, ledger = open_applications(sqlite_env(data_dir), FixedClock(AT))
    facts = traffic()
    ledger.record_usage(facts, BusPosition("meterline.usage", 0, len(facts)))
    registry.close()
    ledger.close()
    return data_dir, ["reconcile", "--period", "2026-03", "--data-dir", str(data_dir),
                      "--config", str(config)], facts


def test_the_command_exits_non_zero_when_a_cost_differs_by_one_nano_unit(tmp_path: Path) -> None:
    data_dir, args, facts = ledger_with_traffic(tmp_path)
    analytics = ChdbAnalytics(data_dir / "analytics")
    analytics.insert_usage(facts)
    analytics.close()

    matched = CliRunner().invoke(app, args)
    assert matched.exit_code == 0, matched.output
    assert "reconciled:" in matched.output

    analytics = ChdbAnalytics(data_dir / "analytics")
    analytics.insert_usage([fact(400, user_id="u0", key_id="k0", team_id="red", model="qwen", cost=1,
                                 prompt_tokens=0, completion_tokens=0, requests=0)])
    analytics.close()
    differed = CliRunner().invoke(app, args)

    assert differed.exit_code == 1, differed.output
    assert "MISMATCH: 4 of" in differed.output
    assert "cost +1" in differed.output


def test_the_command_asks_the_running_projector_for_analytics(tmp_path: Path) -> None:
    """While `meterline up` runs, its projector owns chDB and serves it on the data directory's
    socket; the command must read there (the chDB directory itself is left empty here)."""
    data_dir, args, facts = ledger_with_traffic(tmp_path)
    served = InMemoryAnalytics()
    served.insert_usage(facts)

    with AnalyticsServer(served, analytics_socket(data_dir)):
        result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "reconciled: 9 groups" in result.output
