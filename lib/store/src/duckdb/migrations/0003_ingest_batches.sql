-- ingest_batches in DuckDB: lib/schema/migrations/0003_ingest_batches.sql (the ingester's batch
-- markers), keyed like its ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS ingest_batches (
    "consumer_group" VARCHAR NOT NULL,
    "topic" VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "first_offset" BIGINT NOT NULL,
    "last_offset" BIGINT NOT NULL,
    "written_at" TIMESTAMP_MS NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY ("consumer_group", "topic", "partition")
);
