"""What a call on a job needs to know of it, read cheaply: each job's state is kept here and
brought forward by the events stored since it was last read, so the hundredth call on a job
reads one or two events, not the job's whole history (which `Jobs.job` replays)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.jobs import Job, JobStatus
from domain.services.ledger import LATEST, Ledger

CACHED_JOBS = 10_000


@dataclass(frozen=True)
class JobState:
    id: UUID
    version: int
    team_id: str | None
    status: JobStatus
    max_cost: int | None
    cost: int
    recorded: frozenset[str]  # of the fact ids the reader asked about, those the job holds


class JobStates:
    def __init__(self, ledger: Ledger, size: int = CACHED_JOBS) -> None:
        self._ledger = ledger
        self._size = size
        self._lock = threading.Lock()  # guards the two dicts; a job's own lock guards its reading
        self._jobs: OrderedDict[UUID, Job] = OrderedDict()
        self._reading: dict[UUID, threading.Lock] = {}

    def state(self, job_id: UUID | str, asking: Collection[str] = ()) -> JobState | None:
        """The job as stored now (None if there is none), and which of `asking` it has recorded."""
        try:
            key = UUID(str(job_id))
        except ValueError:
            return None
        with self._lock:
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:  # one reader per job (its cached copy changes in place); jobs read in parallel
            job = self._current(key, reading)
            if job is None:
                return None
            return JobState(job.id, job.version, job.team_id, job.status, job.max_cost, job.cost,
                            frozenset(a for a in asking if a in job.recorded))

    def _current(self, key: UUID, reading: threading.Lock) -> Job | None:
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            try:
                found = self._ledger.repository.get(key, version=LATEST)  # a copy of our own
            except AggregateNotFoundError:
                found = None
            if not isinstance(found, Job):
                with self._lock:
                    self._reading.pop(key, None)
                return None
            job = found
        else:
            for event in self._ledger.events.get(key, gt=job.version):
                event.mutate(job)
        with self._lock:
            if self._reading.get(key) is not reading:
                return job  # forgotten meanwhile: a copy of our own, kept by no one
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            if job.status is not JobStatus.RUNNING:
                self._forget(key)  # an ended job is read rarely: not worth its room
            elif len(self._jobs) > self._size:
                self._forget(next(iter(self._jobs)))
        return job

    def _forget(self, key: UUID) -> None:
        """Drops a cached job (its lock too: a reader holding it finishes on its own copy)."""
        self._jobs.pop(key, None)
        self._reading.pop(key, None)
