//! KeyedOAuth2Layer: one client, several APIs, each with its own token,
//! against a real token endpoint and resource server on 127.0.0.1.

use crate::support;

use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use support::client::{get, http2_client, http_client, HttpClient};
use support::token_server::{bearer, TestServer};
use tower::{Layer, ServiceExt};
use tower_oauth2::error::ErrorKind;
use tower_oauth2::layer::{Destinations, KeyedOAuth2Layer, KeyedService, Unmapped};
use tower_oauth2::TokenRequest;

/// The APIs, one per first path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Api {
    Orders,
    Billing,
    Stock,
}

/// The API a path is for: `/orders/…`, `/billing/…`, `/stock/…`; others none.
fn api_of(uri: &Uri, _: &HeaderMap) -> Option<Api> {
    match uri.path().split('/').nth(1) {
        Some("orders") => Some(Api::Orders),
        Some("billing") => Some(Api::Billing),
        Some("stock") => Some(Api::Stock),
        _ => None,
    }
}

/// A layer whose key is the API of the path, each API's token asked for
/// with its own RFC 8707 `resource`; `/stock` maps to nothing. The APIs
/// are behind one gateway (the test server), which their `resource`s do
/// not name: the destinations are chosen, else each key's token would go
/// only to its `resource`'s origin.
fn by_path(server: &TestServer) -> KeyedOAuth2Layer<Api> {
    let endpoint = server.endpoint();
    let layer = KeyedOAuth2Layer::new(api_of, move |api: &Api| {
        let resource = match api {
            Api::Orders => "https://orders.example",
            Api::Billing => "https://billing.example",
            Api::Stock => return None,
        };
        let request = TokenRequest::client_credentials().resource(resource);
        Some(tower_oauth2::TokenCache::builder(endpoint.clone(), request).build())
    });
    layer.destinations(Destinations::secure())
}

async fn send(svc: &KeyedService<HttpClient, Api>, url: String) -> Result<StatusCode, ErrorKind> {
    match svc.clone().oneshot(get(&url)).await {
        Ok(response) => Ok(response.status()),
        Err(e) => Err(e.token_error().expect("a token error").kind()),
    }
}

fn bodies(server: &TestServer) -> Vec<String> {
    server.received().into_iter().map(|r| r.body).collect()
}

const ORDERS: &str = "grant_type=client_credentials&resource=https%3A%2F%2Forders.example";
const BILLING: &str = "grant_type=client_credentials&resource=https%3A%2F%2Fbilling.example";

#[tokio::test]
async fn each_api_gets_its_own_token_asked_for_with_its_own_resource() {
    let server = TestServer::start().await;
    let layer = by_path(&server);
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/billing/1", "/orders/2", "/billing/2"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(bodies(&server), [ORDERS, BILLING]);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/2", "at-1"),
            bearer("/billing/2", "at-2"),
        ]
    );
    let mut keys = layer.keys();
    keys.sort_unstable();
    assert_eq!(keys, [Api::Orders, Api::Billing]);
    let fetches = |api| layer.cache_for(&api).unwrap().stats().token_fetches;
    assert_eq!((fetches(Api::Orders), fetches(Api::Billing)), (1, 1));
}

#[tokio::test]
async fn by_origin_each_origin_gets_the_token_of_its_own_variation() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let (ip, name) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    );
    let base = TokenRequest::client_credentials().scope("read");
    let endpoint = server.endpoint();
    let layer = KeyedOAuth2Layer::by_origin(
        [
            (&ip, base.clone().audience("api-one")),
            (&name, base.clone().scope("write").resource("https://two")),
        ],
        move |request: &TokenRequest| {
            tower_oauth2::TokenCache::builder(endpoint.clone(), request.clone()).build()
        },
    )
    .unwrap();
    let svc = layer.layer(http_client());
    for url in [&ip, &name, &ip] {
        let response = svc.clone().oneshot(get(&format!("{url}/r"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        bodies(&server),
        [
            "grant_type=client_credentials&scope=read&audience=api-one",
            "grant_type=client_credentials&scope=read+write&resource=https%3A%2F%2Ftwo",
        ]
    );
    assert_eq!(
        server.authorizations(),
        [
            Some("Bearer at-1".to_owned()),
            Some("Bearer at-2".to_owned()),
            Some("Bearer at-1".to_owned())
        ]
    );
    let fetches = |key| layer.cache_for(&key).unwrap().stats().token_fetches;
    assert_eq!((fetches(0), fetches(1)), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_fetch_one_token_per_key() {
    let server = TestServer::start().await;
    // A slow endpoint keeps each fetch in flight while the requests pile up.
    server.set_latency(Duration::from_millis(200));
    let layer = by_path(&server);
    let svc = layer.layer(http2_client());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let api = if i % 2 == 0 { "orders" } else { "billing" };
        let svc = svc.clone();
        let url = server.url(&format!("/{api}/{i}"));
        tasks.push(tokio::spawn(async move {
            let response = svc.oneshot(get(&url)).await;
            response.map(|r| r.status()).map_err(|e| e.to_string())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(StatusCode::OK));
    }
    assert_eq!(server.token_requests(), 2);
    let mut sent = bodies(&server);
    sent.sort_unstable();
    assert_eq!(sent, [BILLING, ORDERS]);
    // Every request of an API carried that API's token: one per key.
    let mut pairs: Vec<_> = server
        .path_authorizations()
        .into_iter()
        .map(|(path, auth)| (path.split('/').nth(1).unwrap().to_owned(), auth.unwrap()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    assert_ne!(pairs[0].1, pairs[1].1);
    assert_eq!(server.resource_count(), 200);
}

#[tokio::test]
async fn a_401_for_one_api_replaces_its_token_only() {
    let server = TestServer::start().await;
    let layer = by_path(&server);
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/billing/1"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    server.revoke("at-1");
    for path in ["/orders/2", "/billing/2", "/orders/3"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(bodies(&server), [ORDERS, BILLING, ORDERS]);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/2", "at-1"),
            bearer("/orders/2", "at-3"),
            bearer("/billing/2", "at-2"),
            bearer("/orders/3", "at-3"),
        ]
    );
    let orders = layer.cache_for(&Api::Orders).unwrap().stats();
    let billing = layer.cache_for(&Api::Billing).unwrap().stats();
    assert_eq!(
        (orders.token_fetches, orders.invalidations, orders.retries),
        (2, 1, 1)
    );
    assert_eq!(
        (
            billing.token_fetches,
            billing.invalidations,
            billing.retries
        ),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn beyond_max_keys_the_least_recently_used_cache_is_dropped() {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let layer = KeyedOAuth2Layer::new(api_of, move |api: &Api| {
        let audience = format!("{api:?}").to_lowercase();
        let request = TokenRequest::client_credentials().audience(audience);
        Some(tower_oauth2::TokenCache::builder(endpoint.clone(), request).build())
    })
    .max_keys(2);
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/billing/1", "/stock/1", "/orders/2"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    // "stock" dropped "orders" (the oldest, none used since), and "orders"
    // coming back dropped "billing" and got a new cache, and token.
    let mut keys = layer.keys();
    keys.sort_unstable();
    assert_eq!(keys, [Api::Orders, Api::Stock]);
    assert_eq!(
        bodies(&server),
        [
            "grant_type=client_credentials&audience=orders",
            "grant_type=client_credentials&audience=billing",
            "grant_type=client_credentials&audience=stock",
            "grant_type=client_credentials&audience=orders",
        ]
    );
    assert_eq!(server.authorizations()[3], Some("Bearer at-4".to_owned()));
}

#[tokio::test]
async fn a_cache_idle_for_the_idle_timeout_is_dropped() {
    let server = TestServer::start().await;
    // With no idle time, a cache not used since the last sweep is idle.
    let layer = by_path(&server).idle_timeout(Duration::ZERO);
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/billing/1", "/orders/2"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(layer.evict_idle(), 0);
    assert_eq!(
        send(&svc, server.url("/orders/3")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(layer.evict_idle(), 1);
    assert_eq!(layer.keys(), [Api::Orders]);
    assert!(layer.cache_for(&Api::Billing).is_none());
    // "billing" comes back with a new cache and a new token.
    assert_eq!(
        send(&svc, server.url("/billing/2")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(bodies(&server), [ORDERS, BILLING, BILLING]);
    assert_eq!(server.authorizations()[4], Some("Bearer at-3".to_owned()));
}

#[tokio::test]
async fn an_unmapped_key_fails_typed_or_passes_through_with_no_token_request() {
    let server = TestServer::start().await;
    let svc = by_path(&server).layer(http_client());
    // "/stock" has a key that maps to nothing, "/other" no key at all.
    for path in ["/stock/1", "/other"] {
        let sent = send(&svc, server.url(path)).await;
        assert_eq!(sent, Err(ErrorKind::UnmappedKey));
    }
    assert_eq!((server.token_requests(), server.resource_count()), (0, 0));

    let svc = by_path(&server)
        .unmapped(Unmapped::PassThrough)
        .layer(http_client());
    for path in ["/stock/1", "/other"] {
        // The resource server answers 401 to a request with no token.
        assert_eq!(
            send(&svc, server.url(path)).await,
            Ok(StatusCode::UNAUTHORIZED)
        );
    }
    assert_eq!(server.token_requests(), 0);
    assert_eq!(
        server.path_authorizations(),
        [("/stock/1".to_owned(), None), ("/other".to_owned(), None)]
    );
}

/// A key whose cache binds its tokens with DPoP gets a fresh proof per
/// request through the keyed layer too, as through `OAuth2Layer`.
#[cfg(feature = "dpop")]
#[tokio::test]
async fn a_dpop_bound_key_proves_every_request() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let dpop = tower_oauth2::dpop::Dpop::generate().expect("an ES256 key");
    let endpoint = server.endpoint().dpop(dpop);
    let layer = KeyedOAuth2Layer::new(api_of, move |api: &Api| {
        let request = TokenRequest::client_credentials().resource(format!("https://{api:?}"));
        Some(tower_oauth2::TokenCache::builder(endpoint.clone(), request).build())
    })
    .destinations(Destinations::secure());
    let svc = layer.layer(http_client());
    for path in ["/orders/1", "/orders/2", "/billing/1"] {
        assert_eq!(send(&svc, server.url(path)).await, Ok(StatusCode::OK));
    }
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.resource_count(), 3);
}

// Issue 19, defects 1 and 14: one cache per user, and a store beside it.

/// The user a path is for: `/alice/…`, `/bob/…`.
#[cfg(feature = "redis")]
fn user_of(uri: &Uri, _: &HeaderMap) -> Option<String> {
    match uri.path().split('/').nth(1) {
        Some(user @ ("alice" | "bob")) => Some(user.to_owned()),
        _ => None,
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tower-oauth2-keyed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temporary directory");
    d
}

async fn status<K>(svc: &KeyedService<HttpClient, K>, url: String) -> StatusCode
where
    K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
{
    match svc.clone().oneshot(get(&url)).await {
        Ok(response) => response.status(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The refresh token each token request sent, in order.
#[cfg(feature = "redis")]
fn refresh_tokens_sent(server: &TestServer) -> Vec<String> {
    let sent = server.received().into_iter();
    sent.map(|r| r.param("refresh_token").unwrap_or_default())
        .collect()
}

#[cfg(feature = "redis")]
use crate::redis_server;

#[cfg(feature = "redis")]
fn tier(redis: &redis_server::RedisServer) -> tower_oauth2::fleet::RedisTier {
    tower_oauth2::fleet::RedisTier::standalone(&redis.url())
        .expect("a Redis URL")
        .namespace("tests")
        .expect("a namespace")
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10))
}

/// Defect 1: a keyed layer with one cache per user, each built from the
/// user's own refresh token, all sharing one Redis tier. Same token URL,
/// client and scope: only the refresh token tells alice from bob, and it
/// must keep their tokens apart, in Redis and after it is emptied.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_caches_sharing_redis_never_hand_one_users_token_to_another() {
    if !redis_server::available() {
        return;
    }
    let redis = redis_server::RedisServer::start();
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    server.set_rotate_refresh(true);
    let endpoint = server.endpoint();
    let tier = tier(&redis);
    let layer = KeyedOAuth2Layer::new(user_of, move |user: &String| {
        let refresh_token = format!("rt-{user}");
        let builder = tower_oauth2::TokenCache::from_refresh_token(endpoint.clone(), refresh_token);
        Some(builder.redis(tier.clone()).build())
    });
    let svc = layer.layer(http_client());
    for path in ["/alice/1", "/bob/1", "/alice/2", "/bob/2"] {
        assert_eq!(status(&svc, server.url(path)).await, StatusCode::OK);
    }
    // Each user's token was asked for with that user's refresh token, and
    // only that user's requests carried it.
    assert_eq!(refresh_tokens_sent(&server), ["rt-alice", "rt-bob"]);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/alice/1", "at-1"),
            bearer("/bob/1", "at-2"),
            bearer("/alice/2", "at-1"),
            bearer("/bob/2", "at-2"),
        ]
    );
    // Two users, two token keys; no secret in a key name.
    let keys = redis.cli(&["KEYS", "*"]);
    assert_eq!(
        keys.lines().filter(|k| k.ends_with(":token")).count(),
        2,
        "{keys}"
    );
    for secret in ["rt-", "at-", "alice", "bob"] {
        assert!(
            !keys.contains(secret),
            "{secret} in the Redis keys:\n{keys}"
        );
    }

    // Redis emptied, both tokens refused: each user refreshes with the
    // refresh token the server rotated to for that user (rt-1, rt-2).
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    server.revoke("at-1");
    server.revoke("at-2");
    for path in ["/alice/3", "/bob/3"] {
        assert_eq!(status(&svc, server.url(path)).await, StatusCode::OK);
    }
    assert_eq!(
        refresh_tokens_sent(&server),
        ["rt-alice", "rt-bob", "rt-1", "rt-2"]
    );
    assert_eq!(
        server.path_authorizations()[4..],
        [
            bearer("/alice/3", "at-1"),
            bearer("/alice/3", "at-3"),
            bearer("/bob/3", "at-2"),
            bearer("/bob/3", "at-4"),
        ]
    );
    // The rotated refresh tokens did not move the keys: still two.
    let keys = redis.cli(&["KEYS", "*:token"]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
}

/// A FileStore that counts its writes, so a test can wait (with a
/// deadline) for one made in the background.
#[derive(Clone)]
struct CountingFile {
    file: tower_oauth2::store::FileStore,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tower_oauth2::store::TokenStore for CountingFile {
    fn load(
        &self,
        fingerprint: &tower_oauth2::store::ConfigFingerprint,
    ) -> std::io::Result<Option<tower_oauth2::store::StoredToken>> {
        self.file.load(fingerprint)
    }
    fn save(&self, token: &tower_oauth2::store::StoredToken) -> std::io::Result<()> {
        self.file.save(token)?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl CountingFile {
    /// Waits until the store has been written `n` times, 5 s at most
    /// (then goes on: what the test asserts next tells what happened).
    async fn until_written(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.writes.load(std::sync::atomic::Ordering::SeqCst) < n
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The scenario of defect 14: a keyed layer holding one cache
/// (`max_keys(1)`), each key's cache with a file of its own; `orders`'s
/// token is refused (401, no resend), a `billing` request evicts `orders`,
/// and `orders`'s next request must not send the refused token again.
async fn refused_token_after_eviction(
    server: &TestServer,
    #[cfg(feature = "redis")] redis: Option<&redis_server::RedisServer>,
) {
    let dir = temp_dir(&format!("refused-{}", server.addr.port()));
    let files: std::collections::HashMap<Api, CountingFile> = [Api::Orders, Api::Billing]
        .into_iter()
        .map(|api| {
            let file = tower_oauth2::store::FileStore::new(dir.join(format!("{api:?}.json")));
            (
                api,
                CountingFile {
                    file,
                    writes: Default::default(),
                },
            )
        })
        .collect();
    let endpoint = server.endpoint();
    #[cfg(feature = "redis")]
    let tier = redis.map(tier);
    let stores = files.clone();
    let layer = KeyedOAuth2Layer::new(api_of, move |api: &Api| {
        let resource = match api {
            Api::Orders => "https://orders.example",
            Api::Billing => "https://billing.example",
            Api::Stock => return None,
        };
        let request = TokenRequest::client_credentials().resource(resource);
        let builder = tower_oauth2::TokenCache::builder(endpoint.clone(), request);
        let builder = builder.store(stores[api].clone());
        #[cfg(feature = "redis")]
        let builder = match &tier {
            Some(tier) => builder.redis(tier.clone()),
            None => builder,
        };
        Some(builder.build())
    })
    .max_keys(1)
    .retry_unauthorized(false)
    .destinations(Destinations::secure());
    let svc = layer.layer(http_client());

    assert_eq!(status(&svc, server.url("/orders/1")).await, StatusCode::OK);
    server.revoke("at-1");
    assert_eq!(
        status(&svc, server.url("/orders/2")).await,
        StatusCode::UNAUTHORIZED
    );
    // The refused token is marked in the store in the background.
    files[&Api::Orders].until_written(2).await;
    assert_eq!(status(&svc, server.url("/billing/1")).await, StatusCode::OK);
    assert_eq!(layer.keys(), [Api::Billing]);
    // `orders` again: a new cache for it, which must fetch a new token.
    assert_eq!(status(&svc, server.url("/orders/3")).await, StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/orders/2", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/3", "at-3"),
        ]
    );
    assert_eq!(bodies(server), [ORDERS, BILLING, ORDERS]);
    std::fs::remove_dir_all(dir).expect("the temporary directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_with_a_401_is_not_restored_from_the_store() {
    let server = TestServer::start().await;
    #[cfg(feature = "redis")]
    refused_token_after_eviction(&server, None).await;
    #[cfg(not(feature = "redis"))]
    refused_token_after_eviction(&server).await;
}

/// The same through the fleet's Redis tier: the refused token is neither
/// restored from the store nor taken back from Redis.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_with_a_401_is_not_restored_from_the_store_or_redis() {
    if !redis_server::available() {
        return;
    }
    let redis = redis_server::RedisServer::start();
    let server = TestServer::start().await;
    refused_token_after_eviction(&server, Some(&redis)).await;
    let keys = redis.cli(&["KEYS", "*:token"]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
}
