"""RequestMetered: the immutable, priced fact every served request becomes.

It names the principals, the model, the tokens, the status and the price version that
rated it. It never carries prompt or completion text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.pricing import Price, Usage

SCHEMA_VERSION = 1
EVENT_TYPE = "meterline.request.metered"  # its CloudEvents type on the bus


class UsageSource(StrEnum):
    UPSTREAM = "upstream"    # the model server reported usage
    ESTIMATED = "estimated"  # counted with a tokenizer estimate


@dataclass(frozen=True)
class RequestMetered:
    event_id: str
    occurred_at: datetime
    key_id: str
    user_id: str
    team_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    status: int
    usage_source: UsageSource
    price_version: int
    cost: int  # nano-units
    job_id: str | None = None
    stream: bool = False
    client_disconnected: bool = False
    gateway_id: str = ""
    schema_version: int = SCHEMA_VERSION
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300

    def to_data(self) -> dict[str, Any]:
        """The fact as JSON-ready data (built field by field: asdict's deep copy is slow)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["occurred_at"] = self.occurred_at.isoformat()
        data["usage_source"] = str(self.usage_source)
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RequestMetered:
        fields = dict(data)
        fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
        fields["usage_source"] = UsageSource(fields["usage_source"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in fields.items() if k in known})


_FIELDS = tuple(f.name for f in fields(RequestMetered))


def billed_cost(price: Price, usage: Usage, status: int) -> int:
    """What a request costs: failed calls are free unless the price book bills them."""
    if not 200 <= status < 300 and not price.bill_failed_requests:
        return 0
    return price.cost(usage)


class MeteredRequest(Aggregate):
    """One aggregate per request, its id the event id: a second copy cannot be stored."""

    TOPIC = "meterline.MeteredRequest"

    class Created(Aggregate.Created):
        TOPIC = "meterline.MeteredRequest.Created"

    @classmethod
    def create_id(cls, data: dict[str, Any]) -> UUID:
        return UUID(data["event_id"])

    @event("RequestMetered", topic="meterline.RequestMetered")
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def fact(self) -> RequestMetered:
        return RequestMetered.from_data(self.data)
