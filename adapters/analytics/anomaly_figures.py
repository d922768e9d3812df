"""The anomaly signals' twin: the same readings folded in Python from any AnalyticsStore's figures
(per scope and UTC hour), with `domain.anomaly.statistics` for the medians. It is what the SQL
adapter is held to (`tests/contract/test_anomaly_signals.py`), and what a store without
`query_rows` (the in-memory one) answers with."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from domain.anomaly.readings import METRICS, Measures, ScopeReading, WindowReading
from domain.anomaly.statistics import Baseline
from domain.anomaly.windows import HOUR, ScanWindows
from domain.ports.analytics import AnalyticsStore
from domain.ports.anomaly_signals import SignalQuery
from domain.usage_figures import AnalyticsQuery, Figures

FIELDS = ("requests", "tokens", "cost", "finished", "errors")


class FiguresAnomalySignals:
    """AnomalySignals by folding `store.figures` grouped by key, user and hour."""

    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store

    def read(self, query: SignalQuery) -> list[ScopeReading]:
        windows = query.windows()
        start = min(windows.history[0], windows.day_starts[-1])
        rows = self._store.figures(AnalyticsQuery(start, windows.hour + HOUR, source="raw", latency=False,
                                                  group_by=("key", "user", "hour")))
        readings = []
        for scope, index in (("user", 1), ("key", 0)):
            per_scope: dict[str, list[tuple[datetime, str, Figures]]] = defaultdict(list)
            for figures in rows:
                hour = datetime.fromisoformat(figures.group[2])
                per_scope[figures.group[index]].append((hour, figures.group[1], figures))
            for scope_id, hours in per_scope.items():
                reading = _reading(scope, scope_id, hours, windows, query)
                if reading is not None:
                    readings.append(reading)
        return sorted(readings, key=lambda r: (r.scope, r.scope_id))


    def has_usage_since(self, moment: datetime) -> bool:
        far = moment + timedelta(days=3660)  # any fact the store could hold after it
        return bool(self._store.figures(AnalyticsQuery(moment, far, source="raw", latency=False,
                                                       group_by=("user",))))


def _reading(scope: str, scope_id: str, hours: list[tuple[datetime, str, Figures]], windows: ScanWindows,
             query: SignalQuery) -> ScopeReading | None:
    n = windows.weeks + 1
    day = [[0] * len(FIELDS) for _ in range(n)]
    hour = [[0] * len(FIELDS) for _ in range(n)]
    history = night = 0
    history_start, history_end = windows.history
    zone = ZoneInfo(windows.zone)
    for moment, _, figures in hours:
        values = (figures.requests, figures.total_tokens, figures.cost, figures.finished, figures.errors)
        k = windows.day_index(moment)
        if k is not None:
            _add(day[k], values)
            if moment == windows.day_starts[k] + timedelta(hours=23):
                _add(hour[k], values)
        if history_start <= moment < history_end:
            history += figures.requests
            night += figures.requests if moment.astimezone(zone).hour in query.night_hours else 0
    if not query.wanted(hour[0][0], hour[0][3], day[0][0]):
        return None
    active_now = any(moment == windows.hour for moment, _, _ in hours)
    looked = query.looks_at_night() and active_now and hour[0][0] >= query.min_hour_requests
    shares = [errors / finished for *_, finished, errors in day[1:] if finished > 0]
    return ScopeReading(scope, scope_id, hours[0][1], _window(hour), _window(day), Baseline.of(shares),
                        history if looked else None, night if looked else None)


def _window(weeks: list[list[int]]) -> WindowReading:
    baseline = {metric: Baseline.of([week[FIELDS.index(metric)] for week in weeks[1:]]) for metric in METRICS}
    return WindowReading(Measures(*weeks[0]), baseline)


def _add(sums: list[int], values: tuple[int, ...]) -> None:
    for i, value in enumerate(values):
        sums[i] += value
