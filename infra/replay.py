"""`meterline replay --until T`: budgets and keys as they stood at T, rebuilt from the event store.

Nothing is written: the stores are opened without creating tables, read, and closed. Keys
come from folding the registry's key events (a small log). A budget's log grows with every
batch of spend, so it is not folded from the start: a binary search over its versions finds
the last event recorded by T (about 20 event reads for a million), and the repository loads
that version from the nearest snapshot.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from rich.console import Console
from rich.table import Table

from domain.budget import Budget
from domain.money import usd_text
from domain.replay import BudgetAt, KeyAt, budget_at, fold_until, key_at

KEY_TOPICS = ["meterline.KeyIssued", "meterline.KeyRotated", "meterline.KeyRevoked",
              "meterline.KeyModelsChanged", "meterline.KeyExpired"]
USER_TOPICS = ["meterline.UserRegistered", "meterline.UserChanged"]
SCOPES = ("user", "key", "team")


def parse_until(text: str) -> datetime:
    """An ISO 8601 instant; one without a zone is read as UTC."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--until {text!r}: give an ISO 8601 instant, e.g. 2026-03-01T12:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_scope(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    kind, _, scope_id = text.partition(":")
    if kind not in SCOPES or not scope_id:
        raise ValueError(f"--scope {text!r}: give user:ID, key:ID or team:ID")
    return kind, scope_id


def _events(app: Any, topics: list[str]) -> Any:
    start = 1
    while page := app.notification_log.select(start=start, limit=500, topics=topics):
        for notification in page:
            yield app.mapper.to_domain_event(notification)
        start = page[-1].id + 1


def _budget_ids(ledger: Any) -> list[UUID]:
    return [event.originator_id for event in _events(ledger, ["meterline.BudgetOpened"])]


def _version_at(ledger: Any, budget_id: UUID, until: datetime) -> int:
    """The last version of a budget whose event was recorded at or before `until`; 0: none."""
    def at(version: int) -> datetime:
        (stored,) = ledger.recorder.select_events(budget_id, gt=version - 1, lte=version, limit=1)
        return ledger.mapper.to_domain_event(stored).at

    last = ledger.recorder.select_events(budget_id, desc=True, limit=1)
    low, high = 0, last[0].originator_version if last else 0
    while low < high:  # invariant: version `low` is in the past of `until` (0 stands for "none")
        middle = (low + high + 1) // 2
        if at(middle) <= until:
            low = middle
        else:
            high = middle - 1
    return low


def rebuild(registry: Any, ledger: Any, until: datetime) -> tuple[list[BudgetAt], list[KeyAt], dict]:
    """Every budget and key at `until`, and each user's team then (for --scope)."""
    keys = [key_at(k, until) for k in fold_until(_events(registry, KEY_TOPICS), until).values()]
    users = {u.user_id: u.team_id for u in fold_until(_events(registry, USER_TOPICS), until).values()}
    budgets = []
    for budget_id in _budget_ids(ledger):
        version = _version_at(ledger, budget_id, until)
        if version:
            budget: Budget = ledger.repository.get(budget_id, version=version)
            budgets.append(budget_at(budget, until))
    budgets.sort(key=lambda b: (SCOPES.index(b.scope) if b.scope in SCOPES else 9, b.scope_id))
    keys.sort(key=lambda k: (k.user_id, k.name, k.key_id))
    return budgets, keys, users


def within(scope: tuple[str, str] | None, budgets: list[BudgetAt], keys: list[KeyAt],
           users: dict[str, str | None]) -> tuple[list[BudgetAt], list[KeyAt]]:
    """The budgets and keys one principal's requests were held to: a user's keys, the user
    and their team; a key, its user and team; a team, its users and their keys."""
    if scope is None:
        return budgets, keys
    kind, scope_id = scope
    if kind == "key":
        keys = [k for k in keys if k.key_id == scope_id]
        people = {(k.user_id, k.team_id) for k in keys}
    elif kind == "user":
        keys = [k for k in keys if k.user_id == scope_id]
        people = {(scope_id, users.get(scope_id))}
    else:
        keys = [k for k in keys if k.team_id == scope_id]
        people = {(user, team) for user, team in users.items() if team == scope_id} | {(None, scope_id)}
    wanted = {("key", k.key_id) for k in keys} | {("user", u) for u, _ in people if u} | {
        ("team", t) for _, t in people if t}
    return [b for b in budgets if (b.scope, b.scope_id) in wanted], keys


def as_json(until: datetime, budgets: list[BudgetAt], keys: list[KeyAt]) -> str:
    def plain(item: Any) -> dict:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in dataclasses.asdict(item).items()}
    return json.dumps({"until": until.isoformat(), "budgets": [plain(b) for b in budgets],
                       "keys": [plain(k) for k in keys]}, indent=2)


def as_tables(until: datetime, budgets: list[BudgetAt], keys: list[KeyAt], console: Console) -> None:
    table = Table(title=f"budgets at {until.isoformat()} (spent in the period containing it)")
    for name in ("scope", "id", "limit", "mode", "period", "period start", "spent", "state", "policy v"):
        table.add_column(name)
    for b in budgets:
        table.add_row(b.scope, b.scope_id, "-" if b.limit is None else f"${usd_text(b.limit)}",
                      b.mode or "-", b.period, b.period_start.isoformat(), f"${usd_text(b.spent)}",
                      b.state, str(b.policy_version or "-"))
    console.print(table)
    table = Table(title=f"keys at {until.isoformat()}")
    for name in ("key", "user", "team", "name", "prefix", "status", "models", "expires"):
        table.add_column(name)
    for k in keys:
        table.add_row(k.key_id, k.user_id, k.team_id or "-", k.name, k.prefix, k.status,
                      ", ".join(k.models), k.expires_at.isoformat() if k.expires_at else "-")
    console.print(table)


def run(settings: Any, config: Any, until_text: str, scope_text: str | None, fmt: str,
        console: Console | None = None) -> int:
    """What `meterline replay` does: opens both stores read-only, rebuilds, prints."""
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications
    from infra.container import billing_timezone, event_store_env
    if fmt not in ("table", "json"):
        raise ValueError(f"--format {fmt!r}: choose table or json")
    until, scope = parse_until(until_text), parse_scope(scope_text)
    if settings.database_url is None and not (settings.data_dir / "ledger.sqlite").exists():
        raise ValueError(f"no event store in {settings.data_dir}: pass the data directory the "
                         "ledger writes (--data-dir or METERLINE_DATA_DIR)")
    env = {**event_store_env(settings), "CREATE_TABLE": "n"}  # read only: never make a table
    registry, ledger = open_applications(env, SystemClock(), billing_timezone(settings, config))
    try:
        budgets, keys = within(scope, *rebuild(registry, ledger, until))
    finally:
        registry.close()
        ledger.close()
    console = console or Console()
    if fmt == "json":
        print(as_json(until, budgets, keys))  # plain stdout: for jq and scripts, no rich markup
    else:
        as_tables(until, budgets, keys, console)
    return 0
