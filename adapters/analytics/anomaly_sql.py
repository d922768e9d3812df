"""The anomaly signals in ClickHouse SQL over the hourly rollup, on any store with `query_rows`.

One statement reads users and keys together (GROUPING SETS): it sums the rows of `usage_hourly`
per scope and week (k: the week whose day window holds the row), turns those into arrays
indexed by week (`sumForEach` of a one-hot array: a week without usage is a 0, not a missing
row), then takes the median and MAD of the trailing weeks with `quantileExactInclusive(0.5)` (the
interpolated median `domain.anomaly.statistics.median` also computes). A second statement reads
the night profile, only when the last hour is a night hour. Only scopes with usage in the
current day window and at least the query's minimum volume come back: no other can be abnormal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from domain.anomaly.readings import METRICS, Measures, ScopeReading, WindowReading
from domain.anomaly.statistics import Baseline
from domain.anomaly.windows import HOUR, ScanWindows
from domain.ports.anomaly_signals import SignalQuery

# Users and keys in one pass over the rows: GROUPING SETS, told apart by grouping() (0: in the set)
SCOPE = "if(grouping(user_id) = 0, 'user', 'key') AS scope, if(scope = 'user', user_id, key_id) AS scope_id"
BY_SCOPE = "GROUPING SETS ((user_id{extra}), (key_id{extra}))"
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
        params = {**window_params(windows), "min_hour": str(query.min_hour_requests),
                  "min_day": str(query.min_day_requests)}
        nights: dict[tuple[str, str], tuple[int, int]] = {}
        if query.looks_at_night():
            nights = {(str(r[0]), str(r[1])): (int(r[2]), int(r[3]))
                      for r in self._store.query_rows(night_sql(night_hours_in(windows, query.night_hours)),
                                                      params)}
        rows = self._store.query_rows(windows_sql(windows.weeks), params)
        readings = [reading_of(row, nights.get((str(row[0]), str(row[1])))) for row in rows]
        return sorted(readings, key=lambda r: (r.scope, r.scope_id))


    def has_usage_since(self, moment: datetime) -> bool:
        sql = "SELECT 1 FROM usage_hourly WHERE hour >= {moment:DateTime('UTC')} LIMIT 1"
        return bool(self._store.query_rows(sql, {"moment": _text(moment)}))


def window_params(windows: ScanWindows) -> dict[str, str]:
    params = {f"d{k}": _text(start) for k, start in enumerate(windows.day_starts)}
    params.update(h0=_text(windows.hour), history_start=_text(windows.history[0]))
    return params


def windows_sql(weeks: int) -> str:
    """Per scope: each measure's sums per week (index 1 the current window) over the hour and the
    day windows, then the current values and the trailing weeks' medians and MADs."""
    n = weeks + 1
    days = "[" + ", ".join(f"{{d{k}:DateTime('UTC')}}" for k in range(n)) + "]"
    in_any = " OR ".join(f"(hour >= {{d{k}:DateTime('UTC')}} AND hour < {{d{k}:DateTime('UTC')}} + 86400)"
                         for k in range(n))
    # Sums per (scope, week) first, with plain sum(): the rows of five days collapse to a row per
    # scope and week, and the arrays by week are built over those few rows, not every rollup row.
    week_sums = ", ".join(f"sum(toInt64({expr})) AS week_d_{name}, "
                          f"sumIf(toInt64({expr}), in_hour) AS week_h_{name}" for name, expr in MEASURES)
    by_week = ",\n       ".join(
        f"sumForEach(arrayMap(i -> if(i = k, week_{w}_{name}, 0), range({n}))) AS {w}_{name}"
        for name, _ in MEASURES for w in ("d", "h"))
    current = ", ".join(f"{w}_{name}[1]" for w in ("h", "d") for name, _ in MEASURES)
    summaries = []
    for w in ("h", "d"):
        for metric in METRICS:
            base = f"arraySlice({w}_{metric}, 2)"
            summaries.append(f"{MEDIAN.format(values=base)} AS {w}_{metric}_median")
            deviations = f"arrayMap(x -> abs(x - {w}_{metric}_median), {base})"
            summaries.append(f"{MEDIAN.format(values=deviations)} AS {w}_{metric}_mad")
    # the error share of each trailing week's day window that finished any request
    shares = ("arrayMap((e, f) -> e / f, arrayFilter((e, f) -> f > 0, arraySlice(d_errors, 2), "
              "arraySlice(d_finished, 2)), arrayFilter(f -> f > 0, arraySlice(d_finished, 2)))")
    share_median = f"if(empty({shares}), 0, {MEDIAN.format(values=shares)})"
    share_deviations = f"arrayMap(x -> abs(x - share_median), {shares})"
    share_mad = f"if(empty({shares}), 0, {MEDIAN.format(values=share_deviations)})"
    # n is an int and the rest fixed text: no caller text reaches the statement
    return f"""
SELECT scope, scope_id, owner, {current},
       {', '.join(summaries)},
       {share_median} AS share_median, {share_mad} AS share_mad
FROM (
    SELECT scope, scope_id, any(owner) AS owner,
           {by_week}
    FROM (
        SELECT {SCOPE}, k, any(owner_id) AS owner, {week_sums}
        FROM (
            SELECT user_id, key_id, user_id AS owner_id, requests, prompt_tokens, completion_tokens, cost,
                   finished, errors, arrayFirstIndex(s -> hour >= s AND hour < s + 86400, {days}) - 1 AS k,
                   hour = {days}[k + 1] + 82800 AS in_hour
            FROM usage_hourly
            WHERE ({in_any}) AND user_id IN (
                -- users with enough usage now: a key's sums are at most its user's, so this keeps
                -- every scope the HAVING below keeps, and the weeks of quiet users are never summed
                SELECT user_id FROM usage_hourly
                WHERE hour >= {{d0:DateTime('UTC')}} AND hour < {{d0:DateTime('UTC')}} + 86400
                GROUP BY user_id
                HAVING sum(requests) >= greatest({{min_day:Int64}}, 1)
                    OR sumIf(requests, hour = {{h0:DateTime('UTC')}}) >= {{min_hour:Int64}}
                    OR sumIf(finished, hour = {{h0:DateTime('UTC')}}) >= {{min_hour:Int64}})
        )
        WHERE k >= 0
        GROUP BY {BY_SCOPE.format(extra=", k")}
    )
    GROUP BY scope, scope_id
    HAVING d_requests[1] > 0 AND (h_requests[1] >= {{min_hour:Int64}} OR h_finished[1] >= {{min_hour:Int64}}
                                  OR d_requests[1] >= {{min_day:Int64}})
)
ORDER BY scope, scope_id
"""  # noqa: S608


def night_hours_in(windows: ScanWindows, night_hours: tuple[int, ...]) -> list[int]:
    """The UTC hours (Unix seconds) of the history whose start is a night hour in the billing zone:
    a set the statement looks each row up in, instead of converting every row's hour to the zone."""
    zone, start = ZoneInfo(windows.zone), windows.history[0]
    hours = int((windows.hour - start) / HOUR)
    return [int((start + i * HOUR).timestamp()) for i in range(hours)
            if (start + i * HOUR).astimezone(zone).hour in night_hours]


def night_sql(night: list[int]) -> str:
    """Per scope with usage in the last hour, at least the minimum of requests: requests of the
    trailing weeks (before that hour), all and in night hours (the billing zone's hour of each UTC
    hour's start). Users below the minimum are left out before reading their weeks (a key's
    requests are at most its user's)."""
    hours = ", ".join(str(int(h)) for h in night) or "0"  # integers: no caller text in the statement
    return f"""
SELECT {SCOPE}, sumIf(requests, hour < {{h0:DateTime('UTC')}}) AS total,
       sumIf(requests, toUInt32(hour) IN ({hours})) AS night
FROM usage_hourly
WHERE hour >= {{history_start:DateTime('UTC')}} AND hour <= {{h0:DateTime('UTC')}}
  AND user_id IN (SELECT user_id FROM usage_hourly WHERE hour = {{h0:DateTime('UTC')}}
                  GROUP BY user_id HAVING sum(requests) >= {{min_hour:Int64}})
GROUP BY {BY_SCOPE.format(extra="")}
HAVING countIf(hour = {{h0:DateTime('UTC')}}) > 0
   AND sumIf(requests, hour = {{h0:DateTime('UTC')}}) >= {{min_hour:Int64}}
"""  # noqa: S608


def reading_of(row: list[Any], night: tuple[int, int] | None) -> ScopeReading:
    """A row of `windows_sql`: scope, id, owner, 10 current sums (hour then day: MEASURES), 12
    summaries (hour then day: median and MAD of each of METRICS), the error share's median and MAD."""
    current = [int(v) for v in row[3:13]]  # 64-bit integers come as JSON strings
    s = [float(v) for v in row[13:25]]
    b = [Baseline(s[i], s[i + 1]) for i in range(0, 12, 2)]
    hour = WindowReading(Measures(*current[:5]), {"requests": b[0], "tokens": b[1], "cost": b[2]})
    day = WindowReading(Measures(*current[5:]), {"requests": b[3], "tokens": b[4], "cost": b[5]})
    error_share = Baseline(float(row[25]), float(row[26]))
    return ScopeReading(str(row[0]), str(row[1]), str(row[2]), hour, day, error_share,
                        None if night is None else night[0], None if night is None else night[1])


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
