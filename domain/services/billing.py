"""The billing application: month closes and their sealed exports.

Its store lies beside the ledger's (`billing.sqlite`, or `billing_*` tables on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.errors import DomainError
from domain.period_close import PeriodClose, SealedExport
from domain.ports.clock import Clock


class AlreadyClosedError(DomainError):
    """The month was closed before; its exports are sealed and cannot be redone."""


class Billing(Application):
    name = "billing"
    log_section_size = 1000

    def __init__(self, clock: Clock, env: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        self.clock = clock

    @classmethod
    def beside(cls, app: Application, clock: Clock) -> Billing:
        """The billing store next to another application's (the same database or directory)."""
        return cls(clock, env=dict(app.env))

    def seal(self, month: str, closed_by: str, manifest: dict[str, Any],
              exports: Iterable[tuple[str, bytes]]) -> PeriodClose:
        """Seals `month` with its manifest and export files in one transaction."""
        if self.closed(month) is not None:
            raise AlreadyClosedError(f"{month} is already closed")
        closing = PeriodClose(month=month, closed_at=self.clock.now(), closed_by=closed_by, manifest=manifest)
        sealed = [SealedExport.of(month, name, data) for name, data in exports]
        try:
            self.save(closing, *sealed)
        except IntegrityError:  # another process closed it between our check and our save
            raise AlreadyClosedError(f"{month} is already closed") from None
        return closing

    def closed(self, month: str) -> PeriodClose | None:
        try:
            return self.repository.get(PeriodClose.id_for(month))
        except AggregateNotFoundError:
            return None

    def closes(self) -> list[PeriodClose]:
        """Every closed month, oldest first."""
        ids, start = [], 1
        topics = ("meterline.PeriodClosed",)
        while page := self.notification_log.select(start=start, limit=1000, topics=topics):
            ids.extend(n.originator_id for n in page)
            start = page[-1].id + 1
        return sorted((self.repository.get(i) for i in ids), key=lambda c: c.month)

    def export(self, month: str, name: str) -> SealedExport | None:
        try:
            return self.repository.get(SealedExport.id_for(month, name))
        except AggregateNotFoundError:
            return None
