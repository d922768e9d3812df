"""RequestMetered facts as an Arrow table shaped like `usage_events`, for bulk inserts.

Both analytics adapters insert this table (chDB as an ArrowStream, ClickHouse server
with `insert_arrow`): one columnar frame per batch instead of SQL text per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from domain.usage import RequestMetered

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

ARROW_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")),
    ("key_id", pa.string()),
    ("user_id", pa.string()),
    ("team_id", pa.string()),
    ("model", pa.string()),
    ("endpoint", pa.string()),
    ("prompt_tokens", pa.uint64()),
    ("completion_tokens", pa.uint64()),
    ("cached_tokens", pa.uint64()),
    ("latency_ms", pa.uint64()),
    ("status", pa.uint16()),
    ("usage_source", pa.string()),
    ("price_version", pa.uint64()),
    ("cost", pa.int64()),
    ("job_id", pa.string()),
    ("stream", pa.bool_()),
    ("client_disconnected", pa.bool_()),
    ("gateway_id", pa.string()),
    ("schema_version", pa.uint16()),
    ("labels", pa.map_(pa.string(), pa.string())),
    ("request_id", pa.string()),
    ("requests", pa.uint8()),
    ("final", pa.bool_()),
])


def facts_to_arrow(facts: Sequence[RequestMetered]) -> pa.Table:
    """The facts as one Arrow table; raises ValueError for a naive time or an out-of-range number."""
    try:
        columns = [
            [f.event_id for f in facts],
            # integer microseconds: pyarrow converts aware datetimes ten times slower
            [(f.occurred_at - _EPOCH) // _MICROSECOND for f in facts],
            [f.key_id for f in facts],
            [f.user_id for f in facts],
            [f.team_id or "" for f in facts],
            [f.model for f in facts],
            [f.endpoint for f in facts],
            [f.prompt_tokens for f in facts],
            [f.completion_tokens for f in facts],
            [f.cached_tokens for f in facts],
            [f.latency_ms for f in facts],
            [f.status for f in facts],
            [str(f.usage_source) for f in facts],
            [f.price_version for f in facts],
            [f.cost for f in facts],
            [f.job_id or "" for f in facts],
            [f.stream for f in facts],
            [f.client_disconnected for f in facts],
            [f.gateway_id for f in facts],
            [f.schema_version for f in facts],
            [dict(f.labels) for f in facts],  # any Mapping (the default is read-only)
            [f.request_id for f in facts],
            [f.requests for f in facts],
            [f.final for f in facts],
        ]
        arrays = [pa.array(values, type=field.type)
                  for values, field in zip(columns, ARROW_SCHEMA, strict=True)]
    # TypeError: a naive occurred_at cannot be subtracted from the aware epoch
    except (TypeError, OverflowError, pa.ArrowException) as error:
        raise ValueError(f"a fact cannot be stored: {error}") from error
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def arrow_stream_bytes(table: pa.Table) -> bytes:
    """The table in the Arrow IPC stream format (ClickHouse's `ArrowStream`)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
