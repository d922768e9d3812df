"""The ledger's stored rows to RequestMetered facts the analytics store can hold, or why not.

The store inserts a batch as one unit, so one impossible fact would fail the whole batch
forever; the projector checks each fact here first and sets the bad ones aside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.usage import RequestMetered

_COUNTS = ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms", "price_version")
_SMALL = ("status", "schema_version")  # UInt16 columns
_TEXTS = ("event_id", "key_id", "user_id", "model", "endpoint", "gateway_id", "request_id")
_OPTIONAL_TEXTS = ("team_id", "job_id")
_FLAGS = ("stream", "client_disconnected", "final")
_INT64 = 2**63


def checked_facts(columns: Sequence[str], rows: Sequence[Sequence[Any]]
                  ) -> tuple[list[RequestMetered], list[tuple[int, str]]]:
    """The facts of a stored batch the store can hold, and (row index, reason) for each it cannot."""
    facts: list[RequestMetered] = []
    problems: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        try:
            fact = RequestMetered.from_data(dict(zip(columns, row, strict=True)))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problems.append((index, f"not a RequestMetered: {error!r}"))
            continue
        reason = problem(fact)
        if reason:
            problems.append((index, reason))
        else:
            facts.append(fact)
    return facts, problems


def problem(fact: RequestMetered) -> str | None:
    """Why the store cannot hold this fact; None when it can."""
    at = fact.occurred_at
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        return f"occurred_at {at!r} is not a timezone-aware time"
    if not 1900 <= at.year <= 9999:  # DateTime64's range; outside it ClickHouse would clamp
        return f"occurred_at {at.isoformat()} is outside 1900-9999"
    for name in _COUNTS + _SMALL:
        value = getattr(fact, name)
        top = 2**16 if name in _SMALL else _INT64
        if not _is_int(value) or not 0 <= value < top:
            return f"{name} {value!r} is not an integer in [0, {top})"
    if fact.requests not in (0, 1) or isinstance(fact.requests, bool):
        return f"requests {fact.requests!r} is not 0 or 1"
    if not _is_int(fact.cost) or not -_INT64 <= fact.cost < _INT64:
        return f"cost {fact.cost!r} is not a 64-bit integer of nano-units"
    for name in _TEXTS + _OPTIONAL_TEXTS:
        value = getattr(fact, name)
        if not isinstance(value, str) and not (value is None and name in _OPTIONAL_TEXTS):
            return f"{name} {value!r} is not a string"
    for name in _FLAGS:
        if not isinstance(getattr(fact, name), bool):
            return f"{name} {getattr(fact, name)!r} is not a boolean"
    labels = fact.labels
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in labels.items()):
        return f"labels {labels!r} is not a mapping of strings to strings"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
