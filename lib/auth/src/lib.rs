//! API keys (section `[auth]`), shared by every service that answers clients.
//!
//! Two kinds of keys, each bound to one project:
//! - **secret keys** (`auth.keys`): server-side; may send spans, feedback and signals and read
//!   or export the project's data;
//! - **public keys** (`auth.public_keys`): safe to ship in a browser bundle; may only write
//!   feedback and signals for their project, never send spans, read or export.
//!
//! Keys are presented as `Authorization: Bearer <key>` or `x-api-key: <key>` (HTTP headers or
//! gRPC metadata). With `auth.required = false`, a request without a key acts for the `default`
//! project with the rights of a secret key (a local, single-tenant set-up); a presented key that
//! is unknown is still refused.

use std::collections::{BTreeMap, HashMap};

use flywheel_config::{ConfigError, Validate};
use flywheel_core::ProjectId;
use serde::Deserialize;

/// API-key settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When true, requests without a known key are refused (401 / `UNAUTHENTICATED`).
    pub required: bool,
    /// Secret keys: `key = "project-id"`.
    pub keys: BTreeMap<String, String>,
    /// Public (browser) keys: `key = "project-id"`; write feedback and signals only.
    pub public_keys: BTreeMap<String, String>,
}

impl Validate for AuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.required && self.keys.is_empty() && self.public_keys.is_empty() {
            return Err(ConfigError::invalid(
                "auth.keys",
                "must name at least one key when auth.required is true",
            ));
        }
        for (field, keys) in [
            ("auth.keys", &self.keys),
            ("auth.public_keys", &self.public_keys),
        ] {
            for (key, project) in keys {
                if key.len() < 8 {
                    return Err(ConfigError::invalid(
                        field,
                        "keys must be at least 8 characters",
                    ));
                }
                ProjectId::new(project).map_err(|m| ConfigError::invalid(field, m))?;
            }
        }
        if let Some(key) = self.keys.keys().find(|k| self.public_keys.contains_key(*k)) {
            let shown: String = key.chars().take(4).collect();
            return Err(ConfigError::invalid(
                "auth.public_keys",
                format!("key {shown}... is also a secret key; a key has one kind"),
            ));
        }
        Ok(())
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send spans (OTLP).
    IngestSpans,
    /// Send feedback or signals.
    WriteFeedback,
    /// Read or export stored data.
    Read,
}

/// The kind of credential a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
    /// No key, accepted because `auth.required` is false.
    Anonymous,
}

/// Who is calling: a project and the kind of key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub project: ProjectId,
    pub kind: KeyKind,
}

impl Principal {
    /// Whether this principal may do `action`.
    pub fn allows(&self, action: Action) -> bool {
        match self.kind {
            KeyKind::Secret | KeyKind::Anonymous => true,
            KeyKind::Public => action == Action::WriteFeedback,
        }
    }
}

/// Why a request was not authenticated or not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No key and keys are required.
    Missing,
    /// The presented key is not configured.
    Unknown,
    /// The key is valid but its kind may not do this (a public key reading, say).
    Forbidden(Action),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            ),
            Self::Unknown => f.write_str("unknown API key"),
            Self::Forbidden(action) => write!(
                f,
                "a public key may only write feedback and signals, not {}",
                match action {
                    Action::IngestSpans => "send spans",
                    Action::WriteFeedback => "write feedback",
                    Action::Read => "read or export data",
                }
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// Resolves request credentials to a [`Principal`].
#[derive(Debug, Clone)]
pub struct Authenticator {
    required: bool,
    keys: HashMap<String, Principal>,
}

impl Authenticator {
    /// Builds from validated config.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (map, kind) in [
            (&config.keys, KeyKind::Secret),
            (&config.public_keys, KeyKind::Public),
        ] {
            for (key, project) in map {
                let project = ProjectId::new(project)?;
                keys.insert(key.clone(), Principal { project, kind });
            }
        }
        Ok(Self {
            required: config.required,
            keys,
        })
    }

    /// Authenticates from the `authorization` and `x-api-key` values (either may be absent).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let presented = api_key.map(str::trim).or_else(|| {
            authorization.and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
        });
        match presented {
            Some(key) => self.keys.get(key).cloned().ok_or(AuthError::Unknown),
            None if self.required => Err(AuthError::Missing),
            None => Ok(Principal {
                project: ProjectId::default_project(),
                kind: KeyKind::Anonymous,
            }),
        }
    }

    /// [`Self::authenticate`], then checks the principal may do `action`.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
        action: Action,
    ) -> Result<Principal, AuthError> {
        let principal = self.authenticate(authorization, api_key)?;
        if principal.allows(action) {
            Ok(principal)
        } else {
            Err(AuthError::Forbidden(action))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(required: bool) -> Authenticator {
        let mut config = AuthConfig {
            required,
            ..AuthConfig::default()
        };
        config.keys.insert("key-aaaaaaaa".into(), "team-a".into());
        config
            .public_keys
            .insert("pk-bbbbbbbb".into(), "team-b".into());
        config.validate().unwrap();
        Authenticator::new(&config).unwrap()
    }

    #[test]
    fn bearer_and_api_key_resolve_projects() {
        let a = auth(true);
        let project = |r: Result<Principal, AuthError>| r.unwrap().project.as_str().to_string();
        assert_eq!(
            project(a.authenticate(Some("Bearer key-aaaaaaaa"), None)),
            "team-a"
        );
        assert_eq!(
            project(a.authenticate(Some("bearer  key-aaaaaaaa "), None)),
            "team-a"
        );
        assert_eq!(
            project(a.authenticate(None, Some("key-aaaaaaaa"))),
            "team-a"
        );
        assert_eq!(project(a.authenticate(None, Some("pk-bbbbbbbb"))), "team-b");
    }

    #[test]
    fn missing_or_unknown_keys() {
        let a = auth(true);
        assert_eq!(a.authenticate(None, None), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Bearer wrong-key"), None),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            a.authenticate(Some("Basic key-aaaaaaaa"), None),
            Err(AuthError::Missing)
        );
        // Optional auth: no key is the default project, a wrong key is still refused.
        let open = auth(false);
        let anonymous = open.authenticate(None, None).unwrap();
        assert_eq!(anonymous.project.as_str(), "default");
        assert!(anonymous.allows(Action::Read));
        assert_eq!(
            open.authenticate(None, Some("nope")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn public_keys_write_feedback_only() {
        let a = auth(true);
        assert!(a
            .authorize(None, Some("pk-bbbbbbbb"), Action::WriteFeedback)
            .is_ok());
        for action in [Action::IngestSpans, Action::Read] {
            assert_eq!(
                a.authorize(None, Some("pk-bbbbbbbb"), action),
                Err(AuthError::Forbidden(action))
            );
            assert!(a.authorize(None, Some("key-aaaaaaaa"), action).is_ok());
        }
    }

    #[test]
    fn a_key_cannot_be_both_kinds() {
        let mut config = AuthConfig::default();
        config.keys.insert("same-key-123".into(), "a".into());
        config.public_keys.insert("same-key-123".into(), "a".into());
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("auth.public_keys"), "{e}");
        assert!(!e.contains("same-key-123"), "key leaked in error: {e}");
    }
}
