use tower_layer::Layer;

use super::destinations::Destinations;
use super::service::{OAuth2Service, ReplayEmpty};
use crate::cache::TokenCache;

/// Adds OAuth2 bearer tokens to requests. See the [module docs](crate::layer).
#[derive(Debug, Clone)]
pub struct OAuth2Layer<P = ReplayEmpty> {
    pub(crate) cache: TokenCache,
    pub(crate) replay: P,
    pub(crate) keep_existing: bool,
    pub(crate) retry_unauthorized: bool,
    pub(crate) destinations: Destinations,
}

impl OAuth2Layer {
    /// A layer taking its tokens from `cache`. Requests with an empty body are
    /// resent once on a 401; set a [`super::ReplayBody`] policy with
    /// [`OAuth2Layer::replay_body`] to resend others.
    pub fn new(cache: TokenCache) -> Self {
        OAuth2Layer {
            cache,
            replay: ReplayEmpty,
            keep_existing: false,
            retry_unauthorized: true,
            destinations: Destinations::secure(),
        }
    }
}

impl<P> OAuth2Layer<P> {
    /// How non-empty bodies are kept for a resend after a 401.
    pub fn replay_body<Q>(self, policy: Q) -> OAuth2Layer<Q> {
        OAuth2Layer {
            cache: self.cache,
            replay: policy,
            keep_existing: self.keep_existing,
            retry_unauthorized: self.retry_unauthorized,
            destinations: self.destinations,
        }
    }

    /// Which requests get the token (default [`Destinations::secure`]).
    pub fn destinations(mut self, destinations: Destinations) -> Self {
        self.destinations = destinations;
        self
    }

    /// When `true`, a request that already has an `Authorization` header is
    /// sent as it is (no token added, no retry). Default `false`: the layer
    /// replaces it.
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        self.keep_existing = keep;
        self
    }

    /// Whether to refetch and resend once on a 401 (default `true`). With
    /// `false` nothing is kept for a resend, and a 401 still invalidates the
    /// token so the next request gets a new one.
    pub fn retry_unauthorized(mut self, retry: bool) -> Self {
        self.retry_unauthorized = retry;
        self
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

impl<S, P: Clone> Layer<S> for OAuth2Layer<P> {
    type Service = OAuth2Service<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuth2Service::from_layer(inner, self)
    }
}
