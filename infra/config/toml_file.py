"""The TOML configuration file: models, prices and start-up budgets, as exact domain values."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode, Scope
from infra.config.errors import (
    ConfigError,
    check_timezone,
    choice,
    duplicate_keys,
    field_path,
    http_url,
    problems_from,
    toml_syntax_problem,
    usd_nanos,
)

ModelKind = Literal["chat", "embedding"]
KINDS: tuple[str, ...] = ("chat", "embedding")
# The /v1 APIs a model's upstream may speak (gateway/v1/admission.ENDPOINT_PATH); a model
# that declares none speaks the three every OpenAI-compatible server has.
APIS: tuple[str, ...] = ("chat", "completions", "embeddings", "responses", "messages")
DEFAULT_APIS: tuple[str, ...] = ("chat", "completions", "embeddings")
UPSTREAM_SAMPLE = 'upstream_url = "http://127.0.0.1:8081/v1" (the model server\'s OpenAI base URL)'


@dataclass(frozen=True)
class ModelConfig:
    """One served model; every amount is an integer in nano-USD."""

    name: str
    upstream_url: str
    upstream_model: str
    input_per_million: int
    output_per_million: int
    cached_input_per_million: int | None = None
    gpu_cost_per_hour: int | None = None
    max_output_tokens: int | None = None
    kind: ModelKind = "chat"
    stop: tuple[str, ...] = ()
    bill_failed_requests: bool = False
    max_image_tokens: int | None = None   # the most prompt tokens one part of that kind counts
    max_audio_tokens: int | None = None
    max_video_tokens: int | None = None
    max_file_tokens: int | None = None
    cache_write_per_million: int | None = None  # None: the input price
    reasoning_per_million: int | None = None    # None: the output price
    apis: tuple[str, ...] = DEFAULT_APIS
    upstream_keeps_state: bool = False  # may Responses requests continue a stored response?


@dataclass(frozen=True)
class BudgetConfig:
    """A budget to apply at start-up."""

    scope: Scope
    scope_id: str
    policy: BudgetPolicy


@dataclass(frozen=True)
class MeterlineConfig:
    """The whole file; `billing_timezone` None means: keep the setting's zone."""

    models: list[ModelConfig] = field(default_factory=list)
    budgets: list[BudgetConfig] = field(default_factory=list)
    billing_timezone: str | None = None


def load_config(path: Path) -> MeterlineConfig:
    """Reads and checks a configuration file; every problem raises ConfigError."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [
            f"file not found (looked at {path.absolute()}); create it from "
            "infra/meterline.example.toml or point METERLINE_CONFIG at an existing file"]) from None
    except OSError as exc:
        raise ConfigError(source, [
            f"cannot be read ({exc.strerror}); check the path and its permissions"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, ["is not UTF-8 text; save it as UTF-8"]) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> MeterlineConfig:
    """Checks configuration TOML text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [toml_syntax_problem(str(exc))]) from None
    problems = duplicate_keys(data.get("models"), "models", "name", _model_key)
    problems += duplicate_keys(data.get("budgets"), "budgets", "id", _budget_key)
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = problems_from(exc, field_path, _example, _known_fields) + problems
    if problems:
        raise ConfigError(source, problems)
    return MeterlineConfig(models=[_model(m) for m in parsed.models],
                           budgets=[_budget(b) for b in parsed.budgets],
                           billing_timezone=parsed.billing_timezone)


# ----- the file's schema ---------------------------------------------------------------------

def _one_of(options: Sequence[str], what: str) -> BeforeValidator:
    return BeforeValidator(lambda v: choice(v, options, what))


Amount = Annotated[int, BeforeValidator(usd_nanos)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Positive = Annotated[int, Field(gt=0)]


class _Entry(BaseModel):
    # strict: "false" or "1024" as strings are mistakes in TOML, not values to coerce
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Model(_Entry):
    name: Name
    upstream_url: Annotated[str, BeforeValidator(lambda v: http_url(v, UPSTREAM_SAMPLE))]
    upstream_model: Name | None = None
    input_price_per_million: Amount
    output_price_per_million: Amount
    cached_input_price_per_million: Amount | None = None
    max_output_tokens: Positive | None = None
    gpu_cost_per_hour: Amount | None = None
    bill_failed_requests: bool = False
    kind: Annotated[str, _one_of(KINDS, "kind")] = "chat"
    stop: list[Annotated[str, StringConstraints(min_length=1)]] = []
    max_image_tokens: Positive | None = None
    max_audio_tokens: Positive | None = None
    max_video_tokens: Positive | None = None
    max_file_tokens: Positive | None = None
    cache_write_price_per_million: Amount | None = None
    reasoning_price_per_million: Amount | None = None
    apis: Annotated[list[Annotated[str, _one_of(APIS, "api")]], Field(min_length=1)] = list(DEFAULT_APIS)
    upstream_keeps_state: bool = False


class _Budget(_Entry):
    scope: Annotated[str, _one_of([s.value for s in Scope], "scope")]
    id: Name
    limit_usd: Amount
    period: Annotated[str, _one_of([p.value for p in Period], "period")] = "month"
    mode: Annotated[str, _one_of([m.value for m in Mode], "mode")] = "hard"
    grace_percent: Annotated[int, Field(ge=0, le=1000)] = 10
    grace_hours: Positive | None = None


class _File(_Entry):
    billing_timezone: Annotated[str, BeforeValidator(check_timezone)] | None = None
    models: list[_Model] = []
    budgets: list[_Budget] = []


_EXAMPLES = {
    "name": 'name = "gemma-3-270m"',
    "upstream_model": 'upstream_model = "gemma"',
    "max_output_tokens": "max_output_tokens = 1024",
    "bill_failed_requests": "bill_failed_requests = false",
    "stop": 'stop = ["\\nQuestion:"]',
    "max_image_tokens": "max_image_tokens = 1600 (the most prompt tokens the model counts for one image)",
    "max_audio_tokens": "max_audio_tokens = 1500 (the most prompt tokens for one audio clip)",
    "max_video_tokens": "max_video_tokens = 16000 (the most prompt tokens for one video)",
    "max_file_tokens": "max_file_tokens = 100000 (the most prompt tokens for one file, e.g. a PDF)",
    "apis": 'apis = ["chat", "completions", "embeddings", "responses", "messages"]',
    "upstream_keeps_state": "upstream_keeps_state = false",
    "scope": 'scope = "team"',
    "id": 'id = "research"',
    "limit_usd": 'limit_usd = "100"',
    "grace_percent": "grace_percent = 10",
    "grace_hours": "grace_hours = 24",
    "billing_timezone": 'billing_timezone = "Europe/Berlin"',
    "models": "a [[models]] table per model",
    "budgets": "a [[budgets]] table per budget",
}


def _example(loc: Sequence[int | str]) -> str | None:
    names = [part for part in loc if isinstance(part, str)]
    name = names[-1] if names else ""
    if name.endswith("price_per_million") or name == "gpu_cost_per_hour":
        return f'{name} = "0.10"'
    if name == "upstream_url":
        return UPSTREAM_SAMPLE
    return _EXAMPLES.get(name)


def _known_fields(loc: Sequence[int | str]) -> list[str]:
    schema = {"models": _Model, "budgets": _Budget}.get(str(loc[0]), _File) if loc else _File
    return list(schema.model_fields)


def _model_key(entry: dict[str, Any]) -> str | None:
    name = entry.get("name")
    return name.strip() if isinstance(name, str) else None


def _budget_key(entry: dict[str, Any]) -> tuple[str, str] | None:
    scope, scope_id = entry.get("scope"), entry.get("id")
    if not (isinstance(scope, str) and isinstance(scope_id, str)):
        return None
    return scope.strip().lower(), scope_id.strip()


def _model(m: _Model) -> ModelConfig:
    return ModelConfig(
        name=m.name, upstream_url=m.upstream_url, upstream_model=m.upstream_model or m.name,
        input_per_million=m.input_price_per_million,
        output_per_million=m.output_price_per_million,
        cached_input_per_million=m.cached_input_price_per_million,
        gpu_cost_per_hour=m.gpu_cost_per_hour, max_output_tokens=m.max_output_tokens,
        kind=m.kind, stop=tuple(m.stop),  # type: ignore[arg-type]  # checked by _one_of
        bill_failed_requests=m.bill_failed_requests, max_image_tokens=m.max_image_tokens,
        max_audio_tokens=m.max_audio_tokens, max_video_tokens=m.max_video_tokens,
        max_file_tokens=m.max_file_tokens, cache_write_per_million=m.cache_write_price_per_million,
        reasoning_per_million=m.reasoning_price_per_million, apis=tuple(dict.fromkeys(m.apis)),
        upstream_keeps_state=m.upstream_keeps_state)


def _budget(b: _Budget) -> BudgetConfig:
    policy = BudgetPolicy(limit=b.limit_usd, period=Period(b.period), mode=Mode(b.mode),
                          grace_percent=b.grace_percent, grace_hours=b.grace_hours)
    return BudgetConfig(scope=Scope(b.scope), scope_id=b.id, policy=policy)
