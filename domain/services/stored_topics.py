"""The stored-event topics of each aggregate, for following a log by kind of event."""

from __future__ import annotations

from eventsourcing.domain import CanMutateAggregate


def event_topics(aggregate_cls: type) -> list[str]:
    """Every explicit event topic an aggregate class records."""
    return sorted(value.TOPIC for value in vars(aggregate_cls).values()
                  if isinstance(value, type) and issubclass(value, CanMutateAggregate)
                  and getattr(value, "TOPIC", None))
