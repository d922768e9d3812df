"""Versioned schema migrations for the ClickHouse analytics stores (chDB and server alike).

`migrations/NNNN_name.sql` hold the statements, applied in version order at open; the
`schema_migrations` table records each applied version, when, and the rollup time zone the
store was made with. Every statement is idempotent (IF NOT EXISTS, or emptied and refilled),
so a crash half-way through a migration re-runs it safely; an upgrade adds, never drops.

One process migrates a store at a time: chDB has one owner per directory; on a server, the
first process to open it does (a second one opening at the very same moment could backfill the
rollups twice; deploy so one component opens it first).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from domain.periods import is_time_zone
from domain.usage_figures import ERROR_STATUS, LATENCY_BUCKETS_MS

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
ROLLUPS_VERSION = 3  # the migration that fixes the rollup time zone
# How many recent insert tokens each table remembers: a retried batch must still be among
# them, and the projector retries within seconds, so this is hours of batches.
DEDUP_WINDOW = 10_000

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(version UInt32, name String, applied_at DateTime64(3, 'UTC'), rollup_timezone String)
ENGINE = MergeTree ORDER BY version
"""
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/]+$")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def check_zone(name: str) -> str:
    """The zone name, if it is an IANA zone that may be written into DDL; else ValueError."""
    if not isinstance(name, str) or not _ZONE_NAME.match(name) or not is_time_zone(name):
        raise ValueError(f"rollup time zone {name!r} is not an IANA time zone name such as 'Europe/Paris'")
    return name


def load_migrations(rollup_timezone: str) -> list[Migration]:
    """Every migration file, in version order, its placeholders filled for this store."""
    values = {"ROLLUP_TIMEZONE": check_zone(rollup_timezone), "DEDUP_WINDOW": str(DEDUP_WINDOW),
              "ERROR_STATUS": str(ERROR_STATUS),
              "LATENCY_FLOORS": f"[{', '.join(map(str, LATENCY_BUCKETS_MS))}]"}
    migrations = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        text = Template(path.read_text()).substitute(values)
        migrations.append(Migration(int(match[1]), path.stem, split_statements(text)))
    return migrations


def split_statements(text: str) -> tuple[str, ...]:
    """The statements of a file: comment lines dropped, split at each `;` that ends a line."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE) if s.strip())


def migrate(execute: Callable[[str], Any], rows: Callable[[str], list[list[Any]]],
            rollup_timezone: str) -> str:
    """Applies the migrations the store lacks; the store's rollup time zone (the recorded one
    wins over `rollup_timezone`: its daily rollup was summed by it)."""
    execute(SCHEMA_MIGRATIONS_DDL)
    applied = {int(version): str(zone)
               for version, zone in rows("SELECT version, rollup_timezone FROM schema_migrations")}
    zone = applied.get(ROLLUPS_VERSION, rollup_timezone)
    if zone != rollup_timezone:
        log.warning("the analytics store's daily rollup is summed in %s, not the configured %s: "
                    "it keeps %s (rebuild the store to change it)", zone, rollup_timezone, zone)
    for migration in load_migrations(zone):
        if migration.version in applied:
            continue
        log.info("analytics store: applying migration %s", migration.name)
        for statement in migration.statements:
            execute(statement)
        # Recorded last: a crash before this line runs the whole (idempotent) migration again.
        execute(f"INSERT INTO schema_migrations VALUES ({migration.version}, '{migration.name}', "
                f"now64(3), '{zone}')")
    return zone


def backfill_statement(table: str, rollup_timezone: str, condition: str) -> str:
    """0003's refill of a rollup from the raw facts, restricted to `condition` (SQL on usage_events)."""
    (rollups,) = [m for m in load_migrations(rollup_timezone) if m.version == ROLLUPS_VERSION]
    (statement,) = [s for s in rollups.statements if s.startswith(f"INSERT INTO {table}\n")]
    return statement.replace("FROM usage_events FINAL\n", f"FROM usage_events FINAL WHERE {condition}\n")
