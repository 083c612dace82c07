//! One `KeyedService` handle sending many requests (polled ready and
//! called in a loop, as a connection's or a worker's service is): it
//! remembers its last key, that key's cache and a copy of its token. These
//! tests attack that memory: the token of one key must never go with a
//! request of another, nor from a cache the layer has dropped.
//!
//! Pairs: keyed × the 401 retry (invalidation), keyed × DPoP (each key
//! with its own proof key), keyed × DPoP rotation, keyed × eviction (max
//! keys, idle).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::layer::{KeyedOAuth2Layer, KeyedService};
use tower_oauth2::{TokenCache, TokenEndpoint, TokenRequest};

use crate::support;
use support::client::{http_client, HttpClient};
use support::token_server::{bearer, TestServer};

/// The API of a path's first segment, `/orders/…` or `/billing/…`.
fn api_of(uri: &Uri, _: &HeaderMap) -> Option<String> {
    let api = uri.path().split('/').nth(1)?;
    ["orders", "billing"].contains(&api).then(|| api.to_owned())
}

/// A layer keyed by [`api_of`], each API's token asked for with its own
/// `audience`.
fn by_api(endpoint: TokenEndpoint<HttpClient>) -> KeyedOAuth2Layer<String> {
    by_api_as(endpoint, |api| api)
}

/// [`by_api`] with the API's name wrapped in a key type of the test's.
fn by_api_as<K>(endpoint: TokenEndpoint<HttpClient>, wrap: fn(String) -> K) -> KeyedOAuth2Layer<K>
where
    K: AsRef<str> + Eq + Hash + Clone + Send + Sync + 'static,
{
    let key = move |uri: &Uri, headers: &HeaderMap| api_of(uri, headers).map(wrap);
    KeyedOAuth2Layer::new(key, move |api: &K| {
        let request = TokenRequest::client_credentials().audience(api.as_ref().to_owned());
        Some(TokenCache::builder(endpoint.clone(), request).build())
    })
}

/// Sends `request` through `svc` itself (no clone): polled ready, called.
async fn send_on<K>(
    svc: &mut KeyedService<HttpClient, K>,
    request: Request<Full<Bytes>>,
) -> StatusCode
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    let ready = svc.ready().await.expect("ready");
    ready.call(request).await.expect("a response").status()
}

/// Sends GETs of `paths` on `svc`, each answered 200.
async fn send_all<K>(svc: &mut KeyedService<HttpClient, K>, server: &TestServer, paths: &[&str])
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    for path in paths {
        assert_eq!(
            send_on(svc, server.get(path)).await,
            StatusCode::OK,
            "{path}"
        );
    }
}

/// Each path with the token it must have gone with: `orders` at-1,
/// `billing` at-2.
fn expected(paths: &[&str]) -> Vec<(String, Option<String>)> {
    let token = |p: &str| {
        if p.starts_with("/orders") {
            "at-1"
        } else {
            "at-2"
        }
    };
    paths.iter().map(|p| bearer(p, token(p))).collect()
}

#[tokio::test]
async fn one_handle_alternating_keys_sends_each_key_only_its_own_token() {
    let server = TestServer::start().await;
    let mut svc = by_api(server.endpoint()).layer(http_client());
    let paths = [
        "/orders/1",
        "/billing/1",
        "/orders/2",
        "/billing/2",
        "/orders/3",
        "/orders/4",
        "/orders/5",
        "/billing/3",
        "/billing/4",
        "/billing/5",
        "/orders/6",
    ];
    send_all(&mut svc, &server, &paths).await;
    assert_eq!(server.path_authorizations(), expected(&paths));
    assert_eq!(server.token_requests(), 2);
}

/// A key type whose every value hashes alike: keys are told apart by `Eq`
/// alone, as the handle must compare them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Colliding(String);

impl Hash for Colliding {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl AsRef<str> for Colliding {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[tokio::test]
async fn one_handle_keys_whose_hashes_collide_get_their_own_tokens() {
    let server = TestServer::start().await;
    let layer = by_api_as(server.endpoint(), Colliding);
    let mut svc = layer.layer(http_client());
    let paths = [
        "/orders/1",
        "/orders/2",
        "/billing/1",
        "/billing/2",
        "/orders/3",
        "/billing/3",
    ];
    send_all(&mut svc, &server, &paths).await;
    assert_eq!(server.path_authorizations(), expected(&paths));
}

/// The handle's key is dropped (max keys) by another handle's requests,
/// and made again with a new cache and token: the handle sends the new
/// cache's token, not its copy of the dropped one's (which the server
/// still accepts).
#[tokio::test]
async fn a_handles_key_dropped_and_made_again_sends_the_new_caches_token() {
    let server = TestServer::start().await;
    let layer = by_api(server.endpoint()).max_keys(1);
    let mut one = layer.layer(http_client());
    let mut other = layer.layer(http_client());
    send_all(&mut one, &server, &["/orders/1", "/orders/2"]).await;
    send_all(&mut other, &server, &["/billing/1", "/orders/3"]).await;
    send_all(&mut one, &server, &["/orders/4", "/orders/5"]).await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/orders/2", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/3", "at-3"),
            bearer("/orders/4", "at-3"),
            bearer("/orders/5", "at-3"),
        ]
    );
    assert_eq!(layer.keys(), ["orders"]);
    let stats = layer.cache_for(&"orders".to_owned()).unwrap().stats();
    assert_eq!(stats.token_fetches, 1);
}

/// An idle sweep drops the handle's key: its next request makes a new
/// cache. And a key the handle keeps using through what it remembers is
/// in use: a sweep keeps it.
#[tokio::test]
async fn a_handles_key_is_in_use_while_it_sends_and_dropped_once_idle() {
    let server = TestServer::start().await;
    // With no idle time, a cache not used since the last sweep is idle.
    let layer = by_api(server.endpoint()).idle_timeout(Duration::ZERO);
    let mut one = layer.layer(http_client());
    let mut other = layer.layer(http_client());
    send_all(&mut one, &server, &["/orders/1", "/orders/2"]).await;
    send_all(&mut other, &server, &["/billing/1"]).await;
    send_all(&mut one, &server, &["/orders/3"]).await;
    assert_eq!(layer.evict_idle(), 0);
    send_all(&mut one, &server, &["/orders/4"]).await;
    // "orders" was used since the sweep, through the handle alone.
    assert_eq!(layer.evict_idle(), 1);
    assert_eq!(layer.keys(), ["orders"]);
    assert_eq!(layer.evict_idle(), 1);
    assert!(layer.keys().is_empty());
    send_all(&mut one, &server, &["/orders/5", "/orders/6"]).await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/orders/1", "at-1"),
            bearer("/orders/2", "at-1"),
            bearer("/billing/1", "at-2"),
            bearer("/orders/3", "at-1"),
            bearer("/orders/4", "at-1"),
            bearer("/orders/5", "at-3"),
            bearer("/orders/6", "at-3"),
        ]
    );
    assert_eq!(layer.keys(), ["orders"]);
}

/// Keyed × the 401 retry, on one handle: the refused token of one key is
/// invalidated, the handle's copy of it too, and the other key's token
/// is kept.
#[tokio::test]
async fn one_handle_a_401_for_one_key_replaces_that_keys_token_only() {
    let server = TestServer::start().await;
    let layer = by_api(server.endpoint());
    let mut svc = layer.layer(http_client());
    let before = ["/orders/1", "/orders/2", "/billing/1", "/billing/2"];
    send_all(&mut svc, &server, &before).await;
    send_all(&mut svc, &server, &["/orders/3", "/orders/4"]).await;
    server.revoke("at-1");
    let after = ["/orders/5", "/orders/6", "/billing/3", "/orders/7"];
    send_all(&mut svc, &server, &after).await;
    let mut sent = expected(&before);
    sent.extend(expected(&["/orders/3", "/orders/4", "/orders/5"]));
    sent.extend([
        bearer("/orders/5", "at-3"),
        bearer("/orders/6", "at-3"),
        bearer("/billing/3", "at-2"),
        bearer("/orders/7", "at-3"),
    ]);
    assert_eq!(server.path_authorizations(), sent);
    let stats = |api: &str| layer.cache_for(&api.to_owned()).unwrap().stats();
    let (orders, billing) = (stats("orders"), stats("billing"));
    assert_eq!(
        (orders.token_fetches, orders.invalidations, orders.retries),
        (2, 1, 1)
    );
    assert_eq!((billing.token_fetches, billing.invalidations), (1, 0));
}

/// A user key type whose `Eq` is not reflexive (a key equal to no key,
/// itself included, as a float NaN is). The handle compares keys with
/// `Eq`, never the hash, so it never takes its last key for this one; nor
/// does the map: each request makes a cache of its own and gets that
/// cache's token, asked for with its own audience, never another key's.
#[derive(Clone, Debug)]
struct EqualToNothing(String);

impl PartialEq for EqualToNothing {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Eq for EqualToNothing {}

impl Hash for EqualToNothing {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl AsRef<str> for EqualToNothing {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[tokio::test]
async fn attack_one_handle_a_key_equal_to_no_key_never_gets_another_keys_token() {
    let server = TestServer::start().await;
    let layer = by_api_as(server.endpoint(), EqualToNothing);
    let mut svc = layer.layer(http_client());
    let paths = [
        "/orders/1",
        "/orders/2",
        "/billing/1",
        "/orders/3",
        "/orders/4",
    ];
    send_all(&mut svc, &server, &paths).await;
    // The n-th request made the n-th cache, which fetched at-n for its
    // own API.
    let sent: Vec<_> = (1..)
        .zip(paths)
        .map(|(n, path)| bearer(path, &format!("at-{n}")))
        .collect();
    assert_eq!(server.path_authorizations(), sent);
    let audiences: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("audience"))
        .collect();
    let apis: Vec<_> = paths
        .iter()
        .map(|p| p.split('/').nth(1).map(str::to_owned))
        .collect();
    assert_eq!(audiences, apis);
    assert_eq!(layer.keys().len(), paths.len());
}

/// A handle holding a key's entry and its copy of that key's token, its
/// layer, and a response future it made: none shows the token in `Debug`.
#[tokio::test]
async fn attack_no_token_in_the_debug_of_a_used_handle_its_layer_or_its_future() {
    let server = TestServer::start().await;
    server.set_token_prefix("s3cr3t-");
    let layer = by_api(server.endpoint());
    let mut svc = layer.layer(http_client());
    let paths = ["/orders/1", "/orders/2", "/orders/3"];
    send_all(&mut svc, &server, &paths).await;
    let ready = svc.ready().await.expect("ready");
    let future = ready.call(server.get("/orders/4"));
    let shown = [
        format!("{svc:?}"),
        format!("{layer:?}"),
        format!("{future:?}"),
    ];
    assert_eq!(future.await.expect("a response").status(), StatusCode::OK);
    for shown in shown {
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    let sent: Vec<_> = ["/orders/1", "/orders/2", "/orders/3", "/orders/4"]
        .into_iter()
        .map(|path| bearer(path, "s3cr3t-at-1"))
        .collect();
    assert_eq!(server.path_authorizations(), sent);
}

#[cfg(feature = "dpop")]
mod dpop {
    use std::sync::Arc;

    use tower_oauth2::dpop::{Dpop, DpopKeys};

    use super::*;

    fn a_key() -> Dpop {
        Dpop::generate().expect("an ES256 key")
    }

    /// Each request's (token, proof key thumbprint), checking that every
    /// proof was of its token's key and none was refused.
    fn proofs(server: &TestServer) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        for (token, jkt, bound) in server.dpop_proofs() {
            assert_eq!(
                bound.as_ref(),
                Some(&jkt),
                "{token} proved with another key"
            );
            seen.push((token, jkt));
        }
        assert_eq!(server.dpop_refusals(), Vec::<String>::new());
        seen
    }

    /// Keyed × DPoP, one handle: each API's cache proves with a key of
    /// its own, and each request goes with its key's token and a proof of
    /// that key, however the APIs alternate.
    #[tokio::test]
    async fn one_handle_each_key_proves_with_its_own_dpop_key() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let (orders_key, billing_key) = (a_key(), a_key());
        let orders = server.endpoint().dpop(orders_key);
        let billing = server.endpoint().dpop(billing_key);
        let layer = KeyedOAuth2Layer::new(api_of, move |api: &String| {
            let endpoint = if api == "orders" { &orders } else { &billing };
            let request = TokenRequest::client_credentials().audience(api.clone());
            Some(TokenCache::builder(endpoint.clone(), request).build())
        });
        let mut svc = layer.layer(http_client());
        let paths = [
            "/orders/1",
            "/orders/2",
            "/billing/1",
            "/billing/2",
            "/orders/3",
            "/billing/3",
            "/orders/4",
            "/orders/5",
        ];
        send_all(&mut svc, &server, &paths).await;
        let tokens: Vec<_> = server.authorizations().into_iter().flatten().collect();
        let want: Vec<_> = paths
            .iter()
            .map(|p| {
                if p.starts_with("/orders") {
                    "DPoP at-1"
                } else {
                    "DPoP at-2"
                }
            })
            .collect();
        assert_eq!(tokens, want);
        let proofs = proofs(&server);
        assert_eq!(proofs.len(), paths.len());
        let jkt = |token: &str| proofs.iter().find(|(t, _)| t == token).unwrap().1.clone();
        assert_ne!(jkt("at-1"), jkt("at-2"));
    }

    /// Keyed × DPoP rotation, one handle: after the rotation each key's
    /// requests go on with the old token until its token of the new key
    /// is fetched, then with that; never a token with a proof of another
    /// key, never a failed request.
    #[tokio::test]
    async fn one_handle_a_rotation_gives_each_key_a_token_of_the_new_key() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let (old, new) = (a_key(), a_key());
        let keys = DpopKeys::new(old);
        let layer = by_api(server.endpoint().dpop_keys(keys.clone()));
        let svc = Arc::new(tokio::sync::Mutex::new(layer.layer(http_client())));
        let send = |path: String| {
            let svc = Arc::clone(&svc);
            let request = server.get(&path);
            async move { send_on(&mut *svc.lock().await, request).await }
        };
        for i in 1..=2 {
            for api in ["orders", "orders", "billing", "billing"] {
                assert_eq!(send(format!("/{api}/{i}")).await, StatusCode::OK);
            }
        }
        keys.rotate(new);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut i = 3;
        // Until each key has sent a token of the new key (at-3, at-4).
        while !["DPoP at-3", "DPoP at-4"].iter().all(|t| {
            let sent = server.authorizations().into_iter().flatten();
            sent.clone().any(|a| a == *t)
        }) {
            assert!(std::time::Instant::now() < deadline, "gave up waiting");
            for api in ["orders", "orders", "billing", "billing"] {
                assert_eq!(send(format!("/{api}/{i}")).await, StatusCode::OK);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.token_requests(), 4);
        assert_eq!(server.unauthorized_count(), 0);
        // Each API's requests went with tokens asked for its audience
        // only (the n-th token request got `at-n`).
        let audiences: Vec<_> = server
            .received()
            .iter()
            .map(|r| r.param("audience"))
            .collect();
        for (path, auth) in server.path_authorizations() {
            let auth = auth.expect("a token");
            let n: usize = auth.trim_start_matches("DPoP at-").parse().expect("at-n");
            let api = path.split('/').nth(1).map(str::to_owned);
            assert_eq!(audiences[n - 1], api, "{path} with {auth}");
        }
        proofs(&server);
    }

    /// Keyed × DPoP, one handle, both keys' caches proving with one DPoP
    /// key: the key's `ath` memo goes from one key's token to the other's
    /// at each turn, and the two tokens differ only after a kilobyte of
    /// common prefix. The server checks each proof's `ath` against the
    /// token it came with.
    #[tokio::test]
    async fn one_handle_keys_sharing_a_dpop_key_prove_tokens_sharing_a_prefix_with_their_own_ath() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let prefix = format!("eyJ{}.", "x".repeat(1021));
        server.set_token_prefix(&prefix);
        let layer = by_api(server.endpoint().dpop(a_key()));
        let mut svc = layer.layer(http_client());
        let paths = [
            "/orders/1",
            "/billing/1",
            "/orders/2",
            "/billing/2",
            "/billing/3",
            "/orders/3",
            "/orders/4",
            "/billing/4",
        ];
        send_all(&mut svc, &server, &paths).await;
        let dpop = |auth: Option<String>| {
            auth.map(|a| a.replacen("Bearer ", &format!("DPoP {prefix}"), 1))
        };
        let want: Vec<_> = expected(&paths)
            .into_iter()
            .map(|(path, auth)| (path, dpop(auth)))
            .collect();
        assert_eq!(server.path_authorizations(), want);
        assert_eq!(proofs(&server).len(), paths.len());
    }
}
