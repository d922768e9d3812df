"""Settings and the configuration file: exact values, and errors a user can act on."""

from __future__ import annotations

import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.periods import Period
from domain.quota_policy import Mode, Scope
from infra.config.env_settings import Settings, load_settings, parse_postgres_url, resolve_secrets
from infra.config.errors import ConfigError, format_config_error
from infra.config.toml_file import load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "infra" / "meterline.example.toml"
GOOD_MODEL = """
[[models]]
name = "gemma-3-270m"
upstream_url = "http://127.0.0.1:8081/v1"
input_price_per_million = "0.10"
output_price_per_million = "0.40"
"""
GOOD_BUDGET = """
[[budgets]]
scope = "team"
id = "research"
limit_usd = "100"
period = "month"
mode = "grace"
"""
ADMIN = "a" * 16 + "-admin-token"
KEY_SECRET = "k" * 32 + "-key-secret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "meterline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in:\n{message}"


# ----- configuration file errors ---------------------------------------------------------------

def test_malformed_toml_gives_the_line_and_column(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL + "mode = hard\n")
    assert_names(message, "meterline.toml", "line 7, column 8", "fix the TOML syntax",
                 'mode = "hard"')


def test_a_missing_file_says_where_it_looked_and_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert_names(str(caught.value), "absent.toml", "file not found", str(tmp_path),
                 "meterline.example.toml", "METERLINE_CONFIG")


def test_an_unknown_mode_lists_the_modes(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_BUDGET.replace('"grace"', '"strict"'))
    assert_names(message, "meterline.toml: budgets[0].mode: unknown mode 'strict'",
                 "use one of soft, hard, grace")


def test_an_unknown_period_lists_the_periods(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_BUDGET.replace('"month"', '"year"'))
    assert_names(message, "meterline.toml", "budgets[0].period", "unknown period 'year'",
                 "use one of month, week, day, none")


def test_a_negative_limit_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_BUDGET.replace('"100"', '"-100"'))
    assert_names(message, "meterline.toml", "budgets[0].limit_usd", "must not be negative",
                 "use 0 or more USD")


def test_a_missing_price_asks_for_it_with_an_example(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL + GOOD_MODEL.replace(
        "gemma-3-270m", "other").replace('output_price_per_million = "0.40"\n', ""))
    assert_names(message, "meterline.toml", "models[1].output_price_per_million",
                 "is required", 'output_price_per_million = "0.10"')


def test_a_price_finer_than_a_nano_dollar_asks_to_round(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace('"0.10"', '"0.0000000001"'))
    assert_names(message, "meterline.toml", "models[0].input_price_per_million",
                 "more precision than one nano-unit", "round it to at most 9 decimal places")


def test_a_negative_price_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace('"0.40"', "-0.4"))
    assert_names(message, "meterline.toml", "models[0].output_price_per_million",
                 "must not be negative", "use 0 or more USD")


def test_a_duplicate_model_name_names_both_entries(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL + GOOD_MODEL)
    assert_names(message, "meterline.toml", "models[1].name", "duplicate name 'gemma-3-270m'",
                 "also models[0]", "unique name")


def test_a_misspelt_field_suggests_the_right_one(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("upstream_url", "upstream_ulr"))
    assert_names(message, "meterline.toml", "models[0].upstream_ulr", "unknown field",
                 "did you mean 'upstream_url'?")


def test_an_unknown_top_level_table_suggests_the_right_one(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("[[models]]", "[[model]]"))
    assert_names(message, "meterline.toml", "model: unknown field 'model'",
                 "did you mean 'models'?")


def test_a_non_http_upstream_url_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL.replace("http://127.0.0.1", "ftp://127.0.0.1"))
    assert_names(message, "meterline.toml", "models[0].upstream_url", "is not an http(s) URL",
                 'upstream_url = "http://127.0.0.1:8081/v1"')


def test_a_bad_time_zone_suggests_real_zones(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'billing_timezone = "Europe/Berln"\n' + GOOD_MODEL)
    assert_names(message, "meterline.toml", "billing_timezone", "unknown time zone",
                 "IANA zone name", "'Europe/Berlin'")


def test_text_where_a_number_belongs_is_an_error_not_a_guess(tmp_path: Path) -> None:
    message = config_error(tmp_path, GOOD_MODEL + 'max_output_tokens = "1024"\n')
    assert_names(message, "models[0].max_output_tokens", "valid integer",
                 "max_output_tokens = 1024")


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD_MODEL.replace('"0.10"', "true") + GOOD_MODEL + GOOD_BUDGET.replace(
        '"grace"', '"strict"')
    message = config_error(tmp_path, text)
    assert_names(message, "models[0].input_price_per_million", "models[1].name",
                 "budgets[0].mode")
    assert all(line.startswith(f"{tmp_path}/meterline.toml: ") for line in message.splitlines())


def test_format_config_error_prints_one_line_per_problem_without_a_traceback(
        tmp_path: Path) -> None:
    path = tmp_path / "meterline.toml"
    path.write_text(GOOD_MODEL + GOOD_MODEL)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    printed = format_config_error(caught.value)
    assert printed.startswith("error: ") and "Traceback" not in printed
    assert format_config_error(OSError("disk gone")) == "error: disk gone"


# ----- configuration file values ---------------------------------------------------------------

def test_a_valid_file_round_trips_to_exact_nano_units(tmp_path: Path) -> None:
    path = tmp_path / "meterline.toml"
    path.write_text(EXAMPLE.read_text())
    config = load_config(path)
    model = config.models[0]
    assert (model.name, model.upstream_model, model.kind) == ("gemma-3-270m", "gemma", "chat")
    assert (model.input_per_million, model.output_per_million) == (100_000_000, 400_000_000)
    assert model.cached_input_per_million == 50_000_000
    assert model.gpu_cost_per_hour == 1_200_000_000
    assert (model.max_output_tokens, model.stop) == (1024, ("\nQuestion:",))
    budget = config.budgets[0]
    assert (budget.scope, budget.scope_id) == (Scope.TEAM, "research")
    assert budget.policy.limit == 100_000_000_000
    assert (budget.policy.mode, budget.policy.period) == (Mode.GRACE, Period.MONTH)
    assert (budget.policy.grace_percent, budget.policy.grace_hours) == (10, 24)
    assert config.billing_timezone == "UTC"


def test_optional_fields_take_their_defaults() -> None:
    config = parse_config(GOOD_MODEL.replace("/v1", "/v1/") + GOOD_BUDGET.replace(
        'mode = "grace"\n', "").replace('period = "month"\n', ""))
    model = config.models[0]
    assert model.upstream_model == "gemma-3-270m"
    assert model.upstream_url == "http://127.0.0.1:8081/v1"
    assert (model.cached_input_per_million, model.max_output_tokens, model.stop) == (
        None, None, ())
    assert model.bill_failed_requests is False
    assert (config.budgets[0].policy.mode, config.budgets[0].policy.period) == (
        Mode.HARD, Period.MONTH)
    assert config.billing_timezone is None


def test_toml_floats_are_accepted_only_when_their_decimal_form_is_exact() -> None:
    model = parse_config(GOOD_MODEL.replace('"0.10"', "0.1").replace('"0.40"', "3")).models[0]
    assert (model.input_per_million, model.output_per_million) == (100_000_000, 3_000_000_000)
    with pytest.raises(ConfigError, match="round it to at most 9 decimal places"):
        parse_config(GOOD_MODEL.replace('"0.10"', "1e-10"))


@given(st.decimals(min_value=0, max_value=10**9, places=9, allow_nan=False,
                   allow_infinity=False))
def test_any_price_with_at_most_nine_decimals_converts_exactly(price: Decimal) -> None:
    model = parse_config(GOOD_MODEL.replace('"0.10"', f'"{price}"')).models[0]
    assert type(model.input_per_million) is int
    assert Decimal(model.input_per_million) == price * 10**9


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=9))
def test_any_price_with_a_tenth_decimal_digit_is_refused(whole: int, last_digit: int) -> None:
    price = Decimal(whole).scaleb(-9) + Decimal(last_digit).scaleb(-10)
    with pytest.raises(ConfigError, match="input_price_per_million"):
        parse_config(GOOD_MODEL.replace('"0.10"', f'"{price}"'))


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
