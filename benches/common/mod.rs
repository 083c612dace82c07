//! Shared pieces of the benchmarks: a no-op inner service, a token endpoint
//! answered in-process (no network), a way to poll a future that is ready at
//! once, and the hot-path contenders measured side by side.
//!
//! Every contender is a tower `Service<Request<Full<Bytes>>>` over the same
//! no-op inner service, so what differs between them is only how each one
//! gets the `Authorization` header onto the request.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use tower::Service;
use tower_oauth2::cache::{RefreshPolicy, TokenCacheBuilder};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

pub type Body = Full<Bytes>;

/// An opaque access token of the usual size (32 random bytes, base64url).
pub const OPAQUE_TOKEN: &str = "q3Zb8uJx0yTn4Vd1LkQe7Rw2HsPa9Gm5Fc6Ij3Ko0Ul";

/// A JWT-sized access token (1 KiB of token characters).
pub fn jwt_sized_token() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s: String = (0..1024)
        .map(|i| alphabet[(i * 7 + 3) % alphabet.len()] as char)
        .collect();
    s.replace_range(100..101, ".");
    s.replace_range(700..701, ".");
    s
}

/// The inner service of every contender: answers at once and drops the
/// request (after `black_box`, so the header work cannot be optimized away).
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl Service<Request<Body>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        drop(black_box(req));
        ready(Ok(Response::new(())))
    }
}

/// The same no-op service, but as costly to clone as a hyper-util
/// `Client` (whose clone bumps about six `Arc`s: pool, executor, connector
/// config, resolver, timers): what a layer that clones its inner service
/// per request pays for it, and the atomic counters it makes threads share.
#[derive(Clone, Debug, Default)]
pub struct ArcsInner {
    arcs: [Arc<()>; 6],
}

impl Service<Request<Body>> for ArcsInner {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        drop(black_box(req));
        black_box(&self.arcs);
        ready(Ok(Response::new(())))
    }
}

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

impl InnerKind {
    pub fn from_name(name: &str) -> InnerKind {
        match name {
            "arcs" => InnerKind::Arcs,
            _ => InnerKind::Noop,
        }
    }
}

struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// A waker that does nothing (the futures polled here are ready at once).
pub fn noop_waker() -> Waker {
    Waker::from(Arc::new(NoopWake))
}

/// Polls `fut` once; it must be ready.
#[inline]
pub fn poll_now<F: Future>(fut: F, cx: &mut Context<'_>) -> F::Output {
    match pin!(fut).poll(cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a hot-path future was not ready at once"),
    }
}

/// The request each hot-path call sends: built fresh per call (every
/// contender, the bare one included, pays for building and dropping it).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Req {
    /// `Request::new(Full::default())`: `GET /`, no headers.
    Empty,
    /// `GET http://api.example.com/v1/items?limit=10` with `accept`,
    /// `user-agent` and `x-request-id` headers (copied from a template).
    Typical(Method, Uri, HeaderMap),
}

impl Req {
    pub fn typical() -> Req {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
        headers.insert(
            "x-request-id",
            HeaderValue::from_static("0f8e6a52-3c1d-4b7a-9e21-5d4c3b2a1f00"),
        );
        Req::Typical(
            Method::GET,
            Uri::from_static("http://api.example.com/v1/items?limit=10"),
            headers,
        )
    }

    pub fn from_name(name: &str) -> Req {
        match name {
            "typical" => Req::typical(),
            _ => Req::Empty,
        }
    }

    #[inline]
    pub fn make(&self) -> Request<Body> {
        let mut req = Request::new(Body::default());
        if let Req::Typical(m, u, h) = self {
            *req.method_mut() = m.clone();
            *req.uri_mut() = u.clone();
            *req.headers_mut() = h.clone();
        }
        req
    }
}

/// One request through `svc`: `poll_ready`, `call`, poll the response
/// future to completion. This is the unit every hot-path number measures.
#[inline]
pub fn one_call<S>(svc: &mut S, cx: &mut Context<'_>, req: &Req)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let resp = poll_now(svc.call(req.make()), cx).expect("call failed");
    black_box(resp);
}

/// A token endpoint answered in-process: a `service_fn` that counts the
/// token requests, waits `latency`, and answers a bearer token living
/// `expires_in` seconds.
#[derive(Clone)]
pub struct LocalTokenServer {
    pub requests: Arc<AtomicUsize>,
    pub latency: Duration,
    pub expires_in: u64,
    pub access_token: Arc<str>,
}

impl LocalTokenServer {
    pub fn new(access_token: &str, expires_in: u64, latency: Duration) -> Self {
        LocalTokenServer {
            requests: Arc::new(AtomicUsize::new(0)),
            latency,
            expires_in,
            access_token: access_token.into(),
        }
    }

    pub fn token_requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A `TokenCacheBuilder` for the client-credentials grant against this
    /// endpoint.
    pub fn cache_builder(&self) -> TokenCacheBuilder {
        let this = self.clone();
        let http = tower::service_fn(move |_req: Request<Body>| {
            let this = this.clone();
            async move {
                this.requests.fetch_add(1, Ordering::SeqCst);
                if !this.latency.is_zero() {
                    tokio::time::sleep(this.latency).await;
                }
                let json = format!(
                    r#"{{"access_token":"{}","token_type":"Bearer","expires_in":{}}}"#,
                    this.access_token, this.expires_in
                );
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(json))))
            }
        });
        let endpoint = TokenEndpoint::new(
            http,
            TokenUrl::new("https://as.example.com/oauth2/token").expect("token URL"),
            ClientAuth::client_secret_basic("bench-client", "bench-secret"),
        );
        TokenCache::builder(endpoint, TokenRequest::client_credentials())
    }
}

/// "Lazy" refresh: no lead, no jitter, so a token never goes stale before it
/// counts as expired and requests wait for the fetch at expiry.
pub fn lazy_policy() -> RefreshPolicy {
    RefreshPolicy::default().max_fraction(0.0).jitter(0.0)
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
    "naive_rwlock_format",
    "tower_oauth2",
    "tower_oauth2_no_retry",
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
    match inner {
        InnerKind::Noop => contenders_over(rt, token, only, Noop, v),
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
            let layer = OAuth2Layer::new(cache).retry_unauthorized(retry);
            v.visit(name, tower::Layer::layer(&layer, inner.clone()));
        }
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
        use aws_smithy_runtime::expiring_cache::ExpiringCache;
        let cache: ExpiringCache<Arc<str>, Infallible> =
            ExpiringCache::new(Duration::from_secs(10));
        let t: Arc<str> = token.into();
        rt.block_on(cache.get_or_load(|| async move {
            Ok::<_, Infallible>((t, SystemTime::now() + Duration::from_secs(3600)))
        }))
        .expect("aws cache");
        let waker = noop_waker();
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || {
                let mut cx = Context::from_waker(&waker);
                let t = poll_now(cache.yield_or_clear_if_expired(SystemTime::now()), &mut cx)
                    .expect("cached");
                bearer_value(&t)
            },
        };
        v.visit("aws_expiring_cache_format", svc);
    }
    if want("aws_expiring_cache_prebuilt") {
        use aws_smithy_runtime::expiring_cache::ExpiringCache;
        let cache: ExpiringCache<HeaderValue, Infallible> =
            ExpiringCache::new(Duration::from_secs(10));
        let h = bearer_value(token);
        rt.block_on(cache.get_or_load(|| async move {
            Ok::<_, Infallible>((h, SystemTime::now() + Duration::from_secs(3600)))
        }))
        .expect("aws cache");
        let waker = noop_waker();
        let svc = WithHeader {
            inner: inner.clone(),
            header: move || {
                let mut cx = Context::from_waker(&waker);
                poll_now(cache.yield_or_clear_if_expired(SystemTime::now()), &mut cx)
                    .expect("cached")
            },
        };
        v.visit("aws_expiring_cache_prebuilt", svc);
    }
}

/// Percentile (nearest rank) of sorted `xs`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether the program was started by `cargo bench` (which passes
/// `--bench`) rather than `cargo test --benches` (a quick smoke run).
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}
