"""The anomalies application: incidents of abnormal usage, recorded by the anomaly scan.

Its store is beside the registry's and the ledger's (`anomalies.sqlite`, or `anomalies_*` tables
on PostgreSQL). Its log is a contract: the alerts worker follows it for `meterline.AnomalyDetected`
(attributes `incident_id, kind, scope, scope_id, user_id, figures, at`) and
`meterline.AnomalyResolved` (`incident_id, figures, at`).

Incidents are read back by following the log into an in-memory index (few incidents, many
reads): the scan asks it for the open incidents, the admin API for a filtered page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from domain.anomaly.detection import Signal
from domain.anomaly.incident import Incident, IncidentKey, Transitions, incident_id_for

DETECTED = "meterline.AnomalyDetected"
RESOLVED = "meterline.AnomalyResolved"
PAGE = 1000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncidentView:
    """An incident as the log tells it; `position` is its detection's notification id."""

    incident_id: str
    kind: str
    scope: str
    scope_id: str
    user_id: str | None
    figures: dict[str, Any]
    detected_at: datetime
    position: int
    resolved_at: datetime | None = None
    resolved_figures: dict[str, Any] | None = None

    @property
    def key(self) -> IncidentKey:
        return self.kind, self.scope, self.scope_id

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class IncidentFilter:
    """Which incidents a page shows: state open|resolved|all, kind, user, detected in [start, end)."""

    state: str = "all"
    kind: str | None = None
    user_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def matches(self, view: IncidentView) -> bool:
        return ((self.state == "all" or (self.state == "open") == view.is_open)
                and self.kind in (None, view.kind) and self.user_id in (None, view.user_id)
                and (self.start is None or view.detected_at >= self.start)
                and (self.end is None or view.detected_at < self.end))


@dataclass(frozen=True)
class Recorded:
    detected: tuple[str, ...] = ()  # incident ids this call recorded
    resolved: tuple[str, ...] = ()
    conflicts: int = 0  # changes another scanner recorded first


class Anomalies(Application):
    name = "anomalies"
    log_section_size = 1000

    def __init__(self, env: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        self._lock = threading.Lock()
        self._views: dict[str, IncidentView] = {}
        self._next = 1  # the next notification id to read

    def record(self, changes: Transitions, hour: datetime, at: datetime,
               resolution: dict[IncidentKey, dict[str, Any]] | None = None) -> Recorded:
        """Records a scan's transitions: an incident per detected signal (its id from the data
        `hour`), a resolution per ended incident. A change another scanner recorded first is
        passed over, so two scanners, or a scan repeated after a crash, record each once."""
        open_now = {view.key: view for view in self.incidents() if view.is_open}
        pending: list[Incident] = [self._new_incident(signal, hour, at) for signal in changes.detected
                                   if signal.key not in open_now]
        for key in changes.resolved:
            if key in open_now:
                incident = self.repository.get(UUID(open_now[key].incident_id))
                incident.resolve((resolution or {}).get(key, {"hour": hour.isoformat()}), at)
                pending.append(incident)
        saved, conflicts = self._save_each(pending)
        self.incidents()  # what this call recorded, in the index now
        return Recorded(tuple(i.incident_id for i in saved if i.version == 1),
                        tuple(i.incident_id for i in saved if i.version > 1), conflicts)

    def incidents(self) -> list[IncidentView]:
        """Every incident, oldest detection first, read up to the end of the log."""
        with self._lock:
            while batch := self.notification_log.select(start=self._next, limit=PAGE,
                                                        topics=[DETECTED, RESOLVED]):
                for notification in batch:
                    self._fold(self.mapper.to_domain_event(notification), notification.id)
                self._next = batch[-1].id + 1
            return sorted(self._views.values(), key=lambda view: view.position)

    def open_incidents(self) -> dict[IncidentKey, IncidentView]:
        return {view.key: view for view in self.incidents() if view.is_open}

    def page(self, where: IncidentFilter, before: int | None,
             limit: int) -> tuple[list[IncidentView], int | None]:
        """Matching incidents newest first, detected before position `before`; and the `before`
        of the next page (None at the oldest)."""
        matching = [view for view in reversed(self.incidents())
                    if (before is None or view.position < before) and where.matches(view)]
        shown = matching[:limit]
        return shown, shown[-1].position if len(matching) > limit else None

    def _new_incident(self, signal: Signal, hour: datetime, at: datetime) -> Incident:
        incident_id = incident_id_for(signal.kind, signal.scope, signal.scope_id, hour)
        return Incident(incident_id=str(incident_id), kind=signal.kind, scope=signal.scope,
                        scope_id=signal.scope_id, user_id=signal.user_id, figures=dict(signal.figures), at=at)

    def _save_each(self, pending: Sequence[Incident]) -> tuple[list[Incident], int]:
        if not pending:
            return [], 0
        # Collected once: a failed save has taken an aggregate's pending events already, so a
        # retry must save the events themselves, not the (now empty) aggregate.
        events = [(incident, incident.collect_events()) for incident in pending]
        try:
            self.save(*(event for _, batch in events for event in batch))  # one transaction, usually
            return list(pending), 0
        except IntegrityError:
            pass  # another scanner recorded one of them: save each, passing over the taken ones
        saved, conflicts = [], 0
        for incident, batch in events:
            try:
                self.save(*batch)
                saved.append(incident)
            except IntegrityError:
                conflicts += 1
                log.info("anomalies: incident %s was recorded by another scanner", incident.incident_id)
        return saved, conflicts

    def _fold(self, event: Any, position: int) -> None:
        if isinstance(event, Incident.AnomalyDetected):
            self._views[event.incident_id] = IncidentView(
                event.incident_id, event.kind, event.scope, event.scope_id, event.user_id,
                dict(event.figures), event.at, position)
        elif isinstance(event, Incident.AnomalyResolved) and event.incident_id in self._views:
            self._views[event.incident_id] = replace(self._views[event.incident_id], resolved_at=event.at,
                                                     resolved_figures=dict(event.figures))
