"""One anomaly scan: read the signals, judge every scope, fold the verdicts through the incident
state machine against the open incidents, record what changed. Synchronous (the store and
eventsourcing are): the scheduled job (`infra/workers/anomaly_scan.py`) runs it in a worker thread."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.anomaly.detection import Signal, Thresholds, judge
from domain.anomaly.incident import Transitions, transitions
from domain.anomaly.readings import ScopeReading
from domain.anomaly.windows import HOUR
from domain.ports.anomaly_signals import AnomalySignals, SignalQuery
from domain.services.anomalies import Anomalies, Recorded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanReport:
    hour: datetime  # the last complete hour it judged
    scopes: int  # users and keys with usage in the day ending with that hour
    abnormal: tuple[Signal, ...]
    recorded: Recorded


def scan_anomalies(signals: AnomalySignals, anomalies: Anomalies, now: datetime, timezone: str,
                   limits: Thresholds | None = None) -> ScanReport:
    """Judges the last complete hour before `now` in the billing `timezone`, and records incidents
    that start and end."""
    limits = limits or Thresholds()
    query = SignalQuery(now, limits.weeks, timezone, limits.night_hours,
                        min_hour_requests=min(limits.hour_minimum.requests, limits.min_error_requests),
                        min_day_requests=limits.day_minimum.requests)
    windows = query.windows()
    readings = signals.read(query)
    abnormal = tuple(signal for reading in readings for signal in judge(reading, windows, limits))
    changes = transitions(anomalies.open_incidents(), abnormal)
    if changes.resolved and not signals.has_usage_since(windows.hour + HOUR):
        # Nothing after the judged hour: the projector may still be catching up with it (after a
        # restart), and an hour missing its facts looks normal. Ends wait for a store that has
        # moved on; starts do not (missing facts only ever lower a value).
        log.info("anomaly scan of %s: no usage after it yet; %d incident ends wait",
                 windows.hour.isoformat(), len(changes.resolved))
        changes = Transitions(changes.detected, ())
    read = {(r.scope, r.scope_id): r for r in readings}
    ended = {key: _normal_again(read.get(key[1:]), windows.hour) for key in changes.resolved}
    recorded = anomalies.record(changes, windows.hour, now, ended)
    if recorded.detected or recorded.resolved:
        log.info("anomaly scan of %s: %d scopes, %d abnormal, %d incidents detected, %d resolved",
                 windows.hour.isoformat(), len(readings), len(abnormal), len(recorded.detected),
                 len(recorded.resolved))
    return ScanReport(windows.hour, len(readings), abnormal, recorded)


def _normal_again(reading: ScopeReading | None, hour: datetime) -> dict[str, Any]:
    """What the scope looked like when its incident ended: usage back to normal, or none to judge."""
    if reading is None:
        return {"hour": hour.isoformat(), "reason": "below the minimum volume, or idle"}
    return {"hour": hour.isoformat(), "reason": "normal", "hour_requests": reading.hour.current.requests,
            "hour_cost": reading.hour.current.cost, "day_cost": reading.day.current.cost,
            "hour_errors": reading.hour.current.errors}
