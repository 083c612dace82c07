//! How an [`Error`] reads: its `Debug` (secret-free, with the cause chain)
//! and its `Display` (what happened, and what to do), one arm per kind.

use std::fmt;

use super::*;

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("tower_oauth2::Error");
        d.field("kind", &self.kind());
        match &self.inner.kind {
            Kind::OAuth(r) => d.field("response", r),
            Kind::HttpStatus { status, excerpt } => {
                d.field("status", status).field("excerpt", excerpt)
            }
            Kind::Redirect { status } => d.field("status", status),
            // The whole chain, as text: the cause a TLS or DNS failure
            // names sits several sources deep.
            Kind::Transport(e) => d.field("source", &error_chain(&**e)),
            Kind::Timeout(t) | Kind::WaitTimeout(t) => d.field("after", t),
            Kind::BodyTooLarge { limit } => d.field("limit", limit),
            Kind::InvalidResponse { status, source } => {
                d.field("status", status).field("source", source)
            }
            Kind::InvalidRequest(r)
            | Kind::InvalidAuthorizationRequest(r)
            | Kind::InvalidDestination(r)
            | Kind::RandomSource(r)
            | Kind::InvalidToken(r) => d.field("reason", r),
            Kind::NoToken(e) => d.field("last_error", e),
            Kind::NoRuntime
            | Kind::FetchAborted
            | Kind::NoRevocationEndpoint
            | Kind::Revoked
            | Kind::UnmappedKey
            | Kind::SubjectExpired => &mut d,
            Kind::NoSubject(why) => d.field("why", why),
            Kind::ReauthorizationRequired(e) => d.field("refusal", e),
            Kind::Credential { failure, detail } => {
                d.field("failure", failure).field("detail", detail)
            }
            Kind::Discovery { url, detail, cause } => {
                d.field("url", url).field("detail", detail);
                match cause {
                    DiscoveryCause::Unusable(f) => d.field("failure", f),
                    DiscoveryCause::Fetch(e) => d.field("cause", e),
                }
            }
            Kind::Revocation { at, cause } => {
                if let Some((token, url)) = at {
                    d.field("token", token).field("url", url);
                }
                d.field("cause", cause)
            }
        };
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        d.finish()
    }
}

const RANDOM_SOURCE_FAILED: &str =
    "no state or PKCE verifier can be drawn: the operating system's random source failed";
const NO_RUNTIME: &str = "no token can be fetched: no Tokio runtime is running here, or it is \
     shutting down; use the token cache from within a running Tokio runtime";
const FETCH_ABORTED: &str = "the token fetch ended without an answer (it panicked, or its \
     Tokio runtime shut down); the next call starts a new fetch";
const REAUTHORIZE: &str =
    "the refresh token was refused and there is no other grant: the user must authorize again";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, &TOKEN_WORDS)?;
        if let Some(r) = self.inner.retry_after {
            write!(f, " (retry after {}s)", r.as_secs())?;
        }
        Ok(())
    }
}

impl Error {
    /// What happened, the exchange named in `words` (a revocation error's
    /// cause speaks of the revocation endpoint), without `Retry-After`.
    fn describe(&self, f: &mut fmt::Formatter<'_>, words: &Words) -> fmt::Result {
        let Words { endpoint, .. } = words;
        match &self.inner.kind {
            Kind::OAuth(r) => r.describe(f, endpoint),
            Kind::HttpStatus { status, excerpt } if excerpt.is_empty() => {
                write!(f, "{endpoint} answered {status} with an empty body")
            }
            Kind::HttpStatus { status, excerpt } => write!(
                f,
                "{endpoint} answered {status} with a body that is not an OAuth2 error: {excerpt:?}"
            ),
            Kind::Redirect { status } => write!(
                f,
                "{endpoint} answered with a redirect ({status}); it is not followed because \
                 it would send the client credentials elsewhere: configure the final {}",
                words.url
            ),
            Kind::Transport(_) => write!(f, "could not reach the {endpoint}"),
            Kind::Timeout(after) => write!(f, "{endpoint} did not answer within {after:?}"),
            Kind::BodyTooLarge { limit } => {
                write!(
                    f,
                    "{endpoint}'s answer is larger than the {limit}-byte limit"
                )
            }
            Kind::WaitTimeout(after) => write!(
                f,
                "no token within {after:?}: gave up waiting for the token fetch, which goes on; \
                 a later call gets its token"
            ),
            Kind::InvalidResponse { status, source } => {
                write!(f, "{endpoint} answered {status} but {source}")
            }
            Kind::InvalidRequest(r) => write!(f, "cannot build the {}: {r}", words.request),
            Kind::InvalidAuthorizationRequest(r) => {
                write!(f, "cannot build the authorization request: {r}")
            }
            Kind::InvalidDestination(r) => write!(f, "invalid token destination: {r}"),
            Kind::RandomSource(r) => write!(f, "{RANDOM_SOURCE_FAILED} ({r})"),
            Kind::InvalidToken(r) => write!(f, "the issued token cannot be used: {r}"),
            Kind::NoToken(e) => write!(f, "no access token is available; last failure: {e}"),
            Kind::NoRuntime => f.write_str(NO_RUNTIME),
            Kind::FetchAborted => f.write_str(FETCH_ABORTED),
            Kind::ReauthorizationRequired(None) => f.write_str(REAUTHORIZE),
            Kind::ReauthorizationRequired(Some(e)) => write!(f, "{REAUTHORIZE} ({e})"),
            Kind::Discovery {
                url: Some(url),
                detail,
                ..
            } => write!(
                f,
                "authorization server discovery failed at {url}: {detail}"
            ),
            Kind::Discovery { detail, .. } => {
                write!(f, "authorization server discovery failed: {detail}")
            }
            Kind::NoRevocationEndpoint => f.write_str(NO_REVOCATION_ENDPOINT),
            Kind::Credential { detail, .. } => {
                write!(f, "the client credential cannot be used: {detail}")
            }
            Kind::Revoked => f.write_str(REVOKED),
            Kind::UnmappedKey => f.write_str(
                "no token is configured for this request's destination (key); nothing was sent",
            ),
            Kind::NoSubject(None) => f.write_str(
                "the request carries no subject token to exchange: put a `SubjectToken` in its \
                 extensions (`SubjectToken::from_headers` of the inbound request), or take it \
                 from the request with `subject_from`; nothing was sent",
            ),
            Kind::NoSubject(Some(why)) => {
                write!(f, "the request's subject token {why}; nothing was sent")
            }
            Kind::SubjectExpired => {
                f.write_str("the request's subject token has expired (its `exp`); nothing was sent")
            }
            Kind::Revocation { at, cause } => {
                if let Some((token, url)) = at {
                    write!(f, "revoking {token} at {url} failed: ")?;
                }
                cause.describe(f, &REVOCATION_WORDS)
            }
        }
    }
}

/// `e` and its sources, as `outer: inner: …`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(next) = cur {
        s.push_str(": ");
        s.push_str(&next.to_string());
        cur = next.source();
    }
    s
}
