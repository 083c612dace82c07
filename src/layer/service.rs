use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::error::ServiceError;
use super::future::ResponseFuture;
use super::policy::AuthPolicy;
use super::replay::{Kept, ReplayBody, ReplayEmpty};
use crate::cache::{Lookup, TokenCache, TokenCopy};

/// The middleware built by [`OAuth2Layer`](super::OAuth2Layer).
///
/// A service used for many requests keeps its own copy of the cached token
/// (from its second request on; a clone starts without one), so that its
/// requests read no state other threads write.
#[derive(Clone, Debug)]
pub struct OAuth2Service<S, P = ReplayEmpty> {
    inner: S,
    policy: AuthPolicy,
    replay: P,
    copy: TokenCopy,
}

impl<S> OAuth2Service<S> {
    /// Wraps `inner`, taking tokens from `cache`.
    pub fn new(inner: S, cache: TokenCache) -> Self {
        OAuth2Service::from_policy(inner, AuthPolicy::new(cache))
    }

    /// Wraps `inner`, following `policy`. Requests with an empty body are
    /// resent once on a 401; [`OAuth2Service::replay_body`] sets how others
    /// are.
    pub fn from_policy(inner: S, policy: AuthPolicy) -> Self {
        OAuth2Service {
            inner,
            policy,
            replay: ReplayEmpty,
            copy: TokenCopy::default(),
        }
    }
}

impl<S, P> OAuth2Service<S, P> {
    /// How non-empty bodies are kept for a resend after a 401.
    pub fn replay_body<Q>(self, policy: Q) -> OAuth2Service<S, Q> {
        OAuth2Service {
            inner: self.inner,
            policy: self.policy,
            replay: policy,
            copy: self.copy,
        }
    }

    super::define_inner_service_accessors!();

    /// The settings and decisions this service follows.
    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        self.policy.cache()
    }

    /// The cached token: this handle's copy while it is current and fresh,
    /// else the cache's (`cache/copy.rs`).
    #[inline]
    fn lookup(&mut self) -> Lookup {
        if let Some(ready) = self.copy.ready(self.policy.cache()) {
            return ready;
        }
        if self.copy.first_lookup() {
            return self.policy.cache().lookup();
        }
        self.refill()
    }

    /// [`Self::lookup`] for a handle used before, whose copy is out of use.
    /// With its first copy, the handle also takes settings of its own: the
    /// `Arc` its response futures clone is then written by its requests
    /// alone, not by every thread's.
    #[inline(never)]
    fn refill(&mut self) -> Lookup {
        let (lookup, first_copy) = self.copy.refill(self.policy.cache());
        if first_copy {
            self.policy = self.policy.for_one_handle();
        }
        lookup
    }

    /// What the answers to `req` need of it: a copy to resend it when
    /// copies are kept and its body can be, else where it goes.
    #[inline]
    fn kept<B>(&self, req: &Request<B>) -> Kept<S, B>
    where
        S: Clone,
        P: ReplayBody<B>,
    {
        // With DPoP a copy is kept for a nonce's resend too, which is not
        // the 401 retry (`layer/authorize.rs`).
        let copies = self.policy.keeps_copies();
        let body = copies
            .then(|| self.replay.replay_body(req.body()))
            .flatten();
        Kept::of(req, body, &self.inner)
    }
}

impl<S, P, B, R> Service<Request<B>> for OAuth2Service<S, P>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    P: ReplayBody<B>,
{
    type Response = Response<R>;
    type Error = ServiceError<S::Error>;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ServiceError::Inner)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The instance polled ready must be the one called (tower-service's
        // "Be careful when cloning inner services"). When the call happens
        // here, that is `self.inner` itself, with no clone.
        if !self.policy.applies_to(req.uri(), req.headers()) {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let lookup = self.lookup();
        // The copy is taken before the token goes in (see `Replay::new`).
        let kept = self.kept(&req);
        // `ResponseFuture::send`, with the request sent here: moved into
        // no other function before the inner service's `call`, it is
        // copied once less.
        let Lookup::Ready(header, generation) = lookup else {
            let policy = self.policy.clone();
            return ResponseFuture::send(&mut self.inner, req, lookup, policy, kept);
        };
        match self.policy.authorize(&mut req, header, generation) {
            Ok(proof) => {
                let future = self.inner.call(req);
                ResponseFuture::called(future, generation, proof, self.policy.clone(), kept)
            }
            Err(e) => {
                let policy = self.policy.clone();
                ResponseFuture::failed(&mut self.inner, req, e, policy, kept)
            }
        }
    }
}
