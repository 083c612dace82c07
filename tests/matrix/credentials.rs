//! Credentials read for every token request (issue 21: a client secret
//! or client assertion from a file that rotates, a callback) with each
//! other feature, and the files attacked: a FIFO, `/dev/zero`, a
//! directory, a file truncated then written.
//!
//! Every secret and assertion written here holds [`CANARY`]: it must show
//! up in no Redis key or value, no token file, no error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::StatusCode;
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::Layer;
use tower_oauth2::config::ClientConfig;
use tower_oauth2::credentials::CredentialSource;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::error::{CredentialFailure, ErrorKind};
use tower_oauth2::layer::KeyedOAuth2Layer;
use tower_oauth2::on_behalf::{OnBehalfLayer, SubjectToken};
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{
    ClientAuth, OAuth2Layer, SecretString, TokenCache, TokenEndpoint, TokenRequest, TokenUrl,
};

use super::*;
use crate::redis_server::{available, RedisServer};
use crate::support::client::{get, http_client};
use crate::support::token_server::{ClientCheck, TestServer};

/// In every secret and assertion: it must show up nowhere.
const CANARY: &str = "CANARY5d1e";

fn secret(n: &str) -> String {
    format!("{CANARY}-{n}")
}

/// Replaces `path`'s content at once (written beside it, renamed over it),
/// as the kubelet and vault agents do.
fn rewrite(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write the new credential");
    std::fs::rename(&tmp, path).expect("rename it over the old one");
}

/// A directory of the test's own, and `client-secret` in it holding
/// `first` with the trailing newline a Kubernetes secret has.
fn secret_file(first: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir();
    let path = dir.path().join("client-secret");
    rewrite(&path, &format!("{first}\n"));
    (dir, path)
}

/// A test server knowing client `svc` by secret `old` (posted in the
/// form), `old`, `new`, and a file holding `old` (in its directory), which
/// a test rotates to `new`.
async fn rotation() -> (TestServer, String, String, tempfile::TempDir, PathBuf) {
    let server = TestServer::start().await;
    let (old, new) = (secret("old"), secret("new"));
    server.set_client("svc", &old, ClientCheck::Post);
    let (dir, path) = secret_file(&old);
    (server, old, new, dir, path)
}

fn token_url(server: &TestServer) -> TokenUrl {
    TokenUrl::new(&server.token_url()).expect("a loopback token URL")
}

/// `server`'s token endpoint, authenticating as `client`.
fn endpoint(server: &TestServer, client: ClientAuth) -> TokenEndpoint<HttpClient> {
    TokenEndpoint::new(http_client(), token_url(server), client)
}

/// `client_secret_post` as `svc` with the secret from `path`.
fn post_from(path: &Path) -> ClientAuth {
    ClientAuth::client_secret_post_from("svc", CredentialSource::file(path))
}

/// The `client_secret` of each token request, in order.
fn secrets_sent(server: &TestServer) -> Vec<Option<String>> {
    token_params(server, "client_secret")
}

/// The HTTP client the tests send with, boxed.
type Boxed = BoxCloneSyncService<
    Request<Full<Bytes>>,
    Response<Incoming>,
    hyper_util::client::legacy::Error,
>;

/// [`http_client`] that runs `rotate` once, just before it sends its
/// first request: the credential in that request was read before the
/// rotation and is checked after it, the race an `invalid_client` re-read
/// is for, made deterministic.
fn rotating_before_first_send(rotate: impl FnOnce() + Send + 'static) -> Boxed {
    rotating_before_first_send_to("/token", rotate)
}

/// [`rotating_before_first_send`], for the first request to `path`.
fn rotating_before_first_send_to(
    path: &'static str,
    rotate: impl FnOnce() + Send + 'static,
) -> Boxed {
    let rotate = Arc::new(Mutex::new(Some(
        Box::new(rotate) as Box<dyn FnOnce() + Send>
    )));
    let http = http_client();
    BoxCloneSyncService::new(service_fn(move |request: Request<Full<Bytes>>| {
        if request.uri().path() == path {
            if let Some(rotate) = rotate.lock().expect("the hook").take() {
                rotate();
            }
        }
        http.clone().oneshot(request)
    }))
}

/// `server`'s token endpoint posting the secret in `path` (holding `old`),
/// its first token request racing a rotation: the server already takes
/// `new` only, and the file is rewritten to `new` after that request read
/// it.
fn racing_a_rotation(
    server: &TestServer,
    path: &Path,
    old: &str,
    new: &str,
) -> TokenEndpoint<Boxed> {
    server.accept_secret(new);
    server.revoke_secret(old);
    let rotated = (path.to_owned(), new.to_owned());
    let http = rotating_before_first_send(move || rewrite(&rotated.0, &format!("{}\n", rotated.1)));
    TokenEndpoint::new(http, token_url(server), post_from(path))
}

/// The secret rotation the server sees: `new` registered, the file
/// rewritten, `old` revoked.
fn rotate_secret(server: &TestServer, path: &Path, old: &str, new: &str) {
    server.accept_secret(new);
    rewrite(path, &format!("{new}\n"));
    server.revoke_secret(old);
}

/// A Redis server of the test's own; none where Redis is not installed.
fn redis() -> Option<RedisServer> {
    available().then(RedisServer::start)
}

/// One fleet process: a cache posting the secret in `path`, sharing its
/// token through `tier`.
fn fleet_process(server: &TestServer, path: &Path, tier: RedisTier) -> TokenCache {
    let endpoint = endpoint(server, post_from(path));
    let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
    builder.redis(tier).build()
}

/// Every key and every string value in `redis`: none may hold a secret.
fn redis_dump(redis: &RedisServer) -> (Vec<String>, String) {
    let keys = redis.cli(&["KEYS", "*"]);
    let mut keys: Vec<String> = keys.lines().map(str::to_owned).collect();
    keys.sort();
    let mut values = String::new();
    for key in &keys {
        if redis.cli(&["TYPE", key]).trim() == "string" {
            values.push_str(&redis.cli(&["GET", key]));
        }
    }
    (keys, values)
}

/// The keys that name a token (not a lease, which comes and goes).
fn token_keys(keys: &[String]) -> Vec<String> {
    keys.iter()
        .filter(|k| k.ends_with(":token"))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// credentials × fleet

/// Two processes of a fleet, each with its own copy of the secret file (a
/// mount per pod), share one token through Redis. The secret rotates in
/// one pod first: the fleet's key names do not move (the fingerprint holds
/// no secret), so after a 401 the rotated pod's new token is taken by the
/// other with no token request of its own; no key or value ever holds
/// the secret.
#[tokio::test]
async fn pair_credentials_fleet_a_rotation_in_one_process_first_splits_nothing() {
    let Some(redis) = redis() else { return };
    let (server, old, new, _a_dir, a_file) = rotation().await;
    let (_b_dir, b_file) = secret_file(&old);
    let process = |path: &Path| {
        let cache = fleet_process(&server, path, tier(&redis));
        OAuth2Layer::new(cache)
            .unauthorized_backoff(an_hour())
            .layer(http_client())
    };
    let (a, b) = (process(&a_file), process(&b_file));
    assert_eq!(status(&a, server.get("/a/1")).await, Ok(StatusCode::OK));
    assert_eq!(status(&b, server.get("/b/1")).await, Ok(StatusCode::OK));
    assert_eq!(server.token_requests(), 1);
    let (before, _) = redis_dump(&redis);

    // Pod a's secret is rotated first; pod b's mount is not updated yet,
    // and its secret stays valid at the server until it is.
    server.accept_secret(&new);
    rewrite(&a_file, &format!("{new}\n"));
    server.revoke("at-1");
    assert_eq!(status(&a, server.get("/a/2")).await, Ok(StatusCode::OK));
    assert_eq!(status(&b, server.get("/b/2")).await, Ok(StatusCode::OK));
    // b took a's new token from Redis.
    assert_one_refetch_for_both_processes(&server);
    assert_eq!(secrets_sent(&server), some(&[&old, &new]));
    let (after, stored) = redis_dump(&redis);
    assert_eq!(token_keys(&before), token_keys(&after));
    assert_eq!(token_keys(&after).len(), 1, "{after:?}");

    // Pod b's mount catches up and the old secret is revoked: b's own
    // fetch (after the next refusal) uses the new one.
    rewrite(&b_file, &format!("{new}\n"));
    server.revoke_secret(&old);
    server.revoke("at-2");
    assert_eq!(status(&b, server.get("/b/3")).await, Ok(StatusCode::OK));
    assert_eq!(status(&a, server.get("/a/3")).await, Ok(StatusCode::OK));
    assert_eq!(secrets_sent(&server), some(&[&old, &new, &new]));
    assert_eq!(server.client_refusals(), 0);
    // After the six of the first rotation:
    assert_eq!(
        auths(&server)[6..],
        values(&["Bearer at-2", "Bearer at-3", "Bearer at-2", "Bearer at-3"])
    );
    let (last, more_values) = redis_dump(&redis);
    let everything = format!("{before:?} {after:?} {last:?} {stored} {more_values}");
    assert!(
        !everything.contains(CANARY),
        "a secret in Redis: {everything}"
    );
}

/// [`http_client`] that holds every request until `open` says `true`.
fn gated(open: tokio::sync::watch::Receiver<bool>) -> Boxed {
    let http = http_client();
    BoxCloneSyncService::new(service_fn(move |request: Request<Full<Bytes>>| {
        let (mut open, http) = (open.clone(), http.clone());
        async move {
            let _ = open.wait_for(|open| *open).await;
            http.oneshot(request).await
        }
    }))
}

/// A pod whose mount still holds the revoked secret takes the fleet's
/// lease and fails (`invalid_client`, re-read once: still the old one).
/// The pod waiting on that lease is not failed with it: the lease freed,
/// it fetches with its own, rotated secret.
#[tokio::test]
async fn pair_credentials_fleet_a_stale_secret_holding_the_lease_fails_alone() {
    let Some(redis) = redis() else { return };
    let server = TestServer::start().await;
    let (old, new) = (secret("old"), secret("new"));
    server.set_client("svc", &new, ClientCheck::Post);
    let (_a_dir, a_file) = secret_file(&new);
    let (_b_dir, b_file) = secret_file(&old);
    let (open, gate) = tokio::sync::watch::channel(false);
    let a_tier = tier(&redis);
    let a = fleet_process(&server, &a_file, a_tier.clone());
    let b = TokenCache::builder(
        TokenEndpoint::new(gated(gate), token_url(&server), post_from(&b_file)),
        TokenRequest::client_credentials(),
    )
    .redis(tier(&redis))
    .build();
    let b_fetch = tokio::spawn(async move { header(&b).await });
    until("b to take the lease", || {
        let keys = redis.cli(&["KEYS", "*"]);
        keys.lines()
            .any(|k| !k.ends_with(":token") && !k.trim().is_empty())
    })
    .await;
    let a_fetch = tokio::spawn(async move { header(&a).await });
    until("a to wait on b's lease", || a_tier.stats().lease_waits > 0).await;
    open.send(true).expect("b's requests go");
    let b_got = b_fetch.await.expect("b's task");
    let a_got = a_fetch.await.expect("a's task");
    assert!(
        b_got.as_ref().is_err_and(|e| e.contains("invalid_client")),
        "{b_got:?}"
    );
    assert_eq!(a_got, Ok("Bearer at-1".to_owned()));
    assert_eq!(secrets_sent(&server), some(&[&old, &old, &new]));
    assert_eq!(server.client_refusals(), 2);
}

// ---------------------------------------------------------------------------
// credentials × file_store

/// A process restarted after its secret file rotated restores the token
/// it stored (the fingerprint holds no secret, so the rotation does not
/// orphan it), and the token file holds no secret.
#[tokio::test]
async fn pair_credentials_file_store_a_restart_after_a_rotation_restores_the_token() {
    let (server, old, new, dir, path) = rotation().await;
    let store = token_file(&dir, "token.json");
    let process = || {
        TokenCache::builder(
            endpoint(&server, post_from(&path)),
            TokenRequest::client_credentials(),
        )
        .store(FileStore::new(&store))
        .build()
    };
    assert_eq!(header(&process()).await, Ok("Bearer at-1".to_owned()));
    rotate_secret(&server, &path, &old, &new);
    let restarted = process();
    assert_eq!(header(&restarted).await, Ok("Bearer at-1".to_owned()));
    assert_eq!(server.token_requests(), 1);
    let stored = std::fs::read_to_string(&store).expect("the token file");
    assert!(stored.contains("at-1"), "{stored}");
    assert!(
        !stored.contains(CANARY),
        "a secret in the token file: {stored}"
    );
    // Its next fetch sends the new secret.
    restarted.refresh_now().await.expect("a new token");
    assert_eq!(secrets_sent(&server), some(&[&old, &new]));
}

// ---------------------------------------------------------------------------
// credentials × keyed

/// A keyed layer whose keys' caches share one secret file: each key's
/// token request reads it, so a key made after the rotation, and a key's
/// refetch after it, send the new secret with no restart.
#[tokio::test]
async fn pair_credentials_keyed_keys_sharing_one_secret_file_each_read_the_rotated_one() {
    let (server, old, new, _dir, path) = rotation().await;
    let shared = endpoint(&server, post_from(&path));
    let svc = KeyedOAuth2Layer::new(
        |uri: &http::Uri, _: &http::HeaderMap| uri.path().split('/').nth(1).map(str::to_owned),
        move |api: &String| {
            let request = TokenRequest::client_credentials().audience(api.clone());
            Some(TokenCache::builder(shared.clone(), request).build())
        },
    )
    .layer(http_client());
    assert_eq!(
        status(&svc, server.get("/orders/1")).await,
        Ok(StatusCode::OK)
    );
    rotate_secret(&server, &path, &old, &new);
    assert_eq!(
        status(&svc, server.get("/billing/1")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        status(&svc, server.get("/orders/2")).await,
        Ok(StatusCode::OK)
    );
    server.revoke("at-1");
    assert_eq!(
        status(&svc, server.get("/orders/3")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(secrets_sent(&server), some(&[&old, &new, &new]));
    assert_eq!(
        token_params(&server, "audience"),
        some(&["orders", "billing", "orders"])
    );
    assert_eq!(server.client_refusals(), 0);
}

// ---------------------------------------------------------------------------
// credentials × on_behalf

/// The token-exchange client authenticates with a secret file: a subject
/// exchanged after the rotation, and one whose exchange raced it
/// (`invalid_client`, one re-read), both get their token; each subject's
/// exchange is counted exactly.
#[tokio::test]
async fn pair_credentials_on_behalf_exchanges_authenticate_with_the_rotated_secret() {
    let (server, old, new, _dir, path) = rotation().await;
    let endpoint = racing_a_rotation(&server, &path, &old, &new);
    let svc = OnBehalfLayer::new(move |subject: &SubjectToken| {
        let request = TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE);
        TokenCache::builder(endpoint.clone(), request)
            .backoff(an_hour())
            .build()
    })
    .layer(http_client());
    let as_subject = |subject: &str, path: &str| {
        let mut request = server.get(path);
        request.extensions_mut().insert(SubjectToken::new(subject));
        request
    };
    assert_eq!(
        status(&svc, as_subject("st-alice", "/a")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        status(&svc, as_subject("st-bob", "/b")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        status(&svc, as_subject("st-alice", "/a")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        token_params(&server, "subject_token"),
        some(&["st-alice", "st-alice", "st-bob"])
    );
    assert_eq!(secrets_sent(&server), some(&[&old, &new, &new]));
    assert_eq!(server.client_refusals(), 1);
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-1"])
    );
}

// ---------------------------------------------------------------------------
// credentials × reqwest

/// Through the reqwest middleware: a token request that read the secret
/// just before a rotation is refused (`invalid_client`), re-read once and
/// sent once more; the caller's request succeeds.
#[tokio::test]
async fn pair_credentials_reqwest_invalid_client_after_a_rotation_fails_no_request() {
    let (server, old, new, _dir, path) = rotation().await;
    let endpoint = racing_a_rotation(&server, &path, &old, &new);
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let client = reqwest_client(OAuth2Middleware::new(cache));
    assert_eq!(
        reqwest_get(&client, &server.url("/r/1")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        reqwest_get(&client, &server.url("/r/2")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(secrets_sent(&server), some(&[&old, &new]));
    assert_eq!(server.client_refusals(), 1);
    assert_eq!(auths(&server), values(&["Bearer at-1", "Bearer at-1"]));
}

// ---------------------------------------------------------------------------
// credentials × dpop

/// A compact JWT (not signed: the test server compares it whole) for
/// `sub`, number `n`, far from expiry.
fn assertion(sub: &str, n: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"{sub}","sub":"{sub}","jti":"{CANARY}-{n}","exp":4102444800}}"#
    ));
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(CANARY))
}

/// The `jti` of each token request's DPoP proof, in order.
fn proof_jtis(server: &TestServer) -> Vec<String> {
    let proofs = server.received().into_iter().map(|r| {
        let proof = r.headers.get("dpop").expect("a DPoP proof");
        let proof = crate::support::dpop::read(proof.to_str().expect("ASCII"));
        proof.expect("a valid proof").claims["jti"]
            .as_str()
            .expect("a jti")
            .to_owned()
    });
    proofs.collect()
}

/// A token request with a client assertion from a file and a DPoP proof:
/// refused with `invalid_client` because the assertion rotated, it is
/// re-read once and sent once more with a fresh proof (a reused `jti`
/// would be refused as a replay, RFC 9449 §11.1). The token is bound to
/// the key and the resource gets it with a proof.
#[tokio::test]
async fn pair_credentials_dpop_invalid_client_rereads_and_resends_with_a_fresh_proof() {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.set_client("svc", "unused", ClientCheck::Assertion);
    server.set_assertion_type(tower_oauth2::credentials::JWT_BEARER_ASSERTION_TYPE);
    let (first, second) = (assertion("svc", 1), assertion("svc", 2));
    let dir = temp_dir();
    let path = dir.path().join("assertion");
    rewrite(&path, &first);
    // The server already takes the second assertion only; the file is
    // rewritten after the first token request read it.
    server.accept_assertion(&second);
    server.revoke_assertion(&first);
    let rotated = (path.clone(), second.clone());
    let http = rotating_before_first_send(move || rewrite(&rotated.0, &rotated.1));
    let client = ClientAuth::client_assertion("svc", CredentialSource::file(&path));
    let endpoint = TokenEndpoint::new(http, token_url(&server), client)
        .dpop(Dpop::generate().expect("an ES256 key"));
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let svc = OAuth2Layer::new(cache).layer(http_client());
    assert_eq!(status(&svc, server.get("/r")).await, Ok(StatusCode::OK));
    assert_eq!(
        token_params(&server, "client_assertion"),
        some(&[&first, &second])
    );
    let jtis = proof_jtis(&server);
    assert_eq!(jtis.len(), 2);
    assert_ne!(
        jtis[0], jtis[1],
        "the resend reused the refused request's proof"
    );
    assert_eq!(server.client_refusals(), 1);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    let sent = server.authorizations();
    assert_eq!(sent, [Some("DPoP at-1".to_owned())]);
}

// ---------------------------------------------------------------------------
// credentials × backoff

/// A resource's 401 is no reason to read the credential again: each
/// token request reads it once (the refetch after the 401 is a token
/// request of its own), and only the token endpoint's `invalid_client`
/// makes a request read it twice.
#[tokio::test]
async fn pair_credentials_backoff_a_resource_401_reads_the_credential_once_per_token_request() {
    let server = TestServer::start().await;
    server.set_client("svc", "unused", ClientCheck::Assertion);
    server.set_assertion_type(tower_oauth2::credentials::JWT_BEARER_ASSERTION_TYPE);
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = reads.clone();
    let source = CredentialSource::callback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(SecretString::from(assertion("svc", n))) }
    });
    // The third assertion (n = 2) is refused: see below.
    for n in [0, 1, 3] {
        server.accept_assertion(&assertion("svc", n));
    }
    server.set_reject_all(true);
    let cache = TokenCache::builder(
        endpoint(&server, ClientAuth::client_assertion("svc", source)),
        TokenRequest::client_credentials(),
    )
    .build();
    let svc = OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    for i in 0..4 {
        let sent = status(&svc, server.get(&format!("/r/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(server.token_requests(), 2);
    assert_eq!(reads.load(Ordering::SeqCst), 2, "a 401 read the credential");
    assert_eq!(server.client_refusals(), 0);
    // The token endpoint refuses the next assertion: read once more, sent
    // once more.
    server.set_reject_all(false);
    cache
        .refresh_now()
        .await
        .expect("the re-read assertion's token");
    assert_eq!(reads.load(Ordering::SeqCst), 4);
    assert_eq!(server.token_requests(), 4);
    assert_eq!(server.client_refusals(), 1);
}

// ---------------------------------------------------------------------------
// credentials × revocation

/// A revocation request authenticates with the secret in the file now,
/// not the one the token was fetched with.
#[tokio::test]
async fn pair_credentials_revocation_authenticates_with_the_rotated_secret() {
    let (server, old, new, _dir, path) = rotation().await;
    let endpoint = endpoint(&server, post_from(&path)).revocation_url(server.revocation_url());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    assert_eq!(header(&cache).await, Ok("Bearer at-1".to_owned()));
    rotate_secret(&server, &path, &old, &new);
    cache.revoke().await.expect("revoked with the new secret");
    let revocations = server.revocations();
    let sent: Vec<_> = revocations
        .iter()
        .map(|r| (r.param("token"), r.param("client_secret")))
        .collect();
    assert_eq!(sent, [(Some("at-1".to_owned()), Some(new.clone()))]);
    assert_eq!(header(&cache).await, Ok("Bearer at-2".to_owned()));
    assert_eq!(secrets_sent(&server), some(&[&old, &new]));
}

/// A revocation request that read the secret just before a rotation is
/// refused (`invalid_client`, RFC 7009 §2.1 authenticates the client as
/// the token endpoint does): as a token request, it reads the secret again
/// and is sent once more, never more often.
#[tokio::test]
async fn pair_credentials_revocation_that_raced_the_rotation_rereads_once() {
    let (server, old, new, _dir, path) = rotation().await;
    let rotated = (path.clone(), new.clone());
    let http = rotating_before_first_send_to("/revoke", move || {
        rewrite(&rotated.0, &format!("{}\n", rotated.1))
    });
    let endpoint = TokenEndpoint::new(http, token_url(&server), post_from(&path))
        .revocation_url(server.revocation_url());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    assert_eq!(header(&cache).await, Ok("Bearer at-1".to_owned()));
    server.accept_secret(&new);
    server.revoke_secret(&old);
    let revoked = cache.revoke().await;
    assert!(revoked.is_ok(), "{revoked:?}");
    let sent: Vec<_> = (server.revocations().iter())
        .map(|r| r.param("client_secret"))
        .collect();
    assert_eq!(sent, some(&[&old, &new]));
    // Refused whatever is read: once more, then the refusal.
    assert_eq!(header(&cache).await, Ok("Bearer at-2".to_owned()));
    server.revoke_secret(&new);
    let refused = cache.revoke().await.expect_err("no secret is accepted");
    assert_eq!(refused.kind(), ErrorKind::OAuth, "{refused}");
    assert_eq!(server.revocations().len(), 4);
}

// ---------------------------------------------------------------------------
// credentials × config (one configuration from the environment)

/// `vars` as the lookup `ClientConfig::from_vars` takes.
fn config(vars: &[(&str, String)]) -> Result<ClientConfig, tower_oauth2::config::ConfigError> {
    ClientConfig::from_vars(|name| {
        let found = vars.iter().find(|(n, _)| *n == name);
        found.map(|(_, v)| v.clone())
    })
}

/// Two processes configured from the same variables (a secret file,
/// `OAUTH2_REDIS_URL`, `OAUTH2_REDIS_KEY`, scope, audience, resource)
/// share one token; Redis holds neither the secret nor the token in
/// clear; the token goes only to the resource the variables name.
#[tokio::test]
async fn pair_credentials_config_fleet_and_resource_from_variables() {
    let Some(redis) = redis() else { return };
    let server = TestServer::start().await;
    let other = Landing::start().await;
    let secret = secret("env");
    server.set_client("svc-orders", &secret, ClientCheck::Basic);
    let (_dir, path) = secret_file(&secret);
    let vars = [
        ("OAUTH2_TOKEN_URL", server.token_url()),
        ("OAUTH2_CLIENT_ID", "svc-orders".to_owned()),
        (
            "OAUTH2_CLIENT_SECRET_FILE",
            path.to_string_lossy().into_owned(),
        ),
        ("OAUTH2_SCOPE", "inventory:read".to_owned()),
        ("OAUTH2_AUDIENCE", "inventory".to_owned()),
        ("OAUTH2_RESOURCE", server.url("")),
        ("OAUTH2_REDIS_URL", redis.url()),
        (
            "OAUTH2_REDIS_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ),
    ];
    let process = || {
        let cache = config(&vars).expect("a configuration");
        let cache = cache.cache(http_client()).expect("a cache");
        OAuth2Layer::new(cache).layer(http_client())
    };
    let (a, b) = (process(), process());
    assert_eq!(status(&a, server.get("/r/1")).await, Ok(StatusCode::OK));
    assert_eq!(status(&b, server.get("/r/2")).await, Ok(StatusCode::OK));
    // Another origin than the resource named: no token.
    assert_eq!(status(&b, get(&other.url("/x"))).await, Ok(StatusCode::OK));
    assert_eq!(other.seen(), [("-".to_owned(), "-".to_owned())]);
    assert_eq!(server.token_requests(), 1);
    let received = &server.received()[0];
    assert_eq!(received.param("scope").as_deref(), Some("inventory:read"));
    assert_eq!(received.param("audience").as_deref(), Some("inventory"));
    assert_eq!(received.param("resource"), Some(server.url("")));
    let (keys, values) = redis_dump(&redis);
    let everything = format!("{keys:?} {values}");
    assert!(
        !everything.contains(CANARY),
        "a secret in Redis: {everything}"
    );
    assert!(
        !everything.contains("at-1"),
        "the token in clear: {everything}"
    );
}

/// A malformed or missing variable names the variable and never quotes
/// a value, whichever feature it sets; an unusable secret or key file
/// names the file at the token request, never its content.
#[tokio::test]
async fn pair_credentials_config_errors_name_the_variable_never_a_secret() {
    let base = |more: &[(&'static str, &str)]| {
        let mut vars = vec![
            (
                "OAUTH2_TOKEN_URL",
                "https://as.example.com/token".to_owned(),
            ),
            ("OAUTH2_CLIENT_ID", "svc".to_owned()),
        ];
        vars.extend(more.iter().map(|(n, v)| (*n, (*v).to_owned())));
        vars
    };
    let canary = secret("v");
    let redis_url = format!("redis://fleet:{canary}@127.0.0.1:1/0");
    let bad_url = format!("http://{canary}@127.0.0.1");
    let (canary, redis_url, bad_url) = (canary.as_str(), redis_url.as_str(), bad_url.as_str());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            base(&[("OAUTH2_CLIENT_SECRET", canary), ("OAUTH2_AUTH", "basic ")]),
            "",
        ),
        (
            base(&[("OAUTH2_CLIENT_SECRET", canary), ("OAUTH2_AUTH", canary)]),
            "OAUTH2_AUTH",
        ),
        (
            base(&[
                ("OAUTH2_CLIENT_SECRET", canary),
                ("OAUTH2_REDIS_URL", bad_url),
            ]),
            "OAUTH2_REDIS_URL",
        ),
        (
            base(&[
                ("OAUTH2_CLIENT_SECRET", canary),
                ("OAUTH2_REDIS_URL", redis_url),
                ("OAUTH2_REDIS_KEY", canary),
            ]),
            "OAUTH2_REDIS_KEY",
        ),
        (
            base(&[("OAUTH2_KEY_FILE", "/k.pem"), ("OAUTH2_KEY_ALG", canary)]),
            "OAUTH2_KEY_ALG",
        ),
        (
            base(&[("OAUTH2_CLIENT_SECRET", canary), ("OAUTH2_TIMEOUT", canary)]),
            "OAUTH2_TIMEOUT",
        ),
    ];
    for (vars, variable) in cases {
        match config(&vars) {
            Ok(config) => {
                assert_eq!(variable, "", "{vars:?} was accepted");
                let shown = format!("{config:?}");
                assert!(!shown.contains(CANARY), "{shown}");
            }
            Err(e) => {
                assert_eq!(e.variable(), variable, "{e}");
                let shown = format!("{e} {e:?}");
                assert!(!shown.contains(CANARY), "{shown}");
            }
        }
    }
    // A key file holding no key: the token request names the file only.
    let server = TestServer::start().await;
    let dir = temp_dir();
    let key_file = dir.path().join("key.pem");
    rewrite(
        &key_file,
        &format!("-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n"),
    );
    let vars = [
        ("OAUTH2_TOKEN_URL", server.token_url()),
        ("OAUTH2_CLIENT_ID", "svc".to_owned()),
        ("OAUTH2_KEY_FILE", key_file.to_string_lossy().into_owned()),
    ];
    let config = config(&vars).expect("a configuration");
    let err = config
        .endpoint(http_client())
        .expect("an endpoint")
        .request(&config.token_request())
        .await
        .expect_err("no key in the file");
    assert_eq!(err.credential_failure(), Some(CredentialFailure::NotAKey));
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(&*key_file.to_string_lossy()), "{shown}");
    assert!(!shown.contains(CANARY), "{shown}");
    assert_eq!(server.token_requests(), 0);
}

/// RFC 6749 Appendix A.2: a client secret is visible ASCII (`%x20-7E`),
/// so a line break at its end is never part of it. A Kubernetes secret
/// made from a file (or `echo`) often ends with one, whether it is
/// mounted as a file or put in `OAUTH2_CLIENT_SECRET` (`secretKeyRef`):
/// both send the secret without it, as peers do (headscale,
/// openvpn-auth-oauth2, flytekit trim it).
#[tokio::test]
async fn pair_credentials_config_a_secrets_trailing_line_breaks_are_cut_from_file_and_variable() {
    let server = TestServer::start().await;
    let secret = secret("nl");
    server.set_client("svc", &secret, ClientCheck::Post);
    let dir = temp_dir();
    let path = dir.path().join("client-secret");
    let request = |vars: &[(&'static str, String)]| {
        // The first of a name counts: `vars` override these.
        let mut all = vars.to_vec();
        all.extend([
            ("OAUTH2_TOKEN_URL", server.token_url()),
            ("OAUTH2_CLIENT_ID", "svc".to_owned()),
            ("OAUTH2_AUTH", "post".to_owned()),
        ]);
        let config = config(&all).expect("a configuration");
        let endpoint = config.endpoint(http_client()).expect("an endpoint");
        async move { endpoint.request(&config.token_request()).await.map(|_| ()) }
    };
    for ending in ["\n", "\r\n", "\n\n"] {
        rewrite(&path, &format!("{secret}{ending}"));
        let file = [(
            "OAUTH2_CLIENT_SECRET_FILE",
            path.to_string_lossy().into_owned(),
        )];
        assert!(request(&file).await.is_ok(), "file ending {ending:?}");
        let variable = [("OAUTH2_CLIENT_SECRET", format!("{secret}{ending}"))];
        assert!(
            request(&variable).await.is_ok(),
            "variable ending {ending:?}"
        );
    }
    assert_eq!(server.client_refusals(), 0);
    assert_eq!(secrets_sent(&server), vec![Some(secret.clone()); 6]);

    // Every other value from the same Kubernetes secret or config map
    // (`client-id` made with `echo`, a file path, an audience): no line
    // break at its end is kept either.
    let client_id = [
        ("OAUTH2_CLIENT_ID", "svc\n".to_owned()),
        (
            "OAUTH2_CLIENT_SECRET_FILE",
            format!("{}\n", path.to_string_lossy()),
        ),
        ("OAUTH2_AUDIENCE", "inventory\r\n".to_owned()),
    ];
    let sent = request(&client_id).await;
    assert!(sent.is_ok(), "{sent:?}");
    let last = server.received().pop().expect("a token request");
    assert_eq!(last.param("client_id").as_deref(), Some("svc"));
    assert_eq!(last.param("audience").as_deref(), Some("inventory"));
}

// ---------------------------------------------------------------------------
// credentials, attacked: the file

/// Runs `read` on a thread of its own and gives its result, or `None` if
/// it has not returned within 10 s; then `unblock` runs, so the thread
/// does not stay stuck.
fn within_10s<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
    unblock: impl FnOnce(),
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    let result = rx.recv_timeout(Duration::from_secs(10)).ok();
    if result.is_none() {
        unblock();
    }
    result
}

/// `mkfifo path`.
fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
}

/// Opens the FIFO at `path` for writing and closes it: a reader blocked
/// in `open` (waiting for a writer) then reads end of file.
fn release_fifo(path: &Path) {
    let _ = std::fs::OpenOptions::new().write(true).open(path);
}

/// The credential failure building a token request with the secret at
/// `path` gives, within 10 s; `None` if the read blocked.
fn build_failure(path: &Path) -> Option<Result<(), Option<CredentialFailure>>> {
    let client = post_from(path);
    let url = TokenUrl::new("https://as.example.com/token").expect("a token URL");
    let fifo = path.to_owned();
    within_10s(
        move || {
            let built = TokenRequest::client_credentials().build(&client, &url);
            built.map(|_| ()).map_err(|e| e.credential_failure())
        },
        move || release_fifo(&fifo),
    )
}

/// A credentials file replaced by a FIFO, or a symbolic link to one: on
/// Linux `open(2)` of a FIFO with no writer waits for one forever, on the
/// runtime's thread that sends the token request. It is refused at once,
/// as anything that is not a regular file is.
#[test]
fn attack_credentials_a_fifo_with_no_writer_is_refused_at_once() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let link = dir.path().join("client-secret");
    std::os::unix::fs::symlink(&fifo, &link).expect("a symbolic link");
    for path in [&fifo, &link] {
        let failure = build_failure(path);
        assert_eq!(
            failure,
            Some(Err(Some(CredentialFailure::Unreadable))),
            "{}: None is a read that blocked",
            path.display()
        );
    }
}

/// Through the cache and its flight: a FIFO fails the token request with
/// a typed error naming the file, and no request is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_credentials_a_fifo_fails_the_token_request_instead_of_hanging_it() {
    let server = TestServer::start().await;
    let dir = temp_dir();
    let fifo = dir.path().join("client-secret");
    mkfifo(&fifo);
    let cache = TokenCache::builder(
        endpoint(&server, post_from(&fifo)),
        TokenRequest::client_credentials(),
    )
    .build();
    let fetched = tokio::time::timeout(Duration::from_secs(10), cache.token()).await;
    let Ok(fetched) = fetched else {
        release_fifo(&fifo);
        panic!("the token request hung on the FIFO");
    };
    let err = fetched.expect_err("a FIFO holds no secret");
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert_eq!(
        err.credential_failure(),
        Some(CredentialFailure::Unreadable)
    );
    assert!(err.to_string().contains(&*fifo.to_string_lossy()), "{err}");
    assert_eq!(server.token_requests(), 0);
}

/// A symbolic link to `/dev/zero` (endless), to a directory, or to a huge
/// file: each refused with a typed error, having read at most the bound.
/// (The tests run as root, so a file with mode 000 is read anyway: a
/// permission test would not bite here.)
#[test]
fn attack_credentials_a_device_a_directory_or_a_huge_file_is_refused() {
    let dir = temp_dir();
    let huge = dir.path().join("huge");
    let file = std::fs::File::create(&huge).expect("a file");
    file.set_len(1 << 30).expect("a sparse 1 GiB file");
    let subdir = dir.path().join("subdir");
    std::fs::create_dir(&subdir).expect("a directory");
    for target in [Path::new("/dev/zero"), &subdir, &huge] {
        let link = dir.path().join("client-secret");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).expect("a symbolic link");
        for path in [target, &link] {
            let failure = build_failure(path);
            assert_eq!(
                failure,
                Some(Err(Some(CredentialFailure::Unreadable))),
                "{}",
                path.display()
            );
        }
    }
}

/// A file truncated then written (not renamed over): read empty, the
/// token request fails with `Empty` and nothing is sent; read
/// half-written, the server refuses it and the one re-read after
/// `invalid_client` sends the whole secret.
#[tokio::test]
async fn attack_credentials_a_file_read_while_rewritten_in_place() {
    let server = TestServer::start().await;
    let whole = secret("whole");
    server.set_client("svc", &whole, ClientCheck::Post);
    let dir = temp_dir();
    let path = dir.path().join("client-secret");
    std::fs::write(&path, "").expect("truncated");
    let err = endpoint(&server, post_from(&path))
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("an empty file");
    assert_eq!(err.credential_failure(), Some(CredentialFailure::Empty));
    assert!(err.is_retryable());
    assert_eq!(server.token_requests(), 0);

    // Half written when read; the writer finishes before the server
    // answers.
    std::fs::write(&path, &whole[..whole.len() - 3]).expect("half written");
    let finish = (path.clone(), whole.clone());
    let http = rotating_before_first_send(move || {
        std::fs::write(&finish.0, format!("{}\n", finish.1)).expect("written")
    });
    let endpoint = TokenEndpoint::new(http, token_url(&server), post_from(&path));
    let token = endpoint.request(&TokenRequest::client_credentials()).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(
        secrets_sent(&server),
        some(&[&whole[..whole.len() - 3], &whole])
    );
    assert_eq!(server.client_refusals(), 1);
}

/// The mTLS identity files (`IdentityFiles`) attacked the same way: a
/// FIFO or `/dev/zero` for the certificate is refused at once, naming the
/// file; read on a handshake, it would hold up every TLS connection.
#[cfg(feature = "rustls")]
#[test]
fn attack_credentials_identity_files_a_fifo_or_device_is_refused() {
    use tower_oauth2::tls::{IdentityErrorKind, IdentityFiles};
    let dir = temp_dir();
    let client = crate::support::pki::self_signed_client_cert("svc");
    let (fifo, key) = (dir.path().join("fifo.crt"), dir.path().join("tls.key"));
    rewrite(&key, &client.key_pem);
    mkfifo(&fifo);
    let path = fifo.clone();
    let made = within_10s(
        move || {
            IdentityFiles::new(&path, &key)
                .map(|_| ())
                .map_err(|e| e.kind())
        },
        || release_fifo(&fifo),
    );
    assert_eq!(
        made,
        Some(Err(IdentityErrorKind::Unreadable)),
        "None: the read blocked"
    );
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let zero = IdentityFiles::new("/dev/zero", &key)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let shown = zero.expect_err("no identity in /dev/zero");
    assert!(
        shown.contains("/dev/zero") && shown.contains("not a regular file"),
        "{shown}"
    );
    // A renewal that swaps a FIFO in keeps the last good identity, at once.
    rewrite(&cert, &client.cert_pem);
    let files = IdentityFiles::new(&cert, &key).expect("the identity");
    let before = files.current().certificate_thumbprint().to_owned();
    std::fs::remove_file(&cert).expect("the old certificate removed");
    mkfifo(&cert);
    let current = files.clone();
    let path = cert.clone();
    let after = within_10s(
        move || current.current().certificate_thumbprint().to_owned(),
        || release_fifo(&path),
    );
    assert_eq!(after, Some(before), "None: the handshake's read blocked");
}

/// A callback that never answers (the SPIFFE workload API or a sidecar
/// down): the token request fails within the endpoint's timeout, as a
/// token endpoint that never answers does, with a typed error; the cache
/// is not left with a fetch that never ends, so a later request, once the
/// callback answers again, gets a token. The same for revocation.
#[tokio::test]
async fn attack_credentials_a_callback_that_never_answers_is_bounded_by_the_timeout() {
    let server = TestServer::start().await;
    server.set_client("svc", "unused", ClientCheck::Assertion);
    server.set_assertion_type(tower_oauth2::credentials::JWT_BEARER_ASSERTION_TYPE);
    server.accept_assertion(&assertion("svc", 0));
    let answers = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = answers.clone();
    let source = CredentialSource::callback(move || {
        let up = up.load(Ordering::SeqCst);
        async move {
            if !up {
                std::future::pending::<()>().await;
            }
            Ok(SecretString::from(assertion("svc", 0)))
        }
    });
    let endpoint = endpoint(&server, ClientAuth::client_assertion("svc", source))
        .timeout(Duration::from_millis(300))
        .revocation_url(server.revocation_url());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .backoff(tower_oauth2::cache::Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .build();
    let first = tokio::time::timeout(Duration::from_secs(10), cache.token()).await;
    let err = first
        .expect("the fetch hung on the callback")
        .expect_err("no assertion");
    assert_eq!(err.kind(), ErrorKind::Credential, "{err}");
    assert_eq!(err.credential_failure(), Some(CredentialFailure::Callback));
    assert_eq!(server.token_requests(), 0);
    answers.store(true, Ordering::SeqCst);
    let mut fetched = None;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(10), cache.token()).await {
            Ok(Ok(token)) => {
                fetched = Some(token);
                break;
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => panic!("the fetch hung on the callback"),
        }
    }
    let fetched = fetched.expect("a token once the callback answers");
    assert_eq!(fetched.access_token().expose_secret(), "at-1");
    answers.store(false, Ordering::SeqCst);
    let revoked = tokio::time::timeout(Duration::from_secs(10), cache.revoke()).await;
    let err = revoked
        .expect("the revocation hung on the callback")
        .expect_err("no assertion");
    assert_eq!(err.kind(), ErrorKind::Credential, "{err}");
    assert_eq!(
        err.credential_failure(),
        Some(CredentialFailure::Callback),
        "{err}"
    );
    assert_eq!(server.revocations().len(), 0);
}

// ---------------------------------------------------------------------------
// credentials × fleet × revocation × dpop, in the Kubernetes layout

/// A secret volume as the kubelet lays it out (`AtomicWriter`): the files
/// in a timestamped directory, `..data` a symbolic link to it, and each
/// file a symbolic link through `..data`. An update writes a new
/// directory, points a new link `..data_tmp` at it, renames that link
/// over `..data` (the one atomic step), then removes the old directory.
struct SecretVolume {
    dir: tempfile::TempDir,
    version: usize,
}

impl SecretVolume {
    /// The volume holding `files` (name, content).
    fn new(files: &[(&str, &str)]) -> Self {
        let mut volume = SecretVolume {
            dir: temp_dir(),
            version: 0,
        };
        volume.update(files);
        for (name, _) in files {
            let link = volume.dir.path().join(name);
            std::os::unix::fs::symlink(Path::new("..data").join(name), link)
                .expect("the file's link through ..data");
        }
        volume
    }

    /// The path a pod reads `name` at (a link through `..data`).
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The kubelet's update: a new timestamped directory, `..data`
    /// swapped to it by a rename, the old directory removed.
    fn update(&mut self, files: &[(&str, &str)]) {
        let root = self.dir.path();
        self.version += 1;
        let old = format!(
            "..2026_12_06_19_3{}_00.{}",
            self.version - 1,
            self.version - 1
        );
        let new = format!("..2026_12_06_19_3{}_00.{}", self.version, self.version);
        std::fs::create_dir(root.join(&new)).expect("the new version's directory");
        for (name, content) in files {
            std::fs::write(root.join(&new).join(name), content).expect("a file of the version");
        }
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, root.join("..data")).expect("..data swapped");
        if self.version > 1 {
            std::fs::remove_dir_all(root.join(old)).expect("the old version removed");
        }
    }
}

/// credentials × fleet × revocation × dpop: a client secret and a DPoP
/// key mounted from one Kubernetes secret volume, read by two fleet
/// processes, and rotated the kubelet's way (`..data` swapped by a
/// rename). The revocation request after the swap authenticates with the
/// new secret; the next token request sends the new secret and proves
/// the new key (the swap seen through the links); the other process,
/// its token revoked under it, takes the new key's token from Redis with
/// no token request, and no token is ever sent with another key's proof.
#[tokio::test]
async fn pair_credentials_fleet_revocation_dpop_a_kubernetes_secret_volume_swap_is_seen() {
    let Some(redis) = redis() else {
        return;
    };
    const KEY_BEFORE: &str = include_str!("../../src/testdata/p256-sec1.pem");
    const KEY_AFTER: &str = include_str!("../../src/testdata/ed25519.pem");
    let (server, old, new) = (TestServer::start().await, secret("old"), secret("new"));
    server.set_client("svc", &old, ClientCheck::Post);
    server.enable_dpop();
    let old_line = format!("{old}\n");
    let mut volume = SecretVolume::new(&[("client-secret", &old_line), ("dpop.pem", KEY_BEFORE)]);
    let process = || {
        let keys = tower_oauth2::dpop::DpopKeys::from_file(volume.path("dpop.pem"))
            .expect("the key through ..data");
        let endpoint = endpoint(&server, post_from(&volume.path("client-secret")))
            .dpop_keys(keys.clone())
            .revocation_url(server.revocation_url());
        let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
        (keys, builder.redis(tier(&redis)).build())
    };
    let (keys, one) = process();
    let (_, two) = process();
    let before = keys.current().thumbprint().to_owned();
    let svc_two = OAuth2Layer::new(two.clone()).layer(http_client());
    assert_eq!(header(&one).await, Ok("DPoP at-1".to_owned()));
    assert_eq!(
        status(&svc_two, server.get("/two/1")).await,
        Ok(StatusCode::OK)
    );

    // The kubelet's update, and the server's rotation of the secret.
    let new_line = format!("{new}\n");
    volume.update(&[("client-secret", &new_line), ("dpop.pem", KEY_AFTER)]);
    server.accept_secret(&new);
    server.revoke_secret(&old);
    one.revoke().await.expect("revoked with the new secret");
    let revoked: Vec<_> = (server.revocations().iter())
        .map(|r| (r.param("token"), r.param("client_secret")))
        .collect();
    assert_eq!(revoked, [(Some("at-1".to_owned()), Some(new.clone()))]);

    let svc_one = OAuth2Layer::new(one.clone()).layer(http_client());
    assert_eq!(
        status(&svc_one, server.get("/one/1")).await,
        Ok(StatusCode::OK)
    );
    let after = keys.current().thumbprint().to_owned();
    assert_ne!(after, before, "the swapped ..data's key was not read");
    // The other process sends the revoked token, is refused, and resends
    // with the token of the new key, taken from Redis.
    assert_eq!(
        status(&svc_two, server.get("/two/2")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        server.path_authorizations(),
        [
            ("/two/1".to_owned(), Some("DPoP at-1".to_owned())),
            ("/one/1".to_owned(), Some("DPoP at-2".to_owned())),
            ("/two/2".to_owned(), Some("DPoP at-1".to_owned())),
            ("/two/2".to_owned(), Some("DPoP at-2".to_owned())),
        ]
    );
    assert_eq!(secrets_sent(&server), some(&[&old, &new]));
    let proved: Vec<String> = (server.received().iter())
        .map(|r| {
            let proof = r.headers["dpop"].to_str().expect("a proof");
            crate::support::dpop::read(proof).expect("a proof").jkt
        })
        .collect();
    assert_eq!(proved, [&*before, &after]);
    for (token, proof_key, bound_to) in server.dpop_proofs() {
        assert_eq!(
            Some(proof_key),
            bound_to,
            "{token} sent with another key's proof"
        );
    }
    let (keys_in_redis, values) = redis_dump(&redis);
    assert!(!keys_in_redis.concat().contains(CANARY) && !values.contains(CANARY));
}

/// The mTLS identity files (`IdentityFiles`) in the Kubernetes layout (a
/// `kubernetes.io/tls` secret: `tls.crt` and `tls.key` linked through
/// `..data`): the kubelet's swap of `..data` is seen at the next look,
/// both files at once, and the next connection presents the new
/// certificate.
#[cfg(feature = "rustls")]
#[test]
fn pair_credentials_identity_files_a_kubernetes_secret_volume_swap_is_seen() {
    use tower_oauth2::tls::IdentityFiles;
    let (first, second) = (
        crate::support::pki::self_signed_client_cert("svc-1"),
        crate::support::pki::self_signed_client_cert("svc-2"),
    );
    let mut volume =
        SecretVolume::new(&[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)]);
    let files = IdentityFiles::new(volume.path("tls.crt"), volume.path("tls.key"))
        .expect("the identity through ..data");
    let before = files.current().certificate_thumbprint().to_owned();
    assert_eq!(files.current().certificate_thumbprint(), before);
    volume.update(&[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem)]);
    let after = files.current().certificate_thumbprint().to_owned();
    assert_ne!(
        after, before,
        "the swapped ..data's certificate was not read"
    );
    volume.update(&[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)]);
    assert_eq!(files.current().certificate_thumbprint(), before);
}
