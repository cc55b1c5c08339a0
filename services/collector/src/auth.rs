//! Authentication for the receivers: `flywheel-auth` keys, with refusals as [`IngestError`]s.

use flywheel_auth::{Action, AuthError, Authenticator, Principal};
use flywheel_core::ErrorCode;

use crate::error::IngestError;

/// Authenticates the request and checks that its key may do `action`.
pub fn authorize(
    auth: &Authenticator,
    authorization: Option<&str>,
    api_key: Option<&str>,
    action: Action,
) -> Result<Principal, IngestError> {
    auth.authorize(authorization, api_key, action).map_err(|e| {
        let code = match e {
            AuthError::Missing | AuthError::Unknown => ErrorCode::Unauthenticated,
            AuthError::Forbidden(_) => ErrorCode::PermissionDenied,
        };
        IngestError::new(code, e.to_string())
    })
}
