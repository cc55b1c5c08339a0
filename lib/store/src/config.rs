//! Store configuration (section `[store]`).

use std::path::PathBuf;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Which store serves reads (the api, `flywheel export`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `clickhouse` (the `[clickhouse]` server) or `duckdb` (an embedded file at `path`).
    pub backend: Backend,
    /// The DuckDB database file (`duckdb` only); created with its tables when missing.
    pub path: PathBuf,
    /// Most memory DuckDB uses (`duckdb` only; DuckDB's syntax, e.g. `2GB`); larger work
    /// spills to disk beside the file. DuckDB's own default, 80% of RAM, is too much for a
    /// process that also runs the other services.
    pub memory_limit: String,
}

/// A store implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    ClickHouse,
    DuckDb,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::ClickHouse,
            path: PathBuf::from("./flywheel-data/flywheel.duckdb"),
            memory_limit: "2GB".to_string(),
        }
    }
}

impl Validate for StoreConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == Backend::DuckDb && self.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "store.path",
                "must name the DuckDB file when store.backend is duckdb",
            ));
        }
        if self.backend == Backend::DuckDb && self.memory_limit.trim().is_empty() {
            return Err(ConfigError::invalid(
                "store.memory_limit",
                "must be a size such as 2GB",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Root {
        store: StoreConfig,
    }

    impl Validate for Root {
        fn validate(&self) -> Result<(), ConfigError> {
            self.store.validate()
        }
    }

    #[test]
    fn backend_from_env_and_bad_values_named() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let root: Root = flywheel_config::load_with_env(
            None,
            env(&[
                ("FLYWHEEL_STORE__BACKEND", "duckdb"),
                ("FLYWHEEL_STORE__PATH", "/tmp/x.duckdb"),
            ]),
        )
        .unwrap();
        assert_eq!(root.store.backend, Backend::DuckDb);
        assert_eq!(root.store.path, PathBuf::from("/tmp/x.duckdb"));
        let e = flywheel_config::load_with_env::<Root, _>(
            None,
            env(&[("FLYWHEEL_STORE__BACKEND", "sqlite")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("store.backend"), "{e}");
        let e = StoreConfig {
            backend: Backend::DuckDb,
            path: PathBuf::new(),
            ..StoreConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("store.path"), "{e}");
    }
}
