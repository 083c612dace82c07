//! The token cache: one current token, refreshed before it expires, fetched
//! once however many callers need it.
//!
//! A [`TokenCache`] is cheap to clone (an `Arc`); every clone shares one token.
//! [`crate::OAuth2Layer`] uses it for every request, and you can use the same
//! cache directly ([`TokenCache::bearer_header`], [`TokenCache::token`]) for a
//! client the layer does not wrap.
//!
//! # Lifecycle
//!
//! A cached token is in one of three states:
//!
//! - **fresh**: used as it is;
//! - **stale**: still used, and one background refresh is started;
//! - **expired** (or no token yet): never sent; callers wait for one fetch.
//!
//! With lifetime `L` (the token's `expires_in`, or
//! [`RefreshPolicy::lifetime_when_unknown`] when the server sent none), counted
//! from when the token request was *sent*:
//!
//! - the token goes **stale** `lead × (1 + U[0, jitter))` before `L` runs out,
//!   where `lead = min(refresh_before, max_fraction × L)`;
//!   defaults: `refresh_before` 5 min, `max_fraction` ¼, `jitter` ¼;
//! - it counts as **expired** `min(10 s, max(L / 20, min(1 s, L / 10)))`
//!   before `L` runs out, so it is not sent just as it dies. The second is
//!   there because servers count lifetimes in whole seconds (a JWT's `exp`;
//!   oidc-provider's `floor(now) + ttl`): a token issued at x.99 s with
//!   `expires_in` 10 is refused from x + 10 s, 9.01 s after it was sent.
//!   Under 10 s the margin is a tenth of the lifetime.
//!
//! So a 24-hour token goes stale 5–6¼ min before it expires, a 1-hour token
//! 5–6¼ min before, a 60-second token at 41–45 s, a 5-second token at
//! 3.4–3.75 s; none is refreshed on every request. A token issued with
//! `expires_in` 0 or less is rejected ([`crate::ErrorKind::InvalidToken`]).
//!
//! # Time
//!
//! Every timing decision (stale, expired, the backoff after a failure, how
//! old a flight is, when a keyed entry is idle) reads one clock. On Linux
//! and Android it is `CLOCK_BOOTTIME`, which keeps running while the
//! machine is suspended: a laptop or a VM that sleeps past a token's expiry
//! fetches a new token on waking instead of sending the expired one
//! (`CLOCK_MONOTONIC`, `std`'s `Instant`, stops during suspend). Elsewhere
//! it is the monotonic clock `std` gives. It also follows Tokio's clock: in
//! a test, `#[tokio::test(start_paused = true)]` and
//! `tokio::time::advance` move expiry, refreshes and backoffs without
//! sleeping (pause before the cache stores its first token: a token stored
//! on the real clock keeps its fast path on the real clock).
//!
//! # Single flight, generations, backoff
//!
//! A fetch runs in its own Tokio task; every caller that needs a token joins
//! the fetch in progress, and a caller that goes away never cancels it. Each
//! token gets a generation number; [`TokenCache::invalidate`] drops only the
//! generation it names, so many 401s for one token cause one fetch. A failed
//! fetch sets a backoff (exponential with jitter and a cap, cut to half the
//! time the cached token has left so a short token gets several tries, or the
//! server's `Retry-After` if longer): until it has passed, a still-valid token keeps
//! being served and callers with no valid token fail at once with
//! [`crate::ErrorKind::NoToken`], carrying the last failure.
//!
//! The cache also keeps the record of the resource servers' 401s that the
//! layer and the reqwest middleware report: once a token fetched because of
//! a 401 is refused too, they stop invalidating tokens for a while
//! ([`crate::layer::AuthPolicy::unauthorized_backoff`]). Fetches for other
//! reasons, a background refresh included, are not held back by it.
//!
//! A fetch that no runtime runs (started on a current-thread runtime whose
//! `block_on` has returned) does not hold the cache: the next caller on a
//! live runtime takes it over (ARCHITECTURE.md, invariant 2).
//!
//! # Health and readiness
//!
//! [`TokenCache::status`] says what the cache holds and does (fresh,
//! stale, expired or empty; a fetch running; the backoff after failed
//! fetches and the last failure's kind and time), with no secret and no
//! wait; [`TokenCache::warm_up`] waits for a usable token (a readiness
//! probe: no traffic before the first token); [`TokenCache::refresh_now`]
//! fetches a new one now.
//!
//! The fetch task runs on the Tokio runtime of the caller that started it.
//! With no runtime (or one shutting down) there is nothing to run it on:
//! that caller gets [`crate::ErrorKind::NoRuntime`] at once, no backoff is
//! set, and the next caller on a running runtime fetches a token. A refresh
//! token refused with no other grant to fall back to is
//! [`crate::ErrorKind::ReauthorizationRequired`].
//!
//! # Example
//!
//! ```
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use tower_oauth2::cache::TokenCache;
//! use tower_oauth2::{ClientAuth, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::Error> {
//! # let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
//! #     ))))
//! # });
//! let endpoint = TokenEndpoint::new(
//!     http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc", "secret"),
//! );
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
//! let header = cache.bearer_header().await?;
//! assert_eq!(header, "Bearer at-1");
//! assert!(header.is_sensitive());
//! cache.bearer_header().await?; // served from the cache
//! assert_eq!(cache.stats().token_fetches, 1);
//! # Ok(())
//! # }
//! ```
//!
#![doc = include_str!("../docs/logging.md")]

use crate::clock::coarse;
use crate::clock::Instant;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use http::HeaderValue;

use crate::error::Error;
use crate::store::ConfigFingerprint;
use crate::token::Token;

// One concept a file: `policy` (when a token goes stale or expires, how long
// to back off), `cached` (a token as the hot path reads it), `fetch` (one
// token request and where its result is recorded), `flight` (single flight
// and backoff), `refusals` (401s for the tokens, and their backoff),
// `builder`, `stats`, `copy` (a service handle's own copy of the token),
// `epoch` (whether a copy is still of the cached token), `status` (what
// a health endpoint asks: `status`, `warm_up`, `refresh_now`).
// This file: the handle and the hot path.
mod builder;
mod cached;
mod copy;
mod epoch;
mod fetch;
mod flight;
pub(crate) mod keyed;
mod policy;
mod refusals;
mod stats;
mod status;

pub use builder::TokenCacheBuilder;
pub(crate) use cached::Cached;
pub(crate) use copy::TokenCopy;
pub use policy::{Backoff, RefreshPolicy};
pub(crate) use refusals::{RefusalDecision, Resource};
pub use stats::Stats;
pub use status::{CacheStatus, LastError, TokenState};

use epoch::Epoch;
use fetch::Fetcher;
use flight::FlightState;
use refusals::Refusals;
use stats::{bump, Counters};

/// What the hot path found.
pub(crate) enum Lookup {
    /// A usable token: its header and generation.
    Ready(HeaderValue, u64),
    /// No usable token: wait for [`TokenCache::wait_for_token`].
    Wait,
}

/// What every clone of a cache shares.
struct Shared {
    /// The token, read without a lock by every request. Changed only
    /// through [`Shared::set_current`] and [`TokenCache::invalidate`].
    current: ArcSwapOption<Cached>,
    /// Odd while `current` changes, bumped by every change: a service
    /// handle's copy of the token (`copy.rs`) is of the current token
    /// while this still reads the (even) value read before the copy was
    /// made (`epoch.rs`).
    epoch: Epoch,
    fetcher: Fetcher,
    /// The cache's lock: the single flight and its backoff.
    flight: Mutex<FlightState>,
    next_generation: AtomicU64,
    policy: RefreshPolicy,
    backoff: Backoff,
    accept: cached::Accept,
    counters: Counters,
    /// The key requests prove possession of now (DPoP), when the endpoint
    /// has one; it may be rotated.
    proof_key: Option<crate::proof::ProofKeys>,
    /// The key each recent token is bound to (`proof.rs`, "Rotation").
    bound_keys: crate::proof::KeyHistory,
    /// The resource servers' 401s, and their backoff.
    refusals: Refusals,
}

impl Shared {
    /// `token` made ready to cache, with the next generation number;
    /// bound to `bound`'s key, if any.
    fn admit(&self, token: Token, bound: &fetch::Bound) -> Result<Cached, Error> {
        let (policy, accept, generations) = (&self.policy, self.accept, &self.next_generation);
        let cached = Cached::new(token, policy, accept, generations)?;
        if let Some(key) = &bound.key {
            self.bound_keys.bind(cached.generation, key);
        }
        Ok(cached)
    }

    /// The fingerprint token `generation` was fetched under: where a
    /// 401's mark, a revocation's removal and the fleet's backoff record
    /// for it go. (A DPoP token whose key is forgotten — many generations
    /// old, never the cached one — gets the keyless fingerprint, under
    /// which nothing of it is stored.)
    fn fingerprint_of(&self, generation: u64) -> ConfigFingerprint {
        let key = self.bound_keys.key_of(generation);
        self.fetcher.identity().fingerprint_of(key)
    }

    /// Caches `token` (or none) inside an epoch change, so that every
    /// handle's copy of the token it replaces is out of use before the
    /// change can be seen (`epoch.rs`).
    fn set_current(&self, token: Option<Arc<Cached>>) {
        self.epoch.change(|| self.current.store(token));
    }
}

/// A shared, self-refreshing access token. See the module docs.
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("TokenCache")
            .field("generation", &current.as_ref().map(|c| c.generation))
            .field("policy", &self.shared.policy)
            .field("backoff", &self.shared.backoff)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// The token request of the configured grant; `None` for a cache
    /// built from a refresh token alone. (The layer reads the API it names,
    /// `resource` or `audience`, to choose where the token goes.)
    pub(crate) fn token_request(&self) -> Option<&crate::request::TokenRequest> {
        self.shared.fetcher.primary()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The key requests prove possession of, when the token endpoint has
    /// one (DPoP): a `DPoP` token's header ([`TokenCache::bearer_header`]
    /// gives `DPoP <token>` then) must go with a proof from it.
    pub(crate) fn proof_key(&self) -> Option<&crate::proof::ProofKeys> {
        self.shared.proof_key.as_ref()
    }

    /// The key token `generation` is bound to (`proof.rs`, "Rotation").
    pub(crate) fn bound_key(&self, generation: u64) -> Option<crate::proof::ProofKey> {
        self.shared.bound_keys.key_of(generation)
    }

    /// A request found its token bound to a key that is no longer the one
    /// token requests prove: if the cached token is bound to such a key
    /// too (a request that looked its token up before the new key's token
    /// was cached finds it is not), one background refresh fetches the
    /// new key's token (unless one runs or a failure is backing off), and
    /// requests go on with the old token and key meanwhile.
    #[cold]
    pub(crate) fn key_rotated(&self) {
        let Some(keys) = self.proof_key() else { return };
        let current = self.shared.current.load();
        // With no token cached, the next request's wait fetches one.
        let Some(cached) = current.as_ref() else {
            return;
        };
        let bound = self.bound_key(cached.generation);
        if bound.is_some_and(|key| key.same_key(&keys.current())) {
            return;
        }
        self.start_background_refresh();
    }

    pub(crate) fn count_retry(&self) {
        self.shared.counters.retried();
    }

    /// The hot path: one `ArcSwap` load, one coarse clock read and one
    /// comparison, one `HeaderValue` clone. Close to `stale_at` or
    /// `expires_at` (and where there is no coarse clock), the exact check on
    /// the crate's clock decides; a stale token also starts a background refresh.
    /// (ARCHITECTURE.md, invariants 1 and 11; `clock.rs`.) A service handle
    /// used for many requests goes through its own copy instead
    /// ([`TokenCopy`]).
    #[inline]
    pub(crate) fn lookup(&self) -> Lookup {
        let guard = self.shared.current.load();
        let Some(cached) = guard.as_ref() else {
            return Lookup::Wait;
        };
        self.lookup_cached(cached, coarse::now())
    }

    /// `lookup` of `cached` at coarse time `now`.
    #[inline]
    fn lookup_cached(&self, cached: &Cached, now: coarse::Ticks) -> Lookup {
        if now.before(cached.fresh_until) {
            return Lookup::Ready(cached.header.clone(), cached.generation);
        }
        self.lookup_exact(cached)
    }

    /// `lookup` past the fast path: on the crate's clock (`CLOCK_BOOTTIME`).
    #[inline(never)]
    fn lookup_exact(&self, cached: &Cached) -> Lookup {
        let now = Instant::now();
        if cached.stale_at.is_none_or(|s| now < s) {
            return Lookup::Ready(cached.header.clone(), cached.generation);
        }
        if cached.expires_at.is_some_and(|e| now >= e) {
            return Lookup::Wait;
        }
        self.start_background_refresh();
        Lookup::Ready(cached.header.clone(), cached.generation)
    }

    /// Drops the cached token if it is still generation `generation` (the
    /// resource server refused it). A newer token is left alone. With a
    /// [`TokenStore`](crate::store::TokenStore), the dropped token is marked
    /// refused there too, in the background, so that it is never restored.
    pub fn invalidate(&self, generation: u64) {
        let current = self.shared.current.load();
        let Some(c) = current.as_ref().filter(|c| c.generation == generation) else {
            return;
        };
        let swapped = self.shared.epoch.change(|| {
            let prev = self.shared.current.compare_and_swap(&*current, None);
            matches!((&*prev, &*current), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
        });
        if swapped {
            bump(&self.shared.counters.invalidations);
            tracing::debug!(generation, "token invalidated");
            // Never restored from the store again (in the background).
            let fingerprint = self.shared.fingerprint_of(c.generation);
            self.shared.fetcher.refused(&c.token, fingerprint);
            if self.shared.fetcher.has_tier() {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let (shared, c) = (self.shared.clone(), c.clone());
                    let refused =
                        async move { shared.fetcher.tier_refused(&c.token, fingerprint).await };
                    runtime.spawn(refused);
                }
            }
        }
    }

    /// A usable `Authorization: Bearer …` header (marked sensitive) and the
    /// token's generation, fetching a token if needed.
    pub async fn bearer_header_with_generation(&self) -> Result<(HeaderValue, u64), Error> {
        match self.lookup() {
            Lookup::Ready(h, g) => Ok((h, g)),
            Lookup::Wait => {
                let c = self.wait_for_token().await?;
                Ok((c.header.clone(), c.generation))
            }
        }
    }

    /// A usable `Authorization: Bearer …` header, marked sensitive.
    pub async fn bearer_header(&self) -> Result<HeaderValue, Error> {
        Ok(self.bearer_header_with_generation().await?.0)
    }

    /// The current usable token, fetching one if needed.
    pub async fn token(&self) -> Result<Token, Error> {
        if let Lookup::Ready(_, g) = self.lookup() {
            if let Some(c) = self.shared.current.load_full() {
                if c.generation == g {
                    return Ok(c.token.clone());
                }
            }
        }
        Ok(self.wait_for_token().await?.token.clone())
    }

    /// Revokes the cache's tokens at the revocation endpoint (RFC 7009):
    /// the refresh token first, if there is one (a server may then revoke
    /// the access tokens issued with it too, RFC 7009 §2.1), then the
    /// cached access token, each with its `token_type_hint` and the
    /// client's authentication. Then the cache is empty: no token cached,
    /// the refresh token forgotten, the backoff cleared; the next request
    /// fetches a new token with the configured grant (a cache built
    /// [`from_refresh_token`](TokenCache::from_refresh_token) has none left:
    /// [`crate::ErrorKind::ReauthorizationRequired`]).
    ///
    /// A fetch in progress is waited for and its token revoked too, and no
    /// fetch starts while the revocation runs: callers that need a token
    /// meanwhile wait, then get [`crate::ErrorKind::Revoked`]. So no token
    /// fetched before `revoke` returns is left valid; call it after the
    /// last request (see the example), since a request made afterwards
    /// fetches a new token. An access token the cache dropped when a
    /// resource server refused it (a 401) is no longer held, so not revoked.
    /// The wait for a fetch in progress is bounded: at most the cache's
    /// [`wait_timeout`](TokenCacheBuilder::wait_timeout), then
    /// [`crate::ErrorKind::WaitTimeout`] with nothing revoked (call again);
    /// a fetch no runtime runs (started on a current-thread runtime that is
    /// not driven) is not waited for at all: it is taken over, and its
    /// token, if it ever comes, is never cached.
    ///
    /// Errors: [`crate::ErrorKind::NoRevocationEndpoint`] when the token
    /// endpoint has none, [`crate::ErrorKind::NoRuntime`] outside a Tokio
    /// runtime (nothing is sent, the cache is left as it was);
    /// otherwise the first failed revocation, for which
    /// [`crate::Error::is_revocation`] holds (`unsupported_token_type`, a
    /// 503 that [`is_retryable`](crate::Error::is_retryable) with its
    /// [`retry_after`](crate::Error::retry_after), a timeout…). The tokens
    /// not revoked then stay in the cache, so calling `revoke` again tries
    /// again. A [`crate::store::TokenStore`] keeps the last token saved.
    ///
    /// With the fleet's Redis tier (feature `redis`), the revoked access
    /// token is removed from Redis first, so no process takes it up again;
    /// the others move to the fleet's next token on their next 401 (see
    /// the `fleet` module, "Revocation").
    ///
    /// # Example: revoke on shutdown
    ///
    /// Stop making requests, then revoke:
    ///
    /// ```no_run
    /// # use tower_oauth2::TokenCache;
    /// # async fn work(_: TokenCache) {}
    /// # async fn run(cache: TokenCache) -> Result<(), tower_oauth2::Error> {
    /// // `cache`'s endpoint has a revocation URL:
    /// // TokenEndpoint::new(..).revocation_url(RevocationUrl::new("https://as.example.com/revoke")?)
    /// tokio::select! {
    ///     () = work(cache.clone()) => {}
    ///     _ = tokio::signal::ctrl_c() => {} // the work future is dropped: no more requests
    /// }
    /// if let Err(e) = cache.revoke().await {
    ///     eprintln!("could not revoke the tokens: {e}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn revoke(&self) -> Result<(), Error> {
        use crate::revocation::TokenTypeHint;
        let fetcher = &self.shared.fetcher;
        if !fetcher.endpoint().can_revoke() {
            return Err(Error::no_revocation_endpoint());
        }
        let mut paused = self.pause_fetches().await?;
        if let Some(refresh_token) = fetcher.refresh_token() {
            let hint = TokenTypeHint::RefreshToken;
            fetcher
                .endpoint()
                .revoke(refresh_token.clone(), hint)
                .await?;
            fetcher.forget_refresh_token(&refresh_token);
        }
        if let Some(cached) = self.shared.current.load_full() {
            // A fleet's shared token leaves the shared tier first: no
            // process takes it up again (`TierBinding::revoked`).
            let fingerprint = self.shared.fingerprint_of(cached.generation);
            if let Some(tier) = fetcher.tier(fingerprint) {
                tier.revoked(&cached.token).await;
            }
            let access_token = cached.token.access_token().clone();
            let hint = TokenTypeHint::AccessToken;
            fetcher.endpoint().revoke(access_token, hint).await?;
            // Never restored from the store again; waited for, since the
            // process may exit once this returns.
            fetcher.refused_now(&cached.token, fingerprint).await;
            // No flight can store a newer one while fetches are paused.
            self.shared.set_current(None);
        }
        paused.revoked();
        tracing::debug!("tokens revoked; the cache is empty");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::IssuedAt;

    /// A cache holding a bearer token that lives 1 s from now (so it counts
    /// as expired after 0.9 s), with no refresh lead: the fast path runs up
    /// to `expires_at` itself, and nothing refreshes the token before.
    pub(super) fn cache_with_a_short_token() -> (TokenCache, Instant) {
        let cache = crate::layer::testing::cache_with_policy(
            RefreshPolicy::default().max_fraction(0.0).jitter(0.0),
        );
        let issued = IssuedAt::now();
        let json = br#"{"access_token":"short","token_type":"Bearer","expires_in":1}"#;
        let token = Token::from_json(json, issued).unwrap();
        let cached = cache
            .shared
            .admit(token, &cache.shared.fetcher.identity().now())
            .unwrap();
        let expires_at = cached.expires_at.unwrap();
        assert_eq!(cached.stale_at, Some(expires_at));
        cache.shared.set_current(Some(Arc::new(cached)));
        (cache, expires_at)
    }

    // ARCHITECTURE.md, invariants 1 and 11: the coarse clock of the fast
    // path lags the precise one; the token is still never sent from
    // `expires_at` on. No runtime here, so no timer that could flip a state.
    #[test]
    fn a_token_is_never_sent_past_expires_at_with_no_runtime() {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let (cache, expires_at) = cache_with_a_short_token();
        assert!(matches!(cache.lookup(), Lookup::Ready(h, _) if h == "Bearer short"));
        std::thread::sleep(expires_at.saturating_duration_since(Instant::now()) / 2);
        // Up to the precise instant `expires_at`, on the precise clock...
        while Instant::now() < expires_at {
            std::hint::spin_loop();
        }
        // ...then every lookup waits for a fetch, however recently the
        // coarse clock ticked.
        for _ in 0..10_000 {
            assert!(matches!(cache.lookup(), Lookup::Wait));
        }
        assert_eq!(cache.stats().token_fetches, 0);
    }

    // ARCHITECTURE.md, invariant 1: expiry is counted on a clock that runs
    // through suspend (`CLOCK_BOOTTIME`). The machine sleeps past the
    // token's expiry: `CLOCK_MONOTONIC` (and with it `std`'s `Instant`,
    // and the coarse clock the fast path read before) has not moved, yet
    // the next request, through a service handle's own copy or through a
    // clone, gets a new token; the expired one is never sent again.
    #[tokio::test]
    async fn after_a_suspend_past_expiry_the_next_request_fetches_a_new_token() {
        use std::convert::Infallible;
        use std::sync::Mutex;
        use std::time::Duration;

        use bytes::Bytes;
        use http_body_util::Full;
        use tower::{Layer, Service, ServiceExt};

        let cache = crate::layer::testing::cache(); // 300 s tokens
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        let api = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
            let header = req.headers().get(http::header::AUTHORIZATION).cloned();
            seen.lock()
                .unwrap()
                .push(header.map(|h| h.to_str().unwrap().to_owned()));
            async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
        });
        let mut svc = crate::OAuth2Layer::new(cache.clone()).layer(api);
        let get = || {
            http::Request::get("https://api.example.com/items")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        // One handle for three requests: from the second on, it answers
        // from its own copy of the token.
        for _ in 0..3 {
            svc.ready().await.unwrap().call(get()).await.unwrap();
        }
        let std_before = std::time::Instant::now();
        super::super::clock::suspend::simulate(Duration::from_secs(301));
        assert!(std_before.elapsed() < Duration::from_secs(300));
        svc.ready().await.unwrap().call(get()).await.unwrap();
        svc.clone().oneshot(get()).await.unwrap();
        let sent = sent.lock().unwrap().clone();
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        assert_eq!(
            sent,
            [
                bearer("at-1"),
                bearer("at-1"),
                bearer("at-1"),
                bearer("at-2"),
                bearer("at-2")
            ]
        );
        assert_eq!(cache.stats().token_fetches, 2);
        assert_eq!(cache.stats().background_refreshes, 0);
    }
}
