"""Settings from the environment (infra/config/env_settings.py) and secrets: values, errors, safety."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from infra.config.env_settings import Settings, load_settings, parse_postgres_url, resolve_secrets
from infra.config.errors import ConfigError
from tests.support.config import assert_names
from tests.support.config import clean_environment as clean_environment  # autouse fixture

ADMIN = "a" * 16 + "-admin-token"
KEY_SECRET = "k" * 32 + "-key-secret"


# ----- settings --------------------------------------------------------------------------------

def test_a_bad_bus_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_BUS", "rabbit")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert_names(str(caught.value), "METERLINE_BUS", "unknown bus 'rabbit'",
                 "use one of inproc, kafka")


def test_a_bad_billing_time_zone_names_the_environment_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_BILLING_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert_names(str(caught.value), "METERLINE_BILLING_TIMEZONE", "unknown time zone",
                 "IANA zone name")


def test_a_bad_number_names_the_variable_and_gives_an_example(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_PORT", "eighty")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert_names(str(caught.value), "METERLINE_PORT", "METERLINE_PORT=8080")


def test_settings_come_from_the_environment_with_paths_under_the_data_dir(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METERLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("METERLINE_DEV", "1")
    monkeypatch.setenv("METERLINE_BUS", "kafka")
    settings = load_settings()
    assert settings.dev and settings.bus == "kafka"
    assert settings.event_store_path == tmp_path / "events.sqlite"
    assert settings.analytics_path == tmp_path / "analytics"
    assert settings.postgres_dsn() is None
    assert settings.gateway_id.endswith(f"-{os.getpid()}")


def test_secrets_never_appear_in_the_repr() -> None:
    settings = load_settings(admin_token=ADMIN, key_secret=KEY_SECRET,
                             database_url="postgresql://meter:hunter2pass@db:5432/meter")
    shown = repr(settings) + str(settings) + repr(settings.postgres_dsn())
    for secret in (ADMIN, KEY_SECRET, "hunter2pass"):
        assert secret not in shown


def test_production_refuses_a_missing_admin_token() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(key_secret=KEY_SECRET).check_production_safety()
    assert str(caught.value) == (
        "METERLINE_ADMIN_TOKEN is not set; set it to a random secret of at least 16 "
        "characters, or run with METERLINE_DEV=1 for a local trial")


@pytest.mark.parametrize("key_secret", ["changeme", "x" * 31])
def test_production_refuses_a_default_or_short_key_secret(key_secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(admin_token=ADMIN, key_secret=key_secret).check_production_safety()
    assert_names(str(caught.value), "METERLINE_KEY_SECRET", "at least 32 characters",
                 "METERLINE_DEV=1")


def test_production_accepts_long_secrets_and_resolves_them() -> None:
    settings = load_settings(admin_token=ADMIN, key_secret=KEY_SECRET)
    settings.check_production_safety()
    admin, key = resolve_secrets(settings)
    assert (admin.get_secret_value(), key.get_secret_value()) == (ADMIN, KEY_SECRET)


def test_production_does_not_invent_missing_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="METERLINE_KEY_SECRET is not set"):
        resolve_secrets(load_settings(data_dir=tmp_path, admin_token=ADMIN))
    assert not any(tmp_path.iterdir())


def test_dev_secrets_persist_across_restarts_on_the_same_data_dir(tmp_path: Path) -> None:
    first = resolve_secrets(Settings(data_dir=tmp_path, dev=True))
    second = resolve_secrets(Settings(data_dir=tmp_path, dev=True))
    assert [s.get_secret_value() for s in first] == [s.get_secret_value() for s in second]
    assert len(first[1].get_secret_value()) >= 32
    (stored,) = tmp_path.iterdir()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_dev_secrets_given_in_the_environment_win(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_KEY_SECRET", "short")
    admin, key = resolve_secrets(load_settings(data_dir=tmp_path, dev=True))
    assert key.get_secret_value() == "short" and len(admin.get_secret_value()) >= 16


def test_a_corrupt_dev_secrets_file_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / "dev-secrets.json").write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(Settings(data_dir=tmp_path, dev=True))
    assert_names(str(caught.value), "dev-secrets.json", "delete it")


def test_a_postgres_url_becomes_connection_parts() -> None:
    dsn = parse_postgres_url("postgresql://meter%40ops:p%40ss@db.internal/ledger")
    assert (dsn.host, dsn.port, dsn.dbname, dsn.user) == ("db.internal", 5432, "ledger",
                                                          "meter@ops")
    env = dsn.eventsourcing_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_PORT"], env["POSTGRES_PASSWORD"]) == ("5432", "p@ss")


def test_a_non_postgres_database_url_names_the_variable_without_echoing_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(database_url="mysql://meter:hunter2pass@db/ledger")
    message = str(caught.value)
    assert_names(message, "METERLINE_DATABASE_URL", "not PostgreSQL", "postgresql://")
    assert "hunter2pass" not in message
