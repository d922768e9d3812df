"""The raw analytics table's name and columns; one dialect for chDB and ClickHouse server.

The tables themselves are made by the versioned migrations (`migrations/*.sql`, applied by
`migrate.py`; `0001_usage_events.sql` is this table's DDL, with why its columns are typed so).

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

USAGE_COLUMNS = (
    "event_id", "occurred_at", "key_id", "user_id", "team_id", "model", "endpoint",
    "prompt_tokens", "completion_tokens", "cached_tokens", "latency_ms", "status",
    "usage_source", "price_version", "cost", "job_id", "stream", "client_disconnected",
    "gateway_id", "schema_version", "labels", "request_id", "requests", "final",
)
