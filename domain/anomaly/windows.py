"""The hours a scan looks at: the last complete hour, the day ending with it, and the same windows
in each of the trailing weeks, by the billing zone's wall clock.

"The same hour of the week" is a local hour: across a daylight-saving change, Monday 09:00 in
New York is 13:00 UTC one week and 14:00 UTC the next, and people keep their local hours. Every
window is whole UTC hours, so the hourly rollup (UTC hours) answers it exactly; in a zone whose
offset is not whole hours the shifted start is floored to its UTC hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.periods import require_aware

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)


def last_complete_hour(now: datetime) -> datetime:
    """The start of the last UTC hour that ended at or before `now`."""
    current = require_aware(now).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return current - HOUR


def week_before(hour: datetime, weeks: int, zone: ZoneInfo) -> datetime:
    """The UTC hour whose local wall time is `hour`'s, `weeks` weeks earlier."""
    local = hour.astimezone(zone) - timedelta(weeks=weeks)  # wall-clock arithmetic in the zone
    return local.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class ScanWindows:
    """`hours[k]` is the hour window k weeks back (k = 0: the last complete hour); the day window
    k is the 24 hours ending with it, `[hours[k] - 23 h, hours[k] + 1 h)`. The history (for the
    night profile) is the trailing `weeks` whole weeks before the current hour."""

    hours: tuple[datetime, ...]
    zone: str

    @property
    def weeks(self) -> int:
        return len(self.hours) - 1

    @property
    def hour(self) -> datetime:
        return self.hours[0]

    @property
    def day_starts(self) -> tuple[datetime, ...]:
        return tuple(hour - DAY + HOUR for hour in self.hours)

    @property
    def history(self) -> tuple[datetime, datetime]:
        return self.hour - timedelta(weeks=self.weeks), self.hour

    def local_hour(self) -> int:
        """The billing zone's hour of day at the start of the last complete hour."""
        return self.hour.astimezone(ZoneInfo(self.zone)).hour

    def day_index(self, hour: datetime) -> int | None:
        """Which day window (k) holds a UTC hour, or None."""
        for k, start in enumerate(self.day_starts):
            if start <= hour < start + DAY:
                return k
        return None


def scan_windows(now: datetime, weeks: int, zone: str) -> ScanWindows:
    """The windows of a scan at `now` over `weeks` trailing weeks in the billing `zone`."""
    if not 1 <= weeks <= 52:
        raise ValueError(f"weeks must be 1 to 52, got {weeks}")
    hour = last_complete_hour(now)
    tz = ZoneInfo(zone)
    return ScanWindows((hour, *(week_before(hour, k, tz) for k in range(1, weeks + 1))), zone)
