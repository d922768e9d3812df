"""Process settings from METERLINE_* environment variables, and the secrets they name."""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.config.errors import ConfigError, check_timezone, choice, hinted, problems_from
from infra.config.secret_files import create_secret_file

ENV_PREFIX = "METERLINE_"
MIN_ADMIN_TOKEN = 16
MIN_KEY_SECRET = 32
# values copied from examples and templates; a deployment that kept one is not secret
KNOWN_DEFAULTS = frozenset({"changeme", "change-me", "changethis", "secret", "password",
                            "admin", "meterline", "dev", "test", "token"})
DEV_SECRETS_FILE = "dev-secrets.json"
_EXAMPLES = {"bus": "inproc", "port": "8080", "dev": "1", "upstream_timeout_s": "60",
             "max_body_bytes": "1048576", "reservation_default_max_tokens": "4096",
             "database_url": "postgresql://meterline:secret@127.0.0.1:5432/meterline",
             "analytics_url": "http://127.0.0.1:8123", "billing_timezone": "Europe/Berlin",
             "smtp_port": "587", "smtp_from": "alerts@example.com", "smtp_starttls": "1",
             "webhook_allow_private": "1"}


def _default_gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _postgres_url(value: Any) -> Any:
    if value is not None:
        parsed = _parse_postgres(value.get_secret_value() if isinstance(value, SecretStr) else value)
        if isinstance(parsed, str):
            raise hinted(parsed)
    return value


def _analytics_url(value: Any) -> Any:
    try:
        scheme = urlsplit(value).scheme if isinstance(value, str) else ""
    except ValueError:
        scheme = ""
    # unix:PATH is the projector's socket on the embedded default (`meterline up` sets it)
    if value is not None and scheme not in ("http", "https", "clickhouse", "unix"):
        # the URL is not echoed: it may carry a password
        raise hinted("is not a ClickHouse server URL; use e.g. "
                     f"METERLINE_ANALYTICS_URL={_EXAMPLES['analytics_url']}, "
                     "or leave it unset to use embedded chDB")
    return value


def _alerts_webhook_url(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https")
                              or not urlsplit(value).hostname):
        raise hinted("is not an http(s) URL; use e.g. "
                     "METERLINE_ALERTS_WEBHOOK_URL=https://hooks.example.com/meterline")
    return value


class Settings(BaseSettings):
    """Everything a process needs before it reads the configuration file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True)

    data_dir: Path = Path("data")
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    dev: bool = False
    admin_token: SecretStr | None = None
    key_secret: SecretStr | None = None  # HMAC-SHA256 secret for API keys and user tokens
    bus: Annotated[Literal["inproc", "kafka"],
                   BeforeValidator(lambda v: choice(v, ("inproc", "kafka"), "bus"))] = "inproc"
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: Annotated[SecretStr | None, BeforeValidator(_postgres_url)] = None
    billing_timezone: Annotated[str, BeforeValidator(check_timezone)] = "UTC"
    gateway_id: str = Field(default_factory=_default_gateway_id)
    upstream_timeout_s: float = Field(60.0, gt=0)
    max_body_bytes: int = Field(1_048_576, gt=0)  # every route's body cap (413 past it)
    request_timeout_s: float = Field(30.0, gt=0)  # a request not fully received by then: 408, closed
    keepalive_timeout_s: float = Field(5.0, gt=0)  # an idle keep-alive connection is closed after
    max_connections: int = Field(4096, gt=0)  # per process (and open files allow); more get 503
    reservation_default_max_tokens: int = Field(4096, gt=0)
    reservation_wait_s: float = Field(5.0, ge=0)  # how long a burst waits for reservations to settle
    stream_progress_tokens: int = Field(256, gt=0)  # a long stream is metered in parts of this size
    stream_progress_s: float = Field(10.0, gt=0)  # … or of this duration
    ledger_max_batch: int = Field(5000, gt=0)  # usage facts the ledger fetches per round
    ledger_linger_ms: int = Field(100, ge=0)  # how long a round gathers facts under load
    analytics_url: Annotated[str | None, BeforeValidator(_analytics_url)] = None
    # the day of the month (billing time zone, 02:00) on which the previous month is closed; None: by hand
    close_day: int | None = Field(None, ge=1, le=28)
    # the Ed25519 key that signs audit checkpoints: a 0600 PEM file, never in the event store
    audit_key_file: Path | None = None
    # alert e-mail: without a host, e-mails are only logged (recipient and subject)
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_from: str | None = None  # required with smtp_host
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    # per SMTP reply; a whole send gives up after twice this, inside the alerts worker's 10 s
    smtp_timeout_s: float = Field(4.0, gt=0)
    # alert webhooks: private, loopback and link-local targets are refused unless this allows them
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(5.0, gt=0)
    # alerts: the admins' webhook (where the default 100 % rule posts), tries before a delivery is
    # dead-lettered, and how long one try may take before it counts as failed
    alerts_webhook_url: Annotated[str | None, BeforeValidator(_alerts_webhook_url)] = None
    alerts_max_attempts: int = Field(6, ge=1, le=50)
    alerts_timeout_s: float = Field(10.0, gt=0)
    # anomaly scan (in the projector's process): how often (0: never), the factor over the baseline
    # that counts as abnormal, and how many trailing weeks make the baseline
    anomaly_scan_interval_s: int = Field(300, ge=0)
    anomaly_factor: float = Field(3.0, gt=1, le=100)
    anomaly_weeks: int = Field(4, ge=1, le=52)
    # the minimum volume in an hour before anything is judged (a day needs 5x the requests and 10x
    # the spend), and the night hours [start, end) in the billing zone (start > end wraps midnight)
    anomaly_min_requests: int = Field(20, ge=1)
    anomaly_min_spend_usd: Decimal = Field(Decimal("0.10"), ge=0, le=1_000_000)
    anomaly_night_start: int = Field(0, ge=0, le=23)
    anomaly_night_end: int = Field(6, ge=0, le=24)

    @property
    def event_store_path(self) -> Path:
        """The SQLite event store, used when no database_url is set."""
        return self.data_dir / "events.sqlite"

    @property
    def analytics_path(self) -> Path:
        """The chDB data directory, used when no analytics_url is set."""
        return self.data_dir / "analytics"

    @property
    def audit_key_path(self) -> Path:
        """METERLINE_AUDIT_KEY_FILE, or a file beside (never inside) the embedded event store."""
        return self.audit_key_file or self.data_dir / "audit-signing-key.pem"

    def postgres_dsn(self) -> PostgresDsn | None:
        """The PostgreSQL connection parts, or None for the SQLite event store."""
        if self.database_url is None:
            return None
        return parse_postgres_url(self.database_url.get_secret_value())

    def check_production_safety(self) -> None:
        """Refuses missing, default or short secrets unless in dev mode."""
        if self.dev:
            return
        problems = [p for p in (
            _weak_secret("METERLINE_ADMIN_TOKEN", self.admin_token, MIN_ADMIN_TOKEN),
            _weak_secret("METERLINE_KEY_SECRET", self.key_secret, MIN_KEY_SECRET)) if p]
        if problems:
            raise ConfigError("", problems)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (overrides win); errors name the environment variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("", problems_from(exc, _env_name, _env_example, _env_fields)) from None


def resolve_secrets(settings: Settings) -> tuple[SecretStr, SecretStr]:
    """(admin_token, key_secret); in dev mode missing ones come from a 0600 file in data_dir."""
    settings.check_production_safety()
    if settings.admin_token is not None and settings.key_secret is not None:
        return settings.admin_token, settings.key_secret
    stored = _dev_secrets(settings.data_dir / DEV_SECRETS_FILE)
    return (settings.admin_token or SecretStr(stored["admin_token"]),
            settings.key_secret or SecretStr(stored["key_secret"]))


@dataclass(frozen=True)
class PostgresDsn:
    """What psycopg and eventsourcing need to reach PostgreSQL."""

    host: str
    port: int
    dbname: str
    user: str
    password: SecretStr = field(default_factory=lambda: SecretStr(""))

    def eventsourcing_env(self) -> dict[str, str]:
        """Environment for eventsourcing's PostgreSQL persistence module."""
        return {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": self.host,
                "POSTGRES_PORT": str(self.port), "POSTGRES_DBNAME": self.dbname,
                "POSTGRES_USER": self.user, "POSTGRES_PASSWORD": self.password.get_secret_value()}


def parse_postgres_url(url: str) -> PostgresDsn:
    """postgresql://user:pass@host:port/db -> PostgresDsn; a bad URL raises ConfigError."""
    parsed = _parse_postgres(url)
    if isinstance(parsed, str):
        raise ConfigError("", [f"METERLINE_DATABASE_URL: {parsed}"])
    return parsed


def _parse_postgres(url: str) -> PostgresDsn | str:
    """The parts of a PostgreSQL URL, or what is wrong with it (never echoing the password)."""
    hint = f"use e.g. METERLINE_DATABASE_URL={_EXAMPLES['database_url']}"
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except (ValueError, TypeError):
        return f"is not a valid URL (check the port); {hint}"
    if parts.scheme not in ("postgresql", "postgres"):
        return (f"scheme {parts.scheme!r} is not PostgreSQL; {hint}, "
                "or leave it unset for the SQLite event store")
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname or not parts.username:
        return f"needs a user, a host and a database name; {hint}"
    return PostgresDsn(host=parts.hostname, port=port, dbname=dbname,
                       user=unquote(parts.username),
                       password=SecretStr(unquote(parts.password or "")))


def _weak_secret(env: str, value: SecretStr | None, minimum: int) -> str | None:
    fix = (f"set it to a random secret of at least {minimum} characters, "
           "or run with METERLINE_DEV=1 for a local trial")
    if value is None:
        return f"{env} is not set; {fix}"
    secret = value.get_secret_value()
    if secret.strip().lower() in KNOWN_DEFAULTS:
        return f"{env} is a well-known default value; {fix}"
    if len(secret) < minimum:
        return f"{env} is too short ({len(secret)} characters); {fix}"
    return None


def _dev_secrets(path: Path) -> dict[str, str]:
    """The dev secrets stored at `path`, created on first use so restarts keep key hashes."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = {"admin_token": secrets.token_urlsafe(24), "key_secret": secrets.token_urlsafe(48)}
        create_secret_file(path, json.dumps(fresh).encode())
    try:
        stored = json.loads(path.read_text())
        if isinstance(stored.get("admin_token"), str) and isinstance(stored.get("key_secret"), str):
            return stored
    except (ValueError, AttributeError):
        pass
    raise ConfigError(str(path), ["is not a valid dev secrets file; delete it to generate new "
                                  "dev secrets (API keys issued with the old ones stop working)"])


def _env_name(loc: Any) -> str:
    return f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else ""


def _env_example(loc: Any) -> str | None:
    sample = _EXAMPLES.get(str(loc[0])) if loc else None
    return f"{_env_name(loc)}={sample}" if sample else None


def _env_fields(loc: Any) -> list[str]:
    return list(Settings.model_fields)
