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

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;
use http_body::Body;
use http_body_util::Full;
use tokio::sync::watch;
use tower_service::Service;
use tracing::Instrument;

use crate::endpoint::TokenEndpoint;
use crate::error::{BoxError, Error, ErrorCode};
use crate::request::TokenRequest;
use crate::secret::SecretString;
use crate::store::TokenStore;
use crate::token::Token;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Something that can run a token request: [`TokenEndpoint`] over any
/// suitable HTTP service.
trait Fetch: Send + Sync + 'static {
    fn fetch(&self, request: TokenRequest) -> BoxFuture<Result<Token, Error>>;
}

/// The endpoint behind a mutex, so the HTTP service need not be `Sync`
/// (`BoxCloneService` is not): it is only cloned, once per fetch.
struct SharedEndpoint<T>(Mutex<TokenEndpoint<T>>);

impl<T, B> Fetch for SharedEndpoint<T>
where
    T: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn fetch(&self, request: TokenRequest) -> BoxFuture<Result<Token, Error>> {
        let endpoint = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Box::pin(endpoint.request(&request))
    }
}

/// When to refresh (see the module docs for the rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    refresh_before: Duration,
    max_fraction: f64,
    jitter: f64,
    lifetime_when_unknown: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_before: Duration::from_secs(300),
            max_fraction: 0.25,
            jitter: 0.25,
            lifetime_when_unknown: Duration::from_secs(3600),
        }
    }
}

impl RefreshPolicy {
    /// The most time before expiry at which a refresh starts (default 5 min).
    pub fn refresh_before(mut self, lead: Duration) -> Self {
        self.refresh_before = lead;
        self
    }

    /// The largest fraction of a token's lifetime the refresh lead may be
    /// before jitter (default 0.25), clamped to `0.0..=0.5`.
    pub fn max_fraction(mut self, fraction: f64) -> Self {
        self.max_fraction = fraction_or_default(fraction);
        self
    }

    /// Random extra lead, as a fraction of the lead (default 0.25, clamped to
    /// `0.0..=0.5`), so a fleet started together does not refresh together.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = fraction_or_default(jitter);
        self
    }

    /// The lifetime assumed when the server sends no `expires_in` (default
    /// 1 hour, the common server default). If the token dies sooner, the
    /// resource server's 401 triggers a refetch.
    pub fn lifetime_when_unknown(mut self, lifetime: Duration) -> Self {
        self.lifetime_when_unknown = lifetime;
        self
    }

    /// `(stale_at, expires_at)` for a token issued at `issued` with lifetime
    /// `lifetime`; `None` means "never" (the instant cannot be represented).
    fn schedule(
        &self,
        issued: Instant,
        lifetime: Duration,
        unit_random: f64,
    ) -> (Option<Instant>, Option<Instant>) {
        // In f64 seconds, then back: no `Duration` overflow for absurd
        // lifetimes. `max_fraction` ≤ 0.5 and `jitter` ≤ 0.5, so a token is
        // fresh for at least a quarter of its lifetime.
        let base = self
            .refresh_before
            .as_secs_f64()
            .min(lifetime.as_secs_f64() * self.max_fraction);
        let lead = Duration::try_from_secs_f64(base * (1.0 + self.jitter * unit_random))
            .unwrap_or(Duration::MAX);
        // At least 1 s (a whole-second server clock can take that much off
        // the lifetime), but at most a tenth of a very short lifetime.
        let margin = Duration::from_secs(10)
            .min((lifetime / 20).max(Duration::from_secs(1).min(lifetime / 10)));
        let expires_at = issued.checked_add(lifetime.saturating_sub(margin));
        let stale_at = issued.checked_add(lifetime.saturating_sub(lead));
        let stale_at = match (stale_at, expires_at) {
            (Some(s), Some(e)) => Some(s.min(e)),
            (s, _) => s,
        };
        (stale_at, expires_at)
    }
}

/// A policy fraction clamped to `0.0..=0.5`; NaN or infinite means the
/// default, 0.25.
fn fraction_or_default(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 0.5)
    } else {
        0.25
    }
}

/// How long to wait after a failed fetch before the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// `initial` after the first failure, doubling per failure up to `max`,
    /// each multiplied by a random factor in `[0.5, 1)` (defaults: 1 s, 30 s).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The wait after `failures` failures in a row. `valid_for` is how long
    /// the cached token stays usable: the wait is cut to half of that (but
    /// not below 50 ms) so a short-lived token gets several tries before it
    /// expires. A server's `Retry-After` is honoured over both, up to
    /// `max(max, 5 min)`.
    fn delay(
        &self,
        failures: u32,
        unit_random: f64,
        retry_after: Option<Duration>,
        valid_for: Option<Duration>,
    ) -> Duration {
        const FLOOR: Duration = Duration::from_millis(50);
        let exp = self
            .initial
            .saturating_mul(
                1u32.checked_shl(failures.saturating_sub(1).min(31))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let mut jittered = exp.mul_f64(0.5 + 0.5 * unit_random);
        if let Some(valid) = valid_for {
            jittered = jittered.min((valid / 2).max(FLOOR));
        }
        match retry_after {
            Some(r) => jittered.max(r.min(self.max.max(Duration::from_secs(300)))),
            None => jittered,
        }
    }
}

fn unit_random() -> f64 {
    // Jitter only; a failing OS source falls back to the clock's low bits.
    let bits = getrandom::u32().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    });
    f64::from(bits) / (f64::from(u32::MAX) + 1.0)
}

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
    /// Tokens dropped by [`TokenCache::invalidate`] (a 401 for them).
    pub invalidations: u64,
    /// Requests resent after a 401 (counted by the layer).
    pub retries: u64,
    /// Calls that failed at once because of a recent fetch failure.
    pub fail_fast: u64,
    /// Tokens the [`crate::store::TokenStore`] failed to save (each one logged).
    pub store_failures: u64,
}

#[derive(Default)]
struct Counters {
    token_fetches: AtomicU64,
    fetch_failures: AtomicU64,
    background_refreshes: AtomicU64,
    waits: AtomicU64,
    invalidations: AtomicU64,
    retries: AtomicU64,
    fail_fast: AtomicU64,
    store_failures: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The token as the hot path uses it.
pub(crate) struct Cached {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    stale_at: Option<Instant>,
    expires_at: Option<Instant>,
    token: Token,
}

/// What the hot path found.
pub(crate) enum Lookup {
    /// A usable token: its header and generation.
    Ready(HeaderValue, u64),
    /// No usable token: wait for [`TokenCache::wait_for_token`].
    Wait,
}

type Outcome = Option<Result<Arc<Cached>, Error>>;

struct FetchState {
    flight: Option<watch::Receiver<Outcome>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    primary: Option<TokenRequest>,
    refresh_token: Option<SecretString>,
}

type RefreshTokenCallback = Arc<dyn Fn(&SecretString) + Send + Sync>;

struct Shared {
    current: ArcSwapOption<Cached>,
    fetcher: Box<dyn Fetch>,
    state: Mutex<FetchState>,
    background: AtomicBool,
    next_generation: AtomicU64,
    policy: RefreshPolicy,
    backoff: Backoff,
    accept_any_token_type: bool,
    on_refresh_token: Option<RefreshTokenCallback>,
    store: Option<Arc<dyn TokenStore>>,
    counters: Counters,
}

/// Ends a flight however its task ends.
struct FlightGuard {
    cache: TokenCache,
    tx: Option<watch::Sender<Outcome>>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.cache.settle(&tx, Err(Error::fetch_aborted()));
        }
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

/// Builds a [`TokenCache`].
pub struct TokenCacheBuilder {
    fetcher: Box<dyn Fetch>,
    primary: Option<TokenRequest>,
    refresh_token: Option<SecretString>,
    policy: RefreshPolicy,
    backoff: Backoff,
    accept_any_token_type: bool,
    on_refresh_token: Option<RefreshTokenCallback>,
    store: Option<Arc<dyn TokenStore>>,
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("primary", &self.primary)
            .field("refresh_token", &self.refresh_token)
            .field("policy", &self.policy)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl TokenCacheBuilder {
    fn new(
        fetcher: Box<dyn Fetch>,
        primary: Option<TokenRequest>,
        refresh_token: Option<SecretString>,
    ) -> Self {
        TokenCacheBuilder {
            fetcher,
            primary,
            refresh_token,
            policy: RefreshPolicy::default(),
            backoff: Backoff::default(),
            accept_any_token_type: false,
            on_refresh_token: None,
            store: None,
        }
    }

    /// Persists tokens in `store`: the stored token is loaded now (its
    /// refresh token replaces the configured one, being newer; its access
    /// token is used while valid), and every fetched token is saved before
    /// it is used. A failed save is logged and counted
    /// ([`Stats::store_failures`]); the token is used anyway, since the old
    /// refresh token may already be spent. See [`crate::store`].
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// When to refresh.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How to back off after failures.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Accepts tokens whose `token_type` is not `Bearer` and sends them as
    /// bearer tokens anyway, for servers that mislabel bearer tokens. By
    /// default such a token is an [`crate::ErrorKind::InvalidToken`] error:
    /// a `DPoP` or `mac` token sent as a bearer token would be refused.
    pub fn accept_any_token_type(mut self, accept: bool) -> Self {
        self.accept_any_token_type = accept;
        self
    }

    /// Called with each new refresh token the server issues (rotation),
    /// before the new access token is used, so the application can persist
    /// it. It runs on the fetch task: keep it short.
    pub fn on_refresh_token(
        mut self,
        callback: impl Fn(&SecretString) + Send + Sync + 'static,
    ) -> Self {
        self.on_refresh_token = Some(Arc::new(callback));
        self
    }

    /// Builds the cache. No token is fetched until one is needed.
    pub fn build(self) -> TokenCache {
        let stored = match &self.store {
            Some(store) => match store.load() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "could not load the stored token; starting without it");
                    None
                }
            },
            None => None,
        };
        let refresh_token = stored
            .as_ref()
            .and_then(|t| t.refresh_token().cloned())
            .or(self.refresh_token);
        let cache = TokenCache {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                fetcher: self.fetcher,
                state: Mutex::new(FetchState {
                    flight: None,
                    failures: 0,
                    retry_at: None,
                    last_error: None,
                    primary: self.primary,
                    refresh_token,
                }),
                background: AtomicBool::new(false),
                next_generation: AtomicU64::new(1),
                policy: self.policy,
                backoff: self.backoff,
                accept_any_token_type: self.accept_any_token_type,
                on_refresh_token: self.on_refresh_token,
                store: self.store,
                counters: Counters::default(),
            }),
        };
        if let Some(token) = stored {
            match cache.prepare(token) {
                Ok(cached) => {
                    tracing::debug!("using the stored access token");
                    cache.shared.current.store(Some(Arc::new(cached)));
                }
                Err(e) => tracing::debug!(reason = %e, "the stored access token is not usable"),
            }
        }
        cache
    }
}

impl TokenCache {
    /// A cache that gets tokens with `request` (any grant: `client_credentials`,
    /// `password`, an extension grant). When a token comes with a refresh
    /// token, the next fetch uses the refresh token, and falls back to
    /// `request` if the server answers `invalid_grant`.
    pub fn builder<T, B>(endpoint: TokenEndpoint<T>, request: TokenRequest) -> TokenCacheBuilder
    where
        T: Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        T::Future: Send,
        T::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        TokenCacheBuilder::new(
            Box::new(SharedEndpoint(Mutex::new(endpoint))),
            Some(request),
            None,
        )
    }

    /// A cache that gets tokens with a refresh token only (one obtained by an
    /// authorization-code exchange, say). Rotated refresh tokens replace it
    /// and reach [`TokenCacheBuilder::on_refresh_token`]. If the server
    /// answers `invalid_grant`, the user must authorize again.
    pub fn from_refresh_token<T, B>(
        endpoint: TokenEndpoint<T>,
        refresh_token: impl Into<SecretString>,
    ) -> TokenCacheBuilder
    where
        T: Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        T::Future: Send,
        T::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        TokenCacheBuilder::new(
            Box::new(SharedEndpoint(Mutex::new(endpoint))),
            None,
            Some(refresh_token.into()),
        )
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            token_fetches: get(&c.token_fetches),
            fetch_failures: get(&c.fetch_failures),
            background_refreshes: get(&c.background_refreshes),
            waits: get(&c.waits),
            invalidations: get(&c.invalidations),
            retries: get(&c.retries),
            fail_fast: get(&c.fail_fast),
            store_failures: get(&c.store_failures),
        }
    }

    pub(crate) fn count_retry(&self) {
        bump(&self.shared.counters.retries);
    }

    /// The hot path: one `ArcSwap` load, one clock read and comparisons, one
    /// `HeaderValue` clone. A stale token also starts a background refresh.
    #[inline]
    pub(crate) fn lookup(&self) -> Lookup {
        let guard = self.shared.current.load();
        let Some(cached) = guard.as_ref() else {
            return Lookup::Wait;
        };
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

    #[cold]
    fn start_background_refresh(&self) {
        if self.shared.background.swap(true, Ordering::AcqRel) {
            return; // one is running or was just decided against
        }
        let started = match self.shared.state.try_lock() {
            Ok(mut state) => {
                let backing_off = state.retry_at.is_some_and(|r| Instant::now() < r);
                if state.flight.is_none() && !backing_off {
                    bump(&self.shared.counters.background_refreshes);
                    self.start_flight(&mut state).is_ok()
                } else {
                    false
                }
            }
            Err(_) => false,
        };
        if !started {
            self.shared.background.store(false, Ordering::Release);
        }
    }

    /// Waits for a usable token: joins the fetch in progress or starts one,
    /// unless a recent failure is still backing off.
    pub(crate) fn wait_for_token(&self) -> BoxFuture<Result<Arc<Cached>, Error>> {
        let this = self.clone();
        Box::pin(async move { this.wait_inner().await })
    }

    async fn wait_inner(&self) -> Result<Arc<Cached>, Error> {
        let mut rx = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            // Another caller may have stored a token since our lookup.
            if let Some(c) = self.shared.current.load_full() {
                if c.expires_at.is_none_or(|e| Instant::now() < e) {
                    return Ok(c);
                }
            }
            match &state.flight {
                Some(rx) => rx.clone(),
                None => {
                    if let (Some(at), Some(last)) = (state.retry_at, &state.last_error) {
                        if Instant::now() < at {
                            bump(&self.shared.counters.fail_fast);
                            return Err(Error::no_token(last.duplicate()));
                        }
                    }
                    self.start_flight(&mut state)?
                }
            }
        };
        bump(&self.shared.counters.waits);
        let outcome = rx.wait_for(Option::is_some).await.map_err(|_| {
            Error::invalid_request(
                "the token fetch task ended without an answer (runtime shutting down?)",
            )
        })?;
        match &*outcome {
            Some(Ok(c)) => Ok(c.clone()),
            Some(Err(e)) => Err(e.duplicate()),
            None => unreachable!("wait_for returned on Some"),
        }
    }

    /// Starts a fetch task. The caller holds the state lock.
    fn start_flight(&self, state: &mut FetchState) -> Result<watch::Receiver<Outcome>, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid_request(
                "tower-oauth2 fetches tokens on a Tokio runtime, and none is running",
            )
        })?;
        let (tx, rx) = watch::channel(None);
        state.flight = Some(rx.clone());
        // The guard is built here, outside the task: if the task panics, or
        // its runtime drops it (shutting down, even before its first poll),
        // the guard's drop still ends the flight and wakes the waiters, so
        // the cache is never left waiting on a fetch that is gone.
        let mut guard = FlightGuard {
            cache: self.clone(),
            tx: Some(tx),
        };
        let this = self.clone();
        let span = tracing::debug_span!("oauth2.fetch");
        handle.spawn(
            async move {
                let result = this.fetch_and_store().await;
                if let Some(tx) = guard.tx.take() {
                    guard.cache.settle(&tx, result);
                }
            }
            .instrument(span),
        );
        Ok(rx)
    }

    /// Records a fetch's outcome (success, or failure with backoff), ends the
    /// flight, and wakes its waiters.
    fn settle(&self, tx: &watch::Sender<Outcome>, result: Result<Arc<Cached>, Error>) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(c) => {
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                tracing::debug!(generation = c.generation, "token cached");
            }
            Err(e) => {
                bump(&self.shared.counters.fetch_failures);
                state.failures = state.failures.saturating_add(1);
                let now = Instant::now();
                // While the cached token is still valid, retry before it
                // expires: at most half the time it has left.
                let valid_for = self
                    .shared
                    .current
                    .load()
                    .as_ref()
                    .and_then(|c| c.expires_at)
                    .map(|e| e.saturating_duration_since(now))
                    .filter(|d| !d.is_zero());
                let delay = self.shared.backoff.delay(
                    state.failures,
                    unit_random(),
                    e.retry_after(),
                    valid_for,
                );
                state.retry_at = Some(now.checked_add(delay).unwrap_or(now));
                state.last_error = Some(e.duplicate());
                tracing::warn!(error = %e, failures = state.failures, backoff = ?delay, "token fetch failed");
            }
        }
        state.flight = None;
        self.shared.background.store(false, Ordering::Release);
        drop(state);
        let _ = tx.send(Some(result));
    }

    async fn fetch_and_store(&self) -> Result<Arc<Cached>, Error> {
        let (request, used_refresh) = {
            let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            match (&state.refresh_token, &state.primary) {
                (Some(rt), _) => (TokenRequest::refresh_token(rt.clone()), true),
                (None, Some(p)) => (p.clone(), false),
                (None, None) => return Err(Error::invalid_request(
                    "the refresh token was refused (invalid_grant) and there is no other grant: \
                         the user must authorize again",
                )),
            }
        };
        bump(&self.shared.counters.token_fetches);
        let mut result = self.shared.fetcher.fetch(request).await;
        if used_refresh {
            let invalid_grant = matches!(&result, Err(e) if e.oauth_error().is_some_and(|r| r.error() == &ErrorCode::InvalidGrant));
            let primary = {
                let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
                if invalid_grant {
                    state.refresh_token = None;
                }
                state.primary.clone()
            };
            if let (true, Some(primary)) = (invalid_grant, primary) {
                tracing::debug!("refresh token refused; falling back to the original grant");
                bump(&self.shared.counters.token_fetches);
                result = self.shared.fetcher.fetch(primary).await;
            }
        }
        let token = result?;
        // The refresh token is recorded (stored, handed to the callback)
        // before anything else, even if this access token turns out to be
        // unusable: with rotation, the refresh token that was sent is spent.
        if let Some(store) = &self.shared.store {
            let (store, token) = (store.clone(), token.clone());
            let saved = tokio::task::spawn_blocking(move || store.save(&token)).await;
            let failure = match saved {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failure {
                bump(&self.shared.counters.store_failures);
                tracing::error!(error = %e, "could not save the new token; it is used anyway");
            }
        }
        self.note_refresh_token(&token);
        let cached = Arc::new(self.prepare(token)?);
        self.shared.current.store(Some(cached.clone()));
        Ok(cached)
    }

    fn note_refresh_token(&self, token: &Token) {
        let Some(new) = token.refresh_token() else {
            return;
        };
        let changed = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let changed = state.refresh_token.as_ref() != Some(new);
            if changed {
                state.refresh_token = Some(new.clone());
            }
            changed
        };
        // Outside the lock: callers waiting for a token do not wait on it.
        if let (true, Some(cb)) = (changed, &self.shared.on_refresh_token) {
            tracing::debug!("new refresh token issued; handing it to the application");
            cb(new);
        }
    }

    fn prepare(&self, token: Token) -> Result<Cached, Error> {
        if !token.token_type().is_bearer() && !self.shared.accept_any_token_type {
            return Err(Error::invalid_token(format!(
                "its token_type is {:?}, not Bearer; only bearer tokens are sent \
                 (TokenCacheBuilder::accept_any_token_type sends it as one anyway)",
                token.token_type().as_str()
            )));
        }
        let header = bearer_header(token.access_token())?;
        let lifetime = token
            .expires_in()
            .unwrap_or(self.shared.policy.lifetime_when_unknown);
        if lifetime.is_zero() {
            return Err(Error::invalid_token(
                "it expired on arrival (expires_in was 0 or negative)",
            ));
        }
        let (stale_at, expires_at) =
            self.shared
                .policy
                .schedule(token.issued_at().instant(), lifetime, unit_random());
        if expires_at.is_some_and(|e| Instant::now() >= e) {
            return Err(Error::invalid_token(
                "it expired before it arrived (the token endpoint took longer than its lifetime)",
            ));
        }
        Ok(Cached {
            header,
            generation: self.shared.next_generation.fetch_add(1, Ordering::Relaxed),
            stale_at,
            expires_at,
            token,
        })
    }

    /// Drops the cached token if it is still generation `generation` (the
    /// resource server refused it). A newer token is left alone.
    pub fn invalidate(&self, generation: u64) {
        let current = self.shared.current.load();
        if let Some(c) = current.as_ref() {
            if c.generation == generation {
                let prev = self.shared.current.compare_and_swap(&*current, None);
                let swapped =
                    matches!((&*prev, &*current), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
                if swapped {
                    bump(&self.shared.counters.invalidations);
                    tracing::debug!(generation, "token invalidated");
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
}

/// `Bearer <token>` as a sensitive header value, refusing any byte outside
/// visible ASCII: a CR, LF or NUL would split or end the header (request
/// smuggling), and RFC 6750's `b64token` allows none of them, nor spaces.
pub(crate) fn bearer_header(access_token: &SecretString) -> Result<HeaderValue, Error> {
    let t = access_token.expose_secret();
    if t.is_empty() || !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::invalid_token(
            "the access token holds a byte not allowed in an HTTP header \
             (control character, space or non-ASCII); it was not sent",
        ));
    }
    let mut v = Vec::with_capacity(7 + t.len());
    v.extend_from_slice(b"Bearer ");
    v.extend_from_slice(t.as_bytes());
    let mut header = HeaderValue::from_maybe_shared(Bytes::from(v)).map_err(|_| {
        Error::invalid_token("the access token is not a valid header value; it was not sent")
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn schedule_works_for_short_and_long_tokens() {
        let p = RefreshPolicy::default();
        let t0 = Instant::now();
        // (lifetime, stale at without jitter, stale at with full jitter, expires at)
        let cases = [
            (secs(86_400), 86_100.0, 86_025.0, 86_390.0),
            (secs(3_600), 3_300.0, 3_225.0, 3_590.0),
            (secs(60), 45.0, 41.25, 57.0),
            (secs(20), 15.0, 13.75, 19.0),
            (secs(10), 7.5, 6.875, 9.0),
            (secs(5), 3.75, 3.4375, 4.5),
            (secs(1), 0.75, 0.6875, 0.9),
        ];
        for (lifetime, stale0, stale1, exp) in cases {
            let (s0, e) = p.schedule(t0, lifetime, 0.0);
            let (s1, _) = p.schedule(t0, lifetime, 1.0);
            let at = |x: Option<Instant>| x.unwrap().duration_since(t0).as_secs_f64();
            assert!((at(s0) - stale0).abs() < 1e-6, "{lifetime:?}: {}", at(s0));
            assert!((at(s1) - stale1).abs() < 1e-6, "{lifetime:?}: {}", at(s1));
            assert!((at(e) - exp).abs() < 1e-6, "{lifetime:?}: {}", at(e));
            assert!(s1 <= s0 && s0 <= e);
        }
        // Saturation: never panics, never "expires" when unrepresentable.
        let (s, e) = p.schedule(t0, Duration::from_secs(u64::MAX), 1.0);
        assert!(e.is_none());
        let _ = s;
        // A lead longer than the margin allows still goes stale no later than expiry.
        let p = RefreshPolicy::default().max_fraction(0.0);
        let (s, e) = p.schedule(t0, secs(100), 0.5);
        assert!(s <= e);
    }

    #[test]
    fn no_token_is_sent_in_its_last_second() {
        // oidc-provider (and any server that keeps `exp` in whole seconds)
        // refuses a token issued at x.99 s with `expires_in` N from x + N s,
        // N - 1 s after the request was sent: the client must be done with
        // it by then, whatever the jitter. Shorter tokens give up a tenth.
        let p = RefreshPolicy::default();
        let t0 = Instant::now();
        let cases = [2, 5, 9, 10, 19, 20, 21, 60, 3_600, 86_400].map(secs);
        for lifetime in cases {
            let last = secs(1).min(lifetime / 10);
            for jitter in [0.0, 0.5, 1.0] {
                let (s, e) = p.schedule(t0, lifetime, jitter);
                let e = e.unwrap();
                assert!(e <= t0 + lifetime - last, "{lifetime:?}");
                assert!(s.unwrap() < e, "{lifetime:?} goes stale before it expires");
            }
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let b = Backoff::new(secs(1), secs(30));
        assert_eq!(b.delay(1, 0.0, None, None), Duration::from_millis(500));
        assert_eq!(b.delay(1, 0.999_999, None, None).as_millis(), 999);
        assert_eq!(b.delay(2, 0.0, None, None), secs(1));
        assert_eq!(b.delay(3, 0.0, None, None), secs(2));
        assert_eq!(b.delay(10, 0.0, None, None), secs(15));
        assert_eq!(b.delay(u32::MAX, 0.0, None, None), secs(15));
        assert_eq!(b.delay(1, 0.0, Some(secs(20)), None), secs(20));
        // A hostile Retry-After is capped at max(backoff max, 5 min).
        assert_eq!(b.delay(1, 0.0, Some(secs(86_400)), None), secs(300));
        // A token valid for 250 ms more: retry within 125 ms, never below 50 ms.
        let ms = Duration::from_millis;
        assert_eq!(b.delay(1, 0.0, None, Some(ms(250))), ms(125));
        assert_eq!(b.delay(5, 0.0, None, Some(ms(250))), ms(125));
        assert_eq!(b.delay(5, 0.0, None, Some(ms(30))), ms(50));
        // A long-lived token leaves the exponential backoff alone.
        assert_eq!(b.delay(3, 0.0, None, Some(secs(3600))), secs(2));
        // The server's Retry-After still wins.
        assert_eq!(b.delay(1, 0.0, Some(secs(2)), Some(ms(250))), secs(2));
    }

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
