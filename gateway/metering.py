"""Turns a served request into a RequestMetered fact and hands it durably to the bus."""

from __future__ import annotations

from domain.ports import USAGE_TOPIC, BusMessage, EventBus
from domain.usage import EVENT_TYPE as REQUEST_METERED
from domain.usage import RequestMetered


def to_message(fact: RequestMetered, gateway_id: str) -> BusMessage:
    return BusMessage(id=fact.event_id, type=REQUEST_METERED, source=f"/meterline/gateway/{gateway_id}",
                      subject=f"key/{fact.key_id}", time=fact.occurred_at, data=fact.to_data(),
                      key=fact.key_id, schema_version=fact.schema_version)


async def publish_metered(bus: EventBus, fact: RequestMetered, gateway_id: str) -> None:
    """Returns once the bus has durably accepted the fact; the response may go out after."""
    await bus.publish(USAGE_TOPIC, [to_message(fact, gateway_id)])
