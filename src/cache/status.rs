//! What a cache can tell a health endpoint or a readiness probe:
//! [`TokenCache::status`], [`TokenCache::warm_up`],
//! [`TokenCache::refresh_now`].
//!
//! A status holds no secret: the token's state and generation, when it
//! stops being sent, whether a fetch runs, the backoff after failed fetches
//! and the last failure's kind, HTTP status, RFC 6749 `error` code and time.
//! Its `Display` is one line fit for a log or a health page.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::clock::Instant;

use http::StatusCode;

use super::TokenCache;
use crate::error::{Error, ErrorCode, ErrorKind};

/// The cached token's state (see the `cache` module docs, "Lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenState {
    /// A token is cached and used as it is.
    Fresh,
    /// A token is cached and still used; a background refresh is due (or
    /// running, or backing off after a failure).
    Stale,
    /// The cached token is past its expiry margin: never sent; the next
    /// request waits for a fetch.
    Expired,
    /// No token: none fetched yet, or the last one was refused by a
    /// resource server (a 401) or revoked.
    Empty,
}

impl TokenState {
    /// Its name in lowercase, as `Display` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Fresh => "fresh",
            TokenState::Stale => "stale",
            TokenState::Expired => "expired",
            TokenState::Empty => "empty",
        }
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last failed token fetch, as [`CacheStatus`] reports it: what kind
/// of failure and when, never a message (an error description may quote
/// what a server echoed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastError {
    /// Its [`Error::kind`].
    pub kind: ErrorKind,
    /// The token endpoint's HTTP status, when it answered.
    pub status: Option<StatusCode>,
    /// The RFC 6749 §5.2 `error` code, when the endpoint sent one.
    pub oauth_error: Option<ErrorCode>,
    /// When the fetch failed (the wall clock).
    pub at: SystemTime,
}

impl LastError {
    /// `e`, failed now.
    pub(super) fn of(e: &Error) -> LastError {
        LastError {
            kind: e.kind(),
            status: e.status(),
            oauth_error: e.oauth_error().map(|r| r.error().clone()),
            at: SystemTime::now(),
        }
    }
}

/// What the cache's lock knows, read by [`TokenCache::status`].
pub(super) struct FlightStatus {
    pub(super) fetching: bool,
    pub(super) failures: u32,
    /// The end of the backoff, while it runs.
    pub(super) retry_at: Option<Instant>,
    pub(super) last_failure: Option<LastError>,
}

/// A snapshot of a [`TokenCache`]: [`TokenCache::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatus {
    /// The cached token's state.
    pub token: TokenState,
    /// The cached token's generation (counts up from 1 with every token
    /// cached), when one is cached.
    pub generation: Option<u64>,
    /// When the cached token stops being sent (its expiry, less the
    /// margin), on the wall clock; `None` with no token or no known expiry.
    pub expires_at: Option<SystemTime>,
    /// Whether a token fetch is running.
    pub fetching: bool,
    /// Failed fetches in a row (0 after a success).
    pub failures: u32,
    /// While failed fetches back off: until when. Meanwhile a valid token
    /// keeps being served, and a caller with none fails at once with
    /// [`ErrorKind::NoToken`].
    pub backoff_until: Option<SystemTime>,
    /// The last failed fetch, kept after a later success (then `failures`
    /// is 0).
    pub last_error: Option<LastError>,
    /// While a resource server refuses new tokens too (the 401 backoff,
    /// [`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff)):
    /// until when its refusals pass through with no new token (the
    /// latest, when several refuse). Not a fetch failure.
    pub unauthorized_backoff_until: Option<SystemTime>,
}

impl CacheStatus {
    /// Whether a request would get a token now with no wait: a fresh or
    /// stale token is cached. (A readiness check; [`TokenCache::warm_up`]
    /// waits for one.)
    pub fn is_ready(&self) -> bool {
        matches!(self.token, TokenState::Fresh | TokenState::Stale)
    }
}

/// `at` (an instant) on the wall clock, read once as `now`.
fn wall(at: Instant, now: (Instant, SystemTime)) -> SystemTime {
    let (instant, system) = now;
    if at >= instant {
        system.checked_add(at.saturating_duration_since(instant))
    } else {
        system.checked_sub(instant.saturating_duration_since(at))
    }
    .unwrap_or(system)
}

/// Seconds from now until `at` (0 once past), for `Display`.
fn seconds_until(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl fmt::Display for CacheStatus {
    /// One line: `fresh (generation 3), expires in 241.3 s` then, as they
    /// apply, `, fetching`, `, 2 failures in a row`, `, backing off for
    /// 3.9 s`, `, refused tokens: 401s passed through for 1.5 s`, `, last
    /// error: OAuth (400 Bad Request, invalid_client) 12.0 s ago`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.token)?;
        if let Some(g) = self.generation {
            write!(f, " (generation {g})")?;
        }
        if let Some(at) = self.expires_at {
            write!(f, ", expires in {:.1} s", seconds_until(at))?;
        }
        if self.fetching {
            f.write_str(", fetching")?;
        }
        if self.failures > 0 {
            write!(f, ", {} failures in a row", self.failures)?;
        }
        if let Some(until) = self.backoff_until {
            write!(f, ", backing off for {:.1} s", seconds_until(until))?;
        }
        if let Some(until) = self.unauthorized_backoff_until {
            let left = seconds_until(until);
            write!(f, ", refused tokens: 401s passed through for {left:.1} s")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, ", last error: {:?}", e.kind)?;
            match (e.status, &e.oauth_error) {
                (Some(s), Some(code)) => write!(f, " ({s}, {})", code.as_str())?,
                (Some(s), None) => write!(f, " ({s})")?,
                (None, Some(code)) => write!(f, " ({})", code.as_str())?,
                (None, None) => {}
            }
            let ago = SystemTime::now().duration_since(e.at).unwrap_or_default();
            write!(f, " {:.1} s ago", ago.as_secs_f64())?;
        }
        Ok(())
    }
}

impl TokenCache {
    /// What the cache holds and does now, for a health endpoint: the
    /// token's state, a fetch running, the backoff after failed fetches
    /// and the last failure. No secret, no network, no wait (one short
    /// lock).
    ///
    /// The 401 backoff (a resource server refusing new tokens too) is not
    /// a fetch failure: it has a field of its own,
    /// [`CacheStatus::unauthorized_backoff_until`].
    ///
    /// # Example: a readiness probe and a health page
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// use tower_oauth2::cache::{TokenCache, TokenState};
    /// # use tower_oauth2::{ClientAuth, TokenEndpoint, TokenRequest, TokenUrl};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_oauth2::Error> {
    /// # let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
    /// #         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
    /// #     ))))
    /// # });
    /// # let endpoint = TokenEndpoint::new(
    /// #     http,
    /// #     TokenUrl::new("https://as.example.com/token")?,
    /// #     ClientAuth::client_secret_basic("svc", "secret"),
    /// # );
    /// let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    /// assert_eq!(cache.status().token, TokenState::Empty);
    ///
    /// // Before taking traffic: the first token, or why there is none.
    /// cache.warm_up().await?;
    ///
    /// let status = cache.status();
    /// assert_eq!(status.token, TokenState::Fresh);
    /// assert!(status.is_ready());
    /// assert!(status.backoff_until.is_none() && status.last_error.is_none());
    /// assert!(status.to_string().starts_with("fresh (generation 1)"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn status(&self) -> CacheStatus {
        let now = (Instant::now(), SystemTime::now());
        let flight = self.flight_state().status(now.0);
        let current = self.shared.current.load_full();
        let token = match &current {
            None => TokenState::Empty,
            Some(c) if !c.is_valid_at(now.0) => TokenState::Expired,
            Some(c) if c.stale_at.is_some_and(|s| now.0 >= s) => TokenState::Stale,
            Some(_) => TokenState::Fresh,
        };
        CacheStatus {
            token,
            generation: current.as_ref().map(|c| c.generation),
            expires_at: current
                .as_ref()
                .and_then(|c| c.expires_at)
                .map(|at| wall(at, now)),
            fetching: flight.fetching,
            failures: flight.failures,
            backoff_until: flight.retry_at.map(|at| wall(at, now)),
            last_error: flight.last_failure,
            unauthorized_backoff_until: self
                .unauthorized_backoff_until(now.0)
                .map(|at| wall(at, now)),
        }
    }

    /// Waits until a token is cached that may be sent, fetching one if
    /// there is none: for a readiness probe, so that a service takes no
    /// traffic before its first token. Returns at once while a valid
    /// token is cached (a stale one starts its background refresh, as a
    /// request would).
    ///
    /// Errors as a request's: the fetch's failure; during the backoff
    /// after one, [`ErrorKind::NoToken`] at once, carrying it; at most the
    /// cache's [`wait_timeout`](super::TokenCacheBuilder::wait_timeout).
    pub async fn warm_up(&self) -> Result<(), Error> {
        self.bearer_header_with_generation().await.map(|_| ())
    }

    /// Fetches a new token now, even if the cached one is fresh and even
    /// during the backoff after failed fetches (an operator's action: the
    /// client secret was rotated, the server's keys changed), and waits for
    /// it. A fetch already running is joined instead of starting a second
    /// one. Meanwhile the cached token keeps being sent; it is replaced
    /// when the new one comes, and kept if the fetch fails (which counts
    /// as a failure and sets the backoff, as any fetch's).
    ///
    /// With the fleet's Redis tier, a newer token another process
    /// published is taken instead of fetching one; the token this cache
    /// holds is never taken back from Redis.
    ///
    /// Not for every request, nor a loop: each call sends a token request.
    pub async fn refresh_now(&self) -> Result<(), Error> {
        self.wait_for_refresh().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_is_placed_on_the_wall_clock_either_side_of_now() {
        let (i, s) = (Instant::now(), SystemTime::now());
        let ten = Duration::from_secs(10);
        assert_eq!(wall(i + ten, (i, s)), s + ten);
        assert_eq!(wall(i, (i, s)), s);
        if let Some(before) = i.checked_sub(ten) {
            assert_eq!(wall(before, (i, s)), s - ten);
        }
    }

    #[test]
    fn the_status_line_names_the_state_and_the_last_failure_without_a_message() {
        let status = CacheStatus {
            token: TokenState::Stale,
            generation: Some(3),
            expires_at: None,
            fetching: true,
            failures: 2,
            backoff_until: None,
            last_error: Some(LastError {
                kind: ErrorKind::OAuth,
                status: Some(StatusCode::BAD_REQUEST),
                oauth_error: Some(ErrorCode::InvalidClient),
                at: SystemTime::now(),
            }),
            unauthorized_backoff_until: None,
        };
        let line = status.to_string();
        assert!(
            line.starts_with(
                "stale (generation 3), fetching, 2 failures in a row, \
                 last error: OAuth (400 Bad Request, invalid_client) "
            ),
            "{line}"
        );
        assert!(line.ends_with(" s ago"), "{line}");
        assert!(status.is_ready());
    }
}
