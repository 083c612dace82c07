//! The combination matrix (issue 19; ARCHITECTURE.md, "The combination
//! matrix"): the crate's features run pairwise, each pair asserting what
//! must hold where the two meet: which token goes where (the exact
//! `Authorization` values the resource received, its DPoP proofs checked
//! by the test server), how many token requests (the token server's exact
//! counts), no token of one subject ever reaching another, and no request
//! failed that could have succeeded.
//!
//! The features: the fleet's Redis tier (a real `redis-server` the test
//! starts), keyed caches (`KeyedOAuth2Layer`), DPoP, grants with a subject
//! (refresh token, token exchange), revocation (`TokenCache::revoke`), the
//! 401 backoff, origin-form URIs (`origin_form_to`, as tonic sends them),
//! `FileStore`, the reqwest middleware, and `OnBehalfLayer` (a token
//! exchanged per caller subject). One file per feature row; a
//! pair lives in the row of the feature listed first, and each test is
//! named `pair_<a>_<b>_…`.
//!
//! A fleet "process" here is a cache with its own `RedisTier` (its own
//! connection): for Redis, a separate process; requests are sent one after
//! another, so the counts are exact. The 401 backoff is an hour long, longer
//! than any test runs, so counts never depend on the machine's speed.
#![cfg(all(feature = "redis", feature = "dpop", feature = "reqwest"))]

mod backoff;
mod credentials;
mod dpop;
mod file_store;
mod fleet;
mod grants;
mod keyed;
mod on_behalf;
mod origin_form;
use crate::redis_server;
mod revocation;
use crate::support;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tower::{service_fn, Service, ServiceExt};
use tower_oauth2::cache::Backoff;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::{TokenCache, TokenEndpoint};

use redis_server::RedisServer;
use support::client::{
    connection, http_client, layered, origin_form_get, over_connection, to_connection, HttpClient,
};
use support::serve::{serve_on, Serving};
use support::token_server::TestServer;

/// Two processes each sent a request with the fleet's first token, which
/// the resource then revoked, and each sent one more: the first process's
/// is refused and resent with the one new token it fetched, the second's
/// is refused and resent with that token, taken from Redis.
fn assert_one_refetch_for_both_processes(server: &TestServer) {
    assert_eq!(
        auths(server),
        values(&[
            "Bearer at-1",
            "Bearer at-1",
            "Bearer at-1",
            "Bearer at-2",
            "Bearer at-1",
            "Bearer at-2"
        ])
    );
    assert_eq!(server.token_requests(), 2);
}

/// RFC 8693's token type of an access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The 401 backoff of every layer here: longer than any test runs.
fn an_hour() -> Backoff {
    let hour = Duration::from_secs(3600);
    Backoff::new(hour, hour)
}

/// A tier of its own (its own connection) on `redis`: one fleet process.
/// Redis calls get 2 s, so a loaded machine does not turn a slow answer
/// into a fallback the counts would see.
fn tier(redis: &RedisServer) -> RedisTier {
    RedisTier::standalone(&redis.url())
        .expect("a Redis URL")
        .namespace("matrix")
        .expect("a namespace")
        .lease(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10))
}

/// `server`'s token endpoint with its revocation endpoint.
fn revocable(server: &TestServer) -> TokenEndpoint<HttpClient> {
    server.endpoint().revocation_url(server.revocation_url())
}

/// Waits (10 s at most) until the `FileStore` file at `path` holds
/// `access_token` marked refused. The 401 is never held back by the store:
/// the mark is written in the background, and a cache built for the same
/// file before it lands would restore the token once more.
async fn until_marked_refused(path: &std::path::Path, access_token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stored = std::fs::read(path).unwrap_or_default();
        let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap_or_default();
        if stored["access_token"] == access_token && stored["access_token_refused"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never marked {access_token} refused", path.display());
}

/// The `Authorization` value of each resource request, in order (`-` for
/// none).
fn auths(server: &TestServer) -> Vec<String> {
    let all = server.authorizations().into_iter();
    all.map(|a| a.unwrap_or_else(|| "-".to_owned())).collect()
}

/// `tokens` as the `Authorization` values `auths` lists.
fn values(tokens: &[&str]) -> Vec<String> {
    tokens.iter().map(|&t| t.to_owned()).collect()
}

/// The `name` form parameter of each token request, in order.
fn token_params(server: &TestServer, name: &str) -> Vec<Option<String>> {
    server.received().iter().map(|r| r.param(name)).collect()
}

/// `Some(value)` for each of `values`.
fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|&v| Some(v.to_owned())).collect()
}

/// The status of `request` sent through `svc` (a clone), or the error's
/// text.
async fn status<S, B>(svc: &S, request: Request<Full<Bytes>>) -> Result<StatusCode, String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Display,
{
    let response = svc.clone().oneshot(request).await;
    response.map(|r| r.status()).map_err(|e| e.to_string())
}

/// A GET of `url` through a reqwest client: its status, or the error.
async fn reqwest_get(client: &ClientWithMiddleware, url: &str) -> Result<StatusCode, String> {
    let response = client.get(url).send().await;
    response.map(|r| r.status()).map_err(|e| e.to_string())
}

/// A new DPoP key.
fn a_key() -> Dpop {
    Dpop::generate().expect("an ES256 key")
}

/// Three caches from `process` (each built after the one before sent its
/// request): with a key, with the same key, with another key. The second
/// takes the first's bound token (where they share it: Redis, a file);
/// the third, holding another key, never does and fetches its own.
async fn a_bound_token_goes_only_to_holders_of_its_key(
    server: &TestServer,
    process: impl Fn(&Dpop) -> TokenCache,
) {
    let (key, other) = (a_key(), a_key());
    for key in [&key, &key, &other] {
        let cache = process(key);
        assert_eq!(
            status(&layered(&cache), server.get("/a")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        auths(server),
        values(&["DPoP at-1", "DPoP at-1", "DPoP at-2"])
    );
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// The API a path is for: `/orders/…`, `/billing/…`.
fn api_of(uri: &Uri, _: &HeaderMap) -> Option<String> {
    let api = uri.path().split('/').nth(1)?;
    ["orders", "billing"].contains(&api).then(|| api.to_owned())
}

/// One fleet process: a keyed layer by [`api_of`] (each API's token asked
/// for with its own `audience`) whose caches share their tokens through
/// a tier of its own on `redis`.
fn keyed_fleet_process(
    server: &TestServer,
    redis: &RedisServer,
) -> tower_oauth2::layer::KeyedService<HttpClient, String> {
    let (endpoint, tier) = (server.endpoint(), tier(redis));
    let layer = tower_oauth2::layer::KeyedOAuth2Layer::new(api_of, move |api: &String| {
        let request = tower_oauth2::TokenRequest::client_credentials().audience(api.clone());
        let builder = TokenCache::builder(endpoint.clone(), request);
        Some(builder.redis(tier.clone()).build())
    });
    tower::Layer::layer(&layer, http_client())
}

/// Issue 19, defect 14, through `svc`: a keyed layer by [`api_of`] with
/// `max_keys(1)` and the 401 retry off, whose caches share a token (in
/// Redis, in a file). The resource refuses "orders"' token and the 401
/// comes back as it came; once `refused` is done (the refusal reached
/// where the token is shared), "billing" evicts "orders", and "orders"
/// comes back with a new cache, which must not take the refused token
/// back (else the test fails with `taken_back`).
async fn a_refused_token_is_not_taken_back<S, B>(
    server: &TestServer,
    svc: &S,
    refused: impl std::future::Future<Output = ()>,
    taken_back: &str,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Display,
{
    assert_eq!(
        status(svc, server.get("/orders/1")).await,
        Ok(StatusCode::OK)
    );
    server.revoke("at-1");
    assert_eq!(
        status(svc, server.get("/orders/2")).await,
        Ok(StatusCode::UNAUTHORIZED)
    );
    refused.await;
    for path in ["/billing/1", "/orders/3"] {
        assert_eq!(
            status(svc, server.get(path)).await,
            Ok(StatusCode::OK),
            "{path}"
        );
    }
    assert_eq!(
        auths(server),
        values(&["Bearer at-1", "Bearer at-1", "Bearer at-2", "Bearer at-3"]),
        "{taken_back}"
    );
}

/// A reqwest client with `middleware`.
fn reqwest_client(middleware: OAuth2Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// A resource server that refuses every token (`401`, `Bearer
/// error="invalid_token"`), and records the `Authorization` of each request.
struct Refusing {
    serving: Serving,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Refusing {
    async fn start() -> Refusing {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let auth = req.headers().get("authorization");
            let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or("-");
            record.lock().expect("the record").push(auth.to_owned());
            let refusal = Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", r#"Bearer error="invalid_token""#)
                .body(Full::new(Bytes::from_static(b"refused")))
                .expect("a valid 401");
            async move { Ok::<_, Infallible>(refusal) }
        });
        Refusing {
            serving: serve_on(0, service).await,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    /// The `Authorization` of each request it refused, in order.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("the record").clone()
    }
}

/// A resource server that answers `302 Found` to `location` for every
/// request.
async fn redirecting_to(location: String) -> Serving {
    let service = service_fn(move |_: Request<hyper::body::Incoming>| {
        let moved = Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location.as_str())
            .body(Full::new(Bytes::new()))
            .expect("a valid 302");
        async move { Ok::<_, Infallible>(moved) }
    });
    serve_on(0, service).await
}

/// A server that answers 200 to everything and records the `Authorization`
/// and `DPoP` headers of each request (`-` for none).
struct Landing {
    serving: Serving,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Landing {
    async fn start() -> Landing {
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let record = seen.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let header = |name: &str| {
                let value = req.headers().get(name).and_then(|v| v.to_str().ok());
                value.unwrap_or("-").to_owned()
            };
            let seen = (header("authorization"), header("dpop"));
            record.lock().expect("the record").push(seen);
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
        });
        Landing {
            serving: serve_on(0, service).await,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        self.serving.url(path)
    }

    /// The (`Authorization`, `DPoP`) of each request, in order.
    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("the record").clone()
    }
}

/// A temporary directory and a token file's path in it.
fn token_file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Waits until `done` holds (10 s at most: then the test fails).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cache's header as text.
async fn header(cache: &TokenCache) -> Result<String, String> {
    match cache.bearer_header().await {
        Ok(h) => Ok(h.to_str().expect("an ASCII header").to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
