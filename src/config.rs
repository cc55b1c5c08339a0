//! The whole `flywheel` configuration: one section per service plus the shared ones.
//!
//! Sample: `deploy/flywheel.example.toml`. Every field can be overridden from the environment
//! as `FLYWHEEL_<SECTION>__<FIELD>` (see `flywheel-config`).

use std::net::SocketAddr;
use std::path::Path;

use flywheel_api::ApiConfig;
use flywheel_auth::AuthConfig;
use flywheel_bus::KafkaConfig;
use flywheel_collector::CollectorConfig;
use flywheel_config::{ConfigError, Validate};
use flywheel_detector::DetectorConfig;
use flywheel_ingester::IngesterConfig;
use flywheel_schema::ClickHouseConfig;
use flywheel_store::StoreConfig;
use flywheel_wal::WalConfig;
use serde::Deserialize;

/// Top-level configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlywheelConfig {
    pub admin: AdminConfig,
    pub auth: AuthConfig,
    /// The durable log between the collector and the ingester / detector: Kafka, or the
    /// embedded write-ahead log (`flywheel up`'s default).
    pub bus: BusConfig,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    /// Where the api and `flywheel export` read (ClickHouse or an embedded DuckDB file).
    pub store: StoreConfig,
    pub collector: CollectorConfig,
    pub ingester: IngesterConfig,
    pub api: ApiConfig,
    pub detector: DetectorConfig,
}

/// Section `[bus]`: which durable log the services share.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `kafka` (the `[kafka]` brokers) or `wal` (an in-process write-ahead log on disk).
    pub kind: BusKind,
    /// The write-ahead log (`wal` only).
    pub wal: WalConfig,
}

/// A durable log implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    #[default]
    Kafka,
    Wal,
}

/// The admin server: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8888)),
        }
    }
}

impl Validate for FlywheelConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        if self.bus.kind == BusKind::Wal {
            self.bus
                .wal
                .validate()
                .map_err(|e| ConfigError::invalid("bus.wal", e.to_string()))?;
            if !self.detector.keyed_topic.is_empty() {
                return Err(ConfigError::invalid(
                    "detector.keyed_topic",
                    "scale-out through a keyed topic needs the Kafka bus",
                ));
            }
        }
        self.kafka.validate()?;
        self.clickhouse.validate()?;
        self.store.validate()?;
        self.collector.validate()?;
        self.ingester.validate()?;
        self.api.validate()?;
        self.detector.validate()
    }
}

/// Loads the configuration from `file` (optional) and the environment.
pub fn load(file: Option<&Path>) -> Result<FlywheelConfig, ConfigError> {
    flywheel_config::load(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample config in `deploy/` parses and validates.
    #[test]
    fn sample_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config: FlywheelConfig =
                    flywheel_config::load_with_env(Some(&path), Vec::new())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!config.kafka.brokers.is_empty());
                assert!(config.api.export_page_size > 0);
                seen += 1;
            }
        }
        assert!(seen > 0, "no sample config found in {}", dir.display());
    }

    #[test]
    fn bad_field_is_named() {
        let err = flywheel_config::load_with_env::<FlywheelConfig, _>(
            None,
            vec![(
                "FLYWHEEL_COLLECTOR__HTTP_LISTEN".into(),
                "not-an-address".into(),
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("collector.http_listen"), "{err}");
    }
}
