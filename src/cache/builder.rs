//! [`TokenCacheBuilder`]: a cache's grant, policies, store and callback.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::fetch::{self, Fetch, Fetcher, RefreshTokenCallback};
use super::flight::FlightState;
use super::policy::{Backoff, RefreshPolicy};
use super::stats::Counters;
use super::{Shared, TokenCache};
use crate::endpoint::TokenEndpoint;
use crate::request::TokenRequest;
use crate::secret::SecretString;
use crate::store::TokenStore;
use crate::token::Token;
use crate::transport::HttpTransport;

impl TokenCache {
    /// A cache that gets tokens with `request` (any grant: `client_credentials`,
    /// `password`, an extension grant). When a token comes with a refresh
    /// token, the next fetch uses the refresh token, and falls back to
    /// `request` if the server answers `invalid_grant`.
    pub fn builder<T: HttpTransport>(
        endpoint: TokenEndpoint<T>,
        request: TokenRequest,
    ) -> TokenCacheBuilder {
        TokenCacheBuilder::new(fetch::boxed(endpoint), Some(request), None)
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
        TokenCacheBuilder::new(fetch::boxed(endpoint), None, Some(refresh_token.into()))
    }
}

/// Builds a [`TokenCache`].
pub struct TokenCacheBuilder {
    endpoint: Box<dyn Fetch>,
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
        endpoint: Box<dyn Fetch>,
        primary: Option<TokenRequest>,
        refresh_token: Option<SecretString>,
    ) -> Self {
        TokenCacheBuilder {
            endpoint,
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
    /// ([`Stats::store_failures`](super::Stats::store_failures)); the token
    /// is used anyway, since the old refresh token may already be spent.
    /// See [`crate::store`].
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
        let stored = self.load_stored();
        let refresh_token = stored
            .as_ref()
            .and_then(|t| t.refresh_token().cloned())
            .or(self.refresh_token);
        let shared = Shared {
            current: ArcSwapOption::empty(),
            fetcher: Fetcher::new(
                self.endpoint,
                self.primary,
                refresh_token,
                self.store,
                self.on_refresh_token,
            ),
            flight: Mutex::new(FlightState::new()),
            next_generation: AtomicU64::new(1),
            policy: self.policy,
            backoff: self.backoff,
            accept_any_token_type: self.accept_any_token_type,
            counters: Counters::default(),
            refusals: Default::default(),
        };
        if let Some(token) = stored {
            match shared.admit(token) {
                Ok(cached) => {
                    tracing::debug!("using the stored access token");
                    shared.current.store(Some(Arc::new(cached)));
                }
                Err(e) => tracing::debug!(reason = %e, "the stored access token is not usable"),
            }
        }
        TokenCache {
            shared: Arc::new(shared),
        }
    }

    fn load_stored(&self) -> Option<Token> {
        match self.store.as_ref()?.load() {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "could not load the stored token; starting without it");
                None
            }
        }
    }
}
