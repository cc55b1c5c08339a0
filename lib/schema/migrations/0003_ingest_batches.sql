-- ingest_batches: the last batch each ingester consumer group announced per Kafka partition.
-- Before inserting the rows of offsets [first_offset, last_offset] the ingester writes this row;
-- a consumer that takes the partition over (after a crash or a rebalance) and finds the
-- partition's committed offset equal to first_offset rebuilds exactly that range, so its insert
-- carries the same insert_deduplication_token and ClickHouse drops it if it was already stored.
-- Kept in ClickHouse rather than in Kafka commit metadata because Kafka-compatible brokers do
-- not all return that metadata (tansu 0.6 stores it but answers OffsetFetch without it).
CREATE TABLE IF NOT EXISTS ${DB}.ingest_batches${LOCAL} ${ON_CLUSTER}
(
    consumer_group String,
    topic String,
    partition Int32,
    first_offset Int64,
    last_offset Int64,
    written_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ${REPLACING_MERGETREE}(first_offset)
ORDER BY (consumer_group, topic, partition);

${DISTRIBUTED ingest_batches cityHash64(consumer_group, topic, partition)};
