"""RequestMetered: the immutable, priced fact every served request becomes.

It names the principals, the model, the tokens, the status and the price version that
rated it. It never carries prompt or completion text.

A long stream is metered in parts, so a gateway crash loses little of its bill: progress
facts while it runs and a final fact at its end, all sharing one `request_id`. Each part
carries only what it adds (tokens and cost since the part before), and only the first
carries `requests=1`, so sums over facts count the request once and its usage exactly.
A request metered in one fact has `request_id` "" (the fact's own id stands for it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate, event

from domain.pricing import Price, Usage

SCHEMA_VERSION = 1
EVENT_TYPE = "meterline.request.metered"  # its CloudEvents type on the bus


class UsageSource(StrEnum):
    UPSTREAM = "upstream"    # the model server reported usage
    ESTIMATED = "estimated"  # counted with a tokenizer estimate


class RequestMetered(NamedTuple):
    """Immutable. A NamedTuple, not a frozen dataclass: building one is 5x faster (a frozen
    dataclass sets each of its 21 fields through object.__setattr__), and the gateway
    builds one per request, the ledger and the projector one per fact they read."""

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
    labels: Mapping[str, str] = MappingProxyType({})
    request_id: str = ""  # shared by the parts of one request metered in several facts
    requests: int = 1     # 1 on a request's first (or only) fact, 0 on its later parts
    final: bool = True    # False on a progress fact: more of this request may follow
    # Parts of prompt_tokens written to a prompt cache (Anthropic's cache creation) and of
    # completion_tokens spent reasoning, each with its own price when the book sets one.
    # Last and defaulted: a fact stored before issue 15 loads with 0 (facts_of, from_data).
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def request(self) -> str:
        """The request this fact meters (part of)."""
        return self.request_id or self.event_id

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300

    def to_data(self) -> dict[str, Any]:
        """The fact as JSON-ready data."""
        data = dict(zip(_FIELDS, self, strict=True))
        data["occurred_at"] = self.occurred_at.isoformat()
        data["usage_source"] = str(self.usage_source)
        data["labels"] = dict(self.labels)
        return data

    def to_row(self) -> list[Any]:
        """The fact's values in ROW_COLUMNS order, JSON-ready."""
        row = list(self)
        row[_OCCURRED_AT] = self.occurred_at.isoformat()
        row[_USAGE_SOURCE] = str(self.usage_source)
        row[_LABELS] = dict(self.labels)
        return row

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RequestMetered:
        """The fact from its values in ROW_COLUMNS order (`to_row`'s output): 3x `from_data`."""
        values = list(row)
        values[_OCCURRED_AT] = datetime.fromisoformat(values[_OCCURRED_AT])
        values[_USAGE_SOURCE] = UsageSource(values[_USAGE_SOURCE])
        return cls._make(values)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RequestMetered:
        fields = dict(data)
        fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
        fields["usage_source"] = UsageSource(fields["usage_source"])
        return cls(**{k: v for k, v in fields.items() if k in _KNOWN})


_FIELDS = RequestMetered._fields
_KNOWN = frozenset(_FIELDS)
ROW_COLUMNS = _FIELDS
_OCCURRED_AT = _FIELDS.index("occurred_at")
_USAGE_SOURCE = _FIELDS.index("usage_source")
_LABELS = _FIELDS.index("labels")


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
    if tuple(columns) == ROW_COLUMNS:  # as this version writes them: by position, no dict per row
        for row in rows:
            yield RequestMetered.from_row(row)
        return
    for row in rows:
        yield RequestMetered.from_data(dict(zip(columns, row, strict=True)))
