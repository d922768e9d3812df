"""The three signals, judged on a scope's reading: spike, night and error_rate.

Every judgement needs a minimum volume first, so an idle or quiet user never alarms however
odd its few calls look. Each abnormal signal carries the figures that made it so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.anomaly.readings import ScopeReading, WindowReading
from domain.anomaly.statistics import Baseline, exceeds
from domain.anomaly.windows import ScanWindows

KINDS = ("spike", "night", "error_rate")
SCOPES = ("user", "key")


@dataclass(frozen=True)
class Volume:
    """A minimum in a window: requests, spend (nano-units) and tokens."""

    requests: int
    spend: int
    tokens: int


@dataclass(frozen=True)
class Thresholds:
    """What counts as abnormal. The volume minimums are also the floors of the spread a spike
    must clear, so a scope whose baseline is zero must use `factor` times the minimum."""

    weeks: int = 4
    factor: float = 3.0
    hour_minimum: Volume = Volume(requests=20, spend=100_000_000, tokens=20_000)       # $0.10
    day_minimum: Volume = Volume(requests=100, spend=1_000_000_000, tokens=200_000)    # $1
    mad_floor_ratio: float = 0.1  # the spread assumed at least 10 % of the median
    night_hours: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # local hours, 00:00-06:00
    max_night_share: float = 0.02  # "little or no night usage": at most 2 % of a user's requests
    min_error_requests: int = 20  # finished requests in the hour before an error share is judged
    error_share_floor: float = 0.05

    def __post_init__(self) -> None:
        if self.factor <= 1:
            raise ValueError(f"the anomaly factor must be above 1, got {self.factor}")
        if not 1 <= self.weeks <= 52:
            raise ValueError(f"the anomaly baseline must be 1 to 52 weeks, got {self.weeks}")
        if any(not 0 <= h <= 23 for h in self.night_hours):
            raise ValueError(f"night hours are hours of the day 0-23, got {self.night_hours}")


@dataclass(frozen=True)
class Signal:
    """An abnormal signal of one scope, with the figures that made it so."""

    kind: str
    scope: str
    scope_id: str
    user_id: str | None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.scope, self.scope_id


def judge(reading: ScopeReading, windows: ScanWindows, limits: Thresholds) -> list[Signal]:
    """The abnormal signals of one scope (none, one or several kinds). Usage without a key or user
    id (facts recorded without one) is judged under its user or key only, not as a scope of its own."""
    if not reading.scope_id:
        return []
    found = []
    for kind, figures in (("spike", _spike(reading, limits)), ("night", _night(reading, windows, limits)),
                          ("error_rate", _error_rate(reading, limits))):
        if figures is not None:
            user = reading.user_id or None
            found.append(Signal(kind, reading.scope, reading.scope_id, user,
                                {**figures, "hour": windows.hour.isoformat(), "factor": limits.factor,
                                 "weeks": windows.weeks}))
    return found


def _spike(reading: ScopeReading, limits: Thresholds) -> dict[str, Any] | None:
    """Spend or tokens of the last hour, or of the day ending with it, against the same window in
    the trailing weeks; the first abnormal one (hour before day, spend before tokens) is named."""
    for window, reading_of, minimum in (("hour", reading.hour, limits.hour_minimum),
                                        ("day", reading.day, limits.day_minimum)):
        if not _enough(reading_of, minimum):
            continue
        for metric, floor in (("cost", minimum.spend), ("tokens", minimum.tokens)):
            value, baseline = getattr(reading_of.current, metric), reading_of.of(metric)
            if exceeds(value, baseline, limits.factor, max(limits.mad_floor_ratio * baseline.median, floor)):
                return _figures(window, metric, value, baseline)
    return None


def _night(reading: ScopeReading, windows: ScanWindows, limits: Thresholds) -> dict[str, Any] | None:
    """Usage in a night hour from a user whose trailing weeks show (almost) none at night, and more
    than `factor` times what this hour of the week usually brings. A user without history is not
    judged: a new user has no profile to differ from."""
    local = windows.local_hour()
    if local not in limits.night_hours or reading.history_requests is None or reading.night_requests is None:
        return None
    if (reading.history_requests < limits.hour_minimum.requests
            or not _enough(reading.hour, limits.hour_minimum)):
        return None
    share = reading.night_requests / reading.history_requests
    value, baseline = reading.hour.current.requests, reading.hour.of("requests")
    if share > limits.max_night_share or value < limits.factor * baseline.median:
        return None
    return {**_figures("hour", "requests", value, baseline), "local_hour": local,
            "night_share": round(share, 6), "max_night_share": limits.max_night_share,
            "cost": reading.hour.current.cost}


def _error_rate(reading: ScopeReading, limits: Thresholds) -> dict[str, Any] | None:
    """The share of the last hour's finished requests that failed (upstream 4xx/5xx), against the
    scope's share in the day windows of the trailing weeks."""
    current = reading.hour.current
    if current.finished < limits.min_error_requests:
        return None
    share = current.errors / current.finished
    if not exceeds(share, reading.error_share, limits.factor, limits.error_share_floor):
        return None
    return {**_figures("hour", "error_share", round(share, 6), reading.error_share),
            "errors": current.errors, "finished": current.finished}


def _enough(window: WindowReading, minimum: Volume) -> bool:
    return window.current.requests >= minimum.requests and window.current.cost >= minimum.spend


def _figures(window: str, metric: str, value: float, baseline: Baseline) -> dict[str, Any]:
    return {"window": window, "metric": metric, "value": value, "baseline_median": baseline.median,
            "baseline_mad": baseline.mad}
