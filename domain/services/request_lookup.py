"""Finding a served request's facts in the ledger by its request id, without reading the log.

A request id is a time-ordered UUID (`domain.ids.time_ordered_id`): its first 48 bits are
when the gateway made it. The ledger records batches in time order, so a binary search on
the log's notification ids (about 20 batch reads for a million batches) finds the first
batch recorded after that moment, and the facts are in the batches just after it: the
ledger records a fact seconds after it was served. The scan stops at the first batch
recorded `LAG` past the id's time, or once it has seen the request's final part.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from domain.ids import id_time
from domain.usage import RequestMetered, facts_of

BATCH_TOPIC = "meterline.UsageBatchRecorded"
SKEW = timedelta(seconds=5)    # clocks of the gateway and the ledger's host may differ this much
LAG = timedelta(minutes=15)    # the longest a fact waits for the ledger (and a stream lasts) in this search


def facts_of_request(ledger: Any, request_id: str) -> list[RequestMetered]:
    """The facts (one, or a stream's parts) the ledger recorded for `request_id`; [] if none."""
    made = id_time(request_id)
    if made is None:
        return []
    start = _first_batch_after(ledger, made - SKEW)
    found: list[RequestMetered] = []
    while start is not None:
        batch = ledger.notification_log.select(start=start, limit=20, topics=[BATCH_TOPIC])
        if not batch:
            break
        for notification in batch:
            recorded = ledger.mapper.to_domain_event(notification)
            if recorded.timestamp > made + LAG:
                return found
            found.extend(_matching(recorded, request_id))
            if found and found[-1].final:
                return found
        start = batch[-1].id + 1
    return found


def _matching(recorded: Any, request_id: str) -> list[RequestMetered]:
    columns = list(recorded.columns)
    ids, parts = columns.index("event_id"), columns.index("request_id")
    # Compare the two id columns before building any fact: most batches hold none of them.
    rows = [row for row in recorded.rows if row[ids] == request_id or row[parts] == request_id]
    return list(facts_of(columns, rows)) if rows else []


def _first_batch_after(ledger: Any, moment: datetime) -> int | None:
    """The notification id to read batches from: the first batch recorded at or after
    `moment` lies at or after it; None when the log holds no batch that late."""
    low, high = 1, ledger.recorder.max_notification_id() or 0
    if high == 0:
        return None
    while low < high:
        middle = (low + high) // 2
        probe = ledger.notification_log.select(start=middle, limit=1, stop=high, topics=[BATCH_TOPIC])
        if not probe:
            high = middle  # no batch in [middle, high]: the answer is before
            continue
        if ledger.mapper.to_domain_event(probe[0]).timestamp < moment:
            low = probe[0].id + 1
        else:
            high = middle  # [middle, probe) holds no batch: reading from middle reaches the probe
    return low
