use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::ServiceExt;
use tower_service::Service;

use super::error::ServiceError;
use super::policy::{AfterResponse, AuthPolicy, ResourceAnswer};
use super::replay::{Kept, Replay};
use crate::cache::{Cached, Lookup};
use crate::error::Error;
use crate::proof::SentProof;

pub(crate) type TokenFuture =
    Pin<Box<dyn Future<Output = Result<Arc<Cached>, Error>> + Send + 'static>>;

pin_project! {
    /// The response future of [`OAuth2Service`](super::OAuth2Service).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // The request gets no token: the inner service's answer is final.
        Passthrough {
            #[pin]
            future: S::Future,
        },
        // The request gets a token. `kept` is what the answers need of the
        // request: the copy to resend it once after a refusal, if one was
        // kept, else where it went (the answers are recorded for that
        // resource server).
        Authorized {
            #[pin]
            step: Step<S, B>,
            policy: AuthPolicy,
            kept: Kept<S, B>,
        },
    }
}

// Only `Called` is on the hot path; the other steps (a token to wait for,
// a resend) box what they hold, so that the future every request moves
// around is the inner future and the copy, not room for a second request.
// `request` and `resend` are `Ready` futures: a value that is there already,
// which `poll` hands out by value once from behind the pin, so moving it on
// to the inner service needs no `Option` to unwrap.
pin_project! {
    #[project = StepProj]
    enum Step<S, B>
    where
        S: Service<Request<B>>,
    {
        // No usable token was cached: waiting for the fetch, holding the
        // polled-ready inner service and the request.
        WaitingForToken {
            token: TokenFuture,
            request: Ready<Box<(S, Request<B>)>>,
        },
        // The request is with the inner service, carrying token
        // `generation`, and `proof` when the token is bound to a key (its
        // answer's nonce is remembered for where the proof went).
        Called {
            #[pin]
            future: S::Future,
            generation: u64,
            proof: Option<SentProof>,
        },
        // The token was refused and no newer one is cached: waiting for a
        // new one to resend the copy.
        Refetching {
            token: TokenFuture,
            resend: Ready<Box<Replay<S, B>>>,
        },
        // The copy is with the inner service, carrying token `generation`
        // (and `proof`, as in `Called`); its answer is final.
        Retrying {
            future: Pin<Box<Oneshot<S, Request<B>>>>,
            generation: u64,
            proof: Option<SentProof>,
        },
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("ResponseFuture");
        let State::Authorized { step, kept, .. } = &self.state else {
            return out.field("state", &"Passthrough").finish_non_exhaustive();
        };
        let (state, generation) = match step {
            Step::WaitingForToken { .. } => ("WaitingForToken", None),
            Step::Called { generation, .. } => ("Called", Some(generation)),
            Step::Refetching { .. } => ("Refetching", None),
            Step::Retrying { generation, .. } => ("Retrying", Some(generation)),
        };
        out.field("state", &state);
        if let Some(generation) = generation {
            out.field("generation", generation);
        }
        out.field("replayable", &kept.has_copy())
            .finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// A request that gets no token, with the inner service.
    pub(crate) fn passthrough(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Passthrough { future },
        }
    }

    /// `req`, sent with the token `lookup` found by `inner` (the instance
    /// polled ready) now, or by the future once a token is fetched; `kept`
    /// is what its answers need of it ([`Kept::of`], taken before the
    /// token went in).
    #[inline]
    pub(crate) fn send(
        inner: &mut S,
        mut req: Request<B>,
        lookup: Lookup,
        policy: AuthPolicy,
        kept: Kept<S, B>,
    ) -> Self
    where
        S: Clone,
    {
        let Lookup::Ready(header, generation) = lookup else {
            // A request no proof could go with fails before a token is
            // fetched for it.
            let token = match policy.unprovable(req.uri()) {
                Some(e) => Box::pin(std::future::ready(Err(e))),
                None => policy.cache().wait_for_token(),
            };
            return ResponseFuture::send_later(inner, req, token, policy, kept);
        };
        match policy.authorize(&mut req, header, generation) {
            Ok(proof) => {
                let future = inner.call(req);
                ResponseFuture::called(future, generation, proof, policy, kept)
            }
            Err(e) => ResponseFuture::failed(inner, req, e, policy, kept),
        }
    }

    /// [`ResponseFuture::send`] once `token` is here: the call happens
    /// later, in the future, so the ready instance goes with it and a clone
    /// stays (clone-then-replace). Out of line: the hot path sends at once.
    #[inline(never)]
    fn send_later(
        inner: &mut S,
        req: Request<B>,
        token: TokenFuture,
        policy: AuthPolicy,
        kept: Kept<S, B>,
    ) -> Self
    where
        S: Clone,
    {
        let clone = inner.clone();
        let service = std::mem::replace(inner, clone);
        let step = Step::WaitingForToken {
            token,
            request: std::future::ready(Box::new((service, req))),
        };
        ResponseFuture::authorized(step, policy, kept)
    }

    /// A request sent with token `generation` (and `proof`).
    #[inline(always)]
    pub(crate) fn called(
        future: S::Future,
        generation: u64,
        proof: Option<SentProof>,
        policy: AuthPolicy,
        kept: Kept<S, B>,
    ) -> Self {
        let step = Step::Called {
            future,
            generation,
            proof,
        };
        ResponseFuture::authorized(step, policy, kept)
    }

    /// A request whose proof could not be made: the error comes out of the
    /// future.
    pub(crate) fn failed(
        inner: &mut S,
        req: Request<B>,
        error: Error,
        policy: AuthPolicy,
        kept: Kept<S, B>,
    ) -> Self
    where
        S: Clone,
    {
        let token = Box::pin(std::future::ready(Err(error)));
        ResponseFuture::send_later(inner, req, token, policy, kept)
    }

    #[inline(always)]
    fn authorized(step: Step<S, B>, policy: AuthPolicy, kept: Kept<S, B>) -> Self {
        ResponseFuture {
            state: State::Authorized { step, policy, kept },
        }
    }
}

impl<S, B, R> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Output = Result<Response<R>, ServiceError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passthrough { future } => future.poll(cx).map_err(ServiceError::Inner),
            StateProj::Authorized { step, policy, kept } => poll_authorized(step, policy, kept, cx),
        }
    }
}

/// Polls the steps of a request that gets a token, one after the other,
/// until the answer.
fn poll_authorized<S, B, R>(
    mut step: Pin<&mut Step<S, B>>,
    policy: &AuthPolicy,
    kept: &mut Kept<S, B>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<R>, ServiceError<S::Error>>>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    loop {
        // The resource server that answered, worked out only when the
        // record of 401s needs it.
        let from = || kept.resource();
        let next = match step.as_mut().project() {
            StepProj::WaitingForToken { token, request } => {
                ready!(send_when_token(policy, token, request, cx))
            }
            StepProj::Called {
                future,
                generation,
                proof,
            } => {
                let response = ready!(future.poll(cx)).map_err(ServiceError::Inner)?;
                let answer = ResourceAnswer {
                    status: response.status(),
                    headers: response.headers(),
                    sent: *generation,
                    resendable: kept.has_copy(),
                };
                let after = policy.after_answer(proof.as_ref(), answer, from);
                let Some(resend) = resend(policy, kept, after) else {
                    return Poll::Ready(Ok(response));
                };
                // The refusal is dropped before the resend (or the fetch
                // first) is polled, so its connection is not held meanwhile.
                drop(response);
                resend
            }
            StepProj::Refetching { token, resend } => {
                ready!(resend_when_token(policy, token, resend, cx))
            }
            StepProj::Retrying {
                future,
                generation,
                proof,
            } => {
                let response = ready!(future.as_mut().poll(cx)).map_err(ServiceError::Inner)?;
                let answer =
                    ResourceAnswer::to_resend(response.status(), response.headers(), *generation);
                policy.after_resend_answer(proof.as_ref(), answer, from);
                return Poll::Ready(Ok(response));
            }
        };
        step.set(next.map_err(ServiceError::Token)?);
    }
}

/// `WaitingForToken`: once the token is here, the request goes to the
/// inner service with it.
fn send_when_token<S, B>(
    policy: &AuthPolicy,
    token: &mut TokenFuture,
    request: &mut Ready<Box<(S, Request<B>)>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Step<S, B>, Error>>
where
    S: Service<Request<B>>,
{
    let cached = ready!(token.as_mut().poll(cx))?;
    let (mut service, mut request) = *ready!(Pin::new(request).poll(cx));
    let proof = policy.authorize(&mut request, cached.header.clone(), cached.generation)?;
    let future = service.call(request);
    let generation = cached.generation;
    Poll::Ready(Ok(Step::Called {
        future,
        generation,
        proof,
    }))
}

/// After the first answer, judged `after`: the resend of the copy (or the
/// fetch first) when `after` decides one and a copy was kept; `None` when
/// the answer is final.
#[inline]
fn resend<S, B>(
    policy: &AuthPolicy,
    kept: &mut Kept<S, B>,
    after: AfterResponse,
) -> Option<Result<Step<S, B>, Error>>
where
    S: Service<Request<B>>,
{
    let (lookup, after_refusal) = match after {
        AfterResponse::Resend(lookup) => (lookup, true),
        AfterResponse::ResendWithNonce(lookup) => (lookup, false),
        // The copy stays where it is, dropped with the future: moving it
        // out would cost a copy of the request head.
        _ => return None,
    };
    // A resend is only decided when there is a copy to resend. The
    // resend's answer is recorded for the same resource server.
    let copy = kept.take_copy()?;
    Some(match lookup {
        Lookup::Ready(header, generation) => {
            retrying(policy, copy, header, generation, after_refusal)
        }
        // (After a nonce, too, if the token went stale meanwhile: rare,
        // and then counted as a retry.)
        Lookup::Wait => Ok(Step::Refetching {
            token: policy.cache().wait_for_token(),
            resend: std::future::ready(Box::new(copy)),
        }),
    })
}

/// `Refetching`: once the new token is here, the copy is resent with it.
fn resend_when_token<S, B>(
    policy: &AuthPolicy,
    token: &mut TokenFuture,
    resend: &mut Ready<Box<Replay<S, B>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Step<S, B>, Error>>
where
    S: Service<Request<B>>,
{
    let cached = ready!(token.as_mut().poll(cx))?;
    let copy = *ready!(Pin::new(resend).poll(cx));
    let header = cached.header.clone();
    Poll::Ready(retrying(policy, copy, header, cached.generation, true))
}

/// The resend of `copy` with `token` (of `generation`), on a clone of the
/// inner service that has not been polled ready: `oneshot` does that first.
/// `after_refusal`: the token was refused and this resend counts in
/// [`crate::cache::Stats::retries`]; else it is a DPoP nonce's resend with
/// the same token, counted nowhere.
fn retrying<S, B>(
    policy: &AuthPolicy,
    copy: Replay<S, B>,
    token: HeaderValue,
    generation: u64,
    after_refusal: bool,
) -> Result<Step<S, B>, Error>
where
    S: Service<Request<B>>,
{
    let (service, mut request) = copy.into_request();
    if after_refusal {
        policy.count_resend();
    }
    let proof = policy.authorize(&mut request, token, generation)?;
    Ok(Step::Retrying {
        future: Box::pin(service.oneshot(request)),
        generation,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{service_fn, Layer};

    use crate::layer::testing::cache;
    use crate::OAuth2Layer;

    fn echo(
    ) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
    {
        service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::default()))
        })
    }

    /// The size of the future of `svc`, and of its inner future and copy.
    fn sizes<S: Service<Request<B>>, B>(_: &S) -> (usize, usize, usize) {
        use std::mem::size_of;
        let future = size_of::<ResponseFuture<S, B>>();
        (future, size_of::<S::Future>(), size_of::<Replay<S, B>>())
    }

    /// Every request's future is moved (returned, pinned, awaited), so its
    /// size costs time (issue 23): it holds the inner future, the copy kept
    /// for a resend and a few words (generation, proof, settings), not
    /// room for the rarer steps (a second request, a token to wait for).
    /// `cargo test --lib future_size -- --nocapture` prints it.
    #[test]
    fn future_size_is_the_inner_future_and_the_copy_and_a_few_words() {
        let noop = service_fn(|_req: Request<Full<Bytes>>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(())))
        });
        let (future, inner, copy) = sizes(&noop);
        println!("ResponseFuture: {future} bytes (inner future {inner}, copy {copy})");
        let words = 6 * std::mem::size_of::<usize>();
        assert!(
            future <= inner + copy + words,
            "{future} > {inner} + {copy} + {words}"
        );
    }

    #[tokio::test]
    async fn debug_shows_the_state_and_generation_but_no_token() {
        let cache = cache();
        let mut svc = OAuth2Layer::new(cache.clone()).layer(echo());
        let get = Request::get("https://api.example.com/").body(Full::default());
        let waiting = svc.call(get.unwrap());
        assert_eq!(
            format!("{waiting:?}"),
            r#"ResponseFuture { state: "WaitingForToken", replayable: true, .. }"#
        );
        waiting.await.unwrap();
        let (_, generation) = cache.bearer_header_with_generation().await.unwrap();
        let post = Request::post("https://api.example.com/p")
            .body(Full::from("x"))
            .unwrap();
        let called = svc.call(post);
        assert_eq!(
            format!("{called:?}"),
            format!(
                r#"ResponseFuture {{ state: "Called", generation: {generation}, replayable: false, .. }}"#
            )
        );
        let clear = Request::get("http://api.example.com/").body(Full::default());
        let passthrough = svc.call(clear.unwrap());
        assert_eq!(
            format!("{passthrough:?}"),
            r#"ResponseFuture { state: "Passthrough", .. }"#
        );
    }
}
