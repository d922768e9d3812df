-- usage_events: one row per RequestMetered, as the first release created it.
-- A ReplacingMergeTree whose sorting key ends with event_id: copies of a fact share every key
-- column, so merges keep one and queries read it FINAL. Times keep microseconds so [start, end)
-- is exact for any bound; a fact without a team or a job stores '' (no Nullable in a sorting key).
CREATE TABLE IF NOT EXISTS usage_events
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
ORDER BY (team_id, user_id, key_id, toStartOfHour(occurred_at), event_id);
