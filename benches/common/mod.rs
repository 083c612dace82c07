//! What every benchmark shares: a no-op inner service, a token endpoint
//! answered in-process (no network), the runtime they run on, and whether
//! this is a timed run. The hot-path contenders are in `benches/contenders/`.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::Service;
use tower_oauth2::cache::TokenCacheBuilder;
use tower_oauth2::layer::Destinations;
use tower_oauth2::{
    ClientAuth, HttpTransport, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl,
};

pub type Body = Full<Bytes>;

/// An opaque access token of the usual size (32 random bytes, base64url).
pub const OPAQUE_TOKEN: &str = "q3Zb8uJx0yTn4Vd1LkQe7Rw2HsPa9Gm5Fc6Ij3Ko0Ul";

/// The inner service of every benchmark: answers at once and drops the
/// request (after `black_box`, so the header work cannot be optimized away).
/// It holds a `P`, so that cloning it costs what cloning a `P` does.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopWith<P>(P);

/// [`NoopWith`] holding nothing: free to clone.
#[allow(dead_code, reason = "end_to_end sends over a real connection instead")]
pub type Noop = NoopWith<()>;

impl<P> Service<Request<Body>> for NoopWith<P> {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        drop(black_box(req));
        black_box(&self.0);
        ready(Ok(Response::new(())))
    }
}

/// `OAuth2Layer::new(cache)` for an inner service that stands for a
/// connection to `https://api.example.com` (as [`Noop`] does): its
/// path-only requests (`Request::new(..)` is `GET /`) get the token, as
/// they would over a tonic channel told its origin.
#[allow(
    dead_code,
    reason = "end_to_end sends absolute URIs over a real connection"
)]
pub fn layer(cache: TokenCache) -> OAuth2Layer {
    let to_inner = Destinations::secure()
        .origin_form_to("https://api.example.com")
        .expect("an https origin");
    OAuth2Layer::new(cache).destinations(to_inner)
}

/// [`layer`]'s settings, keyed by host over three APIs: `api.example.com`
/// (and origin-form requests), `b.example.com`, `c.example.com`, whose
/// caches are `caches` in that order.
#[allow(dead_code, reason = "only the hot_path bench has a keyed contender")]
pub fn keyed_layer(caches: Vec<TokenCache>) -> tower_oauth2::layer::KeyedOAuth2Layer<u8> {
    let to_inner = Destinations::secure()
        .origin_form_to("https://api.example.com")
        .expect("an https origin");
    let key = |uri: &http::Uri, _: &http::HeaderMap| match uri.host() {
        None | Some("api.example.com") => Some(0u8),
        Some("b.example.com") => Some(1),
        Some("c.example.com") => Some(2),
        Some(_) => None,
    };
    let make = move |key: &u8| caches.get(usize::from(*key)).cloned();
    tower_oauth2::layer::KeyedOAuth2Layer::new(key, make).destinations(to_inner)
}

/// A token endpoint answered in-process: a `service_fn` that counts the
/// token requests, waits `latency`, and answers a bearer token living
/// `expires_in` seconds.
#[derive(Clone)]
pub struct LocalTokenServer {
    requests: Arc<AtomicUsize>,
    latency: Duration,
    expires_in: u64,
    access_token: Arc<str>,
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

    #[allow(
        dead_code,
        reason = "the hot-path benchmarks fetch one token, before the clock starts"
    )]
    pub fn token_requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// A `TokenCacheBuilder` for the client-credentials grant against this
    /// endpoint.
    #[allow(
        dead_code,
        reason = "the memory bench builds its caches from `endpoint`"
    )]
    pub fn cache_builder(&self) -> TokenCacheBuilder {
        TokenCache::builder(self.endpoint(), TokenRequest::client_credentials())
    }

    /// This token endpoint, for caches of other grants (one clone per
    /// cache, as an application would).
    pub fn endpoint(&self) -> TokenEndpoint<impl HttpTransport + Clone + Sync> {
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
        TokenEndpoint::new(
            http,
            TokenUrl::new("https://as.example.com/oauth2/token").expect("token URL"),
            ClientAuth::client_secret_basic("bench-client", "bench-secret"),
        )
    }
}

/// A Tokio runtime with `workers` worker threads and all drivers.
#[allow(
    dead_code,
    reason = "the memory bench counts on a current-thread runtime"
)]
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether the program was started by `cargo bench` (which passes
/// `--bench`) rather than `cargo test --benches` (a quick smoke run).
#[allow(dead_code, reason = "criterion benchmarks ask criterion instead")]
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}
