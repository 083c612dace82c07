//! The tower layer of [`super`]: one [`AuthPolicy`] per subject, each
//! request sent through the ordinary [`OAuth2Service`] path with its
//! subject's policy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{subject_options, SubjectToken, Subjects};
use crate::error::Error;
use crate::layer::{OAuth2Service, ReplayBody, ReplayEmpty, ResponseFuture, ServiceError};
use crate::TokenCache;

/// Adds to each request a token exchanged for its caller's token (RFC
/// 8693), one cache per subject. See the [module docs](super).
///
/// Clones of the layer, and the services made from it, share the caches.
/// Set the options before the layer is cloned or used: an option set on a
/// layer that a clone or a built service shares gives it caches of its own
/// (a subject's cache keeps the options of the layer that made it, so two
/// layers with different options never lend each other theirs), and each
/// then exchanges for its subjects separately.
pub struct OnBehalfLayer<P = ReplayEmpty> {
    subjects: Arc<Subjects>,
    replay: P,
}

impl OnBehalfLayer {
    /// A layer whose subjects get their tokens from the cache `make` gives
    /// on a subject's first request: a [`TokenCache`] over
    /// [`TokenRequest::token_exchange`](crate::TokenRequest::token_exchange)
    /// of that subject's token, usually. `make` runs with no lock held; it
    /// may run twice for one subject whose first two requests come at once,
    /// and then one of the two caches, never used, is dropped (no token is
    /// requested for it).
    pub fn new(make: impl Fn(&SubjectToken) -> TokenCache + Send + Sync + 'static) -> Self {
        OnBehalfLayer {
            subjects: Arc::new(Subjects::new(Arc::new(make))),
            replay: ReplayEmpty,
        }
    }
}

impl<P> OnBehalfLayer<P> {
    /// How non-empty bodies are kept for a resend after a 401 (default:
    /// only empty bodies are resent).
    pub fn replay_body<Q>(self, policy: Q) -> OnBehalfLayer<Q> {
        OnBehalfLayer {
            subjects: self.subjects,
            replay: policy,
        }
    }

    subject_options!();
}

impl<P: Clone> Clone for OnBehalfLayer<P> {
    fn clone(&self) -> Self {
        OnBehalfLayer {
            subjects: Arc::clone(&self.subjects),
            replay: self.replay.clone(),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for OnBehalfLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfLayer")
            .field("subjects", &self.subjects)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, P: Clone> Layer<S> for OnBehalfLayer<P> {
    type Service = OnBehalfService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        OnBehalfService {
            inner,
            subjects: Arc::clone(&self.subjects),
            replay: self.replay.clone(),
        }
    }
}

/// The middleware built by [`OnBehalfLayer`].
pub struct OnBehalfService<S, P = ReplayEmpty> {
    inner: S,
    subjects: Arc<Subjects>,
    replay: P,
}

impl<S: Clone, P: Clone> Clone for OnBehalfService<S, P> {
    fn clone(&self) -> Self {
        OnBehalfService {
            inner: self.inner.clone(),
            subjects: Arc::clone(&self.subjects),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for OnBehalfService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnBehalfService")
            .field("inner", &self.inner)
            .field("subjects", &self.subjects)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<S, P> OnBehalfService<S, P> {
    crate::layer::define_inner_service_accessors!();
}

impl<S, P, B, R> Service<Request<B>> for OnBehalfService<S, P>
where
    S: Service<Request<B>, Response = Response<R>> + Clone,
    P: ReplayBody<B>,
{
    type Response = Response<R>;
    type Error = ServiceError<S::Error>;
    type Future = OnBehalfFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ServiceError::Inner)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let subjects = &*self.subjects;
        if !subjects.options.destinations.allows(req.uri()) {
            return OnBehalfFuture::sent(ResponseFuture::passthrough(self.inner.call(req)));
        }
        let policy = match subjects.policy_for(req.headers(), req.extensions()) {
            Ok(policy) => policy,
            Err(e) => return OnBehalfFuture::failed(e),
        };
        // The subject's policy through the one path of `OAuth2Service`
        // (lookup, wait, 401 resend, DPoP), with the inner service polled
        // ready (ARCHITECTURE.md, invariant 9).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let replay = &self.replay;
        let mut service = OAuth2Service::from_policy(inner, policy)
            .replay_body(move |body: &B| replay.replay_body(body));
        OnBehalfFuture::sent(service.call(req))
    }
}

pin_project! {
    /// The response future of [`OnBehalfService`]: the request sent with
    /// its subject's token, or the error that kept it from being sent.
    pub struct OnBehalfFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        sent: Option<ResponseFuture<S, B>>,
        failed: Option<Error>,
    }
}

impl<S, B> OnBehalfFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn sent(future: ResponseFuture<S, B>) -> Self {
        OnBehalfFuture {
            sent: Some(future),
            failed: None,
        }
    }

    fn failed(error: Error) -> Self {
        OnBehalfFuture {
            sent: None,
            failed: Some(error),
        }
    }
}

impl<S, B> fmt::Debug for OnBehalfFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sent {
            Some(future) => fmt::Debug::fmt(future, f),
            None => f.debug_tuple("OnBehalfFuture").field(&self.failed).finish(),
        }
    }
}

impl<S, B, R> Future for OnBehalfFuture<S, B>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Output = Result<Response<R>, ServiceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.sent.as_pin_mut() {
            Some(future) => future.poll(cx),
            // Polled again after its error (which a caller must not do):
            // an error still, not a panic.
            None => {
                let error = this.failed.take().unwrap_or_else(Error::no_subject);
                Poll::Ready(Err(ServiceError::Token(error)))
            }
        }
    }
}
