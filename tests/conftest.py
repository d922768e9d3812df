"""Shared fixtures. Each block below belongs to one area; add yours in its own block."""

from __future__ import annotations

import resource
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from adapters.eventstore import memory
from adapters.eventstore.environments import memory_env, postgres_env, sqlite_env
from testkit.postgres import temporary_database


def pytest_configure(config) -> None:
    """chDB keeps ~8 descriptors of every closed session (a library leak; a Meterline process
    opens one session for its lifetime), and the analytics tests open many sessions."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

# ----- event store: a fresh store per test (adapters/eventstore/environments.py) -----



@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A uniquely named database on the local server for this test session, dropped at the end."""
    with temporary_database("meterline_test") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path) -> Iterator[dict[str, str]]:
    """A fresh, empty event store per test: the in-memory twin, SQLite files in tmp_path, or a
    PostgreSQL schema."""
    if request.param == "memory":
        name = f"test-{uuid.uuid4().hex}"
        yield memory_env(name)
        memory.forget(name)
        return
    if request.param == "sqlite":
        yield sqlite_env(tmp_path / "store")
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield postgres_env(f"{dsn}?schema={schema}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

# ----- end of event store fixtures -----
