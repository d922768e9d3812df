-- Rollups that every dashboard figure is read from: usage_hourly (UTC hours) and usage_daily
-- (calendar days of the store's rollup time zone, $ROLLUP_TIMEZONE, fixed when this ran).
-- Each row holds sums that add up exactly: the figures of any set of rows are the sums of
-- their measures, the sumMap of their latency histograms and the distinct user_ids among them.
-- Outcomes (finished, errors, latency) count final facts only, as domain/usage_figures.py does;
-- latency sums are UInt128, so no sum of UInt64 latencies wraps;
-- latency buckets are the floors of LATENCY_BUCKETS_MS (changing them needs a new migration).
-- Sorting keys start with user_id: a user's deep dive reads one range; the whole-month
-- dashboards read the month's partition, which the rollup keeps small.
-- Exactly once: a view fires on every insert, so blocks are deduplicated by insert token in
-- every table (non_replicated_deduplication_window), the source's too.

ALTER TABLE usage_events MODIFY SETTING non_replicated_deduplication_window = $DEDUP_WINDOW;

CREATE TABLE IF NOT EXISTS usage_hourly
(
    hour              DateTime('UTC'),
    user_id           String,
    team_id           String,
    key_id            String,
    model             LowCardinality(String),
    application       String,
    requests          SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens     SimpleAggregateFunction(sum, UInt64),
    cost              SimpleAggregateFunction(sum, Int64),
    finished          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    latency_ms_sum    SimpleAggregateFunction(sum, UInt128),
    latency_histogram SimpleAggregateFunction(sumMap, Map(UInt32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (user_id, hour, team_id, key_id, model, application)
SETTINGS non_replicated_deduplication_window = $DEDUP_WINDOW;

CREATE TABLE IF NOT EXISTS usage_daily
(
    day               Date,
    user_id           String,
    team_id           String,
    key_id            String,
    model             LowCardinality(String),
    application       String,
    requests          SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens     SimpleAggregateFunction(sum, UInt64),
    cost              SimpleAggregateFunction(sum, Int64),
    finished          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    latency_ms_sum    SimpleAggregateFunction(sum, UInt128),
    latency_histogram SimpleAggregateFunction(sumMap, Map(UInt32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (user_id, day, team_id, key_id, model, application)
SETTINGS non_replicated_deduplication_window = $DEDUP_WINDOW;

-- Bumped by delete_since: insert tokens are salted with it, so a rebuild that re-inserts the
-- batch ids it deleted is not taken for a retry of them.
CREATE TABLE IF NOT EXISTS insert_generations (generation UInt64, at DateTime64(3, 'UTC'))
ENGINE = MergeTree ORDER BY generation;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT toStartOfHour(occurred_at) AS hour, user_id, team_id, key_id, model,
       labels['app'] AS application,
       sum(toUInt64(requests)) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
       sum(cost) AS cost, countIf(final) AS finished, countIf(final AND status >= $ERROR_STATUS) AS errors,
       sumIf(toUInt128(latency_ms), final) AS latency_ms_sum,
       sumMap(if(final, map(toUInt32(roundDown(latency_ms, $LATENCY_FLOORS)), toUInt64(1)), map()))
           AS latency_histogram
FROM usage_events
GROUP BY hour, user_id, team_id, key_id, model, application;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT toDate(occurred_at, '$ROLLUP_TIMEZONE') AS day, user_id, team_id, key_id, model,
       labels['app'] AS application,
       sum(toUInt64(requests)) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
       sum(cost) AS cost, countIf(final) AS finished, countIf(final AND status >= $ERROR_STATUS) AS errors,
       sumIf(toUInt128(latency_ms), final) AS latency_ms_sum,
       sumMap(if(final, map(toUInt32(roundDown(latency_ms, $LATENCY_FLOORS)), toUInt64(1)), map()))
           AS latency_histogram
FROM usage_events
GROUP BY day, user_id, team_id, key_id, model, application;

-- Backfill from the facts already stored; emptied first, so a crash here re-runs cleanly.
-- The store takes no insert until its migrations are done (they run at open).
TRUNCATE TABLE IF EXISTS usage_hourly;

INSERT INTO usage_hourly
SELECT toStartOfHour(occurred_at) AS hour, user_id, team_id, key_id, model,
       labels['app'] AS application,
       sum(toUInt64(requests)) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
       sum(cost) AS cost, countIf(final) AS finished, countIf(final AND status >= $ERROR_STATUS) AS errors,
       sumIf(toUInt128(latency_ms), final) AS latency_ms_sum,
       sumMap(if(final, map(toUInt32(roundDown(latency_ms, $LATENCY_FLOORS)), toUInt64(1)), map()))
           AS latency_histogram
FROM usage_events FINAL
GROUP BY hour, user_id, team_id, key_id, model, application;

TRUNCATE TABLE IF EXISTS usage_daily;

INSERT INTO usage_daily
SELECT toDate(occurred_at, '$ROLLUP_TIMEZONE') AS day, user_id, team_id, key_id, model,
       labels['app'] AS application,
       sum(toUInt64(requests)) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens,
       sum(cost) AS cost, countIf(final) AS finished, countIf(final AND status >= $ERROR_STATUS) AS errors,
       sumIf(toUInt128(latency_ms), final) AS latency_ms_sum,
       sumMap(if(final, map(toUInt32(roundDown(latency_ms, $LATENCY_FLOORS)), toUInt64(1)), map()))
           AS latency_histogram
FROM usage_events FINAL
GROUP BY day, user_id, team_id, key_id, model, application;
