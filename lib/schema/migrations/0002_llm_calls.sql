-- llm_calls: one row per model call (GenAI span), flattened from every convention SDKs send.
--
-- Questions this table answers (detectors, dashboards, exports): "for project P and model M,
-- what happened in [t0, t1)?" -- latency quantiles, error and abort ratios, tokens and cost over
-- time, per model. So:
--   ORDER BY (project, model, timestamp, ...): a project+model+time range is one contiguous
--     slice of every part; trace_id, span_id end the key so that ReplacingMergeTree folds the
--     same span delivered twice (a client retry after a partial failure) into one row.
--   PARTITION BY toDate(timestamp): daily parts, so TTL drops whole parts (ttl_only_drop_parts)
--     and time-bounded queries prune partitions; same granularity as otel_traces.
--   Retried batches never duplicate: inserts carry a deduplication token derived from the Kafka
--     offset range, honoured within non_replicated_deduplication_window blocks.
--   Content (prompt and completion JSON) is compressed with ZSTD(3) and may be empty: capture is
--     configurable per project and never required.
CREATE TABLE IF NOT EXISTS ${DB}.llm_calls${LOCAL} ${ON_CLUSTER}
(
    timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    project LowCardinality(String) CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    service LowCardinality(String) CODEC(ZSTD(1)),
    span_name LowCardinality(String) CODEC(ZSTD(1)),
    operation LowCardinality(String) CODEC(ZSTD(1)),
    provider LowCardinality(String) CODEC(ZSTD(1)),
    model LowCardinality(String) CODEC(ZSTD(1)),
    request_model LowCardinality(String) CODEC(ZSTD(1)),
    response_model LowCardinality(String) CODEC(ZSTD(1)),
    input_tokens Nullable(UInt64) CODEC(ZSTD(1)),
    output_tokens Nullable(UInt64) CODEC(ZSTD(1)),
    cache_read_tokens UInt64 CODEC(ZSTD(1)),
    cache_creation_tokens UInt64 CODEC(ZSTD(1)),
    reasoning_tokens UInt64 CODEC(ZSTD(1)),
    cost_usd Nullable(Float64) CODEC(ZSTD(1)),
    price_version LowCardinality(String) CODEC(ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    ttft_ms Nullable(Float64) CODEC(ZSTD(1)),
    tpot_ms Nullable(Float64) CODEC(ZSTD(1)),
    streaming Bool CODEC(ZSTD(1)),
    aborted Bool CODEC(ZSTD(1)),
    finish_reasons Array(LowCardinality(String)) CODEC(ZSTD(1)),
    status_code LowCardinality(String) CODEC(ZSTD(1)),
    error_type LowCardinality(String) CODEC(ZSTD(1)),
    conversation_id String CODEC(ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    request_params Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    input_messages String CODEC(ZSTD(3)),
    output_messages String CODEC(ZSTD(3)),
    received_at DateTime64(9) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_conversation_id conversation_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ${REPLACING_MERGETREE}
PARTITION BY toDate(timestamp)
ORDER BY (project, model, timestamp, trace_id, span_id)
${TTL_LLM_CALLS}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

${DISTRIBUTED llm_calls cityHash64(trace_id)};
