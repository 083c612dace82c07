//! OnBehalfLayer and OnBehalfMiddleware (RFC 8693 token exchange per
//! subject) against a token-exchange endpoint and a resource server on
//! 127.0.0.1: exact exchange counts, and every downstream request checked
//! to carry the token exchanged for its own subject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get as route_get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use http::StatusCode;
use tower::{Layer, ServiceExt};
use tower_oauth2::error::ErrorKind;
use tower_oauth2::on_behalf::{OnBehalfLayer, OnBehalfService, SubjectToken, ACCESS_TOKEN_TYPE};
use tower_oauth2::{Destinations, TokenCache, TokenEndpoint, TokenRequest};

use crate::support::client::{get, http_client, HttpClient};
use crate::support::log::capture;
use crate::support::serve::{serve, Serving};

const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// What the exchange endpoint and the resource saw.
#[derive(Default)]
struct Seen {
    /// The tokens issued for each subject token, and how many exchanges
    /// each subject made.
    issued: HashMap<String, Vec<String>>,
    exchanges: HashMap<String, usize>,
    /// Every token request's form (grant checks).
    forms: Vec<HashMap<String, String>>,
    /// (path, Authorization) of each resource request.
    resource: Vec<(String, Option<String>)>,
    next: usize,
}

#[derive(Clone, Default)]
struct Exchange(Arc<Mutex<Seen>>);

impl Exchange {
    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.0.lock().expect("the record"))
    }
    fn exchanges(&self) -> usize {
        self.seen(|s| s.exchanges.values().sum())
    }
    fn exchanges_of(&self, subject: &str) -> usize {
        self.seen(|s| s.exchanges.get(subject).copied().unwrap_or(0))
    }
    fn resource_requests(&self) -> usize {
        self.seen(|s| s.resource.len())
    }
    /// Every resource request to `/u/{subject}` carried the token issued
    /// for that subject; returns how many were checked.
    fn assert_every_pair(&self, subject_of: impl Fn(&str) -> String) -> usize {
        self.seen(|s| {
            for (path, authorization) in &s.resource {
                let id = path.trim_start_matches("/u/");
                let subject = subject_of(id);
                let issued = s
                    .issued
                    .get(&subject)
                    .expect("a token issued for the subject");
                let token = authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .unwrap_or_else(|| panic!("{path} carried no bearer token"));
                assert!(
                    issued.iter().any(|t| t == token),
                    "{path} carried {token}, not one of its subject's tokens {issued:?}"
                );
            }
            s.resource.len()
        })
    }
}

/// RFC 8693 §2.2: a token per exchange (`tx-N`); a subject token starting
/// with `refused` gets `invalid_grant`.
async fn token(
    State(ex): State<Exchange>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let mut seen = ex.0.lock().expect("the record");
    seen.forms.push(form.clone());
    let subject = form.get("subject_token").cloned().unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some(EXCHANGE_GRANT)
        || form.get("subject_token_type").map(String::as_str) != Some(ACCESS_TOKEN_TYPE)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_request"})),
        );
    }
    *seen.exchanges.entry(subject.clone()).or_default() += 1;
    if subject.starts_with("refused") {
        let body =
            serde_json::json!({"error": "invalid_grant", "error_description": "subject refused"});
        return (StatusCode::BAD_REQUEST, Json(body));
    }
    seen.next += 1;
    let issued = format!("tx-{}", seen.next);
    seen.issued.entry(subject).or_default().push(issued.clone());
    let body = serde_json::json!({
        "access_token": issued,
        "token_type": "Bearer",
        "expires_in": 3600,
        "issued_token_type": ACCESS_TOKEN_TYPE,
    });
    (StatusCode::OK, Json(body))
}

async fn resource(
    State(ex): State<Exchange>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    ex.0.lock()
        .expect("the record")
        .resource
        .push((format!("/u/{id}"), authorization));
    StatusCode::OK
}

async fn start() -> (Exchange, Serving) {
    let ex = Exchange::default();
    let app = Router::new()
        .route("/token", post(token))
        .route("/u/{id}", route_get(resource))
        .with_state(ex.clone());
    (ex, serve(app).await)
}

fn endpoint(server: &Serving) -> TokenEndpoint<HttpClient> {
    TokenEndpoint::new(
        http_client(),
        tower_oauth2::TokenUrl::new(&server.url("/token")).expect("a token URL"),
        tower_oauth2::ClientAuth::client_secret_basic("svc", "svc-secret"),
    )
}

fn exchange_request(subject: &SubjectToken) -> TokenRequest {
    TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE)
        .audience("https://downstream.example")
}

fn layer(server: &Serving) -> OnBehalfLayer {
    let endpoint = endpoint(server);
    OnBehalfLayer::new(move |subject: &SubjectToken| {
        TokenCache::builder(endpoint.clone(), exchange_request(subject)).build()
    })
    .destinations(Destinations::any())
}

/// A request to `/u/{id}` on behalf of `subject`, as a server handler
/// builds it from its inbound request's headers.
fn on_behalf(
    server: &Serving,
    id: &str,
    subject: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut inbound = HeaderMap::new();
    inbound.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {subject}").parse().expect("a header"),
    );
    let mut request = get(&server.url(&format!("/u/{id}")));
    if let Some(subject) = SubjectToken::from_headers(&inbound) {
        request.extensions_mut().insert(subject);
    }
    request
}

async fn send(
    svc: &OnBehalfService<HttpClient>,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<StatusCode, tower_oauth2::Error> {
    match svc.clone().oneshot(request).await {
        Ok(response) => Ok(response.status()),
        Err(e) => Err(e.token_error().expect("a token error").clone()),
    }
}

fn subject(i: usize) -> String {
    format!("user-token-{i:03}")
}

/// A JWT (unsigned: the layer reads `exp` without verifying) expiring at `exp`.
fn jwt(sub: &str, exp: u64) -> String {
    let enc = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        enc(r#"{"alg":"RS256","typ":"JWT"}"#.to_owned()),
        enc(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#))
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_subjects_ten_concurrent_requests_each_make_exactly_hundred_exchanges() {
    let logs = capture().everywhere();
    let (ex, server) = start().await;
    let svc = layer(&server).layer(http_client());
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..10 {
        for i in 0..100 {
            let request = on_behalf(&server, &i.to_string(), &subject(i));
            let svc = svc.clone();
            let _ = round;
            tasks.spawn(async move { send(&svc, request).await.map_err(|e| e.kind()) });
        }
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.expect("a task"), Ok(StatusCode::OK));
    }
    assert_eq!(ex.exchanges(), 100);
    for i in 0..100 {
        assert_eq!(ex.exchanges_of(&subject(i)), 1, "subject {i}");
    }
    assert_eq!(
        ex.assert_every_pair(|id| subject(id.parse().expect("an id"))),
        1000
    );
    // Every exchange asked for the configured audience.
    ex.seen(|s| {
        assert!(s
            .forms
            .iter()
            .all(|f| f.get("audience").map(String::as_str) == Some("https://downstream.example")))
    });
    let text = logs.text();
    assert!(!text.contains("user-token-"), "a subject token in the logs");
    assert!(!format!("{svc:?}").contains("user-token-"));
}

#[tokio::test]
async fn a_refused_subject_fails_alone_and_costs_no_other_subject_anything() {
    let (ex, server) = start().await;
    let svc = layer(&server).layer(http_client());
    let refused = send(&svc, on_behalf(&server, "r", "refused-subject")).await;
    let err = refused.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::OAuth);
    assert_eq!(
        err.oauth_error().map(|e| e.error().to_string()),
        Some("invalid_grant".to_owned())
    );
    for round in 0..3 {
        for i in 0..5 {
            let got = send(&svc, on_behalf(&server, &i.to_string(), &subject(i))).await;
            assert_eq!(
                got.map_err(|e| e.kind()),
                Ok(StatusCode::OK),
                "round {round}"
            );
        }
    }
    // The refused subject again: its own backoff, no new exchange.
    let again = send(&svc, on_behalf(&server, "r", "refused-subject")).await;
    assert_eq!(again.map_err(|e| e.kind()), Err(ErrorKind::NoToken));
    assert_eq!(ex.exchanges_of("refused-subject"), 1);
    assert_eq!(ex.exchanges(), 6);
    assert_eq!(ex.resource_requests(), 15);
    assert_eq!(
        ex.assert_every_pair(|id| subject(id.parse().expect("an id"))),
        15
    );
}

#[tokio::test]
async fn the_subject_exp_bounds_the_cached_token_and_an_expired_subject_is_never_exchanged() {
    let (ex, server) = start().await;
    let svc = layer(&server).layer(http_client());
    // Expired already: no exchange, nothing sent.
    let expired = jwt("alice", unix_now() - 10);
    let got = send(&svc, on_behalf(&server, "a", &expired)).await;
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::SubjectExpired));
    assert_eq!((ex.exchanges(), ex.resource_requests()), (0, 0));
    // Expiring in two seconds: used until then (the exchanged token lives an
    // hour), refused after, with no new exchange.
    let soon = jwt("bob", unix_now() + 2);
    assert_eq!(
        send(&svc, on_behalf(&server, "b", &soon))
            .await
            .map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    let deadline = SystemTime::now() + Duration::from_secs(10);
    loop {
        match send(&svc, on_behalf(&server, "b", &soon))
            .await
            .map_err(|e| e.kind())
        {
            Ok(StatusCode::OK) => {}
            Err(ErrorKind::SubjectExpired) => break,
            other => panic!("{other:?}"),
        }
        assert!(SystemTime::now() < deadline, "the subject never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ex.exchanges_of(&soon), 1);
    assert_eq!(ex.exchanges(), 1);
    let after = ex.resource_requests();
    // Still refused: the cached token is never sent again.
    let got = send(&svc, on_behalf(&server, "b", &soon)).await;
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::SubjectExpired));
    assert_eq!(ex.resource_requests(), after);
}

#[tokio::test]
async fn attack_opaque_huge_missing_and_prefix_sharing_subjects() {
    let logs = capture();
    let (ex, server) = start().await;
    let svc = layer(&server).layer(http_client());
    // Not a JWT: exchanged as an opaque token.
    let opaque = "opaque.not-base64!.x";
    assert_eq!(
        send(&svc, on_behalf(&server, "o", opaque))
            .await
            .map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    assert_eq!(ex.exchanges_of(opaque), 1);
    // Huge (20 KiB, over the 16 KiB default): refused before any exchange.
    let huge = "h".repeat(20 * 1024);
    let got = send(&svc, on_behalf(&server, "h", &huge)).await;
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::NoSubject));
    assert_eq!(ex.exchanges_of(&huge), 0);
    // No subject at all: nothing sent.
    let got = send(&svc, get(&server.url("/u/none"))).await;
    assert_eq!(got.map_err(|e| e.kind()), Err(ErrorKind::NoSubject));
    // Two subjects sharing a 4 KiB prefix: two exchanges, two tokens.
    let prefix = "p".repeat(4096);
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    for _ in 0..2 {
        assert_eq!(
            send(&svc, on_behalf(&server, "pa", &a))
                .await
                .map_err(|e| e.kind()),
            Ok(StatusCode::OK)
        );
        assert_eq!(
            send(&svc, on_behalf(&server, "pb", &b))
                .await
                .map_err(|e| e.kind()),
            Ok(StatusCode::OK)
        );
    }
    assert_eq!((ex.exchanges_of(&a), ex.exchanges_of(&b)), (1, 1));
    assert_eq!(ex.exchanges(), 3);
    let checked = ex.assert_every_pair(|id| match id {
        "o" => opaque.to_owned(),
        "pa" => a.clone(),
        "pb" => b.clone(),
        other => panic!("{other} should not have been sent"),
    });
    assert_eq!(checked, 5);
    assert!(!logs.text().contains(&prefix));
}

#[tokio::test]
async fn subjects_are_bounded_and_an_evicted_subject_exchanges_again() {
    let (ex, server) = start().await;
    let layer = layer(&server).max_subjects(2);
    let svc = layer.layer(http_client());
    for i in 0..3 {
        assert_eq!(
            send(&svc, on_behalf(&server, &i.to_string(), &subject(i)))
                .await
                .map_err(|e| e.kind()),
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(layer.subjects(), 2);
    // Subject 0 went first (least recently used): a new cache, a new exchange.
    assert_eq!(
        send(&svc, on_behalf(&server, "0", &subject(0)))
            .await
            .map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    assert_eq!(ex.exchanges_of(&subject(0)), 2);
    assert_eq!(ex.exchanges(), 4);
    assert_eq!(layer.subjects(), 2);
    // Idle eviction: with no idle period, two sweeps drop every subject.
    let idle = self::layer(&server).idle_timeout(Duration::ZERO);
    let svc = idle.layer(http_client());
    assert_eq!(
        send(&svc, on_behalf(&server, "5", &subject(5)))
            .await
            .map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    assert_eq!(idle.subjects(), 1);
    idle.evict_idle();
    idle.evict_idle();
    assert_eq!(idle.subjects(), 0);
    assert_eq!(
        send(&svc, on_behalf(&server, "5", &subject(5)))
            .await
            .map_err(|e| e.kind()),
        Ok(StatusCode::OK)
    );
    assert_eq!(ex.exchanges_of(&subject(5)), 2);
}

#[cfg(feature = "reqwest")]
pub(crate) mod reqwest_middleware_pairs {
    use super::*;
    use tower_oauth2::on_behalf::OnBehalfMiddleware;
    use tower_oauth2::reqwest::token_error;

    /// A request through `client` (an `OnBehalfMiddleware` client) with no
    /// subject fails with `NoSubject`.
    pub(crate) async fn a_request_with_no_subject_is_refused(
        client: &reqwest_middleware::ClientWithMiddleware,
        url: String,
    ) {
        let err = client.get(url).send().await.expect_err("no subject");
        assert_eq!(
            token_error(&err).map(|e| e.kind()),
            Some(ErrorKind::NoSubject)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reqwest_middleware_exchanges_once_per_subject_and_sends_each_its_own_token() {
        let (ex, server) = start().await;
        let endpoint = endpoint(&server);
        let middleware = OnBehalfMiddleware::new(move |subject: &SubjectToken| {
            TokenCache::builder(endpoint.clone(), exchange_request(subject)).build()
        })
        .destinations(Destinations::any());
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware)
            .build();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..5 {
            for i in 0..20 {
                let request = client
                    .get(server.url(&format!("/u/{i}")))
                    .with_extension(SubjectToken::new(subject(i)));
                tasks.spawn(async move {
                    request
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                });
            }
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.expect("a task"), Ok(200));
        }
        assert_eq!(ex.exchanges(), 20);
        assert_eq!(
            ex.assert_every_pair(|id| subject(id.parse().expect("an id"))),
            100
        );
        // No subject: a typed error, nothing sent.
        a_request_with_no_subject_is_refused(&client, server.url("/u/none")).await;
        assert_eq!(ex.resource_requests(), 100);
    }
}

#[cfg(feature = "redis")]
mod fleet_pairs {
    use super::*;
    use crate::redis_server::{available, RedisServer};
    use tower_oauth2::fleet::RedisTier;

    fn tier(redis: &RedisServer) -> RedisTier {
        RedisTier::standalone(&redis.url())
            .expect("a Redis URL")
            .namespace("on-behalf")
            .expect("a namespace")
            // Generous: 900 requests at once on a loaded 2-core machine must
            // not turn a slow Redis answer into a fetch alone (an extra
            // exchange the counts would see).
            .lease(Duration::from_secs(10))
            .timeout(Duration::from_secs(10))
            .poll_interval(Duration::from_millis(10))
    }

    /// Two processes (two layers, each with its own RedisTier) on one Redis:
    /// 100 subjects, 10 requests each split across both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pair_fleet_on_behalf_two_processes_hundred_subjects_exactly_hundred_exchanges() {
        if !available() {
            return;
        }
        let redis = RedisServer::start();
        let (ex, server) = start().await;
        let process = || {
            let endpoint = endpoint(&server);
            let tier = tier(&redis);
            OnBehalfLayer::new(move |subject: &SubjectToken| {
                TokenCache::builder(endpoint.clone(), exchange_request(subject))
                    .redis(tier.clone())
                    .build()
            })
            .destinations(Destinations::any())
            .layer(http_client())
        };
        let (one, two) = (process(), process());
        // Process one first (each subject's token lands in Redis), then
        // both at once: process two takes every token from Redis.
        for i in 0..100 {
            assert_eq!(
                send(&one, on_behalf(&server, &i.to_string(), &subject(i)))
                    .await
                    .map_err(|e| e.kind()),
                Ok(StatusCode::OK)
            );
        }
        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..9 {
            for i in 0..100 {
                let svc = if round % 2 == 0 {
                    two.clone()
                } else {
                    one.clone()
                };
                let request = on_behalf(&server, &i.to_string(), &subject(i));
                tasks.spawn(async move { send(&svc, request).await.map_err(|e| e.kind()) });
            }
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.expect("a task"), Ok(StatusCode::OK));
        }
        assert_eq!(ex.exchanges(), 100);
        assert_eq!(
            ex.assert_every_pair(|id| subject(id.parse().expect("an id"))),
            1000
        );
        let keys = redis.cli(&["KEYS", "*"]);
        assert!(
            !keys.contains("user-token"),
            "a subject token in a key name: {keys}"
        );
    }
}

/// One token file for every subject (a misconfiguration the fingerprint
/// must survive): each subject's cache saves there, a restarted process
/// restores only the subject whose token the file holds, and no subject
/// ever sends another's token.
#[tokio::test]
async fn pair_file_store_on_behalf_one_file_for_all_subjects_never_restores_another_subjects_token()
{
    let (ex, server) = start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("token.json");
    let process = || {
        let endpoint = endpoint(&server);
        let path = path.clone();
        OnBehalfLayer::new(move |subject: &SubjectToken| {
            TokenCache::builder(endpoint.clone(), exchange_request(subject))
                .store(tower_oauth2::store::FileStore::new(&path))
                .build()
        })
        .destinations(Destinations::any())
        .layer(http_client())
    };
    let first = process();
    for i in 0..2 {
        let got = send(&first, on_behalf(&server, &i.to_string(), &subject(i))).await;
        assert_eq!(got.map_err(|e| e.kind()), Ok(StatusCode::OK));
    }
    // Restarted: subject 1's token is the file's (saved last) and is
    // restored; subject 0 exchanges again; subject 2 is new.
    let second = process();
    for i in [1, 0, 2] {
        let got = send(&second, on_behalf(&server, &i.to_string(), &subject(i))).await;
        assert_eq!(got.map_err(|e| e.kind()), Ok(StatusCode::OK));
    }
    assert_eq!(
        (0..3)
            .map(|i| ex.exchanges_of(&subject(i)))
            .collect::<Vec<_>>(),
        [2, 1, 1]
    );
    assert_eq!(
        ex.assert_every_pair(|id| subject(id.parse().expect("an id"))),
        5
    );
    let file = std::fs::read_to_string(&path).expect("the token file");
    assert!(!file.contains("user-token-"), "a subject token in the file");
}

/// The ordinary cache features per subject, against the scriptable test
/// server (which issues `at-N` in order, checks DPoP proofs, and refuses
/// revoked tokens): requests go one at a time, so subject i's first token
/// is known.
mod with_the_test_server {
    use super::*;
    use crate::support::token_server::TestServer;

    fn subject_request(
        server: &TestServer,
        path: &str,
        subject: &str,
    ) -> http::Request<http_body_util::Full<bytes::Bytes>> {
        let mut request = server.get(path);
        request.extensions_mut().insert(SubjectToken::new(subject));
        request
    }

    fn auths(server: &TestServer) -> Vec<String> {
        let all = server.authorizations().into_iter();
        all.map(|a| a.unwrap_or_else(|| "-".to_owned())).collect()
    }

    fn subjects_sent(server: &TestServer) -> Vec<Option<String>> {
        server
            .received()
            .iter()
            .map(|r| r.param("subject_token"))
            .collect()
    }

    /// A 401 for one subject's token refetches that subject's token only
    /// (one exchange, one resend); the other subject's token and cache are
    /// untouched.
    #[tokio::test]
    async fn pair_on_behalf_backoff_one_subjects_refused_token_costs_only_that_subject() {
        let server = TestServer::start().await;
        let endpoint = server.endpoint();
        let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
            TokenCache::builder(endpoint.clone(), exchange_request(subject)).build()
        })
        .destinations(Destinations::any());
        let svc = layer.layer(http_client());
        for subject in ["st-alice", "st-bob"] {
            let got = send(&svc, subject_request(&server, "/me", subject)).await;
            assert_eq!(got.map_err(|e| e.kind()), Ok(StatusCode::OK));
        }
        server.revoke("at-1");
        for subject in ["st-alice", "st-bob"] {
            let got = send(&svc, subject_request(&server, "/me", subject)).await;
            assert_eq!(got.map_err(|e| e.kind()), Ok(StatusCode::OK));
        }
        assert_eq!(
            auths(&server),
            [
                "Bearer at-1",
                "Bearer at-2",
                "Bearer at-1",
                "Bearer at-3",
                "Bearer at-2"
            ]
        );
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            subjects_sent(&server),
            [some("st-alice"), some("st-bob"), some("st-alice")]
        );
    }

    /// Each subject's exchanged token is bound to the DPoP key and sent with
    /// a proof; the test server refuses no proof.
    #[cfg(feature = "dpop")]
    #[tokio::test]
    async fn pair_on_behalf_dpop_each_subject_sends_its_own_bound_token_with_a_proof() {
        let server = TestServer::start().await;
        server.enable_dpop();
        let key = tower_oauth2::dpop::Dpop::generate().expect("an ES256 key");
        let endpoint = server.endpoint().dpop(key);
        let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
            TokenCache::builder(endpoint.clone(), exchange_request(subject)).build()
        })
        .destinations(Destinations::any());
        let svc = layer.layer(http_client());
        for subject in ["st-alice", "st-bob", "st-alice", "st-bob"] {
            let got = send(&svc, subject_request(&server, "/me", subject)).await;
            assert_eq!(got.map_err(|e| e.kind()), Ok(StatusCode::OK));
        }
        assert_eq!(
            auths(&server),
            ["DPoP at-1", "DPoP at-2", "DPoP at-1", "DPoP at-2"]
        );
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(subjects_sent(&server), [some("st-alice"), some("st-bob")]);
        assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    }
}
