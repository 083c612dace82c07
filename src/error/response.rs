//! RFC 6749 §5.2 error responses: the `error` code and the whole answer.

use std::fmt;

use http::StatusCode;

use super::sanitize;

/// The `error` code of an RFC 6749 §5.2 error response, with the codes of the
/// RFCs that extend it (RFC 7009, RFC 8628, RFC 8693/8707).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the grant (code, refresh token, credentials) is invalid,
    /// expired or revoked.
    InvalidGrant,
    /// `unauthorized_client`: this client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`: the server does not support the grant type.
    UnsupportedGrantType,
    /// `invalid_scope`: the scope is invalid, unknown or exceeds what was granted.
    InvalidScope,
    /// `invalid_target` (RFC 8707, RFC 8693): the resource or audience is not acceptable.
    InvalidTarget,
    /// `access_denied`.
    AccessDenied,
    /// `server_error`: the server failed (transient).
    ServerError,
    /// `temporarily_unavailable`: the server is overloaded or in maintenance (transient).
    TemporarilyUnavailable,
    /// `authorization_pending` (RFC 8628).
    AuthorizationPending,
    /// `slow_down` (RFC 8628): poll less often (transient).
    SlowDown,
    /// `expired_token` (RFC 8628).
    ExpiredToken,
    /// `unsupported_token_type` (RFC 7009 §2.2.1): the revocation endpoint
    /// does not revoke tokens of this type (access tokens, say).
    UnsupportedTokenType,
    /// Any other code, as sent.
    Other(String),
}

impl ErrorCode {
    /// Parses an `error` value.
    pub fn parse(s: &str) -> Self {
        match s {
            "invalid_request" => ErrorCode::InvalidRequest,
            "invalid_client" => ErrorCode::InvalidClient,
            "invalid_grant" => ErrorCode::InvalidGrant,
            "unauthorized_client" => ErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => ErrorCode::UnsupportedGrantType,
            "invalid_scope" => ErrorCode::InvalidScope,
            "invalid_target" => ErrorCode::InvalidTarget,
            "access_denied" => ErrorCode::AccessDenied,
            "server_error" => ErrorCode::ServerError,
            "temporarily_unavailable" => ErrorCode::TemporarilyUnavailable,
            "authorization_pending" => ErrorCode::AuthorizationPending,
            "slow_down" => ErrorCode::SlowDown,
            "expired_token" => ErrorCode::ExpiredToken,
            "unsupported_token_type" => ErrorCode::UnsupportedTokenType,
            other => ErrorCode::Other(sanitize(other, 100)),
        }
    }

    /// The code as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::Other(s) => s,
        }
    }

    /// Whether the same request may succeed later without any change.
    pub(super) fn is_transient(&self) -> bool {
        matches!(
            self,
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable | ErrorCode::SlowDown
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 6749 §5.2 error response from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub(super) error: ErrorCode,
    pub(super) error_description: Option<String>,
    pub(super) error_uri: Option<String>,
    pub(super) status: StatusCode,
}

impl ErrorResponse {
    /// An error response. The description and URI are cut to a sane length and
    /// stripped of control characters.
    pub fn new(
        error: ErrorCode,
        error_description: Option<&str>,
        error_uri: Option<&str>,
        status: StatusCode,
    ) -> Self {
        ErrorResponse {
            error,
            error_description: error_description.map(|d| sanitize(d, 500)),
            error_uri: error_uri.map(|u| sanitize(u, 300)),
            status,
        }
    }

    /// The `error` code.
    pub fn error(&self) -> &ErrorCode {
        &self.error
    }

    /// The `error_description`, if sent.
    pub fn error_description(&self) -> Option<&str> {
        self.error_description.as_deref()
    }

    /// The `error_uri`, if sent.
    pub fn error_uri(&self) -> Option<&str> {
        self.error_uri.as_deref()
    }

    /// The HTTP status it came with (200 when a server put `error` in a 200).
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl ErrorResponse {
    /// The response as `endpoint` (`"token endpoint"`) gave it.
    pub(super) fn describe(&self, f: &mut fmt::Formatter<'_>, endpoint: &str) -> fmt::Result {
        write!(f, "{endpoint} answered {}: {}", self.status, self.error)?;
        if let Some(d) = &self.error_description {
            write!(f, ": {d}")?;
        }
        if let Some(u) = &self.error_uri {
            write!(f, " (see {u})")?;
        }
        Ok(())
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, "token endpoint")
    }
}
