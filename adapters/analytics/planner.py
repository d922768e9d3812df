"""Which table answers an AnalyticsQuery exactly: the daily rollup, the hourly one, or raw facts.

Pure, and shared by every analytics adapter, so the in-memory twin refuses the same forced
sources the SQL stores do. A rollup answers exactly only when each of its rows lies wholly
inside or outside the interval and wholly inside one of the query's buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.usage_figures import BUCKETS, AnalyticsQuery, check_analytics_query

SOURCES = ("daily", "hourly", "raw")  # smallest first: "auto" takes the first that answers
_HOUR = timedelta(hours=1)


def plan(query: AnalyticsQuery, rollup_timezone: str) -> str:
    """The source to read: the forced one, or with "auto" the smallest that answers exactly.
    Raises ValueError for a forced rollup that cannot answer exactly, saying why."""
    check_analytics_query(query)
    if query.source == "raw":
        return "raw"
    if query.source != "auto":
        obstacle = why_not(query.source, query, rollup_timezone)
        if obstacle:
            raise ValueError(f"AnalyticsQuery.source {query.source!r} cannot answer exactly: {obstacle}; "
                             "use source 'auto' or 'raw'")
        return query.source
    return next(source for source in SOURCES if not why_not(source, query, rollup_timezone))


def why_not(source: str, query: AnalyticsQuery, rollup_timezone: str) -> str:
    """Why `source` cannot answer `query` exactly; "" when it can."""
    buckets = [g for g in query.group_by if g in BUCKETS]
    if source == "daily":
        zone = ZoneInfo(rollup_timezone)
        if buckets and buckets[0] in ("hour", "hour_of_day"):
            return f"the daily rollup has no hours to group by {buckets[0]!r}"
        if buckets and query.timezone != rollup_timezone:
            return (f"the daily rollup's days are calendar days in {rollup_timezone}, "
                    f"not in {query.timezone}")
        if not (_is_midnight(query.start, zone) and _is_midnight(query.end, zone)):
            return f"start and end must be midnights in {rollup_timezone}, the daily rollup's zone"
        return ""
    if source == "hourly":
        if not (_is_whole_hour(query.start) and _is_whole_hour(query.end)):
            return "start and end must be whole hours"
        if buckets and not whole_hour_offsets(ZoneInfo(query.timezone), query.start, query.end):
            return f"{query.timezone} is not a whole number of hours from UTC throughout [start, end)"
        return ""
    return ""


def whole_hour_offsets(zone: ZoneInfo, start: datetime, end: datetime) -> bool:
    """Whether the zone's UTC offset is a whole number of hours at every moment of [start, end).

    Offsets change only at transitions, which are at least days apart in every zone, so an
    hourly walk over a short interval and a daily one over long intervals see each offset.
    """
    step = _HOUR if end - start <= timedelta(days=400) else timedelta(days=1)
    moment = start.astimezone(UTC)
    while moment < end:
        offset = moment.astimezone(zone).utcoffset()
        if offset is None or offset % _HOUR:
            return False
        moment += step
    return True


def _is_whole_hour(moment: datetime) -> bool:
    utc = moment.astimezone(UTC)
    return (utc.minute, utc.second, utc.microsecond) == (0, 0, 0)


def _is_midnight(moment: datetime, zone: ZoneInfo) -> bool:
    local = moment.astimezone(zone)
    return (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)
