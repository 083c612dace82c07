use std::fmt;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body;
use tower_service::Service;

use super::destinations::Destinations;
use super::future::ResponseFuture;
use super::layer::OAuth2Layer;
use crate::cache::{Lookup, TokenCache};
use crate::error::{BoxError, Error};

/// Decides whether a request body can be kept for a resend after a 401.
///
/// Asked once per request, before it is sent. Any
/// `Fn(&B) -> Option<B> + Clone` is a policy too.
pub trait ReplayBody<B> {
    /// A copy of `body` to resend, or `None` if it cannot be resent.
    fn replay_body(&self, body: &B) -> Option<B>;
}

/// Resends only empty bodies (`size_hint().exact() == Some(0)`), as
/// `B::default()`: the default, as in tower-http's `follow_redirect`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayEmpty;

impl<B: Body + Default> ReplayBody<B> for ReplayEmpty {
    fn replay_body(&self, body: &B) -> Option<B> {
        (body.size_hint().exact() == Some(0)).then(B::default)
    }
}

/// Resends any body that is `Clone` (like `Full<Bytes>`, whose clone shares
/// the bytes).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayClone;

impl<B: Clone> ReplayBody<B> for ReplayClone {
    fn replay_body(&self, body: &B) -> Option<B> {
        Some(body.clone())
    }
}

/// Never resends: for bodies that have no empty value to resend with
/// (hyper's `Incoming`, in a proxy). A 401 still drops the token, so the
/// next request gets a new one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> ReplayBody<B> for NoReplay {
    fn replay_body(&self, _body: &B) -> Option<B> {
        None
    }
}

impl<B, F> ReplayBody<B> for F
where
    F: Fn(&B) -> Option<B>,
{
    fn replay_body(&self, body: &B) -> Option<B> {
        self(body)
    }
}

/// The error of an [`OAuth2Service`]: the inner service's own error, kept as
/// it is, or a failure to get a token.
pub enum ServiceError<E> {
    /// The inner service failed.
    Inner(E),
    /// No token could be had (the endpoint's `error`/`error_description`
    /// are in [`Error::oauth_error`]).
    Token(Error),
}

impl<E> ServiceError<E> {
    /// The token error, if this is one.
    pub fn token_error(&self) -> Option<&Error> {
        match self {
            ServiceError::Token(e) => Some(e),
            ServiceError::Inner(_) => None,
        }
    }

    /// The inner service's error, if this is one.
    pub fn inner_error(&self) -> Option<&E> {
        match self {
            ServiceError::Inner(e) => Some(e),
            ServiceError::Token(_) => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
            ServiceError::Token(e) => f.debug_tuple("Token").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Inner(e) => fmt::Display::fmt(e, f),
            ServiceError::Token(e) => write!(f, "could not get an access token: {e}"),
        }
    }
}

/// `ServiceError<E>` is an error for any displayable `E`, so that with a
/// `BoxError` inner error (tower's `Timeout`, `Buffer`, `BoxCloneService` …)
/// it still converts into a `BoxError` and `?` works. Its
/// [`source`](std::error::Error::source) is the token error, or the inner
/// error when that is a `BoxError`; match [`ServiceError::Inner`] to get any
/// other inner error itself.
impl<E> std::error::Error for ServiceError<E>
where
    E: fmt::Debug + fmt::Display + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Inner(e) => (e as &dyn std::any::Any)
                .downcast_ref::<BoxError>()
                .map(|b| &**b as &(dyn std::error::Error + 'static)),
            ServiceError::Token(e) => Some(e),
        }
    }
}

/// What a resend after a 401 needs: the request without its token, a copy
/// of its body, and a clone of the inner service.
pub(crate) struct Replay<S, B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: B,
    pub(crate) service: S,
}

impl<S, B> Replay<S, B> {
    pub(crate) fn into_request(self, authorization: HeaderValue) -> (S, Request<B>) {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        req.headers_mut().insert(AUTHORIZATION, authorization);
        (self.service, req)
    }
}

/// The middleware built by [`OAuth2Layer`].
#[derive(Clone, Debug)]
pub struct OAuth2Service<S, P = ReplayEmpty> {
    inner: S,
    cache: TokenCache,
    replay: P,
    keep_existing: bool,
    retry_unauthorized: bool,
    destinations: Destinations,
}

impl<S, P: Clone> OAuth2Service<S, P> {
    pub(crate) fn from_layer(inner: S, layer: &OAuth2Layer<P>) -> Self {
        OAuth2Service {
            inner,
            cache: layer.cache.clone(),
            replay: layer.replay.clone(),
            keep_existing: layer.keep_existing,
            retry_unauthorized: layer.retry_unauthorized,
            destinations: layer.destinations.clone(),
        }
    }
}

impl<S> OAuth2Service<S> {
    /// Wraps `inner`, taking tokens from `cache`.
    pub fn new(inner: S, cache: TokenCache) -> Self {
        OAuth2Service::from_layer(inner, &OAuth2Layer::new(cache))
    }
}

impl<S, P> OAuth2Service<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives back the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    fn replay<B>(&self, req: &Request<B>) -> Option<Replay<S, B>>
    where
        S: Clone,
        P: ReplayBody<B>,
    {
        if !self.retry_unauthorized {
            return None;
        }
        let body = self.replay.replay_body(req.body())?;
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
            body,
            service: self.inner.clone(),
        })
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
        if !self.destinations.allows(req.uri())
            || (self.keep_existing && req.headers().contains_key(AUTHORIZATION))
        {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        match self.cache.lookup() {
            Lookup::Ready(header, generation) => {
                // The copy is taken before the token goes in: the resend
                // gets a new one anyway, and a request with no other
                // headers then has an empty map to copy (no allocation).
                let replay = self.replay(&req);
                req.headers_mut().insert(AUTHORIZATION, header);
                let future = self.inner.call(req);
                ResponseFuture::sent(future, self.cache.clone(), generation, replay)
            }
            Lookup::Wait => {
                // The call happens later, in the future: the ready instance
                // goes with it and a clone stays (clone-then-replace).
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let replay = self.replay(&req);
                ResponseFuture::waiting(
                    self.cache.wait_for_token(),
                    inner,
                    req,
                    self.cache.clone(),
                    replay,
                )
            }
        }
    }
}
