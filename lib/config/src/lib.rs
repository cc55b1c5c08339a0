//! Typed configuration: a TOML file, then `FLYWHEEL_*` environment overrides, then validation.
//!
//! Every service owns one config struct (serde, `deny_unknown_fields`, documented defaults).
//! This crate only knows how to layer the sources and how to report a bad field:
//!
//! - the file (optional) is read first;
//! - then environment variables `FLYWHEEL_<SECTION>__<FIELD>` override it, `__` separating
//!   nesting levels (`FLYWHEEL_KAFKA__BROKERS=host:9092`,
//!   `FLYWHEEL_AUTH__REQUIRED=true`). Variables without `__` (such as `FLYWHEEL_HOME`
//!   used by the scripts) are not configuration and are ignored;
//! - then [`Validate::validate`] checks what types cannot, and names the field at fault.
//!
//! A command can add [`Layers`] ([`load_layered`]): defaults of its own beneath the file and
//! the environment (`flywheel up`'s embedded bus and store, where the types default to Kafka
//! and ClickHouse) and values above them (its command-line flags).

use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "FLYWHEEL_";

/// A configuration problem, always naming the field or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: `{field}` {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    /// Shorthand for a validation failure on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Semantic checks run after parsing.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Values layered beneath and above the file and the environment, each at a dotted key
/// (`store.backend`, `bus.wal.dir`) and spelled as in the file (`"duckdb"`).
#[derive(Default)]
pub struct Layers {
    beneath: Figment,
    above: Figment,
}

impl Layers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `key` is `value` unless the file or the environment sets it: a default in place of the
    /// type's own.
    #[must_use]
    pub fn with_default(mut self, key: &str, value: impl Serialize) -> Self {
        self.beneath = self.beneath.merge(Serialized::default(key, value));
        self
    }

    /// `key` is `value` whatever the file and the environment say (a command-line flag).
    #[must_use]
    pub fn with_override(mut self, key: &str, value: impl Serialize) -> Self {
        self.above = self.above.merge(Serialized::default(key, value));
        self
    }
}

/// Loads `T` from an optional TOML file and the process environment.
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(file, std::env::vars())
}

/// Loads `T` from an optional TOML file and the given environment (testable without touching the
/// process environment).
pub fn load_with_env<T, I>(file: Option<&Path>, env: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    load_layered(file, env, Layers::new())
}

/// Loads `T` from, in increasing precedence: the type's defaults, `layers`' defaults, an
/// optional TOML file, the given environment, `layers`' overrides.
pub fn load_layered<T, I>(file: Option<&Path>, env: I, layers: Layers) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
    I: IntoIterator<Item = (String, String)>,
{
    let mut figment = layers.beneath;
    if let Some(path) = file {
        // Read it ourselves so that a missing file is an error rather than silently ignored.
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        figment = figment.merge(Toml::string(&text));
    }
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let path = rest.to_ascii_lowercase().replace("__", ".");
        // Same parsing as figment's own `Env` provider: "true" is a bool, "12" an integer, ...
        let parsed: figment::value::Value = value.parse().unwrap_or_else(|e| match e {});
        figment = figment.merge(Serialized::default(&path, parsed));
    }
    figment = figment.merge(layers.above);
    let value: T = figment
        .extract()
        .map_err(|e| ConfigError::Parse(Box::new(e)))?;
    value.validate()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        port: u16,
        name: String,
        enabled: bool,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Root {
        section: Section,
    }

    impl Validate for Root {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.section.name == "bad" {
                return Err(ConfigError::invalid("section.name", "must not be 'bad'"));
            }
            Ok(())
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_and_ignores_unsectioned_vars() {
        let f = file("[section]\nport = 1\nname = \"file\"\n");
        let root: Root = load_with_env(
            Some(f.path()),
            env(&[
                ("FLYWHEEL_SECTION__PORT", "4318"),
                ("FLYWHEEL_SECTION__ENABLED", "true"),
                ("FLYWHEEL_HOME", "/somewhere"),
                ("OTHER__PORT", "9"),
            ]),
        )
        .unwrap();
        assert_eq!(root.section.port, 4318);
        assert_eq!(root.section.name, "file");
        assert!(root.section.enabled);
    }

    #[test]
    fn unknown_field_is_named() {
        let f = file("[section]\nprot = 1\n");
        let err = load_with_env::<Root, _>(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn wrong_type_from_env_is_named() {
        let err =
            load_with_env::<Root, _>(None, env(&[("FLYWHEEL_SECTION__PORT", "many")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("section.port"), "{msg}");
    }

    #[test]
    fn validation_error_names_field() {
        let err =
            load_with_env::<Root, _>(None, env(&[("FLYWHEEL_SECTION__NAME", "bad")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: `section.name` must not be 'bad'"
        );
    }

    /// Layer defaults give way to the file and the environment, overrides to nothing; keys
    /// nobody sets keep the type's default.
    #[test]
    fn layers_sit_beneath_and_above_file_and_env() {
        let layers = || {
            Layers::new()
                .with_default("section.port", 7)
                .with_default("section.name", "layer")
        };
        let root: Root = load_layered(None, env(&[]), layers()).unwrap();
        assert_eq!(
            (root.section.port, root.section.name.as_str()),
            (7, "layer")
        );
        assert!(!root.section.enabled);

        let f = file("[section]\nname = \"file\"\n");
        let root: Root = load_layered(
            Some(f.path()),
            env(&[("FLYWHEEL_SECTION__PORT", "9")]),
            layers(),
        )
        .unwrap();
        assert_eq!((root.section.port, root.section.name.as_str()), (9, "file"));

        let root: Root = load_layered(
            Some(f.path()),
            env(&[("FLYWHEEL_SECTION__NAME", "env")]),
            layers().with_override("section.name", "flag"),
        )
        .unwrap();
        assert_eq!((root.section.port, root.section.name.as_str()), (7, "flag"));
    }

    #[test]
    fn overrides_are_validated() {
        let err = load_layered::<Root, _>(
            None,
            env(&[]),
            Layers::new().with_override("section.name", "bad"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("section.name"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load_with_env::<Root, _>(Some(Path::new("/nonexistent/flywheel.toml")), env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/flywheel.toml"));
    }
}
