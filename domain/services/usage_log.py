"""Reading the ledger's recorded facts back: every batch in recording order, or on from a position.

The ledger records each batch of facts as one `UsageBatchRecorded` event; its notification id
(the event's place in the ledger's log) never changes and ids only grow, so a follower that
keeps the last id it handled reads on from there, and can read a stretch [a, b] again exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from domain.usage import RequestMetered, facts_of

USAGE_BATCH_TOPIC = "meterline.UsageBatchRecorded"


class BatchRows(NamedTuple):
    """A recorded batch as a follower reads it: its facts' columns and rows."""

    columns: list[str]
    rows: list[list[Any]]


class UsageLog:
    """Mixed into the Ledger application (it supplies `notification_log`, `mapper`, `recorder`)."""

    notification_log: Any
    mapper: Any
    recorder: Any

    def usage_batches(self, page: int = 100) -> Iterator[Any]:
        """Every UsageBatchRecorded event (its `timestamp`, `columns`, `rows`), in recording order."""
        start = 1
        while batch := self.notification_log.select(start=start, limit=page,
                                                    topics=[USAGE_BATCH_TOPIC]):
            for notification in batch:
                yield self.mapper.to_domain_event(notification)
            start = batch[-1].id + 1

    def usage_batches_from(self, start: int, limit: int, stop: int | None = None) -> list[tuple[int, Any]]:
        """Up to `limit` UsageBatchRecorded events whose notification ids are in [start, stop], in
        order, each with its id: how a follower of the ledger (the analytics projector) reads on
        from where it stopped, or reads one stretch again exactly."""
        notifications = self.notification_log.select(start=start, limit=limit, stop=stop,
                                                     topics=[USAGE_BATCH_TOPIC])
        return [(n.id, self._batch_rows(n)) for n in notifications]

    def _batch_rows(self, stored: Any) -> BatchRows | Any:
        """The batch's columns and rows straight from its stored JSON with orjson: a rebuild spent a
        third of its time in the library's decode, which remakes the UUIDs and datetimes of an
        event whose rows are all a follower reads. An encrypted store, or an event written by
        another class version, goes the library's way."""
        if getattr(self.mapper, "cipher", None) is not None:
            return self.mapper.to_domain_event(stored)
        state = stored.state
        if self.mapper.compressor is not None:
            state = self.mapper.compressor.decompress(state)
        data = orjson.loads(state)
        if data.get("class_version", 1) != 1:
            return self.mapper.to_domain_event(stored)
        return BatchRows(data["columns"], data["rows"])

    def last_notification_id(self) -> int:
        """The id of the latest event in the notification log (0 when it is empty)."""
        return self.recorder.max_notification_id() or 0

    def metered_facts(self, page: int = 100) -> Iterator[RequestMetered]:
        """Every fact recorded, in recording order: the ledger's side of every reconciliation."""
        for recorded in self.usage_batches(page):
            yield from facts_of(recorded.columns, recorded.rows)

    def count_metered(self) -> int:
        """How many distinct facts the ledger holds."""
        return self.recorder.count_facts()
