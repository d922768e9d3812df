"""The event-store adapter: eventsourcing environments for SQLite and PostgreSQL, and the apps.

Both applications share one store location but keep separate tables (PostgreSQL prefixes
them with the application name) or files (SQLite), configured with the library's own
environment keys, prefixed per application where they differ (`LEDGER_SQLITE_DBNAME`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from domain.ports.clock import Clock
from domain.services.ledger import Ledger
from domain.services.registry import Registry

SQLITE_LOCK_TIMEOUT_SECONDS = 10
QUIET_APPLICATIONS = ("AUDIT", "DECISIONS", "ALERTS", "ANOMALIES", "BILLING")  # env prefixes
LEDGER_CACHE_MAXSIZE = 10_000


def _common_env() -> dict[str, str]:
    # The ledger caches aggregates (budgets are read on every batch) without reading the
    # store on each get: it writes nearly all budget events itself. A copy made stale by
    # another writer (an admin's budget change) cannot be saved, because the store refuses
    # a second event at the same (originator id, version); Ledger.record_usage then evicts
    # its cache and retries the batch.
    return {
        "IS_SNAPSHOTTING_ENABLED": "y",
        "CREATE_TABLE": "y",
        "LEDGER_AGGREGATE_CACHE_MAXSIZE": str(LEDGER_CACHE_MAXSIZE),
        "LEDGER_AGGREGATE_CACHE_FASTFORWARD": "n",
        "LEDGER_DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        # Batches of facts are large JSON: compressed, they store smaller and insert faster.
        "LEDGER_COMPRESSOR_TOPIC": "adapters.eventstore.recorders:FastZlibCompressor",
    }


def memory_env(name: str | None = None) -> dict[str, str]:
    """The in-memory twin of both stores (tests): nothing survives the process. Applications
    opened on the same `name` share one store (adapters/eventstore/memory.py)."""
    env = {**_common_env(), "PERSISTENCE_MODULE": "adapters.eventstore.memory:MemoryStoreFactory",
           "LEDGER_PROCESS_RECORDER_TOPIC": "adapters.eventstore.recorders:MemoryLedgerRecorder"}
    if name:
        env["MEMORY_STORE_NAME"] = name
    return env


def sqlite_env(data_dir: Path) -> dict[str, str]:
    """The environment for the embedded default: one SQLite file per application in `data_dir`."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **_common_env(),
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "LEDGER_PROCESS_RECORDER_TOPIC": "adapters.eventstore.recorders:SQLiteLedgerRecorder",
        "REGISTRY_SQLITE_DBNAME": str(data_dir / f"{Registry.name}.sqlite"),
        "LEDGER_SQLITE_DBNAME": str(data_dir / f"{Ledger.name}.sqlite"),
        "AUDIT_SQLITE_DBNAME": str(data_dir / "audit.sqlite"),  # domain/services/audit_trail.py
        "DECISIONS_SQLITE_DBNAME": str(data_dir / "decisions.sqlite"),  # domain/services/decisions.py
        "ANOMALIES_SQLITE_DBNAME": str(data_dir / "anomalies.sqlite"),  # domain/services/anomalies.py
        "ALERTS_SQLITE_DBNAME": str(data_dir / "alerts.sqlite"),  # domain/services/alerts.py
        "BILLING_SQLITE_DBNAME": str(data_dir / "billing.sqlite"),  # domain/services/billing.py
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


def postgres_env(dsn: str) -> dict[str, str]:
    """The environment for PostgreSQL from `postgresql://user:pass@host:port/db[?schema=name]`."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"expected a postgresql://user:pass@host:port/db URL, got scheme "
                         f"{parts.scheme!r}")
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname or not parts.username:
        raise ValueError("the PostgreSQL URL must name a user, a host and a database, as in "
                         "postgresql://meterline:secret@127.0.0.1:5432/meterline")
    query = parse_qs(parts.query)
    unknown = set(query) - {"schema"}
    if unknown:
        raise ValueError(f"unsupported PostgreSQL URL parameters {sorted(unknown)}; only "
                         "'schema' is understood")
    env = {
        **_common_env(),
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "LEDGER_PROCESS_RECORDER_TOPIC": "adapters.eventstore.recorders:PostgresLedgerRecorder",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_POOL_SIZE": "5",
        "POSTGRES_MAX_OVERFLOW": "10",
        # A pool opens its minimum at once: seven applications at 5 each in every process passed
        # PostgreSQL's default 100 connections with a handful of processes (the distributed e2e
        # test). The registry and the ledger keep 5; the quieter stores hold one and grow on demand.
        **{f"{name}_POSTGRES_POOL_SIZE": "1" for name in QUIET_APPLICATIONS},
        # No pre-ping: it costs a round trip before every query (the ledger's throughput fell
        # 5x). A connection lost to a database restart fails one batch, which the ledger
        # worker retries from its stored position.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_LOCK_TIMEOUT": "5",  # seconds a writer waits for the table lock
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "5",
    }
    if "schema" in query:
        env["POSTGRES_SCHEMA"] = query["schema"][-1]
    return env


def open_applications(env: dict[str, str], clock: Clock,
                      billing_tz: str = "UTC") -> tuple[Registry, Ledger]:
    """The registry and the ledger on the store that `env` describes."""
    registry = Registry(clock, env=dict(env))
    try:
        ledger = Ledger(clock, billing_tz, env=dict(env))
    except BaseException:
        registry.close()
        raise
    return registry, ledger
