//! The hot-path contenders measured side by side (`hot_path`, `contention`).
//!
//! Every contender is a tower `Service<Request<Full<Bytes>>>` over the same
//! no-op inner service, so what differs between them is only how each one
//! gets the `Authorization` header onto the request.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower::Service;

use crate::common::{Body, LocalTokenServer, Noop, NoopWith};

/// The same no-op service, but as costly to clone as a hyper-util
/// `Client` (whose clone bumps about six `Arc`s: pool, executor, connector
/// config, resolver, timers): what a layer that clones its inner service
/// per request pays for it, and the atomic counters it makes threads share.
pub type ArcsInner = NoopWith<[Arc<()>; 6]>;

/// An inner service for the contenders.
pub trait Inner:
    Service<
        Request<Body>,
        Response = Response<()>,
        Error = Infallible,
        Future = Ready<Result<Response<()>, Infallible>>,
    > + Clone
    + Send
    + Sync
    + Unpin
    + 'static
{
}

impl Inner for Noop {}
impl Inner for ArcsInner {}

/// Which inner service the contenders wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerKind {
    /// `Noop`: free to clone.
    Noop,
    /// `ArcsInner`: six `Arc`s to clone.
    Arcs,
}

/// Polls `fut` once; it must be ready.
#[inline]
pub fn poll_now<F: Future>(fut: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(fut).poll(cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hot-path future was not ready at once"),
    }
}

/// One request through `svc`: `poll_ready`, `call`, poll the response
/// future to completion. This is the unit every hot-path number measures.
#[inline]
pub fn one_call<S>(svc: &mut S, cx: &mut Context<'_>, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let resp = poll_now(svc.call(req), cx).expect("call failed");
    black_box(resp);
}

/// What each thread of [`run_load`] sends, and how.
#[derive(Clone)]
pub struct Load {
    /// Builds each request.
    pub make: Arc<dyn Fn() -> Request<Body> + Send + Sync>,
    /// Each call on a fresh clone of the thread's service, dropped after it
    /// (`svc.clone().oneshot(req)`), instead of every call on the one.
    pub clone_per_call: bool,
}

/// Wall time for `threads` threads to make `calls` calls each, started
/// together behind a barrier, each thread on its own clone of `svc`, with
/// the requests and pattern of `load`.
pub fn run_load<S>(svc: &S, threads: usize, calls: u64, load: &Load) -> Duration
where
    S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            let load = load.clone();
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                barrier.wait();
                for _ in 0..black_box(calls) {
                    if load.clone_per_call {
                        one_call(&mut svc.clone(), &mut cx, (load.make)());
                    } else {
                        one_call(&mut svc, &mut cx, (load.make)());
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

/// A service that puts the header `header()` returns on each request; used
/// to give the naive cache and the peer crates the same tower shape as ours.
#[derive(Clone)]
pub struct WithHeader<S, F> {
    inner: S,
    header: F,
}

impl<S, F> Service<Request<Body>> for WithHeader<S, F>
where
    S: Service<Request<Body>>,
    F: FnMut() -> HeaderValue,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> S::Future {
        req.headers_mut().insert(AUTHORIZATION, (self.header)());
        self.inner.call(req)
    }
}

/// Keeps a copy of each request's head (and a clone of the inner service)
/// until its answer: what a layer that may resend a request pays.
#[derive(Clone)]
pub struct HeadCopy<S>(S);

/// The copy [`HeadCopy`] keeps.
#[allow(dead_code, reason = "kept, never read: only its cost counts")]
pub struct Head<S> {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    extensions: http::Extensions,
    body: Body,
    service: S,
}

/// The inner future, and the copy kept until it is ready.
pub struct HeadCopyFuture<F, S> {
    future: F,
    copy: Head<S>,
}

impl<F: Future + Unpin, S: Unpin> Future for HeadCopyFuture<F, S> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = std::pin::Pin::new(&mut self.future).poll(cx);
        if out.is_ready() {
            black_box(&self.copy);
        }
        out
    }
}

impl<S> Service<Request<Body>> for HeadCopy<S>
where
    S: Service<Request<Body>> + Clone + Unpin,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HeadCopyFuture<S::Future, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let copy = Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
            body: Body::default(),
            service: self.0.clone(),
        };
        HeadCopyFuture {
            future: self.0.call(req),
            copy,
        }
    }
}

/// Looks at the status of each answer when it comes, as a layer that may
/// react to a 401 must: the fair floor of our layer with the retry off.
#[derive(Clone)]
pub struct StatusCheck<S>(S);

/// The inner future; the answer's status is looked at when it is ready.
pub struct StatusCheckFuture<F>(F);

impl<F, R, E> Future for StatusCheckFuture<F>
where
    F: Future<Output = Result<Response<R>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let out = std::pin::Pin::new(&mut self.0).poll(cx);
        if let Poll::Ready(Ok(response)) = &out {
            if response.status() == http::StatusCode::UNAUTHORIZED {
                black_box(response.headers());
            }
        }
        out
    }
}

impl<S, R> Service<Request<Body>> for StatusCheck<S>
where
    S: Service<Request<Body>, Response = Response<R>>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = StatusCheckFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        StatusCheckFuture(self.0.call(req))
    }
}

fn bearer_value(token: &str) -> HeaderValue {
    let mut v = HeaderValue::try_from(format!("Bearer {token}")).expect("header value");
    v.set_sensitive(true);
    v
}

/// Receives each contender (a generic method, so every contender is
/// measured with static dispatch).
pub trait Visit {
    fn visit<S>(&mut self, name: &str, svc: S)
    where
        S: Service<Request<Body>, Response = Response<()>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug;
}

/// The names `contenders` passes to `Visit::visit`, in order.
pub const CONTENDERS: &[&str] = &[
    "bare",
    "add_authorization",
    "add_authorization_head_copy",
    "add_authorization_status_check",
    "rwlock_header_peer",
    "naive_rwlock_format",
    "tower_oauth2",
    "tower_oauth2_no_retry",
    "tower_oauth2_keyed",
    "aliri_tokens",
    "aws_expiring_cache_format",
    "aws_expiring_cache_prebuilt",
];

/// Builds every hot-path contender with a fresh cached `token` and hands it
/// to `v`. `only` restricts it to one name. Needs to run inside a Tokio
/// runtime context (`Runtime::enter`) that is kept running.
pub fn contenders(
    rt: &tokio::runtime::Runtime,
    token: &str,
    only: Option<&str>,
    inner: InnerKind,
    v: &mut impl Visit,
) {
    if let Some(name) = only {
        assert!(
            CONTENDERS.contains(&name),
            "unknown contender {name}; one of {CONTENDERS:?}"
        );
    }
    match inner {
        InnerKind::Noop => contenders_over(rt, token, only, Noop::default(), v),
        InnerKind::Arcs => contenders_over(rt, token, only, ArcsInner::default(), v),
    }
}

fn contenders_over<I: Inner>(
    rt: &tokio::runtime::Runtime,
    token: &str,
    only: Option<&str>,
    inner: I,
    v: &mut impl Visit,
) {
    let want = |name: &str| only.is_none_or(|o| o == name);

    // The zero: the inner service alone.
    if want("bare") {
        v.visit("bare", inner.clone());
    }

    // The floor: tower-http's static, prebuilt header.
    if want("add_authorization") {
        let svc =
            tower_http::auth::AddAuthorization::bearer(inner.clone(), token).as_sensitive(true);
        v.visit("add_authorization", svc);
    }

    // The default's floor: the same, plus the copy of the request a resend
    // after a 401 needs (method, URI, version, headers, extensions, an
    // empty body, a clone of the inner service), kept until the answer, as
    // tower-http's `follow_redirect` keeps one.
    if want("add_authorization_head_copy") {
        let svc =
            tower_http::auth::AddAuthorization::bearer(inner.clone(), token).as_sensitive(true);
        v.visit("add_authorization_head_copy", HeadCopy(svc));
    }

    // The retry-off layer's fair floor: the same, plus a response future
    // that looks at the status when the answer comes.
    if want("add_authorization_status_check") {
        let svc =
            tower_http::auth::AddAuthorization::bearer(inner.clone(), token).as_sensitive(true);
        v.visit("add_authorization_status_check", StatusCheck(svc));
    }

    // A hand-written peer: the prebuilt header in a `RwLock<Option<_>>`,
    // read and cloned per request.
    if want("rwlock_header_peer") {
        let lock = Arc::new(RwLock::new(Some(bearer_value(token))));
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || {
                let token = lock.read().expect("lock");
                token.clone().expect("a token")
            },
        };
        v.visit("rwlock_header_peer", svc);
    }

    // A naive cache: a lock around the token string, a header built per request.
    if want("naive_rwlock_format") {
        let lock = Arc::new(RwLock::new(token.to_owned()));
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || bearer_value(&lock.read().expect("lock")),
        };
        v.visit("naive_rwlock_format", svc);
    }

    // Ours, with the default 401 retry (keeps a replay copy of each request)
    // and without it.
    for (name, retry) in [("tower_oauth2", true), ("tower_oauth2_no_retry", false)] {
        if want(name) {
            let server = LocalTokenServer::new(token, 3600, Duration::ZERO);
            let cache = server.cache_builder().build();
            rt.block_on(cache.bearer_header()).expect("first token");
            let layer = crate::common::layer(cache).retry_unauthorized(retry);
            v.visit(name, tower::Layer::layer(&layer, inner.clone()));
        }
    }

    // Ours keyed (`KeyedOAuth2Layer`): three APIs, each its own cache with a
    // token fetched; the request's key is its host (the origin-form
    // requests of the empty shape go to api.example.com).
    if want("tower_oauth2_keyed") {
        let server = LocalTokenServer::new(token, 3600, Duration::ZERO);
        let caches: Vec<_> = (0..3).map(|_| server.cache_builder().build()).collect();
        for cache in &caches {
            rt.block_on(cache.bearer_header()).expect("first token");
        }
        let layer = crate::common::keyed_layer(caches);
        v.visit(
            "tower_oauth2_keyed",
            tower::Layer::layer(&layer, inner.clone()),
        );
    }

    // aliri_tokens: a `TokenWatcher` (a `tokio::sync::watch` of the token,
    // refreshed by a background task) fed by a constant local token source.
    // Its tokens are strings; the header is built per request, as its
    // reqwest middleware does.
    if want("aliri_tokens") {
        use aliri_tokens::backoff::ErrorBackoffConfig;
        use aliri_tokens::jitter::NullJitter;
        use aliri_tokens::sources::ConstTokenSource;
        let source = ConstTokenSource::new(token.to_owned())
            .with_token_valid_for(aliri_clock::DurationSecs(3600));
        let watcher = rt
            .block_on(aliri_tokens::TokenWatcher::spawn_from_token_source(
                source,
                NullJitter,
                ErrorBackoffConfig::default(),
            ))
            .expect("aliri watcher");
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || bearer_value(watcher.token().access_token().as_str()),
        };
        v.visit("aliri_tokens", svc);
    }

    // aws-smithy-runtime's `ExpiringCache` (what its identity cache uses):
    // a `tokio::sync::RwLock<OnceCell<(T, SystemTime)>>`, read with the
    // wall clock. "format" caches the token string and builds the header per
    // request, as the SDK's bearer signer does; "prebuilt" caches the
    // finished `HeaderValue` (the cache's own cost only).
    if want("aws_expiring_cache_format") {
        let cached = aws_cached(rt, Arc::<str>::from(token));
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || bearer_value(&cached()),
        };
        v.visit("aws_expiring_cache_format", svc);
    }
    if want("aws_expiring_cache_prebuilt") {
        let svc = WithHeader {
            inner: inner.clone(),
            header: aws_cached(rt, bearer_value(token)),
        };
        v.visit("aws_expiring_cache_prebuilt", svc);
    }
}

/// An aws-smithy-runtime `ExpiringCache` holding `value` for an hour, and
/// a function that reads it as the SDK does (checking the wall clock).
fn aws_cached<T>(rt: &tokio::runtime::Runtime, value: T) -> impl Fn() -> T + Clone + Send + 'static
where
    T: Clone + Send + Sync + 'static,
{
    use aws_smithy_runtime::expiring_cache::ExpiringCache;
    let cache: ExpiringCache<T, Infallible> = ExpiringCache::new(Duration::from_secs(10));
    rt.block_on(cache.get_or_load(|| async move {
        Ok::<_, Infallible>((value, SystemTime::now() + Duration::from_secs(3600)))
    }))
    .expect("aws cache");
    move || {
        let mut cx = Context::from_waker(Waker::noop());
        poll_now(cache.yield_or_clear_if_expired(SystemTime::now()), &mut cx).expect("cached")
    }
}
