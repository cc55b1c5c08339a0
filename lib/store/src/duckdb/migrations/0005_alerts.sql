-- alerts in DuckDB: the columns of lib/schema/migrations/0005_alerts.sql (the detector's alert
-- history), same names and order; rows are events, never replaced: no key.
CREATE TABLE IF NOT EXISTS alerts (
    "fingerprint" VARCHAR NOT NULL,
    "alertname" VARCHAR NOT NULL DEFAULT '',
    "slo" VARCHAR NOT NULL DEFAULT '',
    "project" VARCHAR NOT NULL DEFAULT '',
    "severity" VARCHAR NOT NULL DEFAULT '',
    "state" VARCHAR NOT NULL DEFAULT '',
    "announced" BOOLEAN NOT NULL DEFAULT false,
    "labels" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "annotations" MAP(VARCHAR, VARCHAR) NOT NULL DEFAULT MAP {},
    "starts_at" TIMESTAMP_NS NOT NULL,
    "ends_at" TIMESTAMP_NS,
    "long_burn_rate" DOUBLE,
    "short_burn_rate" DOUBLE,
    "sli" DOUBLE,
    "budget_remaining" DOUBLE NOT NULL DEFAULT 0,
    "event_time" TIMESTAMP_NS NOT NULL,
    "sent_at" TIMESTAMP_NS NOT NULL
);
