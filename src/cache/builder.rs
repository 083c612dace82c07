//! [`TokenCacheBuilder`]: a cache's grant, policies, store and callback.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use super::cached::{Accept, Cached};
use super::fetch::{
    self, Bound, Fetch, Fetcher, Identity, Recorder, RefreshTokenCallback, TierBindings, TokenCheck,
};
use super::flight::{default_wait_timeout, FlightState};
use super::policy::{Backoff, RefreshPolicy};
use super::stats::Counters;
use super::{Shared, TokenCache};
use crate::clock::Instant;
use crate::endpoint::TokenEndpoint;
use crate::proof::{ProofKey, ProofKeys};
use crate::request::TokenRequest;
use crate::secret::SecretString;
use crate::store::{ConfigFingerprint, StoredToken, TokenStore};
use crate::tier::SharedTier;
use crate::token::Token;
use crate::transport::HttpTransport;

impl TokenCache {
    /// A cache that gets tokens with `request` (any grant: `client_credentials`,
    /// `password`, an extension grant). When a token comes with a refresh
    /// token, the next fetch uses the refresh token, and falls back to
    /// `request` if the server answers `invalid_grant`.
    pub fn builder<T: HttpTransport>(
        endpoint: TokenEndpoint<T>,
        mut request: TokenRequest,
    ) -> TokenCacheBuilder {
        request.shrink_to_fit();
        let fingerprint = ConfigFingerprint::new(endpoint.url(), endpoint.client(), &request);
        let exchange_timeout = endpoint.exchange_timeout();
        let proof_key = endpoint.proof_key().cloned();
        let builder =
            TokenCacheBuilder::new(fetch::boxed(endpoint), fingerprint, Some(request), None)
                .exchange_timeout(exchange_timeout);
        builder.bound_to(proof_key)
    }

    /// A cache that gets tokens with a refresh token only (one obtained by an
    /// authorization-code exchange, say). Rotated refresh tokens replace it
    /// and reach [`TokenCacheBuilder::on_refresh_token`]. If the server
    /// answers `invalid_grant`, the user must authorize again
    /// ([`crate::ErrorKind::ReauthorizationRequired`]).
    pub fn from_refresh_token<T: HttpTransport>(
        endpoint: TokenEndpoint<T>,
        refresh_token: impl Into<SecretString>,
    ) -> TokenCacheBuilder {
        let refresh_token = refresh_token.into();
        // The grant is `refresh_token`; its value (a secret) is not part of it.
        let grant = TokenRequest::refresh_token(refresh_token.clone());
        let fingerprint = ConfigFingerprint::new(endpoint.url(), endpoint.client(), &grant);
        let exchange_timeout = endpoint.exchange_timeout();
        let proof_key = endpoint.proof_key().cloned();
        let builder = TokenCacheBuilder::new(
            fetch::boxed(endpoint),
            fingerprint,
            None,
            Some(refresh_token),
        )
        .exchange_timeout(exchange_timeout);
        builder.bound_to(proof_key)
    }
}

/// Builds a [`TokenCache`].
pub struct TokenCacheBuilder {
    endpoint: Box<dyn Fetch>,
    /// The fingerprint without a proof key.
    base: ConfigFingerprint,
    /// With the proof key as it is now, if any: what the stored token is
    /// loaded under and the metrics are labelled with.
    fingerprint: ConfigFingerprint,
    primary: Option<TokenRequest>,
    refresh_token: Option<SecretString>,
    policy: RefreshPolicy,
    backoff: Backoff,
    accept_any_token_type: bool,
    on_refresh_token: Option<RefreshTokenCallback>,
    store: Option<Arc<dyn TokenStore>>,
    store_timeout: Duration,
    /// Set by the user, or `None` for the default computed in `build`.
    wait_timeout: Option<Duration>,
    /// The token endpoint's timeout, for the default wait timeout.
    exchange_timeout: Duration,
    /// The `cache` label of the metrics, if the user named it.
    #[cfg(feature = "metrics")]
    metrics_name: Option<String>,
    tier: Option<Arc<dyn SharedTier>>,
    /// The keys the endpoint proves possession of (DPoP), if any.
    proof_key: Option<ProofKeys>,
    /// The key `fingerprint` names, that a stored token is bound to.
    loaded_with: Option<ProofKey>,
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("fingerprint", &self.fingerprint)
            .field("primary", &self.primary)
            .field("refresh_token", &self.refresh_token)
            .field("policy", &self.policy)
            .field("backoff", &self.backoff)
            .field("store_timeout", &self.store_timeout)
            .finish_non_exhaustive()
    }
}

impl TokenCacheBuilder {
    /// How long a save to the [`TokenStore`], or the `on_refresh_token`
    /// callback, may hold a new token back by default: 5 s.
    pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

    fn new(
        endpoint: Box<dyn Fetch>,
        fingerprint: ConfigFingerprint,
        primary: Option<TokenRequest>,
        refresh_token: Option<SecretString>,
    ) -> Self {
        TokenCacheBuilder {
            endpoint,
            base: fingerprint,
            fingerprint,
            primary,
            refresh_token,
            policy: RefreshPolicy::default(),
            backoff: Backoff::default(),
            accept_any_token_type: false,
            on_refresh_token: None,
            store: None,
            store_timeout: Self::DEFAULT_STORE_TIMEOUT,
            wait_timeout: None,
            exchange_timeout: crate::endpoint::DEFAULT_TIMEOUT,
            #[cfg(feature = "metrics")]
            metrics_name: None,
            tier: None,
            proof_key: None,
            loaded_with: None,
        }
    }

    /// The fingerprint of this cache's configuration (token URL, client,
    /// grant, scopes, audience, resources, and the DPoP key as it is now):
    /// a stored token is used only if it was saved under the same one. See
    /// [`crate::store`]. After a DPoP key rotation, tokens are saved and
    /// shared under the new key's fingerprint (the `dpop` module, "Rotation").
    pub fn fingerprint(&self) -> &ConfigFingerprint {
        &self.fingerprint
    }

    /// Persists tokens in `store`: the stored token is loaded now, if it was
    /// saved under this cache's [fingerprint](Self::fingerprint) (its
    /// refresh token replaces the configured one, being newer; its access
    /// token is used while valid), and every fetched token is saved before
    /// it is used. A save that fails or misses the
    /// [`store_timeout`](Self::store_timeout) is logged and counted
    /// ([`Stats::store_failures`](super::Stats::store_failures)); the token
    /// is used anyway, since the old refresh token may already be spent.
    /// See [`crate::store`].
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How long a save to the [store](Self::store), and the
    /// [`on_refresh_token`](Self::on_refresh_token) callback, may each hold
    /// a new token back from the callers waiting for it (default
    /// [`Self::DEFAULT_STORE_TIMEOUT`], 5 s). Past it, the error is logged, the
    /// token used, and the save or callback goes on in the background; a
    /// late save never overwrites a newer token.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// How long a caller waits for a token fetch before it gives up with
    /// [`crate::ErrorKind::WaitTimeout`] (and
    /// [`Error::is_timeout`](crate::Error::is_timeout)). The fetch is not
    /// cancelled: it goes on, and the callers after this one get its token.
    ///
    /// Default: twice the token endpoint's
    /// [`timeout`](crate::TokenEndpoint::timeout), plus twice the
    /// [`store_timeout`](TokenCacheBuilder::store_timeout), plus 20 s (90 s
    /// with the defaults): room for a refresh token refused with
    /// `invalid_grant` and the configured grant sent after it, each within
    /// the endpoint's timeout, then the token store's save and the
    /// `on_refresh_token` callback. Nothing that works waits that long; the
    /// deadline is there for what does not (a store or callback that hangs,
    /// a runtime that no longer runs the fetch task), and a caller gets a
    /// typed error instead of a hang. Set it lower to fail requests sooner
    /// than a slow fetch ends.
    ///
    /// Waiting needs the timers of a Tokio runtime: the caller's, or, for a
    /// caller polled outside any runtime, the one the fetch runs on.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }

    fn exchange_timeout(mut self, timeout: Duration) -> Self {
        self.exchange_timeout = timeout;
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
    /// it. It runs on a blocking thread, and holds the token back at most
    /// the [`store_timeout`](Self::store_timeout): a callback that takes
    /// longer is left running and logged at ERROR.
    pub fn on_refresh_token(
        mut self,
        callback: impl Fn(&SecretString) + Send + Sync + 'static,
    ) -> Self {
        self.on_refresh_token = Some(Arc::new(callback));
        self
    }

    /// Builds the cache. No token is fetched until one is needed.
    pub fn build(self) -> TokenCache {
        let stored = self.load_stored();
        // A token a resource server refused gives its refresh token only.
        let (stored, refused) = match stored {
            Some(s) if s.access_token_refused() => {
                tracing::debug!(
                    "the stored access token was refused by a resource server; only its \
                     refresh token is used"
                );
                (None, Some(s.into_token()))
            }
            other => (other.map(StoredToken::into_token), None),
        };
        let accept = self.accept();
        #[cfg(feature = "metrics")]
        let counters = Counters::labelled(crate::metrics::CacheLabel::new(
            self.metrics_name.as_deref(),
            &self.fingerprint,
        ));
        #[cfg(not(feature = "metrics"))]
        let counters = Counters::default();
        let refresh_token = stored
            .as_ref()
            .or(refused.as_ref())
            .and_then(|t| t.refresh_token().cloned())
            .or(self.refresh_token);
        let identity = Identity::new(self.base, self.proof_key.clone());
        let recorder = Recorder::new(self.store, self.on_refresh_token, self.store_timeout);
        let fetcher = Fetcher::new(
            self.endpoint,
            self.primary,
            refresh_token,
            recorder,
            identity,
        );
        let wait = default_wait_timeout(self.exchange_timeout, self.store_timeout);
        let (fetcher, wait) = match self.tier {
            Some(tier) => bind_tier(
                tier,
                fetcher,
                wait,
                (self.fingerprint, self.exchange_timeout, self.store_timeout),
                (self.policy, accept),
                refused.as_ref(),
            ),
            None => (fetcher, wait),
        };
        let shared = Shared {
            current: ArcSwapOption::empty(),
            epoch: super::epoch::Epoch::new(),
            fetcher,
            flight: Mutex::new(FlightState::new(self.wait_timeout.unwrap_or(wait), wait)),
            next_generation: AtomicU64::new(1),
            policy: self.policy,
            backoff: self.backoff,
            accept,
            counters,
            proof_key: self.proof_key,
            bound_keys: Default::default(),
            refusals: Default::default(),
        };
        if let Some(token) = stored {
            let bound = Bound {
                key: self.loaded_with,
                fingerprint: self.fingerprint,
            };
            restore_access_token(&shared, token, &bound);
        }
        TokenCache {
            shared: Arc::new(shared),
        }
    }

    /// The stored token, if it was saved under this cache's fingerprint.
    /// One saved under another (or none) is not used at all: its access
    /// token may be for other resources, its refresh token for another
    /// client, user or token endpoint.
    fn load_stored(&self) -> Option<StoredToken> {
        let stored = match self.store.as_ref()?.load(&self.fingerprint) {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!(error = %e, "could not load the stored token; starting without it");
                return None;
            }
        };
        if !stored.is_for(&self.fingerprint) {
            tracing::warn!(
                stored = %stored.fingerprint().map_or("none".into(), ToString::to_string),
                configured = %self.fingerprint,
                "the stored token was fetched with another configuration (token URL, client, \
                 grant, scope, audience or resource); neither its access token nor its \
                 refresh token is used"
            );
            return None;
        }
        Some(stored)
    }

    /// Names this cache in its metrics: the value of their `cache` label
    /// (feature `metrics`, see [`crate::metrics`]). Choose a name that says
    /// which API or configuration the tokens are for (`"inventory"`); it is
    /// exported as it is, so never put a secret in it. Without a name, the
    /// label is the first 8 hex digits of the [fingerprint](Self::fingerprint).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_name(mut self, name: impl Into<String>) -> Self {
        self.metrics_name = Some(name.into());
        self
    }
    /// Shares tokens with the rest of the fleet through `tier`: tokens are
    /// read from it before any token request, and one process of the fleet
    /// fetches at a time. See [`crate::tier`] (the Redis tier, feature
    /// `redis`, is given with `redis`). The default
    /// [`wait_timeout`](Self::wait_timeout) grows by the tier's lease.
    pub fn shared_tier(mut self, tier: impl SharedTier) -> Self {
        self.tier = Some(Arc::new(tier));
        self
    }

    /// Which token types the cache sends (see `Accept`).
    fn accept(&self) -> Accept {
        Accept {
            any: self.accept_any_token_type,
            dpop: self.proof_key.is_some(),
        }
    }

    /// Tokens bound to the endpoint's proof keys (DPoP's
    /// `TokenEndpoint::dpop`): `DPoP` tokens are accepted and the key's
    /// thumbprint joins the fingerprint, so a token stored or shared with
    /// another key is not used. The key as it is now names the stored
    /// token loaded at `build`; each fetch names its own key's
    /// (`cache/fetch/identity.rs`).
    fn bound_to(mut self, proof_key: Option<ProofKeys>) -> Self {
        if let Some(keys) = &proof_key {
            let key = keys.current();
            self.fingerprint = self.base.with_dpop_key(key.prover().thumbprint());
            self.loaded_with = Some(key);
        }
        self.proof_key = proof_key;
        self
    }
}

/// Slack on the default lease beyond the exchange and the store's save.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// `fetcher` going through `tier` first, and the default wait timeout with
/// the lease added.
fn bind_tier(
    tier: Arc<dyn SharedTier>,
    fetcher: Fetcher,
    wait: Duration,
    (fingerprint, exchange, store): (ConfigFingerprint, Duration, Duration),
    (policy, accept): (RefreshPolicy, Accept),
    refused: Option<&Token>,
) -> (Fetcher, Duration) {
    let default_lease = exchange.saturating_add(store).saturating_add(LEASE_MARGIN);
    // The cache's own checks, on a throwaway generation counter.
    let check: TokenCheck = Arc::new(move |token| {
        let c = Cached::new(token.clone(), &policy, accept, &AtomicU64::new(0)).ok()?;
        Some(c.expires_at.map_or(Duration::MAX, |e| {
            e.saturating_duration_since(Instant::now())
        }))
    });
    let bindings = TierBindings::new(tier, check, default_lease);
    // The store says a resource server refused this token: the first fetch
    // replaces it, in the tier too (compare-and-delete), as after a 401
    // this cache saw itself.
    if let Some(token) = refused {
        bindings.for_key(fingerprint).replacing(token);
    }
    let wait = wait.saturating_add(bindings.lease());
    (fetcher.with_tier(bindings), wait)
}

/// Caches the stored access token if it can still be sent. One issued in
/// the future (a clock set back, a file from elsewhere) is suspect: it
/// counts as expired, whatever its lifetime.
fn restore_access_token(shared: &Shared, token: Token, bound: &Bound) {
    if token.issued_at().system_time() > SystemTime::now() {
        tracing::warn!(
            "the stored access token's issued_at lies in the future; it counts as expired"
        );
        return;
    }
    match shared.admit(token, bound) {
        Ok(cached) => {
            tracing::debug!("using the stored access token");
            shared.set_current(Some(Arc::new(cached)));
        }
        Err(e) => tracing::debug!(reason = %e, "the stored access token is not usable"),
    }
}
