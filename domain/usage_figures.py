"""Dashboard figures over usage facts: what a question means, and the plain fold that answers it.

An `AnalyticsQuery` asks for figures over [start, end), filtered, grouped by dimensions and at
most one time bucket. `fold_figures` answers it from facts directly: the in-memory store uses
it, and every other analytics adapter (rollups and all) must give the same answer to the
nano-unit, which the contract suite checks.

Per-request outcomes (status, latency) are counted on a request's final fact: a request
metered in parts (a long stream) says how it ended only then. A request whose final part was
lost (a crash mid-stream) counts its requests, tokens and cost, not its outcome.

Latency quantiles come from a histogram with fixed bucket floors about 5 % apart
(`LATENCY_BUCKETS_MS`), the same in every adapter: a p95 is the floor of the bucket holding the
95th percentile, never more than ~5 % below the exact value, and identical however the
figures were summed (raw facts, hourly or daily rollups).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from domain.periods import is_time_zone
from domain.usage import RequestMetered

DIMENSIONS = {"user": "user_id", "key": "key_id", "team": "team_id", "model": "model",
              "application": "application"}
BUCKETS = ("hour", "day", "week", "month", "hour_of_day")
FILTERS = ("user_id", "key_id", "team_id", "model", "application")
ERROR_STATUS = 400  # a final status at or above this is an error
MAX_USER_IDS = 1000  # a page of users (a top-N's trend), not an export


def _latency_buckets() -> tuple[int, ...]:
    floors = list(range(20))  # exact below 20 ms
    while floors[-1] < 3_600_000:  # then ~5 % apart, up to an hour
        floors.append(max(floors[-1] + 1, math.ceil(floors[-1] * 1.05)))
    return tuple(floors)


LATENCY_BUCKETS_MS = _latency_buckets()


def latency_bucket(latency_ms: int) -> int:
    """The floor of the histogram bucket a latency falls in."""
    return LATENCY_BUCKETS_MS[bisect.bisect_right(LATENCY_BUCKETS_MS, latency_ms) - 1]


@dataclass(frozen=True)
class AnalyticsQuery:
    """Figures over [start, end), filtered (None: any), grouped by `group_by` in that order.

    `group_by` names dimensions ("user", "key", "team", "model", "application") and at most
    one time bucket ("hour", "day", "week", "month", "hour_of_day"), each at most once;
    buckets are calendar units in `timezone`. `source` picks the table in the SQL adapters
    ("auto": the smallest rollup that answers exactly; "raw", "hourly", "daily" force one,
    for tests and benchmarks); the answer is the same whichever answers it. `latency=False`
    leaves the latency histogram out (empty in every Figures): a trend of thousands of groups
    answers several times faster without a histogram per group it does not show.
    """

    start: datetime
    end: datetime
    user_id: str | None = None
    key_id: str | None = None
    team_id: str | None = None   # "" selects facts without a team
    model: str | None = None
    application: str | None = None  # the `app` label; "" selects untagged facts
    user_ids: tuple[str, ...] | None = None  # any of these users (up to MAX_USER_IDS); None: any user
    group_by: tuple[str, ...] = ()
    timezone: str = "UTC"
    source: str = "auto"
    latency: bool = True


@dataclass(frozen=True)
class Figures:
    """What one group used. `group` holds one value per `group_by` entry: dimensions as stored
    ("" for no team or no app tag); buckets as local calendar labels: hour
    "2024-03-31T03:00:00+02:00", day "2024-03-31", week its Monday, month its first day,
    hour_of_day "00" to "23"."""

    group: tuple[str, ...]
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: int = 0               # nano-units
    finished: int = 0           # requests whose final fact is here: their status and latency known
    errors: int = 0             # finished with a status >= 400
    latency_ms_sum: int = 0     # over finished requests
    latency_histogram: tuple[tuple[int, int], ...] = field(default=())  # (bucket floor, count), ascending
    users: int = 0              # distinct users with any fact in the group

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def latency_quantile(self, q: float) -> int | None:
        """The floor of the bucket holding the q-quantile of finished requests' latency; None if none."""
        return histogram_quantile(self.latency_histogram, q)


def histogram_quantile(histogram: Iterable[tuple[int, int]], q: float) -> int | None:
    """The smallest bucket floor whose cumulative count reaches ceil(q * total)."""
    pairs = sorted(histogram)
    total = sum(count for _, count in pairs)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for floor, count in pairs:
        seen += count
        if seen >= rank:
            return floor
    return pairs[-1][0]


def check_analytics_query(query: AnalyticsQuery) -> None:
    """Raises ValueError for a query no adapter answers, naming what to change."""
    for name in ("start", "end"):
        moment = getattr(query, name)
        if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"AnalyticsQuery.{name} {moment!r} must be a timezone-aware datetime")
    if query.end < query.start:
        raise ValueError("AnalyticsQuery.end must not be before start")
    unknown = [g for g in query.group_by if g not in DIMENSIONS and g not in BUCKETS]
    if unknown:
        raise ValueError(f"AnalyticsQuery.group_by {unknown[0]!r} is not one of "
                         f"{', '.join(list(DIMENSIONS) + list(BUCKETS))}")
    if len(set(query.group_by)) != len(query.group_by):
        raise ValueError("AnalyticsQuery.group_by names a group twice")
    if sum(g in BUCKETS for g in query.group_by) > 1:
        raise ValueError("AnalyticsQuery.group_by may hold at most one time bucket")
    if query.user_ids is not None and (
            not isinstance(query.user_ids, tuple) or len(query.user_ids) > MAX_USER_IDS
            or not all(isinstance(user, str) for user in query.user_ids)):
        raise ValueError(f"AnalyticsQuery.user_ids must be a tuple of at most {MAX_USER_IDS} user ids")
    if query.source not in ("auto", "raw", "hourly", "daily"):
        raise ValueError(f"AnalyticsQuery.source {query.source!r} is not auto, raw, hourly or daily")
    check_timezone(query.timezone, "AnalyticsQuery.timezone")


def check_timezone(name: str, what: str) -> None:
    """Raises ValueError unless `name` is an IANA time zone; `what` names the field in the message."""
    if not is_time_zone(name):
        raise ValueError(f"{what} {name!r} is not an IANA time zone name such as 'UTC' or 'Europe/Paris'")


def bucket_label(bucket: str, moment: datetime, zone: ZoneInfo) -> str:
    """The label of the `bucket` holding `moment`, in `zone`'s calendar."""
    local = moment.astimezone(zone)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0).isoformat()
    if bucket == "hour_of_day":
        return f"{local.hour:02d}"
    day = local.date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    elif bucket == "month":
        day = day.replace(day=1)
    return day.isoformat()


def dimension_value(fact: RequestMetered, dimension: str) -> str:
    """A fact's value for a dimension (or filter field), as the stores hold it."""
    if dimension in ("application", "application_id"):
        return fact.labels.get("app", "")
    value = getattr(fact, DIMENSIONS.get(dimension, dimension))
    return value or ""


def matches(query: AnalyticsQuery, fact: RequestMetered) -> bool:
    """Whether a fact is in the query's interval and passes its filters."""
    if not query.start <= fact.occurred_at < query.end:
        return False
    if query.user_ids is not None and fact.user_id not in query.user_ids:
        return False
    return all(getattr(query, name) is None or dimension_value(fact, name) == getattr(query, name)
               for name in FILTERS)


def fold_figures(facts: Iterable[RequestMetered], query: AnalyticsQuery) -> list[Figures]:
    """The query's answer from distinct facts (one per event id), ordered by group. Ungrouped,
    always one row, zeros when nothing matched; grouped, only groups with facts."""
    check_analytics_query(query)
    zone = ZoneInfo(query.timezone)
    sums: dict[tuple[str, ...], _Sums] = {}
    if not query.group_by:
        sums[()] = _Sums(query.latency)
    for fact in facts:
        if not matches(query, fact):
            continue
        group = tuple(bucket_label(g, fact.occurred_at, zone) if g in BUCKETS else dimension_value(fact, g)
                      for g in query.group_by)
        if group not in sums:
            sums[group] = _Sums(query.latency)
        sums[group].add(fact)
    return [sums[group].figures(group) for group in sorted(sums)]


class _Sums:
    __slots__ = ("amounts", "histogram", "latency", "users")

    def __init__(self, latency: bool) -> None:
        self.amounts = [0] * 8
        self.latency = latency
        self.histogram: dict[int, int] = {}
        self.users: set[str] = set()

    def add(self, fact: RequestMetered) -> None:
        a = self.amounts
        a[0] += fact.requests
        a[1] += fact.prompt_tokens
        a[2] += fact.completion_tokens
        a[3] += fact.cached_tokens
        a[4] += fact.cost
        if fact.final:
            a[5] += 1
            a[6] += fact.status >= ERROR_STATUS
            a[7] += fact.latency_ms
            if self.latency:
                floor = latency_bucket(fact.latency_ms)
                self.histogram[floor] = self.histogram.get(floor, 0) + 1
        self.users.add(fact.user_id)

    def figures(self, group: tuple[str, ...]) -> Figures:
        a = self.amounts
        return Figures(group, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                       tuple(sorted(self.histogram.items())), len(self.users))
