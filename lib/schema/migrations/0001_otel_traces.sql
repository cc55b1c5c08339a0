-- otel_traces, otel_traces_trace_id_ts and its materialized view: the DDL of the OpenTelemetry
-- Collector contrib ClickHouse exporter (exporter/clickhouseexporter, sqltemplates of the 2025
-- releases: traces_table.sql, traces_id_ts_lookup_table.sql, traces_id_ts_lookup_mv.sql), so
-- Grafana's ClickHouse plugin and OTel tooling work on it unchanged. Same columns, codecs,
-- indexes, PARTITION BY, ORDER BY and settings. Flywheel's additions, both allowed by that
-- tooling: a trailing `Project` column (DEFAULT 'default', so the exporter's own 22-column
-- INSERT still works) and `non_replicated_deduplication_window`, so that a batch retried with
-- the same insert_deduplication_token is dropped. In cluster mode the tables are `_local` per
-- shard behind Distributed tables of the same names (sharded by TraceId), see migrate.rs.
CREATE TABLE IF NOT EXISTS ${DB}.otel_traces${LOCAL} ${ON_CLUSTER} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Project LowCardinality(String) DEFAULT 'default' CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = ${MERGETREE}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
${TTL_OTEL_TRACES}
SETTINGS index_granularity=8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

${DISTRIBUTED otel_traces cityHash64(TraceId)};

CREATE TABLE IF NOT EXISTS ${DB}.otel_traces_trace_id_ts${LOCAL} ${ON_CLUSTER} (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ${MERGETREE}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
SETTINGS index_granularity=8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

${DISTRIBUTED otel_traces_trace_id_ts cityHash64(TraceId)};

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DB}.otel_traces_trace_id_ts_mv ${ON_CLUSTER}
TO ${DB}.otel_traces_trace_id_ts${LOCAL}
AS SELECT
    TraceId,
    min(Timestamp) as Start,
    max(Timestamp) as End
FROM ${DB}.otel_traces${LOCAL}
WHERE TraceId != ''
GROUP BY TraceId;
