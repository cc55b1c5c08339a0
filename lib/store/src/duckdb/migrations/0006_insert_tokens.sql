-- insert_tokens (DuckDB only): the idempotency token of every stored batch, inserted in the same
-- transaction as the batch's rows. A batch whose token is already here stores nothing: what
-- ClickHouse's insert_deduplication_token does (there within non_replicated_deduplication_window
-- inserts; here forever, a few dozen bytes per batch).
CREATE TABLE IF NOT EXISTS insert_tokens (
    "token" VARCHAR PRIMARY KEY,
    "inserted_at" TIMESTAMP NOT NULL DEFAULT current_timestamp
);
