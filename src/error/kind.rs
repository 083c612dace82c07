//! What kind of failure an error is: the public, matchable part.

#[cfg(doc)]
use super::Error;

/// What kind of failure an [`Error`] is.
///
/// A failure to fetch discovery metadata has the kind of what went wrong
/// (`Transport`, `Timeout`, `HttpStatus`, `Redirect`, `BodyTooLarge`), and
/// [`Error::is_discovery`] says it happened in discovery; `Discovery` is
/// for an issuer or metadata that cannot be used. Likewise a failed token
/// revocation (RFC 7009) has the kind of what went wrong (`OAuth` for
/// `unsupported_token_type`, `HttpStatus` for a 503…), and
/// [`Error::is_revocation`] says it happened in revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The token endpoint answered with an RFC 6749 §5.2 error
    /// ([`Error::oauth_error`] has it).
    OAuth,
    /// The token endpoint answered with an error status and a body that is not
    /// an OAuth2 error (an HTML 502 page, say).
    HttpStatus,
    /// The token endpoint answered with a redirect, which is not followed
    /// because it would carry the client credentials elsewhere.
    Redirect,
    /// The request could not be sent or the answer not received.
    Transport,
    /// No complete answer came within the configured timeout: the token
    /// endpoint (or a discovery document) was too slow.
    Timeout,
    /// A caller gave up waiting for a token fetch after the cache's
    /// [`wait_timeout`](crate::cache::TokenCacheBuilder::wait_timeout). Not
    /// the same event as [`ErrorKind::Timeout`]: the fetch was not
    /// cancelled and goes on for the callers after this one; what held it up
    /// may be the token endpoint, the token store, the `on_refresh_token`
    /// callback, or a runtime that does not run the fetch task. Retryable;
    /// [`Error::is_timeout`] is true for both.
    WaitTimeout,
    /// The answer's body was larger than the configured limit.
    BodyTooLarge,
    /// The answer was a success status with a body that is not a usable token
    /// response.
    InvalidResponse,
    /// A request could not be built from what was given: the token request
    /// (bad token URL, forbidden bytes in a parameter or header) or the
    /// authorization URL (bad authorization endpoint, malformed PKCE
    /// verifier). The message says which part to fix.
    InvalidRequest,
    /// A destination given to [`crate::layer::Destinations::origins`] or
    /// [`crate::layer::Destinations::origin_form_to`] is not an `http` or
    /// `https` origin (`https://host[:port]`, no path, no credentials), or
    /// is one the token may not go to (for `origin_form_to` on
    /// [`crate::layer::Destinations::secure`]: `http` to a host that is not
    /// loopback). Also a DPoP proof asked for a path-only URI with no
    /// `origin_form_to` origin to name in its `htu`.
    InvalidDestination,
    /// The operating system's random source failed, so no `state` or PKCE
    /// verifier could be drawn ([`crate::authorize`]).
    RandomSource,
    /// A token was issued but cannot be used: it holds bytes not allowed in a
    /// header, is of a type not configured, or expired on arrival.
    InvalidToken,
    /// No token is available: the layer has none, and fetching one failed
    /// recently (the last failure is the [`std::error::Error::source`]).
    NoToken,
    /// The cache needed to fetch a token but no Tokio runtime is running on
    /// this thread, or the runtime is shutting down: fetches run as Tokio
    /// tasks. Use the cache from within a running runtime; the next call
    /// made there fetches a token.
    NoRuntime,
    /// The token fetch ended without an answer: it panicked (a bug in the
    /// HTTP client, say), or its Tokio runtime shut down while it ran.
    /// Retryable: the next call starts a new fetch once the backoff has
    /// passed.
    FetchAborted,
    /// The refresh token was refused (`invalid_grant`: revoked, expired, or
    /// already used) and the cache has no other grant to fall back to
    /// ([`crate::TokenCache::from_refresh_token`]): the user must authorize
    /// again. [`Error::oauth_error`] has the token endpoint's answer;
    /// [`Error::is_reauthorization_required`] also sees it through a
    /// [`ErrorKind::NoToken`] error.
    ReauthorizationRequired,
    /// Authorization server discovery ([`crate::discovery`]) found no
    /// usable metadata: [`Error::discovery_failure`] says why.
    Discovery,
    /// [`crate::TokenCache::revoke`] was asked to revoke tokens, but its
    /// token endpoint has no revocation endpoint: set one with
    /// [`crate::TokenEndpoint::revocation_url`], or build the endpoint from
    /// discovery metadata that lists one. Nothing was sent, and the cache
    /// was left as it was.
    NoRevocationEndpoint,
    /// The cache's tokens were being revoked ([`crate::TokenCache::revoke`])
    /// while this caller waited for a token, so it got none. A request made
    /// after the revocation fetches a new token.
    Revoked,
    /// A [`crate::layer::KeyedOAuth2Layer`] found no token configuration
    /// for the request's key (an origin not in its list, or a key its
    /// function maps to nothing), and is set to refuse such requests
    /// ([`crate::layer::Unmapped::Error`]). Nothing was sent: no token
    /// meant for another API goes out.
    UnmappedKey,
    /// A client credential read for each request
    /// ([`crate::credentials::CredentialSource`]: a file, a callback)
    /// cannot be used: [`Error::credential_failure`] says why, and the
    /// message names the file, never its content. Retryable: the file's
    /// writer may fix it.
    Credential,
    /// An [`crate::on_behalf::OnBehalfLayer`] found no usable subject
    /// token on the request: none, an empty one, one longer than the
    /// layer's limit, or one holding a byte no token has (a control
    /// character, a space, non-ASCII). Nothing was sent and no token was
    /// requested.
    NoSubject,
    /// The request's subject token is a JWT whose `exp` has passed: no
    /// token is exchanged for it, and no token exchanged for it earlier is
    /// sent. Nothing was sent.
    SubjectExpired,
}

/// Why a client credential read for a request cannot be used (an
/// [`ErrorKind::Credential`] error's [`Error::credential_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialFailure {
    /// The file does not exist.
    Missing,
    /// The file, or the callback's value, is empty (white space only, for
    /// an assertion).
    Empty,
    /// The file cannot be read: no permission, larger than
    /// [`crate::credentials::MAX_CREDENTIAL_BYTES`], not UTF-8.
    Unreadable,
    /// The assertion is not a JWT in compact form (RFC 7519 §3.1).
    NotAJwt,
    /// The assertion's `exp` has passed, also when read a second time.
    Expired,
    /// The file holds no private key usable with the algorithm
    /// (`ClientAuth::private_key_jwt_from`, feature `jwt`).
    NotAKey,
    /// The callback returned an error.
    Callback,
}

/// Why authorization server discovery found no usable metadata (an
/// [`ErrorKind::Discovery`] error's [`Error::discovery_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscoveryFailure {
    /// The issuer asked for is not an issuer identifier: an `https` URL
    /// (`http` on loopback) with no credentials, query or fragment
    /// (RFC 8414 §2).
    InvalidIssuer,
    /// No well-known URL has metadata: each answered a client error status
    /// (404…) or a success whose body is not a JSON object.
    NotFound,
    /// The metadata's `issuer` is missing or not exactly the issuer asked
    /// for, so it must not be used (RFC 8414 §3.3, OpenID Connect Discovery
    /// §4.3).
    IssuerMismatch,
    /// The metadata has no `token_endpoint`.
    MissingTokenEndpoint,
    /// The `token_endpoint` is not a usable token URL (`http` off loopback,
    /// relative, or carrying credentials).
    InvalidTokenEndpoint,
    /// A member of the metadata has the wrong JSON type.
    InvalidMetadata,
    /// The server lists none of the client authentication methods this
    /// client can use.
    UnsupportedClientAuth,
}
