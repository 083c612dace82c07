//! Errors of token revocation (RFC 7009): a failed revocation keeps the
//! kind of what went wrong and speaks of the revocation endpoint; no
//! revocation endpoint, and callers that waited while tokens were revoked,
//! have kinds of their own.

#[cfg(doc)]
use super::ErrorCode;
use super::{sanitize, Error, Kind};

impl Error {
    /// No revocation endpoint is configured ([`crate::TokenCache::revoke`]).
    pub(crate) fn no_revocation_endpoint() -> Self {
        Error::new(Kind::NoRevocationEndpoint)
    }

    /// A caller waited for a token while the cache's tokens were revoked.
    pub(crate) fn revoked() -> Self {
        Error::new(Kind::Revoked)
    }

    /// `self`, a failure to revoke `token` (`"the refresh token"`) at `url`,
    /// or to build a revocation request when `at` is `None`: it keeps its
    /// kind, status and `Retry-After`, and speaks of the revocation endpoint.
    pub(crate) fn in_revocation(self, at: Option<(&'static str, &str)>) -> Self {
        let retry_after = self.inner.retry_after;
        Error::new(Kind::Revocation {
            at: at.map(|(token, url)| (token, sanitize(url, 300))),
            cause: self,
        })
        .with_retry_after(retry_after)
    }

    /// Whether this happened revoking a token ([`crate::TokenEndpoint::revoke`],
    /// [`crate::TokenCache::revoke`]): the error keeps the kind of what went
    /// wrong (`OAuth` with [`ErrorCode::UnsupportedTokenType`], `HttpStatus`
    /// for a 503 with its [`Error::retry_after`]…).
    pub fn is_revocation(&self) -> bool {
        matches!(self.inner.kind, Kind::Revocation { .. })
    }
}

/// The words for the exchange an error happened in: its endpoint, its
/// request and its URL.
pub(super) struct Words {
    pub(super) endpoint: &'static str,
    pub(super) request: &'static str,
    pub(super) url: &'static str,
}

pub(super) const TOKEN_WORDS: Words = Words {
    endpoint: "token endpoint",
    request: "token request",
    url: "token URL",
};

pub(super) const REVOCATION_WORDS: Words = Words {
    endpoint: "revocation endpoint",
    request: "revocation request",
    url: "revocation URL",
};

pub(super) const NO_REVOCATION_ENDPOINT: &str =
    "no token can be revoked: no revocation endpoint is \
     configured (set one with TokenEndpoint::revocation_url, or build the endpoint with \
     ProviderMetadata::endpoint from metadata that lists a usable revocation_endpoint)";
pub(super) const REVOKED: &str = "the cache's tokens were revoked (TokenCache::revoke) while this \
     request waited for one; a request made after the revocation fetches a new token";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::error::{ErrorCode, ErrorKind, ErrorResponse};

    #[test]
    fn revocation_errors_keep_their_kind_and_speak_of_the_revocation_endpoint() {
        let at = Some(("the refresh token", "https://as.example.com/revoke"));
        let status = |s: u16| StatusCode::from_u16(s).unwrap();
        let unsupported = Error::oauth(ErrorResponse::new(
            ErrorCode::UnsupportedTokenType,
            Some("no"),
            None,
            status(400),
        ));
        let cases = [
            (
                unsupported,
                ErrorKind::OAuth,
                "revocation endpoint answered 400 Bad Request: unsupported_token_type: no",
            ),
            (
                Error::http_status(status(503), String::new())
                    .with_retry_after(Some(Duration::from_secs(4))),
                ErrorKind::HttpStatus,
                "revocation endpoint answered 503 Service Unavailable with an empty body \
                 (retry after 4s)",
            ),
            (
                Error::redirect(status(302)),
                ErrorKind::Redirect,
                "revocation endpoint answered with a redirect (302 Found); it is not followed \
                 because it would send the client credentials elsewhere: configure the final \
                 revocation URL",
            ),
            (
                Error::transport(std::io::Error::other("reset")),
                ErrorKind::Transport,
                "could not reach the revocation endpoint",
            ),
            (
                Error::body_too_large(9),
                ErrorKind::BodyTooLarge,
                "revocation endpoint's answer is larger than the 9-byte limit",
            ),
            (
                Error::invalid_request("the assertion cannot be signed"),
                ErrorKind::InvalidRequest,
                "cannot build the revocation request: the assertion cannot be signed",
            ),
        ];
        for (cause, kind, words) in cases {
            let (status, retryable) = (cause.status(), cause.is_retryable());
            let retry_after = cause.retry_after();
            let e = cause.in_revocation(at);
            assert_eq!(e.kind(), kind);
            assert!(e.is_revocation() && !e.is_discovery());
            assert_eq!(
                (e.status(), e.is_retryable(), e.retry_after()),
                (status, retryable, retry_after)
            );
            assert_eq!(e.is_transport(), kind == ErrorKind::Transport);
            assert_eq!(
                e.to_string(),
                format!(
                    "revoking the refresh token at https://as.example.com/revoke failed: {words}"
                )
            );
            assert_eq!(e.clone().to_string(), e.to_string());
        }
        let e = Error::transport(std::io::Error::other("reset")).in_revocation(None);
        assert_eq!(e.to_string(), "could not reach the revocation endpoint");
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "reset");
        assert_eq!(
            format!("{e:?}"),
            "tower_oauth2::Error { kind: Transport, cause: tower_oauth2::Error { kind: \
             Transport, source: \"reset\" } }"
        );
        let e = Error::timeout(Duration::from_secs(2)).in_revocation(at);
        assert!(e.is_timeout() && e.is_retryable());
        assert_eq!(
            format!("{e:?}"),
            "tower_oauth2::Error { kind: Timeout, token: \"the refresh token\", url: \
             \"https://as.example.com/revoke\", cause: tower_oauth2::Error { kind: Timeout, \
             after: 2s } }"
        );
        // The token endpoint's own errors keep their words.
        assert!(!Error::timeout(Duration::from_secs(2)).is_revocation());
    }

    #[test]
    fn revocation_without_an_endpoint_and_callers_that_waited() {
        let e = Error::no_revocation_endpoint();
        assert_eq!(e.kind(), ErrorKind::NoRevocationEndpoint);
        assert!(!e.is_retryable() && !e.is_revocation() && e.status().is_none());
        assert_eq!(
            e.to_string(),
            "no token can be revoked: no revocation endpoint is configured (set one with \
             TokenEndpoint::revocation_url, or build the endpoint with ProviderMetadata::endpoint \
             from metadata that lists a usable revocation_endpoint)"
        );
        assert_eq!(
            format!("{e:?}"),
            "tower_oauth2::Error { kind: NoRevocationEndpoint }"
        );
        let e = Error::revoked();
        assert_eq!(e.kind(), ErrorKind::Revoked);
        assert!(!e.is_retryable() && !e.is_revocation());
        assert_eq!(
            e.to_string(),
            "the cache's tokens were revoked (TokenCache::revoke) while this request waited \
             for one; a request made after the revocation fetches a new token"
        );
        assert_eq!(format!("{e:?}"), "tower_oauth2::Error { kind: Revoked }");
    }
}
