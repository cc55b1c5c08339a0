-- feedback and signals in DuckDB: the columns of lib/schema/migrations/0004_feedback_signals.sql,
-- same names and order. ReplacingMergeTree(received_at) ORDER BY (project, id) becomes the
-- primary key (project, id) and an upsert that keeps the row received last
-- (ON CONFLICT ... DO UPDATE ... WHERE excluded.received_at >= received_at): one row per item
-- at all times, so every count is right without FINAL.
CREATE TABLE IF NOT EXISTS feedback (
    "id" VARCHAR NOT NULL,
    "project" VARCHAR NOT NULL,
    "timestamp" TIMESTAMP_NS NOT NULL,
    "trace_id" VARCHAR NOT NULL DEFAULT '',
    "span_id" VARCHAR NOT NULL DEFAULT '',
    "conversation_id" VARCHAR NOT NULL DEFAULT '',
    "user_id" VARCHAR NOT NULL DEFAULT '',
    "name" VARCHAR NOT NULL DEFAULT '',
    "value_type" VARCHAR NOT NULL DEFAULT '',
    "score" DOUBLE,
    "label" VARCHAR NOT NULL DEFAULT '',
    "text" VARCHAR NOT NULL DEFAULT '',
    "comment" VARCHAR NOT NULL DEFAULT '',
    "source" VARCHAR NOT NULL DEFAULT '',
    "origin" VARCHAR NOT NULL DEFAULT '',
    "attributes" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "received_at" TIMESTAMP_NS NOT NULL,
    PRIMARY KEY ("project", "id")
);

CREATE TABLE IF NOT EXISTS signals (
    "id" VARCHAR NOT NULL,
    "project" VARCHAR NOT NULL,
    "timestamp" TIMESTAMP_NS NOT NULL,
    "trace_id" VARCHAR NOT NULL DEFAULT '',
    "span_id" VARCHAR NOT NULL DEFAULT '',
    "conversation_id" VARCHAR NOT NULL DEFAULT '',
    "user_id" VARCHAR NOT NULL DEFAULT '',
    "type" VARCHAR NOT NULL DEFAULT '',
    "source" VARCHAR NOT NULL DEFAULT '',
    "origin" VARCHAR NOT NULL DEFAULT '',
    "discarded_trace_id" VARCHAR NOT NULL DEFAULT '',
    "discarded_span_id" VARCHAR NOT NULL DEFAULT '',
    "tokens_received" UBIGINT,
    "ms_since_start" DOUBLE,
    "edit_ratio" DOUBLE,
    "edited_text" VARCHAR NOT NULL DEFAULT '',
    "text" VARCHAR NOT NULL DEFAULT '',
    "turn_count" UINTEGER,
    "attributes" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "received_at" TIMESTAMP_NS NOT NULL,
    PRIMARY KEY ("project", "id")
);
