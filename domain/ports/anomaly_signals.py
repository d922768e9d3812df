"""The anomaly signals port: what the anomaly scan reads from the analytics store.

Given a moment, the trailing weeks, the billing zone and the night hours, it returns for every
user and every key with usage in the day ending with the last complete hour (and at least the
query's minimum volume): the current hour's
and day's sums and, per metric, the median and MAD of the same windows in the trailing weeks
(`domain.anomaly.windows` defines them), the error share's baseline, and, when the last hour
is a night hour, the requests of the trailing weeks, all and at night.

Adapters: `adapters/analytics/anomaly_sql.py` (ClickHouse SQL over the hourly rollup, on any
store offering `query_rows`: chDB, a server) and the twin `adapters/analytics/anomaly_figures.py`
(the plain fold of any AnalyticsStore's figures); both pass `tests/contract/test_anomaly_signals.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.anomaly.readings import ScopeReading
from domain.anomaly.windows import ScanWindows, scan_windows


@dataclass(frozen=True)
class SignalQuery:
    now: datetime
    weeks: int = 4
    timezone: str = "UTC"
    night_hours: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    # Scopes below both minimums cannot be abnormal, so they are not read: in the last hour fewer
    # than `min_hour_requests` requests and finished requests, in the day fewer than `min_day_requests`
    min_hour_requests: int = 0
    min_day_requests: int = 0

    def wanted(self, hour_requests: int, hour_finished: int, day_requests: int) -> bool:
        """Whether a scope with these current sums is read (any usage in the day, and a minimum)."""
        return day_requests > 0 and (hour_requests >= self.min_hour_requests
                                     or hour_finished >= self.min_hour_requests
                                     or day_requests >= self.min_day_requests)

    def windows(self) -> ScanWindows:
        return scan_windows(self.now, self.weeks, self.timezone)

    def looks_at_night(self) -> bool:
        """Whether the last complete hour is a night hour, so the night profile is read."""
        return self.windows().local_hour() in self.night_hours


class AnomalySignals(Protocol):
    def read(self, query: SignalQuery) -> list[ScopeReading]:
        """Readings of every active user and key, ordered by (scope, scope id)."""
        ...

    def has_usage_since(self, moment: datetime) -> bool:
        """Whether the store holds any usage at or after `moment` (a UTC hour): if none came after
        the hour a scan judges, the store may still be catching up with it."""
        ...
