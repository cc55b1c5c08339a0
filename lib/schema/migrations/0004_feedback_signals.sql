-- feedback and signals: explicit feedback (scores, thumbs, labels, text) and implicit user
-- signals (regenerate, stop, edit, copy, ...), from the API, from OTLP span events and log
-- records, and derived by the ingester from llm_calls (source = 'heuristic').
--
-- Keys and deduplication:
--   ORDER BY (project, id): `id` is the client's idempotency key (or a deterministic one for
--     OTLP and derived items), so ReplacingMergeTree(received_at) folds a resent item into one
--     row, the last received winning. Nothing time-based is in the key: a resend without a
--     client timestamp gets a new one and must still fold.
--   No PARTITION BY: FINAL (and background merges) only fold rows within a partition, and an
--     item resent across a partition boundary would then be counted twice forever. Feedback is
--     orders of magnitude smaller than spans; TTL (clickhouse.ttl_days) deletes rows by merges.
--   Before merges a resent item is two rows, so every query that counts reads `FINAL` (or
--     `LIMIT 1 BY id`); the datasets exporter and the detectors do.
--   Joins to calls go through trace_id / span_id (bloom filters) or conversation_id: feedback may
--     arrive before its spans or days after them; nothing is joined at ingest time.
--   Sharded (cluster mode) by (project, id) so that both copies of a resent item meet on one
--     shard, where FINAL folds them.
CREATE TABLE IF NOT EXISTS ${DB}.feedback${LOCAL} ${ON_CLUSTER}
(
    id String CODEC(ZSTD(1)),
    project LowCardinality(String) CODEC(ZSTD(1)),
    timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    conversation_id String CODEC(ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    name LowCardinality(String) CODEC(ZSTD(1)),
    -- number | boolean | label | text
    value_type LowCardinality(String) CODEC(ZSTD(1)),
    -- the number, or 1 / 0 for a boolean; NULL for label and text values
    score Nullable(Float64) CODEC(ZSTD(1)),
    -- the category label, or the label accompanying a number
    label String CODEC(ZSTD(1)),
    -- a free-text value
    text String CODEC(ZSTD(3)),
    comment String CODEC(ZSTD(3)),
    -- human | model | api | heuristic
    source LowCardinality(String) CODEC(ZSTD(1)),
    -- api | otlp_span_event | otlp_log | derived
    origin LowCardinality(String) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    received_at DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_conversation_id conversation_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ${REPLACING_MERGETREE}(received_at)
ORDER BY (project, id)
${TTL_FEEDBACK}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

${DISTRIBUTED feedback cityHash64(project, id)};

-- Type-specific columns are empty / NULL for other types.
CREATE TABLE IF NOT EXISTS ${DB}.signals${LOCAL} ${ON_CLUSTER}
(
    id String CODEC(ZSTD(1)),
    project LowCardinality(String) CODEC(ZSTD(1)),
    timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    conversation_id String CODEC(ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    -- regenerate | stop | edit | copy | retry | rephrase | continue | abandon |
    -- conversation_end | custom:<name>
    type LowCardinality(String) CODEC(ZSTD(1)),
    source LowCardinality(String) CODEC(ZSTD(1)),
    origin LowCardinality(String) CODEC(ZSTD(1)),
    -- regenerate: the answer thrown away
    discarded_trace_id String CODEC(ZSTD(1)),
    discarded_span_id String CODEC(ZSTD(1)),
    -- stop
    tokens_received Nullable(UInt64) CODEC(ZSTD(1)),
    ms_since_start Nullable(Float64) CODEC(ZSTD(1)),
    -- edit
    edit_ratio Nullable(Float64) CODEC(ZSTD(1)),
    edited_text String CODEC(ZSTD(3)),
    -- rephrase
    text String CODEC(ZSTD(3)),
    -- conversation_end
    turn_count Nullable(UInt32) CODEC(ZSTD(1)),
    attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    received_at DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_conversation_id conversation_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ${REPLACING_MERGETREE}(received_at)
ORDER BY (project, id)
${TTL_SIGNALS}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000;

${DISTRIBUTED signals cityHash64(project, id)};
