//! DPoP key rotation (issues 21 and 23): a new key — rotated by hand
//! (`TokenCache::rotate_dpop_key`, `DpopKeys::rotate`) or written to the
//! key file (`DpopKeys::from_file`) — gets its own bound token with no
//! failed request, and no token is ever sent with a proof of a key other
//! than the one it is bound to. The test server checks every proof and
//! records, for each resource request, the proof's key thumbprint beside
//! the one its token is bound to (its `cnf.jkt`): `dpop_proofs()`.
//!
//! Pairs: the fleet's Redis tier (two processes sharing a key file), the
//! `FileStore`, the keyed layer, the reqwest middleware, nonces, the 401
//! retry, origin-form URIs, key-bound refresh tokens (RFC 9449 §5); and attacks (a token of another key in the
//! store or the tier).

#![cfg(all(feature = "dpop", feature = "redis", feature = "reqwest"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use reqwest_middleware::ClientBuilder;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::dpop::{Dpop, DpopKeys};
use tower_oauth2::error::CredentialFailure;
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::layer::{Destinations, KeyedOAuth2Layer};
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{ErrorKind, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest};

use crate::redis_server::RedisServer;
use crate::support;
use support::client::{http_client, layered, HttpClient};
use support::dpop;
use support::token_server::TestServer;

/// A P-256 private key in SEC1 PEM (ES256).
const P256_PEM: &str = include_str!("../src/testdata/p256-sec1.pem");
/// An Ed25519 private key in PKCS#8 PEM (EdDSA).
const ED25519_PEM: &str = include_str!("../src/testdata/ed25519.pem");

fn a_key() -> Dpop {
    Dpop::generate().expect("an ES256 key")
}

/// A directory of its own under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-oauth2-rotation-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Writes `text` to `path` as a separate writer does: a new file renamed
/// over the old one (as a Kubernetes secret mount or `mv` does), on a
/// thread of its own.
fn rewrite(path: &Path, text: &str) {
    let (path, text) = (path.to_owned(), text.to_owned());
    std::thread::spawn(move || {
        let next = path.with_extension("next");
        std::fs::write(&next, text).expect("the new key file");
        std::fs::rename(&next, &path).expect("the key file replaced");
    })
    .join()
    .expect("the writer");
}

/// The test token server, DPoP on.
async fn dpop_server() -> TestServer {
    let server = TestServer::start().await;
    server.enable_dpop();
    server
}

/// A Redis server and the DPoP token server; none where Redis is not
/// installed.
async fn fleet_servers() -> Option<(RedisServer, TestServer)> {
    if !crate::redis_server::available() {
        return None;
    }
    Some((RedisServer::start(), dpop_server().await))
}

/// A tier of its own on `redis` (one fleet process); Redis calls get 2 s,
/// so a loaded machine does not turn a slow answer into a fallback.
fn tier(redis: &RedisServer) -> RedisTier {
    RedisTier::standalone(&redis.url())
        .expect("a Redis URL")
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10))
}

/// A cache sharing its tokens through `tier`: one fleet process.
fn fleet_process(endpoint: TokenEndpoint<HttpClient>, tier: RedisTier) -> TokenCache {
    let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
    builder.redis(tier).build()
}

/// The `Authorization` header of each resource request, in order.
fn sent_tokens(server: &TestServer) -> Vec<String> {
    server.authorizations().into_iter().flatten().collect()
}

fn dpop_cache(endpoint: TokenEndpoint<HttpClient>) -> TokenCache {
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

/// The DPoP token server, two keys (the one in use and the next) and a
/// cache proving with the one in use.
async fn old_and_new_key() -> (TestServer, Dpop, Dpop, TokenCache) {
    let server = dpop_server().await;
    let (old, new) = (a_key(), a_key());
    let cache = dpop_cache(server.endpoint().dpop(old.clone()));
    (server, old, new, cache)
}

/// The thumbprint of the key each token request proved, in order.
fn token_request_keys(server: &TestServer) -> Vec<String> {
    let received = server.received();
    received
        .iter()
        .map(|r| {
            let proof = r.headers["dpop"].to_str().expect("a proof");
            dpop::read(proof).expect("a readable proof").jkt
        })
        .collect()
}

/// Whether every resource request was proved with the key its token is
/// bound to.
fn each_proof_is_of_its_tokens_key(server: &TestServer) -> bool {
    let proofs = server.dpop_proofs();
    proofs
        .iter()
        .all(|(_, jkt, bound)| bound.as_ref() == Some(jkt))
}

/// Every resource request was proved with the key its token is bound to;
/// the tokens each key's proofs went with.
fn assert_every_proof_is_of_its_tokens_key(server: &TestServer) -> Vec<(String, String)> {
    let proofs = server.dpop_proofs();
    assert!(!proofs.is_empty());
    let mut seen: Vec<(String, String)> = Vec::new();
    for (token, jkt, bound) in proofs {
        assert_eq!(
            bound.as_ref(),
            Some(&jkt),
            "{token} proved with another key"
        );
        if !seen.iter().any(|(t, _)| *t == token) {
            seen.push((token, jkt));
        }
    }
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    seen
}

/// Sends GETs through `send` until `until` says so (10 s at most).
async fn until<F, Fut>(mut send: F, mut done: impl FnMut() -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting");
        assert_eq!(send().await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two caches sharing `keys`, `a` and `b` what `send` sends through each:
/// each gets its token with `old`, then `keys` rotates to `new`. Each
/// cache's next requests go on with its old token until its fetch of a
/// token of the new key (one each, `a`'s first) is done; no request fails.
async fn rotate_under_two_caches<F, Fut>(
    server: &TestServer,
    keys: &DpopKeys,
    (old, new): (&Dpop, &Dpop),
    send: F,
    [a, b]: [&'static str; 2],
) where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    for x in [a, b] {
        assert_eq!(send(x).await, StatusCode::OK);
    }
    keys.rotate(new.clone());
    until(|| send(a), || server.token_requests() == 3).await;
    until(|| send(b), || server.token_requests() == 4).await;
    until(
        || send(a),
        || server.authorizations().last() == Some(&Some("DPoP at-3".to_owned())),
    )
    .await;
    assert_eq!(send(b).await, StatusCode::OK);
    assert_eq!(
        server.authorizations().last(),
        Some(&Some("DPoP at-4".to_owned()))
    );
    assert_eq!(
        token_request_keys(server),
        [
            old.thumbprint(),
            old.thumbprint(),
            new.thumbprint(),
            new.thumbprint()
        ]
    );
}

async fn get(
    svc: &tower_oauth2::OAuth2Service<HttpClient>,
    server: &TestServer,
    path: &str,
) -> StatusCode {
    let response = svc.clone().oneshot(server.get(path)).await;
    response.expect("a response").status()
}

/// 8 tasks sending requests through `svc` to `server` until 80 requests
/// after `rotate` ran and the new key's token (`at-2`) was first sent;
/// how many failed.
async fn under_load(
    server: &Arc<TestServer>,
    svc: &tower_oauth2::OAuth2Service<HttpClient>,
    rotate: impl FnOnce(),
) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (svc, server, stop) = (svc.clone(), server.clone(), stop.clone());
            let (sent, failed) = (sent.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let request = server.get(&format!("/api/{task}"));
                    match svc.clone().oneshot(request).await {
                        Ok(r) if r.status() == StatusCode::OK => {}
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let sent = sent.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while sent.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the tasks stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(80).await;
    rotate();
    // Until the new key's token is out, then as many requests again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .authorizations()
        .contains(&Some("DPoP at-2".to_owned()))
    {
        assert!(Instant::now() < deadline, "no token of the new key");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let now = sent.load(Ordering::SeqCst);
    wait_for(now + 80).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a task");
    }
    failed.load(Ordering::SeqCst)
}

/// After a run under load rotating `old` to `new`: no request failed, no
/// 401, and [`assert_one_token_per_key`].
fn assert_no_failure_and_one_token_per_key(
    server: &TestServer,
    failed: usize,
    old: &Dpop,
    new: &Dpop,
) -> Vec<(String, String)> {
    assert_eq!(failed, 0);
    assert_eq!(server.unauthorized_count(), 0);
    assert_one_token_per_key(server, old, new)
}

/// One token request per key, `old`'s then `new`'s, and every proof of
/// its token's key; the tokens each key's proofs went with.
fn assert_one_token_per_key(server: &TestServer, old: &Dpop, new: &Dpop) -> Vec<(String, String)> {
    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        token_request_keys(server),
        [old.thumbprint(), new.thumbprint()]
    );
    assert_every_proof_is_of_its_tokens_key(server)
}

/// 8 tasks sending requests through the layer, the key rotated mid-run: no
/// request fails, every proof is of the key its token is bound to, and
/// exactly one token request before the rotation and one after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_proves_each_token_with_its_own_key() {
    let server = Arc::new(dpop_server().await);
    let (old, new) = (a_key(), a_key());
    let cache = dpop_cache(server.endpoint().dpop(old.clone()));
    let failed = under_load(&server, &layered(&cache), || {
        cache.rotate_dpop_key(new.clone())
    })
    .await;
    let tokens = assert_no_failure_and_one_token_per_key(&server, failed, &old, &new);
    assert_eq!(
        tokens,
        [
            ("at-1".to_owned(), old.thumbprint().to_owned()),
            ("at-2".to_owned(), new.thumbprint().to_owned())
        ]
    );
    let now = cache.dpop().map(|k| k.thumbprint().to_owned());
    assert_eq!(now.as_deref(), Some(new.thumbprint()));
}

/// Issue 21: the key file rewritten by a separate writer while 8 tasks
/// send requests: the new key is read within a second of requests, its
/// token fetched once, no request fails, every proof of its token's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_rewritten_under_load_fails_no_request_and_costs_one_token_request() {
    let server = Arc::new(dpop_server().await);
    let dir = temp_dir("load");
    let path = dir.join("dpop.pem");
    std::fs::write(&path, P256_PEM).expect("the key file");
    let keys = DpopKeys::from_file(&path).expect("a key");
    let old = keys.current();
    let cache = dpop_cache(server.endpoint().dpop_keys(keys.clone()));
    let failed = under_load(&server, &layered(&cache), || rewrite(&path, ED25519_PEM)).await;
    let new = keys.current();
    assert_eq!(new.algorithm().as_str(), "EdDSA");
    let tokens = assert_no_failure_and_one_token_per_key(&server, failed, &old, &new);
    assert_eq!(tokens[1], ("at-2".to_owned(), new.thumbprint().to_owned()));
    std::fs::remove_dir_all(&dir).ok();
}

/// A key file rewritten by another writer: tokens bound to the new key
/// replace the old key's within a second of requests (a resource request
/// looks at the file at most once a second), with no failed request; a
/// token request always uses the key in the file. A file missing, empty
/// or holding no key is a typed error naming the path, never its content,
/// and the key before stays in use.
#[tokio::test]
async fn a_rewritten_key_file_gets_its_own_token_and_a_broken_one_keeps_the_key_in_use() {
    let server = dpop_server().await;
    let dir = temp_dir("file");
    let path = dir.join("dpop.pem");
    std::fs::write(&path, P256_PEM).expect("the key file");
    let keys = DpopKeys::from_file(&path).expect("a key");
    assert_eq!(keys.path(), Some(path.as_path()));
    let es256 = keys.current();
    let cache = dpop_cache(server.endpoint().dpop_keys(keys.clone()));
    let svc = layered(&cache);
    assert_eq!(get(&svc, &server, "/a").await, StatusCode::OK);

    rewrite(&path, ED25519_PEM);
    until(|| get(&svc, &server, "/b"), || server.token_requests() == 2).await;
    until(
        || get(&svc, &server, "/c"),
        || server.authorizations().last() == Some(&Some("DPoP at-2".to_owned())),
    )
    .await;
    let ed25519 = keys.current();
    assert_eq!(ed25519.algorithm().as_str(), "EdDSA");
    assert_eq!(
        token_request_keys(&server),
        [es256.thumbprint(), ed25519.thumbprint()]
    );
    let tokens = assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(
        tokens[1],
        ("at-2".to_owned(), ed25519.thumbprint().to_owned())
    );
    assert_eq!(server.unauthorized_count(), 0);

    // Broken files: the error names the file, never what it holds.
    let canary = "-----BEGIN PRIVATE KEY-----\nCANARYQUJDRA==\n-----END PRIVATE KEY-----\n";
    let log = support::log::capture();
    for (text, failure) in [
        (Some("CANARY-not-a-key"), CredentialFailure::NotAKey),
        (Some(canary), CredentialFailure::NotAKey),
        (
            Some("{\"kty\":\"EC\",\"d\":\"CANARY\"}"),
            CredentialFailure::NotAKey,
        ),
        (Some("\n"), CredentialFailure::Empty),
        (None, CredentialFailure::Missing),
    ] {
        match text {
            Some(text) => rewrite(&path, text),
            None => std::fs::remove_file(&path).expect("the key file removed"),
        }
        let e = keys.reload().expect_err("no key in the file");
        assert_eq!(e.kind(), ErrorKind::Credential);
        assert_eq!(e.credential_failure(), Some(failure));
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        assert!(!format!("{e} {e:?}").contains("CANARY"), "{e:?}");
        // A token request goes on with the key in use.
        cache
            .refresh_now()
            .await
            .expect("a token of the key in use");
        assert_eq!(get(&svc, &server, "/d").await, StatusCode::OK);
        assert_eq!(keys.current().thumbprint(), ed25519.thumbprint());
        let last = token_request_keys(&server).pop();
        assert_eq!(last.as_deref(), Some(ed25519.thumbprint()));
    }
    let logged = log.everywhere().text();
    assert!(logged.contains(&*path.to_string_lossy()), "{logged}");
    assert!(!logged.contains("CANARY"), "{logged}");
    assert!(Dpop::from_key_file(dir.join("none.pem")).is_err());
    assert_eq!(server.unauthorized_count(), 0);
    assert_every_proof_is_of_its_tokens_key(&server);
    std::fs::remove_dir_all(&dir).ok();
}

/// The fleet: two processes (each its own cache, `DpopKeys` and Redis
/// connection) share a key file. A token fetched with the old key is
/// shared under the old key's name only, the new key's under the new
/// one's: the fleet pays one token request per key, and neither process
/// sends a token bound to a key it does not hold; a third process with
/// a key of its own takes neither.
#[tokio::test]
async fn pair_fleet_dpop_rotation_two_processes_sharing_a_key_file_share_each_keys_token_only() {
    let Some((redis, server)) = fleet_servers().await else {
        return;
    };
    let dir = temp_dir("fleet");
    let path = dir.join("dpop.pem");
    std::fs::write(&path, P256_PEM).expect("the key file");
    let process = |keys: DpopKeys| fleet_process(server.endpoint().dpop_keys(keys), tier(&redis));
    let (keys_1, keys_2) = (
        DpopKeys::from_file(&path).unwrap(),
        DpopKeys::from_file(&path).unwrap(),
    );
    let (one, two) = (process(keys_1.clone()), process(keys_2.clone()));
    let (svc_1, svc_2) = (layered(&one), layered(&two));
    assert_eq!(get(&svc_1, &server, "/a").await, StatusCode::OK);
    assert_eq!(get(&svc_2, &server, "/a").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 1);

    rewrite(&path, ED25519_PEM);
    // Process one's next token request reads the new key, and shares the
    // new token under its name.
    one.refresh_now().await.expect("a token of the new key");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(get(&svc_1, &server, "/b").await, StatusCode::OK);
    // Process two has not looked at the file yet: it goes on with the old
    // key's token and the old key.
    assert_eq!(get(&svc_2, &server, "/b").await, StatusCode::OK);
    // Its next token request reads the new key and takes the fleet's
    // token of that key: no token request.
    two.refresh_now().await.expect("the fleet's token");
    assert_eq!(get(&svc_2, &server, "/c").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(keys_2.current().thumbprint(), keys_1.current().thumbprint());

    // A process with a key of its own takes neither token.
    let stranger = process(DpopKeys::new(a_key()));
    assert_eq!(
        get(&layered(&stranger), &server, "/d").await,
        StatusCode::OK
    );
    assert_eq!(server.token_requests(), 3);
    assert_eq!(
        sent_tokens(&server),
        [
            "DPoP at-1",
            "DPoP at-1",
            "DPoP at-2",
            "DPoP at-1",
            "DPoP at-2",
            "DPoP at-3"
        ]
    );
    assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(server.unauthorized_count(), 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// Attack on the tier: a token published under the old key's name, copied
/// under the new key's (someone who can write Redis), is not taken by a
/// process holding the new key when values are sealed (the key name is
/// the ciphertext's associated data): it fetches its own.
#[tokio::test]
async fn attack_a_token_of_another_key_copied_in_the_tier_is_never_sent() {
    let Some((redis, server)) = fleet_servers().await else {
        return;
    };
    let secret = [7u8; 32];
    let sealed = || tier(&redis).encryption_key(secret);
    let (old, new) = (a_key(), a_key());
    let old_cache = fleet_process(server.endpoint().dpop(old), sealed());
    assert_eq!(
        get(&layered(&old_cache), &server, "/a").await,
        StatusCode::OK
    );
    let builder = TokenCache::builder(
        server.endpoint().dpop(new.clone()),
        TokenRequest::client_credentials(),
    );
    let new_name = builder.fingerprint().to_string();
    let new_cache = builder.redis(sealed()).build();
    // Copy the old key's token under the new key's name.
    let names = redis.cli(&["KEYS", "*:token"]);
    let old_name = names.trim().to_owned();
    assert!(
        old_name.ends_with(":token") && !old_name.contains(&new_name),
        "{names}"
    );
    let (head, rest) = old_name.split_once('{').expect("a tagged name");
    let (_, tail) = rest.split_once('}').expect("a tagged name");
    let forged_name = format!("{head}{{{new_name}}}{tail}");
    let copied = redis.cli(&["COPY", &old_name, &forged_name]);
    assert_eq!(copied.trim(), "1");
    assert_eq!(
        get(&layered(&new_cache), &server, "/b").await,
        StatusCode::OK
    );
    assert_eq!(server.token_requests(), 2);
    assert_eq!(sent_tokens(&server), ["DPoP at-1", "DPoP at-2"]);
    let tokens = assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(tokens[1], ("at-2".to_owned(), new.thumbprint().to_owned()));
}

/// The `FileStore`: a token is saved under the fingerprint of the key it
/// is bound to. After a rotation, a restart with the new key restores the
/// new key's token (no token request); a process still holding the old
/// key does not restore it (it is bound to a key that process does not
/// hold) and fetches its own.
#[tokio::test]
async fn pair_file_store_dpop_rotation_a_restart_restores_only_the_token_of_the_key_it_holds() {
    let server = dpop_server().await;
    let dir = temp_dir("store");
    let store_path = dir.join("token.json");
    let (old, new) = (a_key(), a_key());
    let build = |keys: DpopKeys| {
        let endpoint = server.endpoint().dpop_keys(keys);
        let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
        builder.store(FileStore::new(&store_path)).build()
    };
    let cache = build(DpopKeys::new(old.clone()));
    assert_eq!(get(&layered(&cache), &server, "/a").await, StatusCode::OK);
    let (_, first) = cache.bearer_header_with_generation().await.unwrap();
    cache.rotate_dpop_key(new.clone());
    cache.refresh_now().await.expect("the new key's token");
    assert_eq!(server.token_requests(), 2);
    // For direct users: the key each generation is bound to.
    let (header, second) = cache.bearer_header_with_generation().await.unwrap();
    assert_eq!(header, "DPoP at-2");
    let bound = |g| cache.dpop_bound_to(g).map(|k| k.thumbprint().to_owned());
    assert_eq!(bound(first).as_deref(), Some(old.thumbprint()));
    assert_eq!(bound(second).as_deref(), Some(new.thumbprint()));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&store_path).unwrap()).unwrap();
    assert_eq!(stored["access_token"], "at-2");

    let restarted = build(DpopKeys::new(new.clone()));
    assert_eq!(
        get(&layered(&restarted), &server, "/b").await,
        StatusCode::OK
    );
    assert_eq!(server.token_requests(), 2);
    let stale = build(DpopKeys::new(old.clone()));
    assert_eq!(get(&layered(&stale), &server, "/c").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 3);
    assert_eq!(
        sent_tokens(&server),
        ["DPoP at-1", "DPoP at-2", "DPoP at-3"]
    );
    let tokens = assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(tokens[2], ("at-3".to_owned(), old.thumbprint().to_owned()));
    std::fs::remove_dir_all(&dir).ok();
}

/// The API a path is for: `/orders/…`, `/billing/…`.
fn api_of(uri: &Uri, _: &HeaderMap) -> Option<String> {
    let api = uri.path().split('/').nth(1)?;
    ["orders", "billing"].contains(&api).then(|| api.to_owned())
}

/// The keyed layer: one `DpopKeys` behind every key's cache. One rotation
/// gives each key's cache a token of the new key at its next request, in
/// the background: each key costs one token request per key, no request
/// fails.
#[tokio::test]
async fn pair_keyed_dpop_rotation_each_keys_cache_gets_a_token_of_the_new_key() {
    let server = dpop_server().await;
    let (old, new) = (a_key(), a_key());
    let keys = DpopKeys::new(old.clone());
    let endpoint = server.endpoint().dpop_keys(keys.clone());
    let svc = KeyedOAuth2Layer::new(api_of, move |api: &String| {
        let request = TokenRequest::client_credentials().audience(api.clone());
        Some(TokenCache::builder(endpoint.clone(), request).build())
    })
    .layer(http_client());
    let send = |path: &'static str| {
        let svc = svc.clone();
        let request = server.get(path);
        async move { svc.oneshot(request).await.expect("a response").status() }
    };
    rotate_under_two_caches(
        &server,
        &keys,
        (&old, &new),
        send,
        ["/orders/1", "/billing/1"],
    )
    .await;
    assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(server.unauthorized_count(), 0);
}

/// The reqwest middleware: a rotation gets a token of the new key at the
/// next request, in the background; no request fails.
#[tokio::test]
async fn pair_reqwest_dpop_rotation_the_next_request_fetches_the_new_keys_token() {
    let (server, old, new, cache) = old_and_new_key().await;
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    let send = || {
        let (client, url) = (client.clone(), server.url("/api"));
        async move { client.get(url).send().await.expect("a response").status() }
    };
    assert_eq!(send().await, StatusCode::OK);
    cache.dpop_keys().expect("DPoP keys").rotate(new.clone());
    until(send, || {
        server.authorizations().last() == Some(&Some("DPoP at-2".to_owned()))
    })
    .await;
    assert_one_token_per_key(&server, &old, &new);
}

/// Nonces are the server's, not the key's: the new key sends the nonces
/// the old one learned (no `use_dpop_nonce` round trip more than without
/// a rotation), and a resource rotating its nonce costs one round trip,
/// as ever.
#[tokio::test]
async fn pair_dpop_nonces_rotation_the_new_key_sends_the_nonces_the_old_one_learned() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(Some("n-token-1"), Some("n-resource-1"));
    let (old, new) = (a_key(), a_key());
    let cache = dpop_cache(server.endpoint().dpop(old.clone()));
    let svc = layered(&cache);
    assert_eq!(get(&svc, &server, "/a").await, StatusCode::OK);
    assert_eq!(
        server.dpop_refusals(),
        ["token: UseNonce", "resource: UseNonce"]
    );
    cache.rotate_dpop_key(new.clone());
    cache.refresh_now().await.expect("the new key's token");
    assert_eq!(get(&svc, &server, "/b").await, StatusCode::OK);
    // No round trip for either nonce with the new key.
    assert_eq!(server.token_requests(), 3);
    assert_eq!(server.dpop_refusals().len(), 2);
    let api: Uri = server.url("/x").parse().unwrap();
    assert_eq!(
        cache.dpop().unwrap().nonce(&api).as_deref(),
        Some("n-resource-1")
    );
    // The resource rotates its nonce, giving the next one in an answer:
    // followed with no round trip.
    server.rotate_resource_nonce("n-resource-2");
    for path in ["/c", "/d", "/e"] {
        assert_eq!(get(&svc, &server, path).await, StatusCode::OK);
    }
    assert_eq!(server.dpop_refusals().len(), 2);
    // A resource that refuses with a fresh nonce: one resend, the same token.
    server.force_resource_nonce_challenges(1);
    assert_eq!(get(&svc, &server, "/f").await, StatusCode::OK);
    assert_eq!(server.dpop_refusals().len(), 3);
    assert_eq!(server.token_requests(), 3);
    assert_eq!(
        server.authorizations().last(),
        Some(&Some("DPoP at-2".to_owned()))
    );
    assert_eq!(
        token_request_keys(&server),
        [old.thumbprint(), old.thumbprint(), new.thumbprint()]
    );
    assert!(each_proof_is_of_its_tokens_key(&server));
}

/// The 401 retry: a resource that refuses the old key's token after the
/// rotation gets the request resent once with the new key's token, which
/// the fetch the rotation started brings (one token request, not two;
/// whether the 401 finds that token cached already, and so invalidates
/// nothing, depends on which arrives first).
#[tokio::test]
async fn pair_dpop_backoff_rotation_a_401_for_the_old_token_is_resent_with_the_new_keys() {
    let (server, old, new, cache) = old_and_new_key().await;
    let svc = layered(&cache);
    assert_eq!(get(&svc, &server, "/a").await, StatusCode::OK);
    cache.dpop_keys().expect("DPoP keys").rotate(new.clone());
    server.revoke("at-1");
    assert_eq!(get(&svc, &server, "/b").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        sent_tokens(&server),
        ["DPoP at-1", "DPoP at-1", "DPoP at-2"]
    );
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (2, 1));
    assert_eq!(
        token_request_keys(&server),
        [old.thumbprint(), new.thumbprint()]
    );
    // The refused request was proved with the old key (its token's).
    assert!(each_proof_is_of_its_tokens_key(&server));
}

/// Origin-form URIs (tonic's): path-only requests through a connection,
/// the key rotated: proofs name the absolute URI, each with its token's
/// key; one token request per key.
#[tokio::test]
async fn pair_dpop_origin_form_rotation_path_only_requests_are_proved_with_their_tokens_key() {
    let (server, old, new, cache) = old_and_new_key().await;
    let destinations = Destinations::secure()
        .origin_form_to(server.url(""))
        .expect("a loopback origin");
    let svc = OAuth2Layer::new(cache.clone())
        .destinations(destinations)
        .layer(support::client::connection(&server).await);
    let send = |path: &str| {
        let request = Request::get(path)
            .header(http::header::HOST, server.addr.to_string())
            .body(Full::<Bytes>::default())
            .expect("a request");
        let mut svc = svc.clone();
        async move {
            let svc = svc.ready().await.expect("ready");
            let response: Response<_> = svc.call(request).await.expect("a response");
            response.status()
        }
    };
    assert_eq!(send("/a").await, StatusCode::OK);
    cache.rotate_dpop_key(new.clone());
    until(
        || send("/b"),
        || server.authorizations().last() == Some(&Some("DPoP at-2".to_owned())),
    )
    .await;
    assert_one_token_per_key(&server, &old, &new);
}

/// The on-behalf layer: every subject's cache shares the endpoint's
/// `DpopKeys`. After a rotation each subject's next request still goes
/// with its old token and the old key, and starts that subject's fetch of
/// a token bound to the new key (an exchange of its own subject token);
/// no request fails, and no subject gets another's token.
#[tokio::test]
async fn pair_on_behalf_dpop_rotation_each_subject_gets_a_token_of_the_new_key() {
    use tower_oauth2::on_behalf::{OnBehalfLayer, SubjectToken, ACCESS_TOKEN_TYPE};
    let server = TestServer::start().await;
    server.enable_dpop();
    let (old, new) = (a_key(), a_key());
    let keys = DpopKeys::new(old.clone());
    let endpoint = server.endpoint().dpop_keys(keys.clone());
    let svc = OnBehalfLayer::new(move |subject: &SubjectToken| {
        let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE);
        TokenCache::builder(endpoint.clone(), request).build()
    })
    .destinations(Destinations::any())
    .layer(http_client());
    let send = |subject: &'static str| {
        let svc = svc.clone();
        let mut request = server.get(&format!("/me/{subject}"));
        request.extensions_mut().insert(SubjectToken::new(subject));
        async move { svc.oneshot(request).await.expect("a response").status() }
    };
    rotate_under_two_caches(&server, &keys, (&old, &new), send, ["st-alice", "st-bob"]).await;
    let subjects: Vec<_> = (server.received().iter())
        .map(|r| r.param("subject_token"))
        .collect();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        subjects,
        [
            some("st-alice"),
            some("st-bob"),
            some("st-alice"),
            some("st-bob")
        ]
    );
    // Each subject's requests carried its own tokens only.
    for (path, auth) in server.path_authorizations() {
        let mine = if path.contains("alice") {
            ["DPoP at-1", "DPoP at-3"]
        } else {
            ["DPoP at-2", "DPoP at-4"]
        };
        assert!(
            mine.contains(&auth.as_deref().unwrap_or("")),
            "{path}: {auth:?}"
        );
    }
    assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(server.unauthorized_count(), 0);
}

/// The grant of each token request the server received, with the key
/// its proof was of, in order.
fn grants_and_keys(server: &TestServer) -> Vec<(String, String)> {
    let grants = server
        .received()
        .iter()
        .map(|r| r.param("grant_type").expect("a grant type"))
        .collect::<Vec<_>>();
    grants.into_iter().zip(token_request_keys(server)).collect()
}

/// Refresh tokens × rotation (RFC 9449 §5): a refresh token issued to a
/// public client is bound to the key its request proved (the test server
/// binds every refresh token, as it would a public client's). After a
/// rotation the refresh proved with the new key is refused
/// (`invalid_grant`); the cache drops that refresh token, sends its
/// configured grant with the new key, and from then on refreshes with
/// the refresh token that came with it. No resource request fails, and
/// every proof is of its token's key.
#[tokio::test]
async fn pair_refresh_token_dpop_rotation_a_refused_bound_refresh_token_falls_back_to_the_grant() {
    let server = dpop_server().await;
    let (old, new) = (a_key(), a_key());
    let endpoint = server.endpoint().dpop(old.clone());
    let cache = TokenCache::builder(endpoint, TokenRequest::password("alice", "pw")).build();
    let svc = layered(&cache);
    assert_eq!(get(&svc, &server, "/a").await, StatusCode::OK);

    cache.rotate_dpop_key(new.clone());
    until(
        || get(&svc, &server, "/b"),
        || server.authorizations().last() == Some(&Some("DPoP at-2".to_owned())),
    )
    .await;
    let (old, new) = (old.thumbprint().to_owned(), new.thumbprint().to_owned());
    let pair = |grant: &str, key: &String| (grant.to_owned(), key.clone());
    assert_eq!(
        grants_and_keys(&server),
        [
            pair("password", &old),
            pair("refresh_token", &new),
            pair("password", &new)
        ]
    );
    assert_eq!(
        server.received()[1].param("refresh_token").as_deref(),
        Some("rt-1")
    );
    assert!(server.is_refresh_token_valid("rt-1"), "refused, not spent");

    // The next refresh sends the new key's refresh token, never `rt-1`.
    cache.refresh_now().await.expect("a refreshed token");
    assert_eq!(get(&svc, &server, "/c").await, StatusCode::OK);
    let last = server.received().pop().expect("the refresh");
    assert_eq!(last.param("refresh_token").as_deref(), Some("rt-2"));
    assert_eq!(grants_and_keys(&server)[3], pair("refresh_token", &new));
    assert_eq!(server.unauthorized_count(), 0);
    assert_every_proof_is_of_its_tokens_key(&server);
}

/// A cache built from a refresh token alone (a public client after the
/// user authorized once) has no grant to fall back to: after a rotation
/// its bound refresh token is refused, `refresh_now` says the user must
/// authorize again, the refused refresh token is sent once and never
/// again, and meanwhile requests go on with the token they have, proved
/// with the key it is bound to (the old one), until it expires.
#[tokio::test]
async fn pair_refresh_token_dpop_rotation_with_no_other_grant_the_user_must_authorize_again() {
    let server = dpop_server().await;
    let (old, new) = (a_key(), a_key());
    server.add_refresh_token_bound_to("rt-seed", old.thumbprint());
    let endpoint = server.endpoint().dpop(old.clone());
    let cache = TokenCache::from_refresh_token(endpoint, "rt-seed").build();
    let svc = layered(&cache);
    assert_eq!(get(&svc, &server, "/a").await, StatusCode::OK);

    cache.rotate_dpop_key(new.clone());
    let e = cache
        .refresh_now()
        .await
        .expect_err("the bound refresh token refused");
    assert!(e.is_reauthorization_required(), "{e:?}");
    for path in ["/b", "/c"] {
        assert_eq!(get(&svc, &server, path).await, StatusCode::OK);
    }
    let e = cache.refresh_now().await.expect_err("still refused");
    assert!(e.is_reauthorization_required(), "{e:?}");
    let (old, new) = (old.thumbprint().to_owned(), new.thumbprint().to_owned());
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("refresh_token").expect("a refresh token"))
        .collect();
    assert_eq!(sent, ["rt-seed", "rt-seed"]);
    assert_eq!(token_request_keys(&server), [old.clone(), new]);
    let tokens = assert_every_proof_is_of_its_tokens_key(&server);
    assert_eq!(tokens, [("at-1".to_owned(), old)]);
    assert_eq!(server.unauthorized_count(), 0);
}

/// Sends `path` on `svc` itself (polled ready, then called): a handle used
/// for many requests, which keeps its own copy of the token.
async fn send_on(
    svc: &mut tower_oauth2::OAuth2Service<HttpClient>,
    server: &TestServer,
    path: &str,
) -> StatusCode {
    let ready = svc.ready().await.expect("ready");
    let response = ready.call(server.get(path)).await;
    response.expect("a response").status()
}

/// Issue 23, the pair clone per request × rotation: a handle used for
/// many requests (its own copy of the token), a clone of it made before
/// the rotation, and clones made after (`svc.clone().oneshot(req)`): every
/// proof is of the key its token is bound to, the old token goes on until
/// the new key's is in, and that one is fetched once.
#[tokio::test]
async fn pair_clone_per_request_a_used_handle_and_its_clones_prove_each_token_with_its_key() {
    let (server, old, new, cache) = old_and_new_key().await;
    let mut used = layered(&cache);
    for path in ["/used/1", "/used/2", "/used/3"] {
        assert_eq!(send_on(&mut used, &server, path).await, StatusCode::OK);
    }
    let before = used.clone();
    cache.rotate_dpop_key(new.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.authorizations().last() != Some(&Some("DPoP at-2".to_owned())) {
        assert!(Instant::now() < deadline, "gave up waiting");
        assert_eq!(send_on(&mut used, &server, "/used").await, StatusCode::OK);
        assert_eq!(get(&used, &server, "/clone").await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = before.oneshot(server.get("/before")).await;
    assert_eq!(answer.expect("a response").status(), StatusCode::OK);
    assert_eq!(get(&used, &server, "/after").await, StatusCode::OK);
    assert_eq!(send_on(&mut used, &server, "/after").await, StatusCode::OK);
    let sent = server.path_authorizations();
    let last = &sent[sent.len() - 3..];
    assert!(
        last.iter().all(|(_, a)| a.as_deref() == Some("DPoP at-2")),
        "{last:?}"
    );
    assert_eq!(
        token_request_keys(&server),
        [old.thumbprint(), new.thumbprint()]
    );
    assert_eq!(
        assert_every_proof_is_of_its_tokens_key(&server),
        [
            ("at-1".to_owned(), old.thumbprint().to_owned()),
            ("at-2".to_owned(), new.thumbprint().to_owned())
        ]
    );
}

/// Bounded: the token endpoint refuses every token request after a
/// rotation (say, the new key's algorithm is not one it takes). Every
/// request after the rotation sees its token bound to a key rotated away
/// and asks for the new key's token, but the cache's fetch backoff holds:
/// one refused token request for twenty requests, each sent with the old
/// token and the old key, none failed.
#[tokio::test]
async fn pair_dpop_backoff_rotation_a_refused_new_key_costs_one_token_request_per_backoff_step() {
    let server = dpop_server().await;
    let (old, new) = (a_key(), a_key());
    let hour = Duration::from_secs(3600);
    let cache = TokenCache::builder(
        server.endpoint().dpop(old.clone()),
        TokenRequest::client_credentials(),
    )
    .backoff(tower_oauth2::cache::Backoff::new(hour, hour))
    .build();
    let svc = OAuth2Layer::new(cache.clone()).layer(http_client());
    assert_eq!(get(&svc, &server, "/before").await, StatusCode::OK);
    server.set_failing(Some(support::token_server::Canned::json(
        400,
        r#"{"error":"invalid_dpop_proof"}"#,
    )));
    cache.rotate_dpop_key(new);
    // The rotation's own fetch, refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.token_requests() < 2 {
        assert!(Instant::now() < deadline, "the new key's fetch never went");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..20 {
        let path = format!("/after/{i}");
        assert_eq!(get(&svc, &server, &path).await, StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 2, "the endpoint was hammered");
    assert!(sent_tokens(&server).iter().all(|t| t == "DPoP at-1"));
    assert!(each_proof_is_of_its_tokens_key(&server));
    assert_eq!(
        token_request_keys(&server).last(),
        Some(&cache.dpop().expect("DPoP").thumbprint().to_owned())
    );
}

/// fleet × revocation × dpop rotation: a token of the old key, revoked
/// after the key file was rotated (before the new key's token came), is
/// removed from Redis under its own key's name, not the new key's: a
/// process still holding the old key (its copy of the file not yet
/// rotated) finds nothing there and fetches, instead of sending the
/// revoked token.
#[tokio::test]
async fn pair_fleet_revocation_dpop_rotation_a_revoked_token_of_the_old_key_leaves_redis() {
    let Some((redis, server)) = fleet_servers().await else {
        return;
    };
    let dir = temp_dir("revoked");
    let (rotated, behind) = (dir.join("rotated.pem"), dir.join("behind.pem"));
    std::fs::write(&rotated, P256_PEM).expect("a key file");
    std::fs::write(&behind, P256_PEM).expect("a key file");
    let process = |file: &Path| {
        let keys = DpopKeys::from_file(file).expect("the key file");
        let endpoint = server
            .endpoint()
            .dpop_keys(keys.clone())
            .revocation_url(server.revocation_url());
        (keys, fleet_process(endpoint, tier(&redis)))
    };
    let (keys, one) = process(&rotated);
    let svc = OAuth2Layer::new(one.clone()).layer(http_client());
    assert_eq!(get(&svc, &server, "/one/1").await, StatusCode::OK);
    rewrite(&rotated, ED25519_PEM);
    assert!(keys.reload().expect("the new key"));
    one.revoke().await.expect("revoked");
    assert_eq!(server.revocations().len(), 1);

    let (_, three) = process(&behind);
    let svc = OAuth2Layer::new(three).layer(http_client());
    assert_eq!(get(&svc, &server, "/three/1").await, StatusCode::OK);
    assert_eq!(
        sent_tokens(&server),
        ["DPoP at-1", "DPoP at-2"],
        "the revoked token was taken from Redis"
    );
    assert!(each_proof_is_of_its_tokens_key(&server));
    let _ = std::fs::remove_dir_all(dir);
}
