use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::ServiceExt;
use tower_service::Service;

use super::service::{Replay, ServiceError};
use crate::cache::{Cached, Lookup, TokenCache};
use crate::challenge::a_new_token_may_help;
use crate::error::Error;

type TokenFuture = Pin<Box<dyn Future<Output = Result<Arc<Cached>, Error>> + Send + 'static>>;

pin_project! {
    /// The response future of [`super::OAuth2Service`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        cache: Option<TokenCache>,
        generation: u64,
        replay: Option<Replay<S, B>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // No usable token was cached: waiting for the fetch, holding the
        // ready inner service and the request.
        WaitToken {
            token: TokenFuture,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        // The request is with the inner service.
        First {
            #[pin]
            future: S::Future,
        },
        // It got a 401; waiting for a new token to resend it.
        Refetch {
            token: TokenFuture,
        },
        // The resend is with the inner service; its answer is final.
        Second {
            #[pin]
            future: Oneshot<S, Request<B>>,
        },
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("generation", &self.generation)
            .field("replayable", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn passthrough(future: S::Future) -> Self {
        ResponseFuture {
            state: State::First { future },
            cache: None,
            generation: 0,
            replay: None,
        }
    }

    pub(crate) fn sent(
        future: S::Future,
        cache: TokenCache,
        generation: u64,
        replay: Option<Replay<S, B>>,
    ) -> Self {
        ResponseFuture {
            state: State::First { future },
            cache: Some(cache),
            generation,
            replay,
        }
    }

    pub(crate) fn waiting(
        token: TokenFuture,
        service: S,
        request: Request<B>,
        cache: TokenCache,
        replay: Option<Replay<S, B>>,
    ) -> Self {
        ResponseFuture {
            state: State::WaitToken {
                token,
                service: Some(service),
                request: Some(request),
            },
            cache: Some(cache),
            generation: 0,
            replay,
        }
    }
}

impl<S, B, R> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Output = Result<Response<R>, ServiceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::WaitToken {
                    token,
                    service,
                    request,
                } => {
                    let cached = ready!(token.as_mut().poll(cx)).map_err(ServiceError::Token)?;
                    let (Some(mut service), Some(mut request)) = (service.take(), request.take())
                    else {
                        panic!("ResponseFuture polled after completion");
                    };
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, cached.header.clone());
                    *this.generation = cached.generation;
                    let future = service.call(request);
                    this.state.set(State::First { future });
                }
                StateProj::First { future } => {
                    let response = ready!(future.poll(cx)).map_err(ServiceError::Inner)?;
                    if !a_new_token_may_help(response.status(), response.headers()) {
                        return Poll::Ready(Ok(response));
                    }
                    let Some(cache) = this.cache.as_ref() else {
                        return Poll::Ready(Ok(response));
                    };
                    cache.invalidate(*this.generation);
                    if this.replay.is_none() {
                        tracing::debug!(
                            "401 for a request whose body cannot be replayed; returned as is"
                        );
                        return Poll::Ready(Ok(response));
                    }
                    match cache.lookup() {
                        Lookup::Ready(header, generation) if generation != *this.generation => {
                            this.state.set(second(this.replay, cache, header));
                        }
                        _ => {
                            let token = cache.wait_for_token();
                            this.state.set(State::Refetch { token });
                        }
                    }
                }
                StateProj::Refetch { token } => {
                    let cached = ready!(token.as_mut().poll(cx)).map_err(ServiceError::Token)?;
                    let Some(cache) = this.cache.as_ref() else {
                        unreachable!("a refetch always has a cache");
                    };
                    this.state
                        .set(second(this.replay, cache, cached.header.clone()));
                }
                StateProj::Second { future } => {
                    return future.poll(cx).map_err(ServiceError::Inner);
                }
            }
        }
    }
}

fn second<S, B>(
    replay: &mut Option<Replay<S, B>>,
    cache: &TokenCache,
    header: http::HeaderValue,
) -> State<S, B>
where
    S: Service<Request<B>>,
{
    let Some(replay) = replay.take() else {
        unreachable!("a resend is only started with a replay copy");
    };
    cache.count_retry();
    tracing::debug!("resending the request once with a new token after a 401");
    let (service, request) = replay.into_request(header);
    State::Second {
        future: service.oneshot(request),
    }
}
