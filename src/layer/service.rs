use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_service::Service;

use super::error::ServiceError;
use super::future::ResponseFuture;
use super::policy::{AuthPolicy, SentTo};
use super::replay::{Replay, ReplayBody, ReplayEmpty};
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

    fn replay<B>(&self, req: &Request<B>) -> Option<Replay<S, B>>
    where
        S: Clone,
        P: ReplayBody<B>,
    {
        // With DPoP a copy is kept for a nonce's resend too, which is not
        // the 401 retry (`layer/dpop.rs`).
        #[cfg(feature = "dpop")]
        let keeps_copies = self.policy.keeps_copies();
        #[cfg(not(feature = "dpop"))]
        let keeps_copies = self.policy.retries_unauthorized();
        if !keeps_copies {
            return None;
        }
        let body = self.replay.replay_body(req.body())?;
        Some(Replay::new(req, body, self.inner.clone()))
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
        #[cfg(feature = "dpop")]
        if self.policy.uses_dpop() {
            return self.call_dpop(req);
        }
        match self.lookup() {
            Lookup::Ready(header, generation) => {
                // The copy is taken before the token goes in (see `Replay::new`).
                let replay = self.replay(&req);
                if replay.is_none() {
                    // Where it went, for its answer (the copy would have
                    // the URI). A literal `None`: moving `replay` would
                    // copy 264 bytes.
                    let sent_to = Some(SentTo::of(req.uri()));
                    req.headers_mut().insert(AUTHORIZATION, header);
                    let future = self.inner.call(req);
                    let policy = self.policy.clone();
                    return ResponseFuture::called_to(future, generation, policy, None, sent_to);
                }
                req.headers_mut().insert(AUTHORIZATION, header);
                let future = self.inner.call(req);
                let policy = self.policy.clone();
                ResponseFuture::called_to(future, generation, policy, replay, None)
            }
            Lookup::Wait => {
                // The call happens later, in the future: the ready instance
                // goes with it and a clone stays (clone-then-replace).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let replay = self.replay(&req);
                let token = self.policy.cache().wait_for_token();
                ResponseFuture::waiting_for_token(token, inner, req, self.policy.clone(), replay)
            }
        }
    }
}

#[cfg(feature = "dpop")]
impl<S, P> OAuth2Service<S, P> {
    /// [`Service::call`] when the tokens go with DPoP proofs: a fresh proof
    /// for this request beside the cached token (or, with none cached, once
    /// the fetch is done, in the future).
    fn call_dpop<B, R>(&mut self, mut req: Request<B>) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>, Response = Response<R>> + Clone,
        P: ReplayBody<B>,
    {
        let (header, generation) = match self.lookup() {
            Lookup::Ready(header, generation) => (header, generation),
            Lookup::Wait => {
                let token = self.policy.cache().wait_for_token();
                return self.call_later(req, token);
            }
        };
        let replay = self.replay(&req);
        let (method, uri) = (req.method().clone(), req.uri().clone());
        match (self.policy).authorize_dpop(&method, &uri, req.headers_mut(), header) {
            Ok(origin) => {
                let sent_to = replay.is_none().then(|| SentTo::of(&uri));
                let future = self.inner.call(req);
                let policy = self.policy.clone();
                ResponseFuture::called_dpop(future, generation, policy, replay, origin, sent_to)
            }
            // No proof, no request: the error comes out of the future.
            Err(e) => self.call_later(req, Box::pin(std::future::ready(Err(e)))),
        }
    }

    /// The request, sent by the future once `token` is here: the ready
    /// inner service goes with it and a clone stays (clone-then-replace).
    fn call_later<B>(
        &mut self,
        req: Request<B>,
        token: super::future::TokenFuture,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>> + Clone,
        P: ReplayBody<B>,
    {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let replay = self.replay(&req);
        ResponseFuture::waiting_for_token(token, inner, req, self.policy.clone(), replay)
    }
}
