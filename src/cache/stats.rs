//! The cache's counters: [`Stats`] is their public snapshot.
//!
//! With the `metrics` feature, a counter's methods here also emit its
//! metric ([`crate::metrics`]), so a counter and its metric are bumped in one
//! place, on the same (slow) paths.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;
use crate::token::Token;
#[cfg(feature = "metrics")]
use {
    super::{cached::Cached, policy::RefreshPolicy},
    crate::metrics::{self, CacheLabel, Unauthorized},
};

/// A snapshot of a cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Token requests sent to the token endpoint.
    pub token_fetches: u64,
    /// Token requests that failed (any reason, including unusable tokens).
    pub fetch_failures: u64,
    /// Fetches started in the background because the token went stale.
    pub background_refreshes: u64,
    /// Calls that had to wait for a fetch (no valid token was cached).
    pub waits: u64,
    /// Tokens dropped by [`TokenCache::invalidate`](super::TokenCache::invalidate)
    /// (a 401 for them).
    pub invalidations: u64,
    /// Requests resent after a 401 (counted by the layer).
    pub retries: u64,
    /// Calls that failed at once because of a recent fetch failure.
    pub fail_fast: u64,
    /// Tokens the [`crate::store::TokenStore`] failed to save (each one logged).
    pub store_failures: u64,
    /// Calls that gave up waiting for a fetch at the cache's
    /// [`wait_timeout`](super::TokenCacheBuilder::wait_timeout)
    /// ([`crate::ErrorKind::WaitTimeout`]); the fetch went on. Each is
    /// also one of [`Stats::waits`].
    pub wait_timeouts: u64,
    /// 401s passed through with no new token because tokens fetched after
    /// a 401 were refused too, so new tokens do not help: the backoff of
    /// [`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff)
    /// (counted by the layer; each start of a backoff step is logged at WARN).
    pub unauthorized_backed_off: u64,
    /// 401s passed through with no new token because their challenges name
    /// other schemes only (`WWW-Authenticate: Basic realm=…`): they ask for
    /// other credentials, not for a new token (counted by the layer).
    pub unauthorized_other_scheme: u64,
}

/// The live counters, one per [`Stats`] field. Only slow paths write them:
/// a request served from the cache counts nothing.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) token_fetches: AtomicU64,
    pub(super) fetch_failures: AtomicU64,
    pub(super) background_refreshes: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) invalidations: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) fail_fast: AtomicU64,
    pub(super) store_failures: AtomicU64,
    pub(super) wait_timeouts: AtomicU64,
    pub(super) unauthorized_backed_off: AtomicU64,
    pub(super) unauthorized_other_scheme: AtomicU64,
    /// The `cache` label of this cache's metrics.
    #[cfg(feature = "metrics")]
    pub(super) metrics: CacheLabel,
}

impl Counters {
    pub(super) fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            token_fetches: get(&self.token_fetches),
            fetch_failures: get(&self.fetch_failures),
            background_refreshes: get(&self.background_refreshes),
            waits: get(&self.waits),
            invalidations: get(&self.invalidations),
            retries: get(&self.retries),
            fail_fast: get(&self.fail_fast),
            store_failures: get(&self.store_failures),
            wait_timeouts: get(&self.wait_timeouts),
            unauthorized_backed_off: get(&self.unauthorized_backed_off),
            unauthorized_other_scheme: get(&self.unauthorized_other_scheme),
        }
    }

    /// Counters whose metrics carry `label` as their `cache` label.
    #[cfg(feature = "metrics")]
    pub(super) fn labelled(label: CacheLabel) -> Self {
        Counters {
            metrics: label,
            ..Counters::default()
        }
    }

    /// Sends one token request, counted in `token_fetches`. With
    /// `metrics`, it is timed, and counted at once if it fails; a token it
    /// brings is counted once the cache admits or refuses it
    /// ([`Counters::token_admitted`]).
    pub(super) async fn token_request(
        &self,
        request: impl Future<Output = Result<Token, Error>>,
    ) -> Result<Token, Error> {
        bump(&self.token_fetches);
        #[cfg(feature = "metrics")]
        let sent = std::time::Instant::now();
        let answer = request.await;
        #[cfg(feature = "metrics")]
        {
            metrics::record_token_request_duration(&self.metrics, sent.elapsed());
            if let Err(e) = &answer {
                metrics::record_token_request_error(&self.metrics, e);
            }
        }
        answer
    }

    /// The token a request brought, made ready to cache (a success, with
    /// its lifetime) or refused (`invalid_token`).
    #[cfg(feature = "metrics")]
    pub(super) fn token_admitted(&self, admitted: &Result<Cached, Error>, policy: &RefreshPolicy) {
        match admitted {
            Ok(c) => {
                let lifetime = policy.lifetime(c.token.expires_in());
                metrics::record_token_cached(&self.metrics, lifetime);
            }
            Err(e) => metrics::record_token_request_error(&self.metrics, e),
        }
    }

    /// A call found no valid token and waits for a fetch.
    pub(super) fn waited(&self) {
        bump(&self.waits);
        #[cfg(feature = "metrics")]
        metrics::record_wait(&self.metrics);
    }

    /// A 401 passed through during the 401 backoff (ARCHITECTURE.md,
    /// invariant 6).
    pub(super) fn backed_off(&self) {
        bump(&self.unauthorized_backed_off);
        #[cfg(feature = "metrics")]
        metrics::record_unauthorized(&self.metrics, Unauthorized::BackedOff);
    }

    /// A 401 passed through because its challenges name other schemes only.
    pub(super) fn other_scheme(&self) {
        bump(&self.unauthorized_other_scheme);
        #[cfg(feature = "metrics")]
        metrics::record_unauthorized(&self.metrics, Unauthorized::PassedThrough);
    }

    /// A request is resent with a new token after a 401.
    pub(super) fn retried(&self) {
        bump(&self.retries);
        #[cfg(feature = "metrics")]
        metrics::record_unauthorized(&self.metrics, Unauthorized::Retried);
    }
}

/// Adds one to a counter.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
