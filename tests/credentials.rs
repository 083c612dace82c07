//! Client credentials read for every token request (issue 21): client
//! assertions and client secrets from files that are rewritten while
//! requests are sent, a SPIFFE JWT-SVID, an async callback, the single
//! re-read and retry after `invalid_client`, typed errors for unusable
//! files, and no credential content in any error, log line or `Debug`.
//! Against the test token server on 127.0.0.1, over real HTTP.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use support::client::{http_client, HttpClient};
use support::log::capture;
use support::token_server::{ClientCheck, TestServer};
use tower_oauth2::credentials::{
    CredentialSource, JWT_BEARER_ASSERTION_TYPE, JWT_SPIFFE_ASSERTION_TYPE,
};
use tower_oauth2::error::{CredentialFailure, ErrorCode, ErrorKind};
use tower_oauth2::{
    ClientAuth, Error, SecretString, TokenCache, TokenEndpoint, TokenRequest, TokenUrl,
};

/// In every secret and assertion the tests write: it must show up nowhere.
const CANARY: &str = "CANARY7f3a";

/// A directory of its own for one test's credential files.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "tower-oauth2-credentials-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Dir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path`'s content at once, as the kubelet and vault agents do:
/// written beside it, then renamed over it.
fn rewrite(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write the new credential");
    std::fs::rename(&tmp, path).expect("rename it over the old one");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// A compact JWT (not signed: the test server compares it whole) whose
/// payload names `sub`, `n` and expires at `exp`.
fn jwt(sub: &str, n: usize, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"{sub}","sub":"{sub}","jti":"{CANARY}-{n}","exp":{exp}}}"#
    ));
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(CANARY))
}

fn endpoint(server: &TestServer, client: ClientAuth) -> TokenEndpoint<HttpClient> {
    let url = TokenUrl::new(&server.token_url()).expect("a loopback token URL");
    TokenEndpoint::new(http_client(), url, client)
}

/// The `(id, secret)` of a `client_secret_basic` request.
fn basic(authorization: Option<&str>) -> Option<(String, String)> {
    let raw = STANDARD
        .decode(authorization?.strip_prefix("Basic ")?)
        .ok()?;
    let (id, secret) = String::from_utf8(raw)
        .ok()?
        .split_once(':')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))?;
    Some((id, secret))
}

const TASKS: usize = 8;
const ROTATIONS: usize = 20;

/// `TASKS` tasks send token requests to `server` as `client`, one after
/// another, while a writer task calls `rotate(n)` for n in 1..=ROTATIONS.
/// Every request must be answered: each refused one (its credential
/// retired between the read and the server's check) is sent once more.
///
/// After each rotation the writer waits until every task has finished a
/// request it started after that rotation: a credential then stays
/// accepted until every request that may have read it before its
/// successor was written is answered, as a real rotation's grace period
/// ensures. (Rotating faster than requests are answered could refuse a
/// request twice, which one retry cannot help.)
async fn requests_during_rotations(
    server: &TestServer,
    client: &ClientAuth,
    rotate: impl Fn(usize) + Send + 'static,
) {
    let endpoint = endpoint(server, client.clone());
    let rotation = Arc::new(AtomicUsize::new(0));
    let done: Arc<Vec<AtomicUsize>> = Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (endpoint, rotation, done, finished) = (
                endpoint.clone(),
                rotation.clone(),
                done.clone(),
                finished.clone(),
            );
            let (sent, failed) = (sent.clone(), failed.clone());
            tokio::spawn(async move {
                while !finished.load(Ordering::SeqCst) {
                    let started_after = rotation.load(Ordering::SeqCst);
                    sent.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = endpoint.request(&TokenRequest::client_credentials()).await {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    done[t].store(started_after, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for n in 1..=ROTATIONS {
        rotate(n);
        rotation.store(n, Ordering::SeqCst);
        while done.iter().any(|d| d.load(Ordering::SeqCst) < n) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the requests stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    finished.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a request task");
    }
    let sent = sent.load(Ordering::SeqCst);
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert_eq!(server.token_requests(), sent + server.client_refusals());
    assert!(sent >= TASKS * ROTATIONS, "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_assertion_file_rewritten_while_8_tasks_send_requests() {
    let server = Arc::new(TestServer::start().await);
    server.set_client("svc-orders", "unused", ClientCheck::Assertion);
    let dir = Dir::new("assertion-rotation");
    let path = dir.path("token");
    let exp = now() + 3600;
    let assertions: Vec<String> = (0..=ROTATIONS).map(|n| jwt("svc-orders", n, exp)).collect();
    server.accept_assertion(&assertions[0]);
    rewrite(&path, &assertions[0]);
    let client = ClientAuth::client_assertion("svc-orders", CredentialSource::file(&path));
    assert_eq!(client.method_name(), "private_key_jwt");

    // The rotation a token issuer makes: register the new assertion,
    // hand it out, then stop accepting the old one.
    let (rotating, all) = (server.clone(), assertions.clone());
    let rotated_path = path.clone();
    requests_during_rotations(&server, &client, move |n| {
        rotating.accept_assertion(&all[n]);
        rewrite(&rotated_path, &all[n]);
        rotating.revoke_assertion(&all[n - 1]);
    })
    .await;

    // Every token request carried an assertion that was in the file, with
    // the assertion type; after the last rotation, the newest one is sent.
    for received in server.received() {
        assert_eq!(
            received.param("client_assertion_type").as_deref(),
            Some(JWT_BEARER_ASSERTION_TYPE)
        );
        assert_eq!(received.param("client_id").as_deref(), Some("svc-orders"));
        let sent = received.param("client_assertion").unwrap_or_default();
        assert!(
            assertions.contains(&sent),
            "an assertion never written was sent"
        );
    }
    let before = server.token_requests();
    endpoint(&server, client)
        .request(&TokenRequest::client_credentials())
        .await
        .expect("a token with the newest assertion");
    assert_eq!(server.token_requests(), before + 1);
    let last = server
        .received()
        .pop()
        .and_then(|r| r.param("client_assertion"));
    assert_eq!(last.as_deref(), Some(assertions[ROTATIONS].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_client_secret_file_with_8_tasks_sending_requests() {
    let server = Arc::new(TestServer::start().await);
    server.set_client("svc-orders", "secret-0", ClientCheck::Basic);
    let dir = Dir::new("secret-rotation");
    let path = dir.path("client-secret");
    // Kubernetes secrets made from files often end with a newline.
    rewrite(&path, "secret-0\n");
    let client = ClientAuth::client_secret_basic_from("svc-orders", CredentialSource::file(&path));
    assert_eq!(client.method_name(), "client_secret_basic");

    let (rotating, rotated_path) = (server.clone(), path.clone());
    requests_during_rotations(&server, &client, move |n| {
        rotating.accept_secret(&format!("secret-{n}"));
        rewrite(&rotated_path, &format!("secret-{n}\n"));
        rotating.revoke_secret(&format!("secret-{}", n - 1));
    })
    .await;

    for received in server.received() {
        let (id, secret) = basic(received.authorization()).expect("client_secret_basic");
        assert_eq!(id, "svc-orders");
        let n: usize = secret
            .strip_prefix("secret-")
            .and_then(|n| n.parse().ok())
            .expect("a secret from the file, without its newline");
        assert!(n <= ROTATIONS);
    }
    endpoint(&server, client)
        .request(&TokenRequest::client_credentials())
        .await
        .expect("a token with the newest secret");
    let last = server
        .received()
        .pop()
        .and_then(|r| basic(r.authorization()));
    assert_eq!(last.map(|(_, s)| s), Some(format!("secret-{ROTATIONS}")));
}

/// The secret is rotated while the server holds the first request (read
/// with the old secret): the server refuses it, the client reads the file
/// again and sends once more, with the new secret.
#[tokio::test]
async fn invalid_client_right_after_a_rotation_rereads_the_secret_once() {
    let server = TestServer::start().await;
    server.set_client("svc", "old-secret", ClientCheck::Post);
    let dir = Dir::new("secret-race");
    let path = dir.path("client-secret");
    rewrite(&path, "old-secret\n");
    let endpoint = endpoint(
        &server,
        ClientAuth::client_secret_post_from("svc", CredentialSource::file(&path)),
    );
    server.set_latency(Duration::from_secs(2));
    let request =
        tokio::spawn(async move { endpoint.request(&TokenRequest::client_credentials()).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.token_requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no token request arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The server holds the request sent with the old secret: rotate.
    server.set_latency(Duration::ZERO);
    server.accept_secret("new-secret");
    rewrite(&path, "new-secret\n");
    server.revoke_secret("old-secret");

    let token = request.await.expect("the request task");
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.client_refusals(), 1);
    let secrets: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("client_secret"))
        .collect();
    assert_eq!(
        secrets,
        [Some("old-secret".to_owned()), Some("new-secret".to_owned())]
    );
}

/// 2100-01-01: an `exp` that has not passed.
const FAR: u64 = 4_102_444_800;

/// A callback whose assertions are `jwt(sub, n, exp(n))` for its calls
/// n = 0, 1, 2…, and the count of its calls.
fn counting_callback(
    sub: &'static str,
    exp: fn(usize) -> u64,
) -> (CredentialSource, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let source = CredentialSource::callback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(SecretString::from(jwt(sub, n, exp(n)))) }
    });
    (source, calls)
}

#[tokio::test]
async fn invalid_client_rereads_once_and_retries_once_never_more() {
    let server = TestServer::start().await;
    server.set_client("svc", "unused", ClientCheck::Assertion);
    let (source, calls) = counting_callback("svc", |_| FAR);
    let endpoint = endpoint(&server, ClientAuth::client_assertion("svc", source));

    // The server accepts only the second assertion the callback gives.
    server.accept_assertion(&jwt("svc", 1, FAR));
    let token = endpoint.request(&TokenRequest::client_credentials()).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.client_refusals(), 1);

    // Refused again after the re-read: one retry only, then the refusal.
    let err = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("no other assertion is accepted");
    assert_eq!(err.kind(), ErrorKind::OAuth);
    assert_eq!(
        err.oauth_error().map(|r| r.error()),
        Some(&ErrorCode::InvalidClient)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(server.token_requests(), 4);

    // A fixed secret is never sent twice.
    server.set_client("svc", "right", ClientCheck::Post);
    let fixed = self::endpoint(&server, ClientAuth::client_secret_post("svc", "wrong"));
    assert!(fixed
        .request(&TokenRequest::client_credentials())
        .await
        .is_err());
    assert_eq!(server.token_requests(), 5);
}

#[tokio::test]
async fn an_expired_assertion_is_read_again_before_it_is_sent() {
    let server = TestServer::start().await;
    server.set_client("svc", "unused", ClientCheck::Assertion);
    // The first read gives an expired assertion, the second a fresh one.
    let (source, calls) = counting_callback("svc", |n| if n == 0 { 1_000 } else { FAR });
    server.accept_assertion(&jwt("svc", 1, FAR));
    let endpoint = endpoint(&server, ClientAuth::client_assertion("svc", source));
    let token = endpoint.request(&TokenRequest::client_credentials()).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.token_requests(), 1);

    // Expired on both reads: a typed error, nothing sent.
    let (source, calls) = counting_callback("svc", |_| 1_000);
    let endpoint = self::endpoint(&server, ClientAuth::client_assertion("svc", source));
    let err = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("an expired assertion");
    assert_eq!(err.kind(), ErrorKind::Credential);
    assert_eq!(err.credential_failure(), Some(CredentialFailure::Expired));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn a_spiffe_jwt_svid_from_a_file_through_the_cache() {
    let server = TestServer::start().await;
    let spiffe_id = "spiffe://example.org/ns/orders/sa/svc";
    server.set_client(spiffe_id, "unused", ClientCheck::Assertion);
    server.set_assertion_type(JWT_SPIFFE_ASSERTION_TYPE);
    let dir = Dir::new("spiffe");
    let path = dir.path("jwt_svid.token");
    let svid = jwt(spiffe_id, 0, FAR);
    rewrite(&path, &format!("{svid}\n"));
    server.accept_assertion(&svid);
    let client = ClientAuth::spiffe_jwt(spiffe_id, CredentialSource::file(&path));
    assert_eq!(client.method_name(), "spiffe_jwt");
    let cache = TokenCache::builder(
        endpoint(&server, client),
        TokenRequest::client_credentials(),
    )
    .build();
    let token = cache.token().await.expect("a token for the JWT-SVID");
    assert_eq!(token.access_token().expose_secret(), "at-1");
    assert_eq!(server.token_requests(), 1);
    let received = server.received().pop().expect("the token request");
    assert_eq!(
        received.param("client_assertion_type").as_deref(),
        Some(JWT_SPIFFE_ASSERTION_TYPE)
    );
    assert_eq!(received.param("client_assertion"), Some(svid));
    assert_eq!(received.param("client_id").as_deref(), Some(spiffe_id));
    assert_eq!(received.authorization(), None);
}

/// Every way a credential file can be unusable: a typed error naming the
/// file, never its content, and no request sent.
#[tokio::test]
async fn unusable_credential_files_are_typed_errors_that_name_the_path() {
    let server = TestServer::start().await;
    let dir = Dir::new("unusable");
    let cases: [(&str, Option<&str>, CredentialFailure); 5] = [
        ("missing", None, CredentialFailure::Missing),
        ("empty", Some(" \n"), CredentialFailure::Empty),
        (
            "two-parts",
            Some("CANARY7f3a.e30"),
            CredentialFailure::NotAJwt,
        ),
        (
            "not-json",
            Some("e30.CANARY7f3a.c2ln"),
            CredentialFailure::NotAJwt,
        ),
        (
            "expired",
            Some(&*Box::leak(jwt("svc", 0, 1_000).into_boxed_str())),
            CredentialFailure::Expired,
        ),
    ];
    for (name, content, failure) in cases {
        let path = dir.path(name);
        if let Some(content) = content {
            rewrite(&path, content);
        }
        let client = ClientAuth::client_assertion("svc", CredentialSource::file(&path));
        let err = endpoint(&server, client.clone())
            .request(&TokenRequest::client_credentials())
            .await
            .expect_err(name);
        assert_eq!(err.kind(), ErrorKind::Credential, "{name}");
        assert_eq!(err.credential_failure(), Some(failure), "{name}");
        assert!(err.is_retryable(), "{name}");
        let shown = format!("{err} {err:?} {client:?}");
        assert!(shown.contains(&*path.to_string_lossy()), "{name}: {shown}");
        assert!(!shown.contains(CANARY), "{name}: {shown}");
        // The same from TokenRequest::build, which reads the file too.
        let url = TokenUrl::new(&server.token_url()).expect("a token URL");
        let built = TokenRequest::client_credentials().build(&client, &url);
        assert_eq!(
            built.err().and_then(|e| e.credential_failure()),
            Some(failure)
        );
    }
    // An empty secret file.
    let path = dir.path("empty-secret");
    rewrite(&path, "\n");
    let client = ClientAuth::client_secret_basic_from("svc", CredentialSource::file(&path));
    let err = endpoint(&server, client)
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("an empty secret");
    assert_eq!(err.credential_failure(), Some(CredentialFailure::Empty));
    assert_eq!(server.token_requests(), 0);
}

/// A secret and an assertion holding the canary, through a token, a
/// refusal (with the retry), a revocation and the errors: the canary is in
/// no log line at TRACE, no error and no `Debug`.
#[tokio::test]
async fn no_credential_content_in_errors_logs_or_debug() {
    let capture = capture().everywhere();
    let server = TestServer::start().await;
    let dir = Dir::new("canary");
    let secret_path = dir.path("client-secret");
    let secret = format!("{CANARY}-secret");
    rewrite(&secret_path, &format!("{secret}\n"));
    server.set_client("svc", &secret, ClientCheck::Basic);
    let secret_client =
        ClientAuth::client_secret_basic_from("svc", CredentialSource::file(&secret_path));
    let endpoint_with_secret =
        endpoint(&server, secret_client.clone()).revocation_url(server.revocation_url());
    let token = endpoint_with_secret
        .request(&TokenRequest::client_credentials())
        .await
        .expect("a token");
    let revoked = endpoint_with_secret
        .revoke(token.access_token(), None)
        .await;
    assert!(revoked.is_ok(), "{revoked:?}");
    server.revoke_secret(&secret);
    let refused = endpoint_with_secret
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("a revoked secret");

    let assertion_path = dir.path("token");
    rewrite(&assertion_path, &jwt("svc", 0, FAR));
    server.set_client("svc", "unused", ClientCheck::Assertion);
    let assertion_client =
        ClientAuth::client_assertion("svc", CredentialSource::file(&assertion_path));
    let refused_assertion = endpoint(&server, assertion_client.clone())
        .request(&TokenRequest::client_credentials())
        .await
        .expect_err("an assertion the server does not accept");
    server.accept_assertion(&jwt("svc", 0, FAR));
    let cache = TokenCache::builder(
        endpoint(&server, assertion_client.clone()),
        TokenRequest::client_credentials(),
    )
    .build();
    cache.token().await.expect("a token");

    let sent = server.received();
    assert!(sent
        .iter()
        .any(|r| r.body.contains(CANARY) || r.authorization().is_some()));
    let shown = format!(
        "{refused} {refused:?} {refused_assertion} {refused_assertion:?} {secret_client:?} \
         {assertion_client:?} {endpoint_with_secret:?} {cache:?}"
    );
    assert!(!shown.contains(CANARY), "{shown}");
    let encoded = STANDARD.encode(format!("svc:{secret}"));
    let logs = capture.text();
    assert!(logs.contains("invalid_client"), "the refusals were logged");
    for needle in [CANARY, &encoded] {
        assert!(!logs.contains(needle), "{needle} logged");
    }
}

#[test]
fn debug_names_the_file_and_never_the_value() {
    let client =
        ClientAuth::client_assertion("svc", CredentialSource::file("/var/run/secrets/token"));
    let shown = format!("{client:?}");
    assert!(shown.contains("/var/run/secrets/token"), "{shown}");
    let _: Option<Error> = None;
}

/// A deployment's variables alone make the cache: the secret from its
/// file, the scope, the audience; a rotated secret file is used from the
/// next token request.
#[tokio::test]
async fn a_cache_from_environment_variables_with_a_secret_file() {
    use tower_oauth2::config::ClientConfig;
    let server = TestServer::start().await;
    server.set_client("svc-orders", "first", ClientCheck::Post);
    let dir = Dir::new("config");
    let path = dir.path("client-secret");
    rewrite(&path, "first\n");
    let token_url = server.token_url();
    let path_text = path.to_string_lossy().into_owned();
    let vars = [
        ("OAUTH2_TOKEN_URL", token_url.as_str()),
        ("OAUTH2_CLIENT_ID", "svc-orders"),
        ("OAUTH2_AUTH", "post"),
        ("OAUTH2_CLIENT_SECRET_FILE", path_text.as_str()),
        ("OAUTH2_SCOPE", "inventory:read"),
        ("OAUTH2_AUDIENCE", "https://api.example"),
    ];
    let config = ClientConfig::from_vars(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("a complete configuration");
    let cache = config.cache(http_client()).expect("a token endpoint");
    cache.token().await.expect("a token");
    server.accept_secret("second");
    rewrite(&path, "second\n");
    server.revoke_secret("first");
    config
        .endpoint(http_client())
        .expect("a token endpoint")
        .request(&config.token_request())
        .await
        .expect("a token with the rotated secret");
    assert_eq!(server.token_requests(), 2);
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| {
            (
                r.param("client_secret"),
                r.param("scope"),
                r.param("audience"),
            )
        })
        .collect();
    let scope = Some("inventory:read".to_owned());
    let audience = Some("https://api.example".to_owned());
    assert_eq!(
        sent,
        [
            (Some("first".to_owned()), scope.clone(), audience.clone()),
            (Some("second".to_owned()), scope, audience)
        ]
    );
}

/// Two processes' configurations from the same variables, with
/// `OAUTH2_REDIS_URL` (a real `redis-server`) and `OAUTH2_REDIS_KEY`: they
/// share one token through the fleet tier, 1 token request for both.
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_caches_from_the_same_variables_share_one_token_through_redis() {
    use crate::redis_server::{available, RedisServer};
    use tower_oauth2::config::ClientConfig;
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_client("svc-orders", "s3cret", ClientCheck::Basic);
    let (token_url, redis_url) = (server.token_url(), redis.url());
    let vars = [
        ("OAUTH2_TOKEN_URL", token_url.as_str()),
        ("OAUTH2_CLIENT_ID", "svc-orders"),
        ("OAUTH2_CLIENT_SECRET", "s3cret"),
        ("OAUTH2_REDIS_URL", redis_url.as_str()),
        (
            "OAUTH2_REDIS_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    // Each `from_vars` makes its own tier (its own connection): two processes.
    let first = ClientConfig::from_vars(lookup)
        .unwrap()
        .cache(http_client())
        .unwrap();
    let second = ClientConfig::from_vars(lookup)
        .unwrap()
        .cache(http_client())
        .unwrap();
    let a = first.token().await.expect("a token");
    let b = second.token().await.expect("the fleet's token");
    assert_eq!(a.access_token().expose_secret(), "at-1");
    assert_eq!(b.access_token().expose_secret(), "at-1");
    assert_eq!(server.token_requests(), 1);
}
