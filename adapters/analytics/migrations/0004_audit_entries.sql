-- audit_entries: the audit trail projected for search (the trail itself stays in the event store,
-- where it is chained and signed; this table is a copy, rebuilt from it at will).
-- A ReplacingMergeTree ordered by seq: a page inserted twice (a projector killed between its
-- insert and noting it) holds each seq once after merges, and queries read FINAL meanwhile.
-- An entry's seq fixes its time, so both copies land in one month partition.
-- Searches run newest first (ORDER BY seq DESC, read in order) and skip granules with the
-- indexes: bloom filters on actor and target (exact matches), a set on action (a few dozen
-- names), minmax on time (time grows with seq, so a period is a few granules).
-- details is the entry's details object as canonical JSON text, so an entry read back hashes
-- as it did in the trail.
CREATE TABLE IF NOT EXISTS audit_entries
(
    seq         UInt64,
    time        DateTime64(6, 'UTC'),
    actor       String,
    action      LowCardinality(String),
    target      String,
    details     String,
    source_ip   Nullable(String),
    request_id  Nullable(String),
    prev_hash   String,
    entry_hash  String,
    INDEX actor_index actor TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX target_index target TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX action_index action TYPE set(256) GRANULARITY 1,
    INDEX time_index time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY seq
SETTINGS index_granularity = 2048;
