use std::fmt;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;

/// Reads each request body into memory (up to a limit) so that
/// [`super::ReplayClone`] can resend it after a 401 or a gRPC
/// UNAUTHENTICATED.
///
/// Put it outside [`super::OAuth2Layer`]; the services inside see
/// `Request<Full<Bytes>>`. Use it for bodies that are small and complete
/// before sending: unary gRPC calls (tonic's bodies are streams, so the layer
/// alone cannot resend them), JSON requests built as streams. Do not use it
/// for streaming uploads or client-streaming gRPC: they would be held back
/// until their end.
///
/// While it reads a body, it holds the inner service that was polled ready
/// (a connection-pool slot, a concurrency permit). So the whole body must
/// arrive within a deadline ([`BufferBodyLayer::timeout`], 30 s by
/// default), else the request fails with a [`BodyTimeout`] error; on that
/// error, as on [`BodyTooLarge`], the inner service is dropped at once,
/// before anything is sent (ARCHITECTURE.md, invariant 10). The deadline
/// covers reading the body only; the inner service's own call is not
/// bounded here (tower's `TimeoutLayer` does that). Reading needs the timers
/// of a Tokio runtime.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::ServiceBuilder;
/// use tower_oauth2::layer::{BufferBodyLayer, Destinations, ReplayClone};
/// use tower_oauth2::OAuth2Layer;
/// # fn stack(cache: tower_oauth2::TokenCache) -> Result<(), tower_oauth2::Error> {
/// # let channel = tower::service_fn(|r: http::Request<tonic::body::Body>| async move {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
/// # });
/// // A tonic `Channel` (to https://inventory.internal) takes
/// // `tonic::body::Body`; buffer it, let the layer resend it, and turn it
/// // back into a tonic body for the channel. The channel adds its origin
/// // after the layer, so the layer is told it.
/// let to_channel = Destinations::secure().origin_form_to("https://inventory.internal")?;
/// let svc = ServiceBuilder::new()
///     .layer(BufferBodyLayer::new(64 * 1024))
///     .layer(OAuth2Layer::new(cache).destinations(to_channel).replay_body(ReplayClone))
///     .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
///     .service(channel);
/// # let _ = svc;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BufferBodyLayer {
    limit: usize,
    timeout: Duration,
}

/// How long [`BufferBodyLayer`] waits for a whole body by default: 30 s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl BufferBodyLayer {
    /// Buffers bodies of at most `limit` bytes; a larger body fails the
    /// request with a [`BodyTooLarge`] error before anything is sent.
    /// The body must arrive within [`DEFAULT_BODY_TIMEOUT`] unless
    /// [`BufferBodyLayer::timeout`] says otherwise.
    pub fn new(limit: usize) -> Self {
        BufferBodyLayer {
            limit,
            timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// Time allowed to read a whole request body, counted from the call
    /// (default 30 s); a body that takes longer fails the request with a
    /// [`BodyTimeout`] error before anything is sent.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            limit: self.limit,
            timeout: self.timeout,
        }
    }
}

/// The service built by [`BufferBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    limit: usize,
    timeout: Duration,
}

impl<S> BufferBody<S> {
    super::define_inner_service_accessors!();
}

/// A request body was larger than the [`BufferBodyLayer`] limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: usize,
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body is larger than the {}-byte buffer limit",
            self.limit
        )
    }
}

impl std::error::Error for BodyTooLarge {}

/// A request body did not arrive whole within the [`BufferBodyLayer`]
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout {
    after: Duration,
}

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body did not arrive within the {:?} buffer timeout",
            self.after
        )
    }
}

impl std::error::Error for BodyTimeout {}

impl<S, B, R> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BufferFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        BufferFuture {
            state: BufferState::Collecting {
                collect: Limited::new(body, self.limit).collect(),
                deadline: tokio::time::sleep(self.timeout),
                parts: std::future::ready(parts),
                service,
                limit: self.limit,
                timeout: self.timeout,
            },
        }
    }
}

pin_project! {
    /// The response future of [`BufferBody`].
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: BufferState<S, B>,
    }
}

pin_project! {
    #[project = BufferProj]
    enum BufferState<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        Collecting {
            #[pin]
            collect: Collect<Limited<B>>,
            #[pin]
            deadline: Sleep,
            // A `Ready` hands the parts out by value once, from behind the
            // pin (as in `super::future`).
            parts: Ready<http::request::Parts>,
            // The polled-ready inner service, called once the body is in.
            service: S,
            limit: usize,
            timeout: Duration,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        // The body could not be read; the inner service is dropped.
        Failed,
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}

impl<S, B, R> Future for BufferFuture<S, B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                BufferProj::Collecting {
                    collect,
                    deadline,
                    parts,
                    service,
                    limit,
                    timeout,
                } => {
                    let collected = match collect.poll(cx) {
                        Poll::Ready(Ok(c)) => Ok(c.to_bytes()),
                        Poll::Ready(Err(e)) if e.is::<LengthLimitError>() => {
                            Err(Box::new(BodyTooLarge { limit: *limit }) as BoxError)
                        }
                        Poll::Ready(Err(e)) => Err(e),
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            Err(Box::new(BodyTimeout { after: *timeout }) as BoxError)
                        }
                    };
                    let collected = match collected {
                        Ok(collected) => collected,
                        Err(e) => {
                            // Drops the ready inner service: it is not called.
                            this.state.set(BufferState::Failed);
                            return Poll::Ready(Err(e));
                        }
                    };
                    let parts = ready!(Pin::new(parts).poll(cx));
                    let future = service.call(Request::from_parts(parts, Full::new(collected)));
                    this.state.set(BufferState::Calling { future });
                }
                BufferProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                BufferProj::Failed => panic!("BufferFuture polled after it failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::limit::ConcurrencyLimit;
    use tower::{service_fn, ServiceExt};

    /// A body that arrives in chunks, with no size hint.
    struct Chunks(std::vec::IntoIter<&'static [u8]>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(
                self.0
                    .next()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn echo() -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|r: Request<Full<Bytes>>| async move {
            let len = r.body().size_hint().exact();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(len, Some(body.len() as u64));
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        })
    }

    #[tokio::test]
    async fn collects_the_body_and_keeps_the_parts() {
        let svc = BufferBodyLayer::new(16).layer(echo());
        let req = Request::post("http://x/y")
            .header("x-a", "1")
            .body(Chunks(vec![&b"hello "[..], b"world"].into_iter()))
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            "hello world"
        );
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit() {
        let svc = BufferBodyLayer::new(8).layer(echo());
        let req = Request::new(Chunks(vec![&b"hello "[..], b"world"].into_iter()));
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "request body is larger than the 8-byte buffer limit"
        );
        assert!(err.is::<BodyTooLarge>());
    }

    /// A body that never yields a frame: a client that stalls mid-upload.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    /// Far past any deadline the layer sets: reaching it means it set none.
    const HANG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out_and_releases_the_ready_service() {
        let mut svc = BufferBodyLayer::new(16).layer(ConcurrencyLimit::new(echo(), 1));
        let ready = ServiceExt::<Request<Stalled>>::ready(&mut svc);
        let call = ready.await.unwrap().call(Request::new(Stalled));
        let mut call = std::pin::pin!(call);
        let err = tokio::time::timeout(HANG, call.as_mut())
            .await
            .expect("collecting the body has no deadline")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "request body did not arrive within the 30s buffer timeout"
        );
        assert!(err.is::<BodyTimeout>());
        // The instance polled ready (holding the only permit) is dropped
        // with the error, not when the finished future is.
        tokio::time::timeout(HANG, ServiceExt::<Request<Stalled>>::ready(&mut svc))
            .await
            .expect("the ready inner service is still held")
            .unwrap();
    }

    /// A body whose chunks come from a channel, when the sender sends them.
    struct Channel(tokio::sync::mpsc::Receiver<&'static [u8]>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|c| c.map(|c| Ok(Frame::data(Bytes::from_static(c)))))
        }
    }

    /// A body whose one chunk arrives `after` the call, then ends.
    fn arriving_after(after: Duration) -> Channel {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(&b"late"[..]).await;
        });
        Channel(rx)
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_configurable_and_covers_the_whole_body() {
        let svc = BufferBodyLayer::new(16)
            .timeout(Duration::from_secs(5))
            .layer(echo());
        let req = Request::new(arriving_after(Duration::from_secs(4)));
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "late");

        let req = Request::new(arriving_after(Duration::from_secs(6)));
        let err = tokio::time::timeout(HANG, svc.oneshot(req))
            .await
            .expect("collecting the body has no deadline")
            .unwrap_err();
        assert!(err.is::<BodyTimeout>());
        assert_eq!(
            err.to_string(),
            "request body did not arrive within the 5s buffer timeout"
        );
    }
}
