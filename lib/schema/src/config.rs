//! ClickHouse connection and schema options (section `[clickhouse]`).

use std::collections::BTreeMap;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Where the tables live and how they are created.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface URL.
    pub url: String,
    pub user: String,
    pub password: String,
    /// Database holding every Flywheel table.
    pub database: String,
    /// Days to keep rows, per table (`otel_traces`, `llm_calls`, `feedback`, `signals`); absent
    /// means forever. Applies to both store backends despite the section: ClickHouse as a table
    /// `TTL` rendered at migration time, DuckDB (`flywheel up`) as the ingester's periodic
    /// delete (`ingester.expire_interval_s`).
    pub ttl_days: BTreeMap<String, u32>,
    /// Cluster name for `ON CLUSTER` DDL, Replicated engines and Distributed tables (shard-local
    /// `<name>_local` tables behind Distributed `<name>`); empty for a single server.
    pub cluster: String,
    /// Compress inserts (`lz4`, worth it over a network) or not (`none`, cheaper in CPU when
    /// ClickHouse is local).
    pub compression: InsertCompression,
}

/// Compression of data sent to ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertCompression {
    Lz4,
    None,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".to_string(),
            user: "default".to_string(),
            password: String::new(),
            database: "flywheel".to_string(),
            ttl_days: BTreeMap::new(),
            cluster: String::new(),
            compression: InsertCompression::Lz4,
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Validate for ClickHouseConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "clickhouse.url",
                "must start with http:// or https://",
            ));
        }
        if !is_identifier(&self.database) {
            return Err(ConfigError::invalid(
                "clickhouse.database",
                "must be letters, digits and '_' (not starting with a digit)",
            ));
        }
        if !self.cluster.is_empty() && !is_identifier(&self.cluster) {
            return Err(ConfigError::invalid(
                "clickhouse.cluster",
                "must be letters, digits and '_' (not starting with a digit)",
            ));
        }
        for (table, days) in &self.ttl_days {
            if !crate::migrate::TTL_TABLES.contains(&table.as_str()) {
                return Err(ConfigError::invalid(
                    "clickhouse.ttl_days",
                    format!(
                        "unknown table {table:?}; TTL applies to {}",
                        crate::migrate::TTL_TABLES.join(", ")
                    ),
                ));
            }
            if *days == 0 {
                return Err(ConfigError::invalid(
                    "clickhouse.ttl_days",
                    "days must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

impl ClickHouseConfig {
    /// A client for this server, using the Flywheel database.
    pub fn client(&self) -> clickhouse::Client {
        let mut client = clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_database(&self.database);
        if !self.password.is_empty() {
            client = client.with_password(&self.password);
        }
        if !self.cluster.is_empty() {
            // Inserts into Distributed tables reach the shards before they are acknowledged,
            // so a batch's commit still means its rows are stored (and deduplicated there).
            client = client.with_setting("insert_distributed_sync", "1");
        }
        if self.compression == InsertCompression::None {
            client = client.with_compression(clickhouse::Compression::None);
        }
        client
    }
}
