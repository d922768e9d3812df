"""The anomaly signals in ClickHouse SQL over the hourly rollup, on any store with `query_rows`.

One statement per scope (user, key) sums each row of `usage_hourly` into the week (k) whose day
window holds it, as arrays indexed by week (`sumForEach` of a one-hot array: a week without usage
is a 0, not a missing row), then takes the median and MAD of the trailing weeks with
`quantileExactInclusive(0.5)` (the interpolated median `domain.anomaly.statistics.median` also
computes). A second statement reads the night profile, only when the last hour is a night hour.
Only scopes with usage in the current day window come back: an idle one cannot be abnormal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from domain.anomaly.readings import METRICS, Measures, ScopeReading, WindowReading
from domain.anomaly.statistics import Baseline
from domain.anomaly.windows import ScanWindows
from domain.ports.anomaly_signals import SignalQuery

SCOPES = (("user", "user_id"), ("key", "key_id"))
MEASURES = (("requests", "requests"), ("tokens", "prompt_tokens + completion_tokens"), ("cost", "cost"),
            ("finished", "finished"), ("errors", "errors"))
MEDIAN = "arrayReduce('quantileExactInclusive(0.5)', {values})"


class RowSource(Protocol):
    def query_rows(self, sql: str, params: dict[str, str]) -> list[list[Any]]: ...


class SqlAnomalySignals:
    """AnomalySignals over the hourly rollup of a chDB or ClickHouse store."""

    def __init__(self, store: RowSource) -> None:
        self._store = store

    def read(self, query: SignalQuery) -> list[ScopeReading]:
        windows = query.windows()
        params = window_params(windows)
        readings: list[ScopeReading] = []
        for scope, column in SCOPES:
            rows = self._store.query_rows(windows_sql(column, windows.weeks), params)
            nights: dict[str, tuple[int, int]] = {}
            if query.looks_at_night():
                nights = {str(r[0]): (int(r[1]), int(r[2])) for r in self._store.query_rows(
                    night_sql(column, query.night_hours), params)}
            readings.extend(reading_of(scope, row, nights.get(str(row[0]))) for row in rows)
        return sorted(readings, key=lambda r: (r.scope, r.scope_id))


def window_params(windows: ScanWindows) -> dict[str, str]:
    params = {f"d{k}": _text(start) for k, start in enumerate(windows.day_starts)}
    start, end = windows.history
    params.update(h0=_text(windows.hour), history_start=_text(start), history_end=_text(end),
                  zone=windows.zone)
    return params


def windows_sql(column: str, weeks: int) -> str:
    """Per scope: each measure's sums per week (index 1 the current window) over the hour and the
    day windows, then the current values and the trailing weeks' medians and MADs."""
    n = weeks + 1
    days = "[" + ", ".join(f"{{d{k}:DateTime('UTC')}}" for k in range(n)) + "]"
    in_any = " OR ".join(f"(hour >= {{d{k}:DateTime('UTC')}} AND hour < {{d{k}:DateTime('UTC')}} + 86400)"
                         for k in range(n))
    sums = ",\n       ".join(
        f"sumForEach(arrayMap(i -> if(i = k{cond}, toInt64({expr}), 0), range({n}))) AS {w}_{name}"
        for name, expr in MEASURES for w, cond in (("d", ""), ("h", " AND in_hour")))
    current = ", ".join(f"{w}_{name}[1]" for w in ("h", "d") for name, _ in MEASURES)
    summaries = []
    for w in ("h", "d"):
        for metric in METRICS:
            base = f"arraySlice({w}_{metric}, 2)"
            summaries.append(f"{MEDIAN.format(values=base)} AS {w}_{metric}_median")
            deviations = f"arrayMap(x -> abs(x - {w}_{metric}_median), {base})"
            summaries.append(f"{MEDIAN.format(values=deviations)} AS {w}_{metric}_mad")
    shares = ("arrayMap((e, f) -> e / f, arrayFilter((e, f) -> f > 0, arraySlice(d_errors, 2), "
              "arraySlice(d_finished, 2)), arrayFilter(f -> f > 0, arraySlice(d_finished, 2)))")
    share_median = f"if(empty(shares), 0, {MEDIAN.format(values='shares')})"
    share_deviations = "arrayMap(x -> abs(x - share_median), shares)"
    share_mad = f"if(empty(shares), 0, {MEDIAN.format(values=share_deviations)})"
    # column is one of SCOPES' fixed names and n an int: no caller text reaches the statement
    return f"""
SELECT scope_id, owner, {current},
       {', '.join(summaries)},
       {shares} AS shares, {share_median} AS share_median, {share_mad} AS share_mad
FROM (
SELECT scope_id, any(user_id) AS owner,
       {sums}
FROM (
    SELECT {column} AS scope_id, user_id, requests, prompt_tokens, completion_tokens, cost, finished,
           errors, arrayFirstIndex(s -> hour >= s AND hour < s + 86400, {days}) - 1 AS k,
           hour = {days}[k + 1] + 82800 AS in_hour
    FROM usage_hourly
    WHERE {in_any}
)
WHERE k >= 0
GROUP BY scope_id
HAVING d_requests[1] > 0
)
ORDER BY scope_id
"""  # noqa: S608


def night_sql(column: str, night_hours: tuple[int, ...]) -> str:
    """Per scope active in the last hour: requests of the trailing weeks, all and in night hours
    (the billing zone's hour of each UTC hour's start)."""
    hours = ", ".join(str(int(h)) for h in sorted(set(night_hours)))
    return f"""
SELECT {column} AS scope_id, sum(requests) AS total,
       sumIf(requests, toHour(hour, {{zone:String}}) IN ({hours})) AS night
FROM usage_hourly
WHERE hour >= {{history_start:DateTime('UTC')}} AND hour < {{history_end:DateTime('UTC')}}
  AND {column} IN (SELECT {column} FROM usage_hourly WHERE hour = {{h0:DateTime('UTC')}})
GROUP BY scope_id
"""  # noqa: S608


def reading_of(scope: str, row: list[Any], night: tuple[int, int] | None) -> ScopeReading:
    scope_id, owner, *rest = row
    current = [int(v) for v in rest[:10]]
    summaries = [float(v) for v in rest[10:22]]
    share_median, share_mad = float(rest[23]), float(rest[24])
    windows = {}
    for i, w in enumerate(("h", "d")):
        baseline = {metric: Baseline(summaries[6 * i + 2 * j], summaries[6 * i + 2 * j + 1])
                    for j, metric in enumerate(METRICS)}
        windows[w] = WindowReading(Measures(*current[5 * i:5 * i + 5]), baseline)
    return ScopeReading(scope, str(scope_id), str(owner), windows["h"], windows["d"],
                        Baseline(share_median, share_mad),
                        None if night is None else night[0], None if night is None else night[1])


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
