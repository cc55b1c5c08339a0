//! API-key authentication: `Authorization: Bearer <key>` or `x-api-key: <key>`, mapped to a
//! project. The same header names work as gRPC metadata.

use std::collections::HashMap;

use flywheel_core::{ErrorCode, ProjectId};

use crate::config::AuthConfig;
use crate::error::IngestError;

/// Resolves request credentials to a project.
#[derive(Debug, Clone)]
pub struct Authenticator {
    required: bool,
    keys: HashMap<String, ProjectId>,
}

impl Authenticator {
    /// Builds from validated config (project ids were checked by `CollectorConfig::validate`).
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let keys = config
            .keys
            .iter()
            .map(|(k, p)| ProjectId::new(p).map(|p| (k.clone(), p)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            required: config.required,
            keys,
        })
    }

    /// `authorization` and `x-api-key` header values (either may be absent).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<ProjectId, IngestError> {
        let presented = api_key.map(str::trim).or_else(|| {
            authorization.and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
        });
        match presented {
            Some(key) => match self.keys.get(key) {
                Some(project) => Ok(project.clone()),
                None => Err(IngestError::new(
                    ErrorCode::Unauthenticated,
                    "unknown API key",
                )),
            },
            None if self.required => Err(IngestError::new(
                ErrorCode::Unauthenticated,
                "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            )),
            None => Ok(ProjectId::default_project()),
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
        Authenticator::new(&config).unwrap()
    }

    #[test]
    fn bearer_and_api_key_resolve_projects() {
        let a = auth(true);
        assert_eq!(
            a.authenticate(Some("Bearer key-aaaaaaaa"), None)
                .unwrap()
                .as_str(),
            "team-a"
        );
        assert_eq!(
            a.authenticate(Some("bearer  key-aaaaaaaa "), None)
                .unwrap()
                .as_str(),
            "team-a"
        );
        assert_eq!(
            a.authenticate(None, Some("key-aaaaaaaa")).unwrap().as_str(),
            "team-a"
        );
    }

    #[test]
    fn missing_or_unknown_keys() {
        let a = auth(true);
        assert_eq!(
            a.authenticate(None, None).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            a.authenticate(Some("Bearer wrong-key"), None)
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            a.authenticate(Some("Basic key-aaaaaaaa"), None)
                .unwrap_err()
                .code,
            ErrorCode::Unauthenticated
        );
        // Optional auth: no key is the default project, a wrong key is still refused.
        let open = auth(false);
        assert_eq!(open.authenticate(None, None).unwrap().as_str(), "default");
        assert!(open.authenticate(None, Some("nope")).is_err());
    }
}
