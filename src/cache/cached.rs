//! A fetched token as the hot path reads it ([`Cached`]): its
//! `Authorization` header, encoded once, its generation, and when it goes
//! stale and expires. A token that cannot be sent safely never becomes one.

use bytes::Bytes;
use http::HeaderValue;
use std::sync::atomic::{AtomicU64, Ordering};

use super::policy::{unit_random, RefreshPolicy};
use crate::clock::coarse::{self, Ticks};
use crate::clock::Instant;
use crate::error::Error;
use crate::secret::SecretString;
use crate::token::Token;

/// The token as the hot path uses it.
pub(crate) struct Cached {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    /// Until then (on the coarse clock) the token is certainly neither
    /// stale nor expired: the hot path needs no precise clock read.
    pub(super) fresh_until: Ticks,
    pub(super) stale_at: Option<Instant>,
    pub(super) expires_at: Option<Instant>,
    pub(super) token: Token,
}

impl Cached {
    /// `token` made ready to send, or why it cannot be: not a bearer token
    /// (unless `accept_any_token_type`), bytes not allowed in a header, or
    /// already expired. It takes the next number of `generations` only
    /// when it is usable.
    pub(super) fn new(
        token: Token,
        policy: &RefreshPolicy,
        accept: Accept,
        generations: &AtomicU64,
    ) -> Result<Cached, Error> {
        let header = if accept.dpop && is_dpop(&token) {
            authorization_header(b"DPoP ", token.access_token())?
        } else if token.token_type().is_bearer() || accept.any {
            bearer_header(token.access_token())?
        } else {
            return Err(Error::invalid_token(format!(
                "its token_type is {:?}, not Bearer; only bearer tokens are sent \
                 (TokenCacheBuilder::accept_any_token_type sends it as one anyway)",
                token.token_type().as_str()
            )));
        };
        let lifetime = policy.lifetime(token.expires_in());
        if lifetime.is_zero() {
            return Err(Error::invalid_token(
                "it expired on arrival (expires_in was 0 or negative)",
            ));
        }
        let (stale_at, expires_at) =
            policy.schedule(token.issued_at().on_clock(), lifetime, unit_random());
        if expires_at.is_some_and(|e| Instant::now() >= e) {
            return Err(Error::invalid_token(
                "it expired before it arrived (the token endpoint took longer than its lifetime)",
            ));
        }
        let first = match (stale_at, expires_at) {
            (Some(s), Some(e)) => Some(s.min(e)),
            (s, e) => s.or(e),
        };
        Ok(Cached {
            header,
            generation: generations.fetch_add(1, Ordering::Relaxed),
            fresh_until: coarse::deadline(first),
            stale_at,
            expires_at,
            token,
        })
    }

    /// Whether it may still be sent at `now`.
    pub(super) fn is_valid_at(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// Which token types a cache sends: `Bearer` always; `DPoP` with a proof
/// when DPoP is on (feature `dpop`); any other as a bearer token when
/// `any` (`TokenCacheBuilder::accept_any_token_type`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Accept {
    pub(crate) any: bool,
    pub(crate) dpop: bool,
}

/// RFC 9449 §5: `token_type` `DPoP` (case-insensitively).
fn is_dpop(token: &Token) -> bool {
    token.token_type().as_str().eq_ignore_ascii_case("dpop")
}

/// `Bearer <token>` as a sensitive header value, refusing any byte outside
/// visible ASCII: a CR, LF or NUL would split or end the header (request
/// smuggling), and RFC 6750's `b64token` allows none of them, nor spaces.
fn bearer_header(access_token: &SecretString) -> Result<HeaderValue, Error> {
    authorization_header(b"Bearer ", access_token)
}

/// `<scheme> <token>` (`scheme` with its space), as [`bearer_header`].
fn authorization_header(scheme: &[u8], access_token: &SecretString) -> Result<HeaderValue, Error> {
    let t = access_token.expose_secret();
    if t.is_empty() || !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::invalid_token(
            "the access token holds a byte not allowed in an HTTP header \
             (control character, space or non-ASCII); it was not sent",
        ));
    }
    sensitive_header(&[scheme, t.as_bytes()]).ok_or_else(|| {
        Error::invalid_token("the access token is not a valid header value; it was not sent")
    })
}

/// `parts` joined, as a sensitive header value (`None` if not a valid one).
pub(super) fn sensitive_header(parts: &[&[u8]]) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_maybe_shared(Bytes::from(parts.concat())).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn forbidden_bytes_never_become_a_header() {
        for bad in [
            "ZQX\r\nX-Injected: 1",
            "ZQX\nyz",
            "ZQX\0yz",
            "ZQX yz",
            "ZQXö",
            "ZQX\tyz",
            "ZQX\x7f",
            "",
        ] {
            let e = bearer_header(&SecretString::from(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidToken, "{bad:?}");
            assert!(!format!("{e} {e:?}").contains("ZQX"), "{e}");
        }
        let h = bearer_header(&SecretString::from("abc-._~+/=")).unwrap();
        assert_eq!(h, "Bearer abc-._~+/=");
        assert!(h.is_sensitive());
    }
}
