"""Budget periods: half-open [start, end) intervals in a billing time zone, returned in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


class Period(StrEnum):
    MONTH = "month"
    WEEK = "week"
    DAY = "day"
    NONE = "none"


def is_time_zone(name: object) -> bool:
    """Whether `name` loads as an IANA time zone. Loading reads a file named by it, so a directory
    ('America') or an over-long name fails with OSError, not only ValueError or KeyError."""
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def require_aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"datetime {at!r} must be timezone-aware")
    return at


def period_bounds(period: Period, at: datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    """The period containing `at`, as [start, end) in UTC."""
    require_aware(at)
    if period is Period.NONE:
        return BEGINNING, END_OF_TIME
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if period is Period.DAY:
        start = midnight
        end = _local_midnight(zone, start + timedelta(days=1))
    elif period is Period.WEEK:
        start = _local_midnight(zone, midnight - timedelta(days=local.weekday()))
        end = _local_midnight(zone, start + timedelta(days=7))
    else:
        start = midnight.replace(day=1)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    return start.astimezone(UTC), _local_midnight(zone, end).astimezone(UTC)


def _local_midnight(zone: ZoneInfo, moment: datetime) -> datetime:
    """Midnight of `moment`'s local date, re-resolved so DST shifts don't skew boundaries."""
    return datetime(moment.year, moment.month, moment.day, tzinfo=zone)
