"""The statements behind `figures` and `delete_since`, for whichever source the planner picked.

Values travel as `{name:Type}` server-side parameters, as in `sql.py`. Time buckets are
computed in SQL as values whose label does not depend on how ClickHouse names them: an hour
is the instant its local hour starts (labelled in Python by `domain.usage_figures.bucket_label`),
hour_of_day a number; the local offset is the fact's (or hourly row's) own, so a DST change
gives two distinct hours where Python does. Rows come back unordered and are sorted here, as
Python orders group tuples. UInt128 latency sums travel as text: JSON readers take them for floats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adapters.analytics.migrate import backfill_statement
from adapters.analytics.sql import Statement, format_time
from domain.usage import RequestMetered
from domain.usage_figures import (
    BUCKETS,
    ERROR_STATUS,
    LATENCY_BUCKETS_MS,
    AnalyticsQuery,
    Figures,
    bucket_label,
)

TABLES = {"raw": "usage_events FINAL", "hourly": "usage_hourly", "daily": "usage_daily"}
ANALYTICS_TABLES = ("usage_events", "usage_hourly", "usage_daily")
_DIMENSIONS = {"user": "user_id", "key": "key_id", "team": "team_id", "model": "toString(model)"}
_FILTER_COLUMNS = {"user_id": "user_id", "key_id": "key_id", "team_id": "team_id", "model": "model"}
_FLOORS = f"[{', '.join(map(str, LATENCY_BUCKETS_MS))}]"
_SUMS = {  # per source: requests, tokens, cost, finished, errors, latency sum (text: UInt128)
    "raw": ("sum(toUInt64(requests)), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), "
            f"sum(cost), countIf(final), countIf(final AND status >= {ERROR_STATUS}), "
            "toString(sumIf(toUInt128(latency_ms), final))"),
    "rollup": ("sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(cost), "
               "sum(finished), sum(errors), toString(sum(latency_ms_sum))"),
}
_HISTOGRAM = {  # the latency histogram as its floors and their counts
    "raw": (f"mapKeys(sumMap(if(final, map(toUInt32(roundDown(latency_ms, {_FLOORS})), toUInt64(1)), map()))"
            " AS h), mapValues(h)"),
    "rollup": "mapKeys(sumMap(latency_histogram) AS h), mapValues(h)",
}
_NO_HISTOGRAM = "CAST([] AS Array(UInt32)), CAST([] AS Array(UInt64))"  # for latency=False


def _measures(source: str, latency: bool, by_user: bool) -> str:
    kind = "raw" if source == "raw" else "rollup"
    # Grouped by user, every group has exactly one: a distinct count per group (a hash set for
    # each of a month's 31,000 user-days) would only say so slowly.
    users = "toUInt64(1)" if by_user else "uniqExact(user_id)"
    return f"{_SUMS[kind]}, {_HISTOGRAM[kind] if latency else _NO_HISTOGRAM}, {users}"


# The stored ranges: DateTime from 1970 to 2106, Date32 from 1900 to 2299.
_FIRST, _LAST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2106, 1, 1, tzinfo=UTC)
_TIME = "DateTime64(6, 'UTC')"
# 64-bit integers as JSON numbers, not text: a histogram of thousands of counts parses in C.
_SETTINGS = " SETTINGS output_format_json_quote_64bit_integers = 0"
_RAW_SETTINGS = f"{_SETTINGS}, do_not_merge_across_partitions_select_final = 1"


@dataclass(frozen=True)
class FiguresStatement(Statement):
    """The statement, and what its leading group columns are (a dimension or a bucket name)."""

    groups: tuple[str, ...] = ()
    timezone: str = "UTC"


def figures_statement(query: AnalyticsQuery, source: str, rollup_timezone: str) -> FiguresStatement:
    """The statement answering `query` from `source` (as planned: the caller checked it answers)."""
    params: dict[str, str] = {}
    where = _interval(query, source, rollup_timezone, params)
    for name, column in _FILTER_COLUMNS.items():
        value = getattr(query, name)
        if value is not None:
            where.append(f"{column} = {{f_{name}:String}}")
            params[f"f_{name}"] = value
    if query.user_ids is not None:  # one parameter each: the same text for both drivers
        names = [f"{{f_u{i}:String}}" for i in range(len(query.user_ids))]
        where.append(f"user_id IN ({', '.join(names)})" if names else "0")
        params.update({f"f_u{i}": user for i, user in enumerate(query.user_ids)})
    if query.application is not None:
        where.append(f"{_group_expression('application', source, params)} = {{f_app:String}}")
        params["f_app"] = query.application
    groups = [_group_expression(g, source, params) for g in query.group_by]
    if any(g in BUCKETS for g in query.group_by):
        params["tz"] = query.timezone
    columns = [f"{expression} AS g{i}" for i, expression in enumerate(groups)]
    measures = _measures(source, query.latency, by_user="user" in query.group_by)
    sql = (f"SELECT {', '.join([*columns, measures])} FROM {TABLES[source]} WHERE {' AND '.join(where)}")
    if groups:
        sql += f" GROUP BY {', '.join(f'g{i}' for i in range(len(groups)))}"
    return FiguresStatement(sql + (_RAW_SETTINGS if source == "raw" else _SETTINGS), params, query.group_by,
                            query.timezone)


def figures_from_rows(statement: FiguresStatement, rows: Iterable[Sequence[Any]]) -> list[Figures]:
    """Result rows as Figures, bucket values labelled, ordered by group."""
    zone = ZoneInfo(statement.timezone)
    width = len(statement.groups)
    labelled = any(kind in ("hour", "hour_of_day") for kind in statement.groups)  # else text already
    answer = []
    for row in rows:
        group = (tuple(_label(kind, value, zone) for kind, value in zip(statement.groups, row[:width],
                                                                         strict=True))
                 if labelled else tuple(row[:width]))
        # Counts and money arrive as ints (64-bit integers unquoted); the UInt128 latency sum as text.
        (requests, prompt, completion, cached, cost, finished, errors, latency_sum,
         floors, counts, users) = row[width:]
        answer.append(_figures((group, requests, prompt, completion, cached, cost, finished, errors,
                                int(latency_sum), tuple(zip(floors, counts, strict=True)), users)))
    return sorted(answer, key=lambda figures: figures.group)


_FIGURES_FIELDS = tuple(field.name for field in dataclasses.fields(Figures))


def _figures(values: tuple[Any, ...]) -> Figures:
    """A Figures without the frozen dataclass's __setattr__ per field: a third of the time, which
    is most of the Python in a month's user-by-day trend (31,000 rows)."""
    figures = object.__new__(Figures)
    figures.__dict__.update(zip(_FIGURES_FIELDS, values, strict=True))
    return figures


def delete_statements(moment: datetime | None, rollup_timezone: str) -> list[Statement]:
    """What `delete_since(moment)` runs, in order; raises ValueError unless `moment` is None or a
    midnight in the rollup zone."""
    if moment is None:
        return [Statement(f"TRUNCATE TABLE IF EXISTS {table}", {}) for table in ANALYTICS_TABLES]
    zone = ZoneInfo(rollup_timezone)
    local = moment.astimezone(zone) if moment.tzinfo is not None else None
    if local is None or (local.hour, local.minute, local.second, local.microsecond) != (0, 0, 0, 0):
        raise ValueError(f"delete_since({moment!r}): the moment must be a midnight in {rollup_timezone}, "
                         "the store's rollup time zone, so no day of the daily rollup is cut in two")
    moment = min(max(moment, _FIRST), _LAST)
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    sync = " SETTINGS mutations_sync = 2"  # a rebuild inserts right after: wait for the deletes
    at = {"moment": format_time(moment), "hour": format_time(hour), "day": local.date().isoformat()}
    statements = [
        Statement(f"ALTER TABLE usage_events DELETE WHERE occurred_at >= {{moment:{_TIME}}}{sync}", at),
        Statement(f"ALTER TABLE usage_hourly DELETE WHERE hour >= {{hour:{_TIME}}}{sync}", at),
        Statement(f"ALTER TABLE usage_daily DELETE WHERE day >= {{day:Date32}}{sync}", at)]
    if hour < moment:  # a zone not whole hours from UTC: refill the hour's part before the moment
        condition = f"occurred_at >= {{hour:{_TIME}}} AND occurred_at < {{moment:{_TIME}}}"
        statements.append(Statement(refill("usage_hourly", rollup_timezone, condition), at))
    return statements


# A refill repeats blocks inserted before (the same facts, summed the same way): never deduplicated.
_NO_DEDUP = " SETTINGS insert_deduplicate = 0, deduplicate_insert = 'disable'"


def refill(table: str, rollup_timezone: str, condition: str) -> str:
    """A rollup's rows for the raw facts matching `condition`, summed again from usage_events FINAL."""
    return backfill_statement(table, rollup_timezone, condition).rstrip().rstrip(";") + _NO_DEDUP


def recovery_statements(facts: Sequence[RequestMetered], rollup_timezone: str) -> list[Statement]:
    """What `recover_batch` runs after inserting the facts again: the rollups' hours and days the
    facts fall in (one span each, first to last), deleted and summed again from the raw facts."""
    zone = ZoneInfo(rollup_timezone)
    first = min(min(f.occurred_at for f in facts), _LAST).astimezone(UTC)
    last = max(max(f.occurred_at for f in facts), _FIRST).astimezone(UTC)
    first_hour = first.replace(minute=0, second=0, microsecond=0)
    end_hour = last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    first_day, last_day = first.astimezone(zone).date(), last.astimezone(zone).date()
    day_start = datetime.combine(first_day, datetime.min.time(), zone).astimezone(UTC)
    day_end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    at = {"h0": format_time(first_hour), "h1": format_time(end_hour), "d0": first_day.isoformat(),
          "d1": last_day.isoformat(), "t0": format_time(day_start), "t1": format_time(day_end),
          "tz": rollup_timezone}
    sync = " SETTINGS mutations_sync = 2"  # the refill follows at once
    hours = f"occurred_at >= {{h0:{_TIME}}} AND occurred_at < {{h1:{_TIME}}}"
    days = (f"occurred_at >= {{t0:{_TIME}}} AND occurred_at < {{t1:{_TIME}}} "
            "AND toDate(occurred_at, {tz:String}) BETWEEN {d0:Date32} AND {d1:Date32}")
    return [
        Statement(f"ALTER TABLE usage_hourly DELETE WHERE hour >= {{h0:{_TIME}}} AND hour < {{h1:{_TIME}}}"
                  f"{sync}", at),
        Statement(refill("usage_hourly", rollup_timezone, hours), at),
        Statement(f"ALTER TABLE usage_daily DELETE WHERE day BETWEEN {{d0:Date32}} AND {{d1:Date32}}"
                  f"{sync}", at),
        Statement(refill("usage_daily", rollup_timezone, days), at)]


def _interval(query: AnalyticsQuery, source: str, rollup_timezone: str, params: dict[str, str]) -> list[str]:
    start, end = (min(max(m, _FIRST), _LAST) for m in (query.start, query.end))
    if source == "daily":
        zone = ZoneInfo(rollup_timezone)
        params["start_day"], params["end_day"] = (m.astimezone(zone).date().isoformat() for m in (start, end))
        return ["day >= {start_day:Date32}", "day < {end_day:Date32}"]
    if source == "hourly":
        params["start"], params["end"] = (m.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                                          for m in (start, end))
        return ["hour >= {start:DateTime('UTC')}", "hour < {end:DateTime('UTC')}"]
    params["start"], params["end"] = format_time(start), format_time(end)
    return [f"occurred_at >= {{start:{_TIME}}}", f"occurred_at < {{end:{_TIME}}}"]


def _group_expression(group: str, source: str, params: dict[str, str]) -> str:
    if group == "application":
        return "labels['app']" if source == "raw" else "application"
    if group in _DIMENSIONS:
        return _DIMENSIONS[group]
    if source == "daily":
        return {"day": "toString(day)", "week": "toString(toMonday(day))",
                "month": "toString(toStartOfMonth(day))"}[group]
    moment = "occurred_at" if source == "raw" else "hour"
    seconds = f"toInt64(toUnixTimestamp({moment}))"
    local = f"({seconds} + timeZoneOffset(toTimeZone(toDateTime({moment}), {{tz:String}})))"
    return {"hour": f"{seconds} - {local} % 3600",  # the instant the fact's local hour starts
            "hour_of_day": f"intDiv({local} % 86400, 3600)",
            "day": f"toString(toDate({moment}, {{tz:String}}))",
            "week": f"toString(toMonday({moment}, {{tz:String}}))",
            "month": f"toString(toStartOfMonth({moment}, {{tz:String}}))"}[group]


def _label(kind: str, value: Any, zone: ZoneInfo) -> str:
    if kind == "hour":
        return bucket_label("hour", datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(value)), zone)
    if kind == "hour_of_day":
        return f"{int(value):02d}"
    return str(value)

