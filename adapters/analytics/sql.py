"""The ClickHouse statements both analytics adapters send: one dialect, built in one place.

Values never enter the SQL text: they travel as server-side query parameters
(`{name:Type}` placeholders), so a user id cannot change a statement's meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.analytics.schema import USAGE_COLUMNS, USAGE_TABLE
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.usage import RequestMetered
from domain.usage_figures import check_timezone

GROUPS = {
    None: "''",
    "day": "toString(toDate(occurred_at, {timezone:String}))",
    "model": "toString(model)",
    "key": "key_id",
    "user": "user_id",
    "team": "team_id",
    "application": "labels['app']",  # '' for requests without an app tag
}
_FILTERS = ("user_id", "team_id", "key_id", "model")  # UsageQuery fields, named as the columns
_TIME = "DateTime64(6, 'UTC')"
MAX_RECENT = 10_000  # a page of "last requests", not an export

COUNT_SQL = f"SELECT count() FROM {USAGE_TABLE} FINAL"
GENERATION_SQL = "SELECT max(generation) FROM insert_generations"
NEXT_GENERATION_SQL = ("INSERT INTO insert_generations "
                       "SELECT max(generation) + 1, now64(3) FROM insert_generations")

# Copies are merged away later and skipped by FINAL meanwhile, so merging them on insert too
# only costs: a quarter to a half of chDB's insert rate (bench/bench_analytics.py --paths); the
# rollups' views have just grouped their block, so merging it again on insert is pure cost too.
# The two views run in parallel rather than one after the other. With both, an insert through
# the rollups runs at ~3x the defaults' rate (130k -> 400k rows/s, INSERT ... SELECT of 1 M rows).
INSERT_SETTINGS = {"optimize_on_insert": "0", "parallel_view_processing": "1"}



def batch_token(batch_id: str, generation: int) -> str:
    """The insert deduplication token of a batch: hex, so it is safe in any SETTINGS clause, and
    salted with the store's generation (bumped by delete_since), so a rebuild's batches are new."""
    return hashlib.sha256(f"{generation}\0{batch_id}".encode()).hexdigest()


def insert_settings(token: str | None) -> dict[str, str]:
    """The settings of one insert. With a token, every table (the rollups' views included) takes the
    batch's blocks once however often it is sent. Without one, no block is deduplicated: the raw
    table stays safe to repeat by FINAL, but the rollups count a repeated fact again."""
    # ClickHouse 26 decides by deduplicate_insert; insert_deduplicate is what older servers read.
    if token is None:
        # not by content either: a rebuild re-inserts the very blocks delete_since removed
        return {**INSERT_SETTINGS, "insert_deduplicate": "0", "deduplicate_insert": "disable"}
    return {**INSERT_SETTINGS, "insert_deduplicate": "1", "deduplicate_insert": "enable",
            "insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": "1"}


def insert_sql(settings: dict[str, str]) -> str:
    """INSERT INTO usage_events with `settings` (numbers, or hex tokens) inline, for chDB's send_insert."""
    rendered = ", ".join(f"{name} = {value if value.isdigit() else repr(value)}"
                         for name, value in settings.items())
    return f"INSERT INTO {USAGE_TABLE} ({', '.join(USAGE_COLUMNS)}) SETTINGS {rendered}"


def distinct_facts(facts: Sequence[RequestMetered]) -> list[RequestMetered]:
    """The first copy of each event id, in order: the rollups' views see no copy within a batch."""
    seen: dict[str, RequestMetered] = {}
    for fact in facts:
        seen.setdefault(fact.event_id, fact)
    return list(seen.values())


# Identical copies of a fact land in one month partition, so FINAL need not merge across them.
_SETTINGS = "SETTINGS do_not_merge_across_partitions_select_final = 1"


@dataclass(frozen=True)
class Statement:
    """SQL with `{name:Type}` placeholders, and the values for them."""

    sql: str
    params: dict[str, str]


def check_query(query: UsageQuery) -> None:
    """Raises ValueError for a query no adapter can answer, with what to change."""
    for name in ("start", "end"):
        moment = getattr(query, name)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"UsageQuery.{name} {moment!r} must be timezone-aware")
    if query.group_by not in GROUPS:
        choices = ", ".join(repr(g) for g in GROUPS)
        raise ValueError(f"UsageQuery.group_by {query.group_by!r} is not one of {choices}")
    check_timezone(query.timezone, "UsageQuery.timezone")


def usage_statement(query: UsageQuery) -> Statement:
    """The statement answering `query`: totals per group over [start, end), ordered by group."""
    check_query(query)
    params = {"start": format_time(query.start), "end": format_time(query.end)}
    where = [f"occurred_at >= {{start:{_TIME}}}", f"occurred_at < {{end:{_TIME}}}"]
    for field in _FILTERS:
        value = getattr(query, field)
        if value is not None:
            where.append(f"{field} = {{{field}:String}}")
            params[field] = value
    if query.group_by == "day":
        params["timezone"] = query.timezone
    sql = (f"SELECT {GROUPS[query.group_by]} AS grp, sum(requests) AS request_count, "
           "sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(cost) "
           f"FROM {USAGE_TABLE} FINAL WHERE {' AND '.join(where)}")
    if query.group_by is not None:
        sql += " GROUP BY grp ORDER BY grp"
    return Statement(f"{sql} {_SETTINGS}", params)


def check_limit(limit: int) -> None:
    """Raises ValueError for a `recent_requests` limit no adapter takes."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RECENT:
        raise ValueError(f"recent_requests limit must be an integer from 1 to {MAX_RECENT}; got {limit!r}")


# A request's parts share its request_id; a one-fact request is known by its event id.
# argMax by (occurred_at, event_id): the latest part, the same one whichever copy is read.
_LATEST = "(occurred_at, event_id)"
RECENT_SQL = (
    "SELECT if(request_id = '', event_id, request_id) AS request, max(occurred_at) AS latest, "
    f"toString(argMax(model, {_LATEST})), argMax(key_id, {_LATEST}), "
    "sum(prompt_tokens), sum(completion_tokens), sum(cost), "
    f"argMax(latency_ms, {_LATEST}), argMax(status, {_LATEST}), argMax(labels['app'], {_LATEST}) "
    f"FROM {USAGE_TABLE} FINAL WHERE user_id = {{user_id:String}} "
    f"GROUP BY request ORDER BY latest DESC, request DESC LIMIT {{limit:UInt32}} {_SETTINGS}")


def recent_statement(user_id: str, limit: int) -> Statement:
    """The statement answering `recent_requests(user_id, limit)`."""
    check_limit(limit)
    return Statement(RECENT_SQL, {"user_id": user_id, "limit": str(limit)})


def recent_from_rows(rows: Iterable[Sequence[Any]]) -> list[RecentRequest]:
    """Result rows of RECENT_SQL as RecentRequests."""
    return [RecentRequest(str(request), parse_time(latest), str(model), str(key), int(prompt),
                          int(completion), int(cost), int(latency), int(status), str(app))
            for request, latest, model, key, prompt, completion, cost, latency, status, app in rows]


def parse_time(value: datetime | str) -> datetime:
    """A DateTime64 result (a datetime from the driver, text from chDB's JSON) as an aware UTC moment."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def totals_from_rows(rows: Iterable[Sequence[Any]]) -> list[UsageTotals]:
    """Result rows (group, requests, prompt, completion, cached, cost) as UsageTotals."""
    # int(): JSON output quotes 64-bit integers, and exact integers are the point
    return [UsageTotals(str(group), int(requests), int(prompt), int(completion), int(cached), int(cost))
            for group, requests, prompt, completion, cached, cost in rows]


def format_time(moment: datetime) -> str:
    """A UTC moment as ClickHouse's DateTime64(6) text; isoformat zero-pads early years."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0",
                          "\b": "\\b", "\f": "\\f", "\v": "\\v", "'": "\\'"})


def escape_param(value: str) -> str:
    """A parameter value in the escaped text form ClickHouse parses query parameters in."""
    return value.translate(_ESCAPES)
