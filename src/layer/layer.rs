use tower_layer::Layer;

use super::policy::{delegate_policy_options, AuthPolicy};
use super::replay::ReplayEmpty;
use super::service::OAuth2Service;
use crate::cache::TokenCache;
use crate::error::Error;

/// Adds OAuth2 bearer tokens to requests. See the [module docs](crate::layer).
///
/// It holds an [`AuthPolicy`] (the settings and decisions it shares with
/// every other transport of this crate) and a [`ReplayBody`](super::ReplayBody)
/// policy for keeping request bodies to resend.
#[derive(Debug, Clone)]
pub struct OAuth2Layer<P = ReplayEmpty> {
    policy: AuthPolicy,
    replay: P,
}

impl OAuth2Layer {
    /// A layer taking its tokens from `cache`. Requests with an empty body are
    /// resent once on a 401; set a [`super::ReplayBody`] policy with
    /// [`OAuth2Layer::replay_body`] to resend others.
    ///
    /// Where the token goes: the API the cache's token request names
    /// (`resource`, or an `audience` that is a URL), else any `https` host
    /// and loopback (see [`AuthPolicy::new`]). Prefer
    /// [`OAuth2Layer::for_origin`].
    pub fn new(cache: TokenCache) -> Self {
        OAuth2Layer::from_policy(AuthPolicy::new(cache))
    }

    /// A layer taking its tokens from `cache` for requests to `origin`
    /// (`scheme://host[:port]`) only: others pass through untouched. See
    /// [`AuthPolicy::for_origin`].
    ///
    /// ```
    /// # fn f(cache: tower_oauth2::TokenCache) -> Result<(), tower_oauth2::Error> {
    /// use tower_oauth2::OAuth2Layer;
    ///
    /// let layer = OAuth2Layer::for_origin(cache, "https://inventory.example.com")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn for_origin(cache: TokenCache, origin: impl AsRef<str>) -> Result<Self, Error> {
        Ok(OAuth2Layer::from_policy(AuthPolicy::for_origin(
            cache, origin,
        )?))
    }

    /// A layer following `policy` (which a reqwest middleware may share).
    pub fn from_policy(policy: AuthPolicy) -> Self {
        OAuth2Layer {
            policy,
            replay: ReplayEmpty,
        }
    }
}

impl<P> OAuth2Layer<P> {
    /// How non-empty bodies are kept for a resend after a 401.
    pub fn replay_body<Q>(self, policy: Q) -> OAuth2Layer<Q> {
        OAuth2Layer {
            policy: self.policy,
            replay: policy,
        }
    }

    delegate_policy_options!();
}

impl<S, P: Clone> Layer<S> for OAuth2Layer<P> {
    type Service = OAuth2Service<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuth2Service::from_policy(inner, self.policy.clone()).replay_body(self.replay.clone())
    }
}
