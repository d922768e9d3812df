"""RequestMetered: the immutable, priced fact every served request becomes.

It names the principals, the model, the tokens, the status and the price version that
rated it. It never carries prompt or completion text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

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

    def to_row(self) -> list[Any]:
        """The fact's values in ROW_COLUMNS order, JSON-ready."""
        row = [getattr(self, name) for name in _FIELDS]
        row[_OCCURRED_AT] = self.occurred_at.isoformat()
        row[_USAGE_SOURCE] = str(self.usage_source)
        return row

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RequestMetered:
        fields = dict(data)
        fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
        fields["usage_source"] = UsageSource(fields["usage_source"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in fields.items() if k in known})


_FIELDS = tuple(f.name for f in fields(RequestMetered))
ROW_COLUMNS = _FIELDS
_OCCURRED_AT = _FIELDS.index("occurred_at")
_USAGE_SOURCE = _FIELDS.index("usage_source")


def billed_cost(price: Price, usage: Usage, status: int) -> int:
    """What a request costs: failed calls are free unless the price book bills them."""
    if not 200 <= status < 300 and not price.bill_failed_requests:
        return 0
    return price.cost(usage)


class UsageBatch(Aggregate):
    """A batch of facts the ledger recorded in one transaction, with the bus position it ends at.

    Each fact's event id is also written to the store's fact-id index in that transaction,
    so a fact can be recorded once only, whichever batch carries it.
    """

    TOPIC = "meterline.UsageBatch"

    class Created(Aggregate.Created):
        TOPIC = "meterline.UsageBatch.Created"

    @event("UsageBatchRecorded", topic="meterline.UsageBatchRecorded")
    def __init__(self, columns: list[str], rows: list[list[Any]], position: str | None) -> None:
        self.columns = columns
        self.rows = rows
        self.position = position

    @classmethod
    def of(cls, facts: Sequence[RequestMetered], position: str | None) -> UsageBatch:
        """A batch stored as columns and rows: smaller and faster to encode than dicts."""
        return cls(columns=list(ROW_COLUMNS), rows=[fact.to_row() for fact in facts],
                   position=position)


def facts_of(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Iterator[RequestMetered]:
    """The facts of a stored batch, whatever column order it was written in."""
    for row in rows:
        yield RequestMetered.from_data(dict(zip(columns, row, strict=True)))
