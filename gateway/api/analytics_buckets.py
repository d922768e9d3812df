"""Every calendar bucket of a period, in order, labelled exactly as `domain.usage_figures` labels them.

The store answers only buckets that hold facts; a chart needs the empty ones too. Buckets follow
the local calendar: a local day may last 23 or 25 hours, and an hour repeated when clocks go back
is two buckets ("02:00+02:00" then "02:00+01:00").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.usage_figures import bucket_label
from gateway import errors

MAX_POINTS = 2_000  # a chart of more points than this is unreadable, and its answer large
# Every UTC offset in use since 2000 is a whole number of quarter hours, so a step of 15 minutes
# meets every local hour, however far the zone sits from UTC or how far its clocks jump.
_STEP = timedelta(minutes=15)
_DAYS_PER = {"hour": 1 / 24, "day": 1, "week": 7, "month": 28}


def bucket_labels(start: datetime, end: datetime, bucket: str, zone: ZoneInfo,
                  param: str = "bucket") -> list[str]:
    """The labels of the `bucket`s meeting [start, end), in time order; past MAX_POINTS a 400
    naming `param` (what the caller can change)."""
    if end <= start:
        return []
    # An estimate from the length alone, before anything is enumerated (a local day is >= 23 h).
    estimate = (end - start) / timedelta(days=_DAYS_PER[bucket]) * (24 / 23 if bucket != "hour" else 1)
    if estimate > MAX_POINTS:
        raise too_many(bucket, estimate, param)
    labels = _hours(start, end, zone) if bucket == "hour" else _dates(start, end, bucket, zone)
    if len(labels) > MAX_POINTS:
        raise too_many(bucket, len(labels), param)
    return labels


def too_many(bucket: str, count: float, param: str) -> errors.GatewayError:
    return errors.bad_request(
        f"the period holds about {int(count)} {bucket} buckets, more than {MAX_POINTS}: choose a larger "
        "'bucket' or a shorter period ('from', 'to')", param, code="too_many_points")


def _hours(start: datetime, end: datetime, zone: ZoneInfo) -> list[str]:
    labels = [bucket_label("hour", start, zone)]
    utc = start.astimezone(UTC)
    moment = utc.replace(minute=utc.minute // 15 * 15, second=0, microsecond=0) + _STEP
    while moment < end:
        label = bucket_label("hour", moment, zone)
        if label != labels[-1]:
            labels.append(label)
        moment += _STEP
    return labels


def _dates(start: datetime, end: datetime, bucket: str, zone: ZoneInfo) -> list[str]:
    first = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    day = _floor(first, bucket)
    labels = []
    while day <= last:
        if bucket != "day" or _exists(day, zone):
            labels.append(day.isoformat())
        day = _next(day, bucket)
    return labels


def _exists(day: date, zone: ZoneInfo) -> bool:
    """False for a local date the zone skipped (Pacific/Apia has no 2011-12-30): nothing happened then.
    A day whose midnight falls in a gap starts at the gap's end, still that day."""
    midnight = datetime.combine(day, time(), tzinfo=zone)
    return midnight.astimezone(UTC).astimezone(zone).date() == day


def _floor(day: date, bucket: str) -> date:
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def _next(day: date, bucket: str) -> date:
    if bucket == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return day + timedelta(days=7 if bucket == "week" else 1)
