"""Incidents: an abnormal signal of one (kind, scope, scope id) from when it turns abnormal until it
returns to normal. `AnomalyDetected` is recorded once when it starts, nothing while it lasts, and
`AnomalyResolved` when it ends; a later abnormal spell is a new incident.

The id derives from (kind, scope, scope id, the hour it started), so two scanners, or a rescan
after a crash, that find the same start record one incident: the store refuses the second.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.anomaly.detection import Signal
from domain.ids import stable_id
from domain.periods import require_aware

IncidentKey = tuple[str, str, str]  # (kind, scope, scope_id)


def incident_id_for(kind: str, scope: str, scope_id: str, started: datetime) -> UUID:
    """The incident of a signal that turned abnormal in the UTC hour `started` (its data hour)."""
    hour = require_aware(started).replace(minute=0, second=0, microsecond=0)
    return stable_id("anomaly", kind, scope, scope_id, hour.isoformat())


class Incident(Aggregate):
    """One anomaly incident. The events' attributes are a contract: the alerts worker reads them."""

    TOPIC = "meterline.Incident"

    class Created(Aggregate.Created):
        TOPIC = "meterline.Incident.Created"

    @classmethod
    def create_id(cls, incident_id: str, **_: Any) -> UUID:
        return UUID(incident_id)

    @event("AnomalyDetected", topic="meterline.AnomalyDetected")
    def __init__(self, incident_id: str, kind: str, scope: str, scope_id: str, user_id: str | None,
                 figures: dict, at: datetime) -> None:
        self.incident_id = incident_id
        self.kind = kind
        self.scope = scope
        self.scope_id = scope_id
        self.user_id = user_id
        self.figures = figures
        self.detected_at = at
        self.resolved_at: datetime | None = None
        self.resolved_figures: dict | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def resolve(self, figures: dict, at: datetime) -> None:
        """Records that the signal returned to normal; nothing if it already did."""
        if self.is_open:
            self._resolved(incident_id=self.incident_id, figures=figures, at=at)

    @event("AnomalyResolved", topic="meterline.AnomalyResolved")
    def _resolved(self, incident_id: str, figures: dict, at: datetime) -> None:
        self.resolved_at = at
        self.resolved_figures = figures


@dataclass(frozen=True)
class Transitions:
    """What a scan changes: signals that start an incident, open incidents that end."""

    detected: tuple[Signal, ...]
    resolved: tuple[IncidentKey, ...]


def transitions(open_incidents: Iterable[IncidentKey], abnormal: Iterable[Signal]) -> Transitions:
    """The incident state machine, one step: an abnormal signal without an open incident starts
    one; an open incident whose signal is not abnormal now (normal, or no usage at all) ends;
    an abnormal signal with an open incident changes nothing."""
    open_keys = set(open_incidents)
    now_abnormal: Mapping[IncidentKey, Signal] = {signal.key: signal for signal in abnormal}
    detected = tuple(signal for key, signal in sorted(now_abnormal.items()) if key not in open_keys)
    resolved = tuple(sorted(key for key in open_keys if key not in now_abnormal))
    return Transitions(detected, resolved)
