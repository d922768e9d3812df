"""The decisions application: refusal records, kept apart from the ledger's and registry's logs.

Apart, because refusals are explanations, not billing facts: the ledger's followers (the
projector, the domain relay, the audit recorder) must not read a flood of them. Its store is
beside the ledger's (`decisions.sqlite`, or `decisions_*` tables on PostgreSQL); a gateway
opens it with the ledger's environment (`beside`). Records are saved as their events only,
in batches, so none stays in a repository cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application

from domain.decisions import RefusalRecord, RefusalsCounted


class Decisions(Application):
    name = "decisions"
    log_section_size = 1000

    @classmethod
    def beside(cls, app: Application) -> Decisions:
        """The decisions store next to another application's (the same database or directory)."""
        return cls(env=dict(app.env))

    def record(self, refusals: Sequence[dict[str, Any]],
               counts: Sequence[tuple[datetime, str | None, str, int]] = ()) -> None:
        """Saves refusal records (RefusalRecord's fields) and counts in one transaction."""
        events: list[Any] = []
        for fields in refusals:
            events.extend(RefusalRecord(**fields).collect_events())
        for minute, key_id, rule, count in counts:
            events.extend(RefusalsCounted(minute=minute, key_id=key_id, rule=rule,
                                          count=count).collect_events())
        if events:
            self.save(*events)

    def refusal(self, request_id: str) -> RefusalRecord | None:
        """The record of a refused request, if one was kept."""
        try:
            return self.repository.get(RefusalRecord.id_for(request_id))
        except AggregateNotFoundError:
            return None

    def counted(self) -> int:
        """How many refusals were counted but not recorded one by one, in all."""
        total, start = 0, 1
        while batch := self.notification_log.select(start=start, limit=1000,
                                                    topics=["meterline.RefusalsCounted"]):
            total += sum(self.mapper.to_domain_event(n).count for n in batch)
            start = batch[-1].id + 1
        return total

    def stored(self) -> int:
        """How many events the store holds: what a flood costs in storage."""
        return self.recorder.max_notification_id() or 0
