"""The raw analytics table's name, columns and first DDL; one dialect for chDB and ClickHouse server.

The tables themselves are made by the versioned migrations (`migrations/*.sql`, applied by
`migrate.py`); `USAGE_EVENTS_DDL` is migration 0001's statement, kept here for the benchmarks
that make a bare table (a unit test holds the two equal).

`usage_events` holds one row per RequestMetered; a request metered in parts (a long
stream) has several rows, and `sum(requests)` counts it once. It is a ReplacingMergeTree whose
sorting key ends with `event_id`: copies of a fact (redelivery, a replayed batch)
share every key column, so merges keep one, and queries read it `FINAL` so the copies
never count twice before a merge has run. The month partition and the
(team, user, key, hour) prefix follow OpenMeter's (tenant, type, subject, hour)
layout: a principal's usage over a period is a few contiguous ranges of one partition.
"""

from __future__ import annotations

USAGE_TABLE = "usage_events"

# Times are DateTime64(6): the fact's datetime has microseconds, and keeping them makes
# [start, end) exact for any bound; it is the same Int64 on disk as DateTime64(3).
# A fact without a team or a job stores '' (a Nullable column cannot be in the sorting key).
USAGE_EVENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {USAGE_TABLE}
(
    event_id            String,
    occurred_at         DateTime64(6, 'UTC'),
    key_id              String,
    user_id             String,
    team_id             String,
    model               LowCardinality(String),
    endpoint            LowCardinality(String),
    prompt_tokens       UInt64,
    completion_tokens   UInt64,
    cached_tokens       UInt64,
    latency_ms          UInt64,
    status              UInt16,
    usage_source        LowCardinality(String),
    price_version       UInt64,
    cost                Int64 COMMENT 'nano-units of the currency',
    job_id              String,
    stream              Bool,
    client_disconnected Bool,
    gateway_id          LowCardinality(String),
    schema_version      UInt16,
    labels              Map(String, String),
    request_id          String DEFAULT '',
    requests            UInt8 DEFAULT 1,
    final               Bool DEFAULT true
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, user_id, key_id, toStartOfHour(occurred_at), event_id)
"""

USAGE_COLUMNS = (
    "event_id", "occurred_at", "key_id", "user_id", "team_id", "model", "endpoint",
    "prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms", "status",
    "usage_source", "price_version", "cost", "job_id", "stream", "client_disconnected",
    "gateway_id", "schema_version", "labels", "request_id", "requests", "final",
)
