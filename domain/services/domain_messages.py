"""Stored domain events as bus messages (meterline.domain) and back.

The message carries the stored event's own state (the event store's JSON), its topic and
version, so a subscriber rebuilds the very event object the store holds and folds it with
the aggregate's own mutator. The message id is derived from (aggregate, version): every
relay attempt of one event has the same id.
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from eventsourcing.persistence import Compressor, StoredEvent

from domain.ids import event_id_of
from domain.ports.bus import BusMessage

SOURCE_PREFIX = "/meterline/"


def to_message(app_name: str, stored: StoredEvent, at: datetime,
               compressor: Compressor | None = None) -> BusMessage:
    """A stored event as a CloudEvent for meterline.domain; `at` is when it was relayed.

    `compressor` is the store's (if it compresses event state): the message carries plain JSON.
    """
    originator = UUID(str(stored.originator_id))
    state = compressor.decompress(stored.state) if compressor else stored.state
    return BusMessage(
        id=str(event_id_of(originator, stored.originator_version)),
        type=stored.topic, source=SOURCE_PREFIX + app_name,
        subject=f"aggregate/{originator}", time=at,
        data=json.loads(state), key=str(originator),
        extensions={"originatorversion": str(stored.originator_version)})


def to_stored_event(message: BusMessage) -> tuple[str, StoredEvent]:
    """The application a domain message came from, and the stored event it carries, its
    state plain JSON as on the bus (decode it with a mapper that does not decompress)."""
    if not message.source.startswith(SOURCE_PREFIX):
        raise ValueError(f"message {message.id} is not from a Meterline store: {message.source}")
    app_name = message.source[len(SOURCE_PREFIX):]
    originator = UUID(message.subject.removeprefix("aggregate/"))
    version = int(message.extensions["originatorversion"])
    state = json.dumps(message.data, separators=(",", ":")).encode()
    return app_name, StoredEvent(originator, version, message.type, state)
