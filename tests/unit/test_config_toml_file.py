"""The configuration file (infra/config/toml_file.py): exact values, and errors a user can act on."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.periods import Period
from domain.quota_policy import Mode, Scope
from infra.config.errors import ConfigError, format_config_error
from infra.config.toml_file import load_config, parse_config
from tests.support.config import assert_names
from tests.support.config import clean_environment as clean_environment  # autouse fixture

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


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "meterline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


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
