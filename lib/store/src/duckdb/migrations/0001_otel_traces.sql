-- otel_traces in DuckDB: the columns of lib/schema/migrations/0001_otel_traces.sql, same names
-- and order (the OpenTelemetry Collector ClickHouse exporter's schema plus `Project`), DuckDB
-- types: DateTime64(9) -> TIMESTAMP_NS, Map -> MAP(VARCHAR, VARCHAR), the Nested Events and
-- Links -> one list column per field, named `Events.Timestamp` etc. as ClickHouse names them.
-- Rows are events (MergeTree): no key; a replayed batch is dropped by its token
-- (0006_insert_tokens.sql). Not mirrored: the trace-id lookup table and its materialized view
-- (an index for Grafana's trace view; DuckDB scans instead), codecs, skip indexes, TTL.
CREATE TABLE IF NOT EXISTS otel_traces (
    "Timestamp" TIMESTAMP_NS NOT NULL,
    "TraceId" VARCHAR NOT NULL DEFAULT '',
    "SpanId" VARCHAR NOT NULL DEFAULT '',
    "ParentSpanId" VARCHAR NOT NULL DEFAULT '',
    "TraceState" VARCHAR NOT NULL DEFAULT '',
    "SpanName" VARCHAR NOT NULL DEFAULT '',
    "SpanKind" VARCHAR NOT NULL DEFAULT '',
    "ServiceName" VARCHAR NOT NULL DEFAULT '',
    "ResourceAttributes" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "ScopeName" VARCHAR NOT NULL DEFAULT '',
    "ScopeVersion" VARCHAR NOT NULL DEFAULT '',
    "SpanAttributes" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "Duration" UBIGINT NOT NULL DEFAULT 0,
    "StatusCode" VARCHAR NOT NULL DEFAULT '',
    "StatusMessage" VARCHAR NOT NULL DEFAULT '',
    "Events.Timestamp" TIMESTAMP_NS[] NOT NULL DEFAULT [],
    "Events.Name" VARCHAR[] NOT NULL DEFAULT [],
    "Events.Attributes" MAP(VARCHAR, VARCHAR)[] NOT NULL DEFAULT [],
    "Links.TraceId" VARCHAR[] NOT NULL DEFAULT [],
    "Links.SpanId" VARCHAR[] NOT NULL DEFAULT [],
    "Links.TraceState" VARCHAR[] NOT NULL DEFAULT [],
    "Links.Attributes" MAP(VARCHAR, VARCHAR)[] NOT NULL DEFAULT [],
    "Project" VARCHAR NOT NULL DEFAULT 'default'
);
