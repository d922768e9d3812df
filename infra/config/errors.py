"""Configuration errors a user can act on (which file or variable, which field, what to do),
and the value checks that raise them."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from pydantic import ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from domain.money import MoneyError, to_nanos
from domain.periods import is_time_zone

HINT_TYPE = "meterline"  # error type of our own validators: their message already has the hint


class ConfigError(ValueError):
    """A bad setting or configuration file; each line names where, what, and what to do."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, prefixed with the source (file name) when there is one."""
        return [f"{self.source}: {p}" if self.source else p for p in self.problems]


def format_config_error(exc: BaseException) -> str:
    """Text for the CLI to print instead of a traceback."""
    lines = exc.lines() if isinstance(exc, ConfigError) else [str(exc) or type(exc).__name__]
    return "\n".join(f"error: {line}" for line in lines)


def hinted(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user unchanged."""
    # the message goes through the context so braces in user input are not templates
    return PydanticCustomError(HINT_TYPE, "{text}", {"text": message})


def choice(value: Any, options: Iterable[str], what: str) -> str:
    """`value` if it is one of `options`, else an error listing them."""
    allowed = list(options)
    text = value.strip().lower() if isinstance(value, str) else value
    if text in allowed:
        return text
    raise hinted(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")


def check_timezone(name: Any) -> str:
    """`name` if it is an IANA time zone, else an error with the closest real names."""
    if isinstance(name, str) and name.strip() and is_time_zone(name):
        return name
    hint = "use an IANA zone name such as 'UTC' or 'Europe/Berlin'"
    if isinstance(name, str):
        # only on the error path: listing the zone database reads many files
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=3)
        if close:
            hint += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    raise hinted(f"unknown time zone {name!r}; {hint}")


def usd_nanos(value: Any, info: ValidationInfo) -> int:
    """A USD amount as exact nano-units; TOML floats only when their decimal form is exact."""
    sample = f'{info.field_name} = "0.10"'
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise hinted(f"{value!r} is not an amount; write USD as a decimal string, e.g. {sample}")
    if isinstance(value, float):
        # the shortest repr of a TOML float is the number the user typed
        value = Decimal(str(value))
    try:
        nanos = to_nanos(value)
    except MoneyError as exc:
        fix = ("round it to at most 9 decimal places" if "precision" in str(exc)
               else f"write USD as a decimal string, e.g. {sample}")
        raise hinted(f"{exc}; {fix}") from None
    if nanos < 0:
        raise hinted(f"amount {value!r} must not be negative; use 0 or more USD")
    return nanos


def http_url(value: Any, sample: str | None) -> str:
    """`value` without a trailing slash if it is an http(s) URL with a host."""
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise hinted(f"{value!r} is not an http(s) URL; use e.g. {sample}")
    return value.rstrip("/")


def field_path(loc: Sequence[int | str]) -> str:
    """('models', 1, 'mode') -> 'models[1].mode'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def problems_from(exc: ValidationError, name_field: Callable[[Sequence[int | str]], str],
                  example: Callable[[Sequence[int | str]], str | None],
                  known_fields: Callable[[Sequence[int | str]], Sequence[str]]) -> list[str]:
    """Pydantic's errors rewritten as 'field: problem; what to do' lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        where = name_field(loc)
        kind = err["type"]
        if kind == HINT_TYPE:
            text = err["msg"]
        elif kind == "extra_forbidden":
            text = _unknown_field(str(loc[-1]), known_fields(loc[:-1]))
        elif kind == "missing":
            sample = example(loc)
            text = "is required; add it" + (f", e.g. {sample}" if sample else "")
        else:
            sample = example(loc)
            fix = f"e.g. {sample}" if sample else "fix the value"
            text = f"{_lower_first(err['msg'])} (got {err.get('input')!r}); {fix}"
        lines.append(f"{where}: {text}" if where else text)
    return lines


def toml_syntax_problem(message: str) -> str:
    """tomllib's message as 'line L, column C: what; what to do'."""
    # Python 3.11's TOMLDecodeError has no line attributes; the position is in the message
    found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message)
    where = f"line {found[2]}, column {found[3]}: " if found else ""
    what = found[1] if found else message
    return (f"{where}{what}; fix the TOML syntax there (text values need quotes, "
            'e.g. mode = "hard")')


def duplicate_keys(entries: Any, table: str, key_field: str,
                   key: Callable[[dict[str, Any]], Any]) -> list[str]:
    """'table[i].field: duplicate ...' for entries whose key repeats an earlier entry's."""
    # read from the raw TOML, so duplicates are reported together with every other problem
    if not isinstance(entries, list):
        return []
    first: dict[Any, int] = {}
    problems = []
    for index, entry in enumerate(entries):
        value = key(entry) if isinstance(entry, dict) else None
        if value is None:
            continue
        if value in first:
            problems.append(
                f"{table}[{index}].{key_field}: duplicate {key_field} {entry[key_field]!r} (also "
                f"{table}[{first[value]}]); give each entry a unique {key_field}")
        first.setdefault(value, index)
    return problems


def _unknown_field(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; remove it or use one of {', '.join(known)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
