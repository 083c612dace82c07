//! Errors: what the token endpoint said (RFC 6749 §5.2) and everything else
//! that can go wrong getting a token.
//!
//! [`Error`] is opaque, in the style of hyper's: ask it what it is with
//! [`Error::kind`] and the predicates, and for the endpoint's own words with
//! [`Error::oauth_error`]. No error ever holds a client secret, an access token
//! or a refresh token; a body excerpt is cut short, stripped of control
//! characters, and scrubbed of the secrets that were sent.
//!
//! # Example
//!
//! ```
//! use http::StatusCode;
//! use tower_oauth2::endpoint::parse_token_response;
//! use tower_oauth2::error::{ErrorCode, ErrorKind};
//! use tower_oauth2::token::IssuedAt;
//!
//! let body = br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#;
//! let err = parse_token_response(StatusCode::UNAUTHORIZED, &Default::default(), body, IssuedAt::now())
//!     .unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::OAuth);
//! let oauth = err.oauth_error().unwrap();
//! assert_eq!(oauth.error(), &ErrorCode::InvalidClient);
//! assert_eq!(oauth.error_description(), Some("Client authentication failed"));
//! assert!(!err.is_retryable()); // wrong credentials do not fix themselves
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::token::ParseError;

/// A boxed error from a transport or inner service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod display;
mod kind;
mod redact;
mod response;
mod revocation;

pub use kind::{CredentialFailure, DiscoveryFailure, ErrorKind};
pub(crate) use redact::{excerpt, redact, sanitize};
pub use response::{ErrorCode, ErrorResponse};
use revocation::{Words, NO_REVOCATION_ENDPOINT, REVOCATION_WORDS, REVOKED, TOKEN_WORDS};

/// The error for everything that gets tokens.
///
/// Cloning is cheap (a reference count): the cache hands one failed fetch's
/// error to every caller that waited for it.
#[derive(Clone)]
pub struct Error {
    inner: Arc<ErrorImpl>,
}

#[derive(Clone)]
struct ErrorImpl {
    kind: Kind,
    retry_after: Option<Duration>,
}

/// A transport's (or discovery's) underlying error, shared by the clones of
/// the [`Error`] that carries it.
type SharedSource = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
enum Kind {
    OAuth(ErrorResponse),
    HttpStatus {
        status: StatusCode,
        excerpt: String,
    },
    Redirect {
        status: StatusCode,
    },
    Transport(SharedSource),
    Timeout(Duration),
    /// A caller gave up waiting for a fetch, after this long.
    WaitTimeout(Duration),
    BodyTooLarge {
        limit: usize,
    },
    InvalidResponse {
        status: StatusCode,
        source: ParseError,
    },
    InvalidRequest(String),
    InvalidAuthorizationRequest(String),
    InvalidDestination(String),
    RandomSource(String),
    InvalidToken(String),
    NoToken(Error),
    NoRuntime,
    FetchAborted,
    /// The token endpoint's refusal of the refresh token, when known.
    ReauthorizationRequired(Option<Error>),
    /// `detail` says what happened in discovery's words; `url` is the
    /// metadata URL (or the issuer) it happened at.
    Discovery {
        url: Option<String>,
        detail: String,
        cause: DiscoveryCause,
    },
    NoRevocationEndpoint,
    Revoked,
    UnmappedKey,
    /// What is wrong with the subject token (never any of it), and what
    /// to do; `None`: the request has none.
    NoSubject(Option<String>),
    SubjectExpired,
    /// `detail` names where the credential comes from, never its content.
    Credential {
        failure: CredentialFailure,
        detail: String,
    },
    /// `at` is which token was being revoked and where, when the request
    /// was sent; `cause` is the failure, of its own kind.
    Revocation {
        at: Option<(&'static str, String)>,
        cause: Error,
    },
}

#[derive(Clone)]
enum DiscoveryCause {
    /// The issuer or the metadata cannot be used.
    Unusable(DiscoveryFailure),
    /// Fetching the metadata failed: an error of the ordinary kinds.
    Fetch(Error),
}

impl Error {
    fn new(kind: Kind) -> Self {
        Error {
            inner: Arc::new(ErrorImpl {
                kind,
                retry_after: None,
            }),
        }
    }

    pub(crate) fn oauth(response: ErrorResponse) -> Self {
        Error::new(Kind::OAuth(response))
    }

    pub(crate) fn http_status(status: StatusCode, excerpt: String) -> Self {
        Error::new(Kind::HttpStatus { status, excerpt })
    }

    pub(crate) fn redirect(status: StatusCode) -> Self {
        Error::new(Kind::Redirect { status })
    }

    pub(crate) fn transport(e: impl Into<BoxError>) -> Self {
        Error::new(Kind::Transport(Arc::from(e.into())))
    }

    /// The fetch task ended without an answer: it panicked, or its runtime
    /// dropped it while it ran. Retryable: the next call starts a new fetch.
    pub(crate) fn fetch_aborted() -> Self {
        Error::new(Kind::FetchAborted)
    }

    /// No Tokio runtime to run a fetch on: none is running here, or it shut
    /// down before the fetch started.
    pub(crate) fn no_runtime() -> Self {
        Error::new(Kind::NoRuntime)
    }

    /// The refresh token was refused and there is no other grant;
    /// `refusal` is the token endpoint's answer, when known.
    pub(crate) fn reauthorization_required(refusal: Option<Error>) -> Self {
        Error::new(Kind::ReauthorizationRequired(refusal))
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Error::new(Kind::Timeout(after))
    }

    /// A caller waited `after` for a token fetch and gave up; the fetch
    /// goes on.
    pub(crate) fn wait_timeout(after: Duration) -> Self {
        Error::new(Kind::WaitTimeout(after))
    }

    pub(crate) fn body_too_large(limit: usize) -> Self {
        Error::new(Kind::BodyTooLarge { limit })
    }

    pub(crate) fn invalid_response(status: StatusCode, source: ParseError) -> Self {
        Error::new(Kind::InvalidResponse { status, source })
    }

    pub(crate) fn invalid_request(reason: impl Into<String>) -> Self {
        Error::new(Kind::InvalidRequest(reason.into()))
    }

    pub(crate) fn invalid_authorization_request(reason: impl Into<String>) -> Self {
        Error::new(Kind::InvalidAuthorizationRequest(reason.into()))
    }

    /// A destination that is not an origin the token may go to; `reason`
    /// says why.
    pub(crate) fn invalid_destination(reason: impl Into<String>) -> Self {
        Error::new(Kind::InvalidDestination(reason.into()))
    }

    pub(crate) fn random_source(cause: impl fmt::Display) -> Self {
        Error::new(Kind::RandomSource(cause.to_string()))
    }

    pub(crate) fn invalid_token(reason: impl Into<String>) -> Self {
        Error::new(Kind::InvalidToken(reason.into()))
    }

    /// A keyed layer has no token configuration for a request's key.
    pub(crate) fn credential(failure: CredentialFailure, detail: String) -> Self {
        Error::new(Kind::Credential { failure, detail })
    }

    /// Why a client credential read for a request cannot be used, for an
    /// [`ErrorKind::Credential`] error (also through a
    /// [`ErrorKind::NoToken`] error's last failure, and a failed
    /// revocation's cause).
    pub fn credential_failure(&self) -> Option<CredentialFailure> {
        match &self.inner.kind {
            Kind::Credential { failure, .. } => Some(*failure),
            Kind::NoToken(e) => e.credential_failure(),
            Kind::Revocation { cause, .. } => cause.credential_failure(),
            _ => None,
        }
    }

    pub(crate) fn unmapped_key() -> Self {
        Error::new(Kind::UnmappedKey)
    }

    /// The request has no subject token.
    pub(crate) fn no_subject() -> Self {
        Error::new(Kind::NoSubject(None))
    }

    /// The request's subject token cannot be one: `why` says what is
    /// wrong with it, quoting none of it.
    pub(crate) fn unusable_subject(why: String) -> Self {
        Error::new(Kind::NoSubject(Some(why)))
    }

    pub(crate) fn subject_expired() -> Self {
        Error::new(Kind::SubjectExpired)
    }

    pub(crate) fn no_token(last: Error) -> Self {
        let retry_after = last.inner.retry_after;
        Error::new(Kind::NoToken(last)).with_retry_after(retry_after)
    }

    /// Discovery found no usable metadata. `url` is the metadata URL (or
    /// the issuer) it is about; `detail` says what happened, and never holds
    /// a secret.
    pub(crate) fn discovery(
        failure: DiscoveryFailure,
        url: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        Error::new(Kind::Discovery {
            url: url.map(|u| sanitize(u, 300)),
            detail: detail.into(),
            cause: DiscoveryCause::Unusable(failure),
        })
    }

    /// `self`, a failure to fetch the metadata at `url`, as a discovery
    /// error that keeps its kind, its status and its `Retry-After`; `detail`
    /// says what happened in discovery's words.
    pub(crate) fn in_discovery(self, url: &str, detail: impl Into<String>) -> Self {
        let retry_after = self.inner.retry_after;
        Error::new(Kind::Discovery {
            url: Some(sanitize(url, 300)),
            detail: detail.into(),
            cause: DiscoveryCause::Fetch(self),
        })
        .with_retry_after(retry_after)
    }

    /// [`Error::in_discovery`] for the failures of the shared exchange
    /// (transport, timeout, body size), each with its detail.
    pub(crate) fn into_discovery(self, url: &str) -> Self {
        let detail = match &self.inner.kind {
            Kind::Discovery { .. } => return self,
            Kind::BodyTooLarge { limit } => {
                format!("the metadata is larger than the {limit}-byte limit")
            }
            Kind::Timeout(after) => format!("no complete answer within {after:?}"),
            _ => "the metadata could not be fetched".to_owned(),
        };
        self.in_discovery(url, detail)
    }

    /// The reason of an [`ErrorKind::InvalidRequest`] error.
    pub(crate) fn invalid_request_reason(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::InvalidRequest(r) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        // Unique unless the error was already shared: then the kind is
        // copied (its sources stay shared) rather than changed for all.
        Arc::make_mut(&mut self.inner).retry_after = retry_after;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &self.inner.kind {
            Kind::OAuth(_) => ErrorKind::OAuth,
            Kind::HttpStatus { .. } => ErrorKind::HttpStatus,
            Kind::Redirect { .. } => ErrorKind::Redirect,
            Kind::Transport(_) => ErrorKind::Transport,
            Kind::Timeout(_) => ErrorKind::Timeout,
            Kind::WaitTimeout(_) => ErrorKind::WaitTimeout,
            Kind::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            Kind::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Kind::InvalidRequest(_) | Kind::InvalidAuthorizationRequest(_) => {
                ErrorKind::InvalidRequest
            }
            Kind::InvalidDestination(_) => ErrorKind::InvalidDestination,
            Kind::RandomSource(_) => ErrorKind::RandomSource,
            Kind::InvalidToken(_) => ErrorKind::InvalidToken,
            Kind::NoToken(_) => ErrorKind::NoToken,
            Kind::NoRuntime => ErrorKind::NoRuntime,
            Kind::FetchAborted => ErrorKind::FetchAborted,
            Kind::ReauthorizationRequired(_) => ErrorKind::ReauthorizationRequired,
            Kind::Discovery {
                cause: DiscoveryCause::Fetch(e),
                ..
            } => e.kind(),
            Kind::Discovery { .. } => ErrorKind::Discovery,
            Kind::NoRevocationEndpoint => ErrorKind::NoRevocationEndpoint,
            Kind::Revoked => ErrorKind::Revoked,
            Kind::UnmappedKey => ErrorKind::UnmappedKey,
            Kind::NoSubject(_) => ErrorKind::NoSubject,
            Kind::SubjectExpired => ErrorKind::SubjectExpired,
            Kind::Credential { .. } => ErrorKind::Credential,
            Kind::Revocation { cause, .. } => cause.kind(),
        }
    }

    /// The endpoint's RFC 6749 §5.2 error, if it sent one (also found through
    /// a [`ErrorKind::NoToken`] error's last failure, and in an
    /// [`ErrorKind::ReauthorizationRequired`] error: the refusal).
    pub fn oauth_error(&self) -> Option<&ErrorResponse> {
        match &self.inner.kind {
            Kind::OAuth(r) => Some(r),
            Kind::NoToken(e) | Kind::ReauthorizationRequired(Some(e)) => e.oauth_error(),
            Kind::Revocation { cause, .. } => cause.oauth_error(),
            _ => None,
        }
    }

    /// Why discovery found no usable metadata, if this is an
    /// [`ErrorKind::Discovery`] error.
    pub fn discovery_failure(&self) -> Option<DiscoveryFailure> {
        match &self.inner.kind {
            Kind::Discovery {
                cause: DiscoveryCause::Unusable(failure),
                ..
            } => Some(*failure),
            _ => None,
        }
    }

    /// Whether this happened in authorization server discovery
    /// ([`crate::discovery`]): an [`ErrorKind::Discovery`] error, or a
    /// failure to fetch the metadata, which has the kind of what went wrong.
    ///
    /// ```
    /// use tower_oauth2::discovery::ProviderMetadata;
    /// use tower_oauth2::{Error, ErrorKind};
    ///
    /// fn explain(discovered: Result<ProviderMetadata, Error>) -> String {
    ///     match discovered {
    ///         Ok(m) => format!("token endpoint: {}", m.token_endpoint()),
    ///         Err(e) if e.kind() == ErrorKind::Discovery => format!("unusable: {e}"),
    ///         Err(e) if e.is_discovery() && e.is_retryable() => format!("try later: {e}"),
    ///         Err(e) => e.to_string(),
    ///     }
    /// }
    /// let doc = br#"{"issuer":"https://as.example.org","token_endpoint":"https://as.example.org/t"}"#;
    /// let found = ProviderMetadata::from_json("https://as.example.com", doc);
    /// assert!(explain(found).starts_with("unusable: authorization server discovery failed"));
    /// ```
    pub fn is_discovery(&self) -> bool {
        matches!(self.inner.kind, Kind::Discovery { .. })
    }

    /// The failure to fetch the metadata that a discovery error wraps.
    fn discovery_fetch(&self) -> Option<&Error> {
        match &self.inner.kind {
            Kind::Discovery {
                cause: DiscoveryCause::Fetch(e),
                ..
            } => Some(e),
            _ => None,
        }
    }

    /// The token endpoint's (or, for discovery, the metadata URL's) HTTP
    /// status, where there was one.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::OAuth(r) => Some(r.status),
            Kind::HttpStatus { status, .. }
            | Kind::Redirect { status }
            | Kind::InvalidResponse { status, .. } => Some(*status),
            Kind::NoToken(e) | Kind::ReauthorizationRequired(Some(e)) => e.status(),
            Kind::Discovery { .. } => self.discovery_fetch()?.status(),
            Kind::Revocation { cause, .. } => cause.status(),
            _ => None,
        }
    }

    /// How long the endpoint asked to wait (`Retry-After` on a 429 or 503).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether this is a timeout: the token endpoint did not answer in time
    /// ([`ErrorKind::Timeout`], also through a [`ErrorKind::NoToken`] error
    /// or in discovery), or a caller gave up waiting for a token fetch
    /// ([`ErrorKind::WaitTimeout`]).
    pub fn is_timeout(&self) -> bool {
        match &self.inner.kind {
            Kind::Timeout(_) | Kind::WaitTimeout(_) => true,
            Kind::NoToken(e) => e.is_timeout(),
            Kind::Discovery { .. } => self.discovery_fetch().is_some_and(Error::is_timeout),
            Kind::Revocation { cause, .. } => cause.is_timeout(),
            _ => false,
        }
    }

    /// Whether the user must authorize again: the refresh token was refused
    /// and the cache has no other grant ([`ErrorKind::ReauthorizationRequired`],
    /// also through a [`ErrorKind::NoToken`] error). Start the authorization
    /// code flow again ([`crate::authorize`]) and build a new cache with the
    /// refresh token it yields.
    pub fn is_reauthorization_required(&self) -> bool {
        match &self.inner.kind {
            Kind::ReauthorizationRequired(_) => true,
            Kind::NoToken(e) => e.is_reauthorization_required(),
            _ => false,
        }
    }

    /// Whether the request failed in transport (connection refused, reset…).
    pub fn is_transport(&self) -> bool {
        match &self.inner.kind {
            Kind::Transport(_) => true,
            Kind::NoToken(e) => e.is_transport(),
            Kind::Discovery { .. } => self.discovery_fetch().is_some_and(Error::is_transport),
            Kind::Revocation { cause, .. } => cause.is_transport(),
            _ => false,
        }
    }

    /// Whether the failure is transient, so the same request may succeed
    /// later: transport failures, timeouts, 5xx, 408, 429, and the
    /// `server_error`, `temporarily_unavailable` and `slow_down` codes.
    ///
    /// Permanent failures (`invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `invalid_scope`, a malformed 200, a redirect)
    /// need a change of configuration or credentials; retrying them only
    /// loads the endpoint.
    pub fn is_retryable(&self) -> bool {
        fn status_retryable(s: StatusCode) -> bool {
            s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
        }
        match &self.inner.kind {
            Kind::Transport(_)
            | Kind::Timeout(_)
            | Kind::WaitTimeout(_)
            | Kind::FetchAborted
            | Kind::Credential { .. } => true,
            Kind::OAuth(r) => r.error.is_transient() || status_retryable(r.status),
            Kind::HttpStatus { status, .. } => status_retryable(*status),
            Kind::InvalidResponse { status, .. } => status_retryable(*status),
            Kind::NoToken(e) => e.is_retryable(),
            // An issuer or metadata that cannot be used stays so.
            Kind::Discovery { .. } => self.discovery_fetch().is_some_and(Error::is_retryable),
            Kind::Revocation { cause, .. } => cause.is_retryable(),
            Kind::Redirect { .. }
            | Kind::BodyTooLarge { .. }
            | Kind::InvalidRequest(_)
            | Kind::InvalidAuthorizationRequest(_)
            | Kind::InvalidDestination(_)
            | Kind::RandomSource(_)
            | Kind::InvalidToken(_)
            | Kind::NoRuntime
            | Kind::ReauthorizationRequired(_)
            | Kind::NoRevocationEndpoint
            | Kind::Revoked
            | Kind::UnmappedKey
            | Kind::NoSubject(_)
            | Kind::SubjectExpired => false,
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner.kind {
            Kind::Transport(e) => Some(&**e),
            Kind::InvalidResponse { source, .. } => Some(source),
            Kind::NoToken(e) | Kind::ReauthorizationRequired(Some(e)) => Some(e),
            // The fetch failure's own source: its message speaks of the
            // token endpoint, the discovery error's of the metadata.
            Kind::Discovery {
                cause: DiscoveryCause::Fetch(e),
                ..
            } => e.source(),
            // As discovery's: the cause's message is in token endpoint words.
            Kind::Revocation { cause, .. } => cause.source(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_target",
            "access_denied",
            "server_error",
            "temporarily_unavailable",
            "authorization_pending",
            "slow_down",
            "expired_token",
            "unsupported_token_type",
            "custom_thing",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
        assert_eq!(ErrorCode::parse("x"), ErrorCode::Other("x".into()));
    }

    #[test]
    fn retryable_classification() {
        let oauth = |code: &str, status: u16| {
            Error::oauth(ErrorResponse::new(
                ErrorCode::parse(code),
                None,
                None,
                StatusCode::from_u16(status).unwrap(),
            ))
        };
        for (code, status) in [
            ("invalid_client", 401),
            ("invalid_grant", 400),
            ("unauthorized_client", 400),
            ("invalid_scope", 400),
            ("invalid_request", 400),
        ] {
            assert!(!oauth(code, status).is_retryable(), "{code}");
        }
        assert!(oauth("temporarily_unavailable", 400).is_retryable());
        assert!(oauth("server_error", 400).is_retryable());
        assert!(oauth("invalid_request", 503).is_retryable());
        assert!(Error::http_status(StatusCode::BAD_GATEWAY, String::new()).is_retryable());
        assert!(Error::http_status(StatusCode::TOO_MANY_REQUESTS, String::new()).is_retryable());
        assert!(!Error::http_status(StatusCode::NOT_FOUND, String::new()).is_retryable());
        assert!(Error::timeout(Duration::from_secs(1)).is_retryable());
        assert!(Error::transport("refused").is_retryable());
        assert!(!Error::redirect(StatusCode::FOUND).is_retryable());
        assert!(!Error::body_too_large(10).is_retryable());
        assert!(!Error::invalid_token("x").is_retryable());
        let nt = Error::no_token(Error::timeout(Duration::from_secs(1)));
        assert_eq!(nt.kind(), ErrorKind::NoToken);
        assert!(nt.is_retryable() && nt.is_timeout());
    }

    #[test]
    fn display_says_what_and_what_to_do() {
        let e = Error::oauth(ErrorResponse::new(
            ErrorCode::InvalidGrant,
            Some("refresh token\nrevoked"),
            Some("https://as.example/errors#grant"),
            StatusCode::BAD_REQUEST,
        ));
        assert_eq!(
            e.to_string(),
            "token endpoint answered 400 Bad Request: invalid_grant: refresh token revoked \
             (see https://as.example/errors#grant)"
        );
        let e = Error::http_status(StatusCode::TOO_MANY_REQUESTS, "slow".into())
            .with_retry_after(Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.to_string().ends_with("(retry after 7s)"), "{e}");
        let copy = Error::transport(std::io::Error::other("connection refused")).clone();
        assert!(copy.is_transport());
        assert_eq!(
            std::error::Error::source(&copy).unwrap().to_string(),
            "connection refused"
        );
    }

    #[test]
    fn clones_share_one_error() {
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<Error>();
        let e = Error::transport(std::io::Error::other("reset"))
            .with_retry_after(Some(Duration::from_secs(3)));
        let copy = e.clone();
        assert!(Arc::ptr_eq(&e.inner, &copy.inner));
        assert_eq!(
            format!("{copy:?}"),
            "tower_oauth2::Error { kind: Transport, source: \"reset\", retry_after: 3s }"
        );
        assert_eq!(copy.to_string(), e.to_string());
        // Setting Retry-After on a shared error changes only that copy, and
        // the copy still shares the transport's error.
        let later = copy.with_retry_after(Some(Duration::from_secs(9)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(later.retry_after(), Some(Duration::from_secs(9)));
        let source = |e: &Error| match &e.inner.kind {
            Kind::Transport(s) => s.clone(),
            _ => unreachable!("a transport error"),
        };
        assert!(Arc::ptr_eq(&source(&e), &source(&later)));
    }

    #[test]
    fn each_cache_event_has_its_own_kind() {
        let refusal = Error::oauth(ErrorResponse::new(
            ErrorCode::InvalidGrant,
            Some("refresh token revoked"),
            None,
            StatusCode::BAD_REQUEST,
        ));
        let reauth = Error::reauthorization_required(Some(refusal));
        assert_eq!(reauth.kind(), ErrorKind::ReauthorizationRequired);
        assert!(reauth.is_reauthorization_required() && !reauth.is_retryable());
        assert_eq!(
            reauth.oauth_error().map(|r| r.error()),
            Some(&ErrorCode::InvalidGrant)
        );
        assert_eq!(reauth.status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            reauth.to_string(),
            "the refresh token was refused and there is no other grant: the user must \
             authorize again (token endpoint answered 400 Bad Request: invalid_grant: \
             refresh token revoked)"
        );
        assert_eq!(
            std::error::Error::source(&reauth).unwrap().to_string(),
            "token endpoint answered 400 Bad Request: invalid_grant: refresh token revoked"
        );
        let later = Error::no_token(reauth);
        assert_eq!(later.kind(), ErrorKind::NoToken);
        assert!(later.is_reauthorization_required());
        let bare = Error::reauthorization_required(None);
        assert!(bare.oauth_error().is_none() && std::error::Error::source(&bare).is_none());

        let e = Error::no_runtime();
        assert_eq!(e.kind(), ErrorKind::NoRuntime);
        assert!(!e.is_retryable() && !e.is_transport() && !e.is_reauthorization_required());
        assert_eq!(
            e.to_string(),
            "no token can be fetched: no Tokio runtime is running here, or it is shutting down; \
             use the token cache from within a running Tokio runtime"
        );
        assert_eq!(format!("{e:?}"), "tower_oauth2::Error { kind: NoRuntime }");

        let e = Error::wait_timeout(Duration::from_millis(1500));
        assert_eq!(e.kind(), ErrorKind::WaitTimeout);
        assert!(e.is_timeout() && e.is_retryable() && !e.is_transport());
        assert_eq!(e.status(), None);
        assert_eq!(
            e.to_string(),
            "no token within 1.5s: gave up waiting for the token fetch, which goes on; a later \
             call gets its token"
        );
        assert_eq!(
            format!("{e:?}"),
            "tower_oauth2::Error { kind: WaitTimeout, after: 1.5s }"
        );
        // Not the token endpoint's timeout, which says whose it was.
        let endpoint = Error::timeout(Duration::from_millis(1500));
        assert_eq!(endpoint.kind(), ErrorKind::Timeout);
        assert_eq!(
            endpoint.to_string(),
            "token endpoint did not answer within 1.5s"
        );

        let e = Error::fetch_aborted();
        assert_eq!(e.kind(), ErrorKind::FetchAborted);
        assert!(e.is_retryable() && !e.is_transport());
        assert_eq!(
            e.to_string(),
            "the token fetch ended without an answer (it panicked, or its Tokio runtime shut \
             down); the next call starts a new fetch"
        );

        let e = Error::random_source("no entropy");
        assert_eq!(e.kind(), ErrorKind::RandomSource);
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "no state or PKCE verifier can be drawn: the operating system's random source \
             failed (no entropy)"
        );
        let e = Error::invalid_destination("destination \"x\" is not a URL");
        assert_eq!(e.kind(), ErrorKind::InvalidDestination);
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "invalid token destination: destination \"x\" is not a URL"
        );
        let e = Error::invalid_authorization_request("bad URL");
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(
            e.to_string(),
            "cannot build the authorization request: bad URL"
        );
        assert_eq!(e.invalid_request_reason(), None);
    }

    #[test]
    fn unusable_metadata_is_a_discovery_error() {
        use DiscoveryFailure as F;
        let url = Some("https://as.example.com/.well-known/openid-configuration");
        for failure in [
            F::InvalidIssuer,
            F::NotFound,
            F::IssuerMismatch,
            F::MissingTokenEndpoint,
            F::InvalidTokenEndpoint,
            F::InvalidMetadata,
            F::UnsupportedClientAuth,
        ] {
            let e = Error::discovery(failure, url, "detail");
            assert_eq!(e.kind(), ErrorKind::Discovery);
            assert_eq!(e.discovery_failure(), Some(failure));
            assert!(e.is_discovery());
            assert!(!e.is_retryable() && !e.is_timeout() && !e.is_transport());
            assert_eq!(e.status(), None);
            assert!(e.oauth_error().is_none());
            assert!(std::error::Error::source(&e).is_none());
            assert_eq!(
                e.to_string(),
                "authorization server discovery failed at \
                 https://as.example.com/.well-known/openid-configuration: detail"
            );
            let copy = e.clone();
            assert_eq!(copy.discovery_failure(), Some(failure));
            assert_eq!(copy.to_string(), e.to_string());
            assert_eq!(format!("{copy:?}"), format!("{e:?}"));
        }
        let e = Error::discovery(F::InvalidIssuer, None, "the issuer is bad");
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed: the issuer is bad"
        );
        assert_eq!(
            format!("{e:?}"),
            "tower_oauth2::Error { kind: Discovery, url: None, detail: \"the issuer is bad\", \
             failure: InvalidIssuer }"
        );
        assert!(!Error::timeout(Duration::from_secs(1)).is_discovery());
        assert_eq!(
            Error::timeout(Duration::from_secs(1)).discovery_failure(),
            None
        );
        // A URL from a hostile server cannot forge log lines.
        let e = Error::discovery(F::NotFound, Some("https://a/\r\nX: y"), "d");
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://a/ X: y: d"
        );
    }

    #[test]
    fn a_failed_metadata_fetch_keeps_its_kind() {
        let u = "https://as.example.com/x";
        let status = |s: u16| StatusCode::from_u16(s).unwrap();
        let cases = [
            (
                Error::http_status(status(503), "x".into()),
                ErrorKind::HttpStatus,
                Some(503),
                true,
            ),
            (
                Error::http_status(status(429), "x".into()),
                ErrorKind::HttpStatus,
                Some(429),
                true,
            ),
            (
                Error::http_status(status(408), "x".into()),
                ErrorKind::HttpStatus,
                Some(408),
                true,
            ),
            (
                Error::http_status(status(501), "x".into()),
                ErrorKind::HttpStatus,
                Some(501),
                true,
            ),
            (
                Error::redirect(status(302)),
                ErrorKind::Redirect,
                Some(302),
                false,
            ),
            (
                Error::transport("refused"),
                ErrorKind::Transport,
                None,
                true,
            ),
            (
                Error::timeout(Duration::from_secs(1)),
                ErrorKind::Timeout,
                None,
                true,
            ),
            (
                Error::body_too_large(10),
                ErrorKind::BodyTooLarge,
                None,
                false,
            ),
        ];
        for (cause, kind, code, retryable) in cases {
            let e = cause.in_discovery(u, "detail");
            assert_eq!(e.kind(), kind);
            assert!(e.is_discovery());
            assert_eq!(e.discovery_failure(), None);
            assert_eq!(e.status().map(|s| s.as_u16()), code, "{kind:?}");
            assert_eq!(e.is_retryable(), retryable, "{kind:?}");
            assert_eq!(e.is_timeout(), kind == ErrorKind::Timeout);
            assert_eq!(e.is_transport(), kind == ErrorKind::Transport);
            assert_eq!(
                e.to_string(),
                "authorization server discovery failed at https://as.example.com/x: detail"
            );
            let copy = e.clone();
            assert_eq!((copy.kind(), copy.is_discovery()), (kind, true));
            assert_eq!(copy.status(), e.status());
            assert_eq!(copy.to_string(), e.to_string());
            if kind != ErrorKind::Transport {
                // A transport error's copy keeps its source's message only.
                assert_eq!(format!("{copy:?}"), format!("{e:?}"));
            }
        }
        let e = Error::http_status(status(503), "down".into())
            .with_retry_after(Some(Duration::from_secs(9)))
            .in_discovery(u, "answered 503");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
        assert_eq!(
            format!("{:?}", e.clone()),
            "tower_oauth2::Error { kind: HttpStatus, url: Some(\"https://as.example.com/x\"), \
             detail: \"answered 503\", cause: tower_oauth2::Error { kind: HttpStatus, \
             status: 503, excerpt: \"down\", retry_after: 9s }, retry_after: 9s }"
        );
        assert!(e.to_string().ends_with(" (retry after 9s)"));
    }

    #[test]
    fn the_exchange_failures_in_discovery_words() {
        let u = "https://as.example.com/x";
        let e = Error::body_too_large(10).into_discovery(u);
        assert_eq!(e.kind(), ErrorKind::BodyTooLarge);
        assert!(e.is_discovery());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com/x: the metadata \
             is larger than the 10-byte limit"
        );
        let e = Error::transport(std::io::Error::other("reset")).into_discovery(u);
        assert!(e.is_transport() && e.is_discovery());
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "reset");
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com/x: the metadata \
             could not be fetched"
        );
        let copy = e.clone();
        assert_eq!(
            std::error::Error::source(&copy).unwrap().to_string(),
            "reset"
        );
        let e = Error::timeout(Duration::from_millis(20)).into_discovery(u);
        assert!(e.is_timeout() && e.is_discovery());
        assert_eq!(
            e.to_string(),
            "authorization server discovery failed at https://as.example.com/x: no complete \
             answer within 20ms"
        );
        let e = Error::invalid_token("x").into_discovery(u);
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
        let again = e.clone().into_discovery("https://elsewhere");
        assert!(again.to_string().contains("https://as.example.com/x"));
    }

    #[test]
    fn excerpt_is_short_clean_and_scrubbed() {
        let body = b"<html>\r\n<body>Bad   gateway\x00\x1b[31m p@ss:w+rd/%&=? and p%40ss%3Aw%2Brd%2F%25%26%3D%3F</body></html>";
        let e = excerpt(body, &["p@ss:w+rd/%&=?"]);
        assert_eq!(
            e,
            "<html> <body>Bad gateway [31m [redacted] and [redacted]</body></html>"
        );
        let long = vec![b'a'; 10_000];
        assert_eq!(excerpt(&long, &[]).chars().count(), 201);
        // A secret anywhere, even across where the excerpt is cut, is gone.
        let mut body = " ".repeat(4096 - 10);
        body.push_str("S3cretValue-0123456789abcdef");
        assert_eq!(
            excerpt(body.as_bytes(), &["S3cretValue-0123456789abcdef"]),
            "[redacted]"
        );
        assert_eq!(excerpt(&[0xff, 0xfe, b'x'], &[]), "\u{fffd}\u{fffd}x");
    }
}
