//! Project identity: every record carries the project it belongs to.

use std::fmt;
use std::sync::Arc;

/// A project id: 1 to 64 characters of `[A-Za-z0-9_.-]`. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectId(Arc<str>);

impl ProjectId {
    /// The project of data received without authentication.
    pub const DEFAULT: &'static str = "default";

    /// Validates and wraps a project id.
    pub fn new(id: &str) -> Result<Self, String> {
        let ok_len = !id.is_empty() && id.len() <= 64;
        let ok_chars = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok_len && ok_chars {
            Ok(Self(Arc::from(id)))
        } else {
            Err(format!(
                "project id {id:?} must be 1 to 64 characters of letters, digits, '_', '.' or '-'"
            ))
        }
    }

    /// The `default` project.
    pub fn default_project() -> Self {
        Self(Arc::from(Self::DEFAULT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        assert!(ProjectId::new("team-a.prod_1").is_ok());
        assert!(ProjectId::new("").is_err());
        assert!(ProjectId::new("a b").is_err());
        assert!(ProjectId::new(&"x".repeat(65)).is_err());
        assert_eq!(ProjectId::default_project().as_str(), "default");
    }
}
