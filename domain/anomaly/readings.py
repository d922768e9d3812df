"""What a scan reads for one scope (a user or a key): the current windows and their baselines.

The port (`domain/ports/anomaly_signals.py`) returns these; the SQL adapter computes them over the
hourly rollup and the twin from the facts, and the contract suite holds both to the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from domain.anomaly.statistics import Baseline

METRICS = ("requests", "tokens", "cost")  # the measures with a weekly baseline; tokens: prompt + completion


class Measures(NamedTuple):
    """Sums over one window; cost in nano-units; errors are finished requests with a status >= 400.
    (A named tuple, as Baseline is: made twice for each user and key of a scan.)"""

    requests: int = 0
    tokens: int = 0
    cost: int = 0
    finished: int = 0
    errors: int = 0


@dataclass(frozen=True)
class WindowReading:
    """A window's current sums, and per metric (METRICS) the baseline of the same window in the
    trailing weeks (a week without usage counts as 0)."""

    current: Measures = field(default_factory=Measures)
    baseline: dict[str, Baseline] = field(default_factory=dict)

    def of(self, metric: str) -> Baseline:
        return self.baseline.get(metric, Baseline())


@dataclass(frozen=True)
class ScopeReading:
    """One user or key with usage in the current day window.

    `error_share` is the baseline of the error share (errors / finished) of the day windows of the
    trailing weeks that finished any request. `history_requests` and `night_requests` are the
    requests of the trailing weeks, all and in the night hours (local); both None when the scan
    did not look (the last hour is not a night hour, or the scope's requests in it are below the
    query's hour minimum)."""

    scope: str  # "user" | "key"
    scope_id: str
    user_id: str
    hour: WindowReading
    day: WindowReading
    error_share: Baseline = Baseline()
    history_requests: int | None = None
    night_requests: int | None = None
