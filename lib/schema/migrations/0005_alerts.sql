-- alerts: the detector's alert history, one row per notification it produced (a new firing
-- alert, each periodic re-send to Alertmanager, the resolution), with the numbers behind it.
--
-- Read by `GET /v1/alerts` (recent history) and at detector start-up: the latest row of each
-- fingerprint tells which alerts were firing when the detector stopped, so a restart during an
-- incident restores them instead of paging again (adr/0008).
--
-- Keys: ORDER BY (project, fingerprint, sent_at): a fingerprint's rows are adjacent and in
--   time order (argMax(state, sent_at) per fingerprint is the current state). Plain MergeTree:
--   rows are events, never replaced. Alert volume is tiny next to spans; no TTL by default.
--   Sharded by fingerprint so one alert's history stays on one shard.
CREATE TABLE IF NOT EXISTS ${DB}.alerts${LOCAL} ${ON_CLUSTER}
(
    fingerprint String CODEC(ZSTD(1)),
    alertname LowCardinality(String) CODEC(ZSTD(1)),
    slo LowCardinality(String) CODEC(ZSTD(1)),
    project LowCardinality(String) CODEC(ZSTD(1)),
    severity LowCardinality(String) CODEC(ZSTD(1)),
    -- firing | resolved
    state LowCardinality(String) CODEC(ZSTD(1)),
    -- true for a new firing alert or a resolution; false for a re-send
    announced Bool,
    labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    annotations Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    starts_at DateTime64(9) CODEC(Delta, ZSTD(1)),
    ends_at Nullable(DateTime64(9)) CODEC(ZSTD(1)),
    -- burn rates of the reported rule's windows, the SLI over the SLO window, budget left
    long_burn_rate Nullable(Float64) CODEC(ZSTD(1)),
    short_burn_rate Nullable(Float64) CODEC(ZSTD(1)),
    sli Nullable(Float64) CODEC(ZSTD(1)),
    budget_remaining Float64 CODEC(ZSTD(1)),
    -- the event time the evaluation ended at (the alert tracker's clock)
    event_time DateTime64(9) CODEC(Delta, ZSTD(1)),
    -- wall clock when the detector produced the notification
    sent_at DateTime64(9) CODEC(Delta, ZSTD(1))
)
ENGINE = ${MERGETREE}
ORDER BY (project, fingerprint, sent_at)
SETTINGS index_granularity = 8192;

${DISTRIBUTED alerts cityHash64(fingerprint)};
