//! `OnBehalfLayer` and `OnBehalfMiddleware` (RFC 8693 token exchange, a
//! cache per caller subject) with each other feature, and attacked: every
//! test counts the exchanges (token requests) exactly, checks which
//! subject each went for, and which token each resource request carried.
//!
//! The subjects here are opaque tokens (`st-…`); the test server issues
//! `at-N` in order, so, requests going one at a time, each subject's
//! tokens are known. Every cache backs off failed fetches for an hour, so
//! a refused subject's count never depends on the machine's speed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_oauth2::dpop::Dpop;
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::layer::Destinations;
use tower_oauth2::on_behalf::{OnBehalfLayer, OnBehalfMiddleware, SubjectToken};
use tower_oauth2::reqwest::token_error;
use tower_oauth2::{Error, ServiceError, TokenCache, TokenEndpoint, TokenRequest};

use super::*;
use crate::redis_server::{available, RedisServer};
use crate::support::client::{get, http_client, HttpClient};
use crate::support::log::capture;
use crate::support::token_server::{bearer, Canned, TestServer};

/// The audience every exchange asks for, unless a test says otherwise.
///
/// A logical name, not a URL: an audience URL would send the exchanged
/// tokens to its origin only, not to the test servers on 127.0.0.1
/// (`attack_on_behalf_the_exchanged_token_goes_only_to_the_api_its_exchange_names`).
const AUDIENCE: &str = "downstream-api";

/// Subject `subject`'s token exchange (RFC 8693 §2.1) at `audience`.
fn exchange(subject: &SubjectToken, audience: &str) -> TokenRequest {
    TokenRequest::token_exchange(subject.secret().clone(), ACCESS_TOKEN_TYPE).audience(audience)
}

/// Each subject's cache: its token exchanged at `endpoint` for
/// `audience`, failures backed off for an hour.
fn exchanging(
    endpoint: TokenEndpoint<HttpClient>,
    audience: String,
) -> impl Fn(&SubjectToken) -> TokenCache + Send + Sync + 'static {
    move |subject| {
        TokenCache::builder(endpoint.clone(), exchange(subject, &audience))
            .backoff(an_hour())
            .build()
    }
}

/// A layer exchanging each subject's token at `endpoint` (for
/// [`AUDIENCE`]), each subject's cache backing off failures for an hour.
fn layer(endpoint: TokenEndpoint<HttpClient>) -> OnBehalfLayer {
    OnBehalfLayer::new(exchanging(endpoint, AUDIENCE.to_owned()))
}

/// [`layer`], each subject's cache sharing its tokens through `tier`: one
/// fleet process.
fn fleet_layer(endpoint: TokenEndpoint<HttpClient>, tier: RedisTier) -> OnBehalfLayer {
    OnBehalfLayer::new(move |subject: &SubjectToken| {
        TokenCache::builder(endpoint.clone(), exchange(subject, AUDIENCE))
            .backoff(an_hour())
            .redis(tier.clone())
            .build()
    })
}

/// `request` made on behalf of `subject` (a [`SubjectToken`] extension, as
/// a server handler puts it).
fn as_subject(mut request: Request<Full<Bytes>>, subject: &str) -> Request<Full<Bytes>> {
    request.extensions_mut().insert(SubjectToken::new(subject));
    request
}

/// The status of `request` sent through `svc` (a clone), or the token
/// error it failed with.
async fn send<S, B, E>(svc: &S, request: Request<Full<Bytes>>) -> Result<StatusCode, Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = ServiceError<E>> + Clone,
    E: std::fmt::Debug,
{
    match svc.clone().oneshot(request).await {
        Ok(response) => Ok(response.status()),
        Err(ServiceError::Token(e)) => Err(e),
        Err(other) => panic!("the inner service failed: {other:?}"),
    }
}

/// The same, keeping the error's kind only.
async fn kind_of<S, B, E>(svc: &S, request: Request<Full<Bytes>>) -> Result<StatusCode, ErrorKind>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = ServiceError<E>> + Clone,
    E: std::fmt::Debug,
{
    send(svc, request).await.map_err(|e| e.kind())
}

/// Sends each `(path, subject)` GET through `svc`: each answered 200.
async fn all_ok<S, B, E>(svc: &S, server: &TestServer, requests: &[(&str, &str)])
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = ServiceError<E>> + Clone,
    E: std::fmt::Debug,
{
    for (path, subject) in requests {
        let sent = kind_of(svc, as_subject(server.get(path), subject)).await;
        assert_eq!(sent, Ok(StatusCode::OK), "{path}");
    }
}

/// The subject token of each token request, in order.
fn subjects_exchanged(server: &TestServer) -> Vec<Option<String>> {
    token_params(server, "subject_token")
}

// ---------------------------------------------------------------------------
// on_behalf × revocation

/// Revoking one subject's cache (`cache_for(subject).revoke()`, on the
/// user's logout say) revokes that subject's exchanged token only: the
/// other subject's token is still cached, still valid at the server, and
/// still sent; the revoked subject's next request exchanges again.
#[tokio::test]
async fn pair_on_behalf_revocation_revoking_one_subject_leaves_the_others_token_alone() {
    let server = TestServer::start().await;
    let layer = layer(revocable(&server));
    let svc = layer.layer(http_client());
    all_ok(&svc, &server, &[("/a/1", "st-alice"), ("/b/1", "st-bob")]).await;
    assert!(layer.cache_for(&SubjectToken::new("st-carol")).is_none());
    let alice = layer
        .cache_for(&SubjectToken::new("st-alice"))
        .expect("alice's cache");
    alice.revoke().await.expect("revoked");
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-1&token_type_hint=access_token"]);
    assert!(!server.state.accepts("at-1"));
    assert!(server.state.accepts("at-2"), "bob's token was revoked too");
    all_ok(
        &svc,
        &server,
        &[
            ("/a/2", "st-alice"),
            ("/b/2", "st-bob"),
            ("/a/3", "st-alice"),
        ],
    )
    .await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/1", "at-1"),
            bearer("/b/1", "at-2"),
            bearer("/a/2", "at-3"),
            bearer("/b/2", "at-2"),
            bearer("/a/3", "at-3"),
        ]
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-bob", "st-alice"])
    );
    assert_eq!(server.unauthorized_count(), 0, "a request was refused");
}

// ---------------------------------------------------------------------------
// on_behalf × origin_form

/// Path-only requests (`/pkg.Svc/Method`, as tonic and a hyper connection
/// send them) with `origin_form_to`: each subject's exchanged token goes
/// on them, and the exchange asks for the configured audience and resource.
/// Without `origin_form_to` a path-only request goes out untouched: no
/// exchange, no token.
#[tokio::test]
async fn pair_on_behalf_origin_form_each_subject_sends_its_own_token_on_path_only_requests() {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let resource = server.url("");
    let to = resource.clone();
    let layer = OnBehalfLayer::new(move |subject: &SubjectToken| {
        let request = exchange(subject, "grpc-inventory").resource(to.clone());
        TokenCache::builder(endpoint.clone(), request)
            .backoff(an_hour())
            .build()
    })
    .destinations(to_connection(&server));
    let svc = layer.layer(connection(&server).await);
    let path = "/pkg.Svc/Call";
    for subject in ["st-alice", "st-bob", "st-alice", "st-bob"] {
        let sent = kind_of(&svc, as_subject(origin_form_get(&server, path), subject)).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer(path, "at-1"),
            bearer(path, "at-2"),
            bearer(path, "at-1"),
            bearer(path, "at-2"),
        ]
    );
    assert_eq!(subjects_exchanged(&server), some(&["st-alice", "st-bob"]));
    assert_eq!(
        token_params(&server, "audience"),
        some(&["grpc-inventory", "grpc-inventory"])
    );
    assert_eq!(
        token_params(&server, "resource"),
        some(&[resource.as_str(), resource.as_str()])
    );

    // No origin for path-only requests: the layer cannot tell where they
    // go, so no subject's token is exchanged or sent.
    let blind = self::layer(server.endpoint()).layer(connection(&server).await);
    let sent = kind_of(
        &blind,
        as_subject(origin_form_get(&server, path), "st-carol"),
    )
    .await;
    assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    assert_eq!(
        server.path_authorizations().last(),
        Some(&(path.into(), None))
    );
    assert_eq!(server.token_requests(), 2);
}

/// Path-only requests with DPoP: each subject's exchanged token is bound
/// to the key and sent with a proof whose `htu` is the `origin_form_to`
/// origin plus the path (the test server checks it against the absolute
/// URI it was reached at, and refuses any other).
#[tokio::test]
async fn pair_on_behalf_origin_form_with_dpop_proofs_name_the_absolute_uri() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let svc = layer(
        server
            .endpoint()
            .dpop(Dpop::generate().expect("an ES256 key")),
    )
    .destinations(to_connection(&server))
    .layer(connection(&server).await);
    let path = "/pkg.Svc/Call";
    for subject in ["st-alice", "st-bob", "st-alice"] {
        let sent = kind_of(&svc, as_subject(origin_form_get(&server, path), subject)).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(
        auths(&server),
        values(&["DPoP at-1", "DPoP at-2", "DPoP at-1"])
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    assert_eq!(subjects_exchanged(&server), some(&["st-alice", "st-bob"]));

    // Path-only requests allowed with no origin to name (a
    // misconfiguration with DPoP): a proof has no `htu`, so every such
    // request fails typed and none is sent, and no token is exchanged for
    // the subject: none could go with these requests.
    let nowhere = layer(
        server
            .endpoint()
            .dpop(Dpop::generate().expect("an ES256 key")),
    )
    .destinations(Destinations::secure().allow_origin_form())
    .layer(connection(&server).await);
    for _ in 0..2 {
        let request = as_subject(origin_form_get(&server, path), "st-carol");
        assert_eq!(
            kind_of(&nowhere, request).await,
            Err(ErrorKind::InvalidDestination)
        );
    }
    assert_eq!(server.resource_count(), 3);
    assert_eq!(subjects_exchanged(&server), some(&["st-alice", "st-bob"]));
}

// ---------------------------------------------------------------------------
// on_behalf × keyed

/// The keyed form of on-behalf calls, a token per subject *and* per
/// downstream API: one `OnBehalfLayer` per API, each naming its API's
/// origin in `destinations` and its audience in the exchange, stacked. A
/// request to one API gets that API's layer's token only (the other layer
/// lets it through untouched): one exchange per (subject, API).
#[tokio::test]
async fn pair_on_behalf_keyed_a_layer_per_api_exchanges_once_per_subject_and_api() {
    let server = TestServer::start().await;
    let billing = Landing::start().await;
    let for_api = |audience: &'static str, origin: String| {
        let endpoint = server.endpoint();
        OnBehalfLayer::new(move |subject: &SubjectToken| {
            TokenCache::builder(endpoint.clone(), exchange(subject, audience))
                .backoff(an_hour())
                .build()
        })
        .destinations(Destinations::origins([origin]).expect("an origin"))
    };
    let svc = ServiceBuilder::new()
        .layer(for_api("orders", server.url("")))
        .layer(for_api("billing", billing.url("")))
        .service(http_client());
    for _ in 0..2 {
        for subject in ["st-alice", "st-bob"] {
            let orders = as_subject(server.get("/orders"), subject);
            assert_eq!(kind_of(&svc, orders).await, Ok(StatusCode::OK));
            let bills = as_subject(get(&billing.url("/billing")), subject);
            assert_eq!(kind_of(&svc, bills).await, Ok(StatusCode::OK));
        }
    }
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-3", "Bearer at-1", "Bearer at-3"])
    );
    let billed: Vec<String> = billing.seen().into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        billed,
        values(&["Bearer at-2", "Bearer at-4", "Bearer at-2", "Bearer at-4"])
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-alice", "st-bob", "st-bob"])
    );
    assert_eq!(
        token_params(&server, "audience"),
        some(&["orders", "billing", "orders", "billing"])
    );
}

// ---------------------------------------------------------------------------
// on_behalf × backoff

/// A resource that refuses every token: each subject sending to it costs
/// two exchanges (the token, and the one fetched for the resend), then its
/// 401s pass through for the hour-long step; a subject whose resource
/// accepts costs one, and is never held back by the others' steps.
#[tokio::test]
async fn pair_on_behalf_backoff_an_always_refusing_resource_costs_each_subject_two_exchanges() {
    let server = TestServer::start().await;
    let refusing = Refusing::start().await;
    let svc = layer(server.endpoint())
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    for subject in ["st-alice", "st-bob"] {
        for i in 0..3 {
            let refused = as_subject(get(&refusing.url(&format!("/r/{i}"))), subject);
            assert_eq!(kind_of(&svc, refused).await, Ok(StatusCode::UNAUTHORIZED));
        }
    }
    for i in 0..3 {
        let fine = as_subject(server.get(&format!("/ok/{i}")), "st-carol");
        assert_eq!(kind_of(&svc, fine).await, Ok(StatusCode::OK));
    }
    assert_eq!(
        refusing.seen(),
        values(&[
            "Bearer at-1",
            "Bearer at-2",
            "Bearer at-2",
            "Bearer at-2",
            "Bearer at-3",
            "Bearer at-4",
            "Bearer at-4",
            "Bearer at-4",
        ])
    );
    assert_eq!(auths(&server), vec!["Bearer at-5".to_owned(); 3]);
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-alice", "st-bob", "st-bob", "st-carol"])
    );
}

// ---------------------------------------------------------------------------
// on_behalf × reqwest

/// Through the reqwest middleware: a token the resource refuses is
/// replaced (one exchange, one resend) for its subject only, and a
/// subject's revoked cache exchanges again on its next request; the
/// other subject keeps its token throughout.
#[tokio::test]
async fn pair_on_behalf_reqwest_a_refused_or_revoked_token_is_replaced_for_its_subject_only() {
    let server = TestServer::start().await;
    let endpoint = revocable(&server);
    let middleware = OnBehalfMiddleware::new(move |subject: &SubjectToken| {
        TokenCache::builder(endpoint.clone(), exchange(subject, AUDIENCE))
            .backoff(an_hour())
            .build()
    });
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .build();
    let get_as = |path: &str, subject: &str| {
        client
            .get(server.url(path))
            .with_extension(SubjectToken::new(subject))
            .send()
    };
    for (path, subject) in [("/a/1", "st-alice"), ("/b/1", "st-bob")] {
        let sent = get_as(path, subject).await.map(|r| r.status());
        assert_eq!(sent.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    }
    server.revoke("at-1");
    for (path, subject) in [("/a/2", "st-alice"), ("/b/2", "st-bob")] {
        let sent = get_as(path, subject).await.map(|r| r.status());
        assert_eq!(sent.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    }
    let bob = middleware.cache_for(&SubjectToken::new("st-bob"));
    bob.expect("bob's cache").revoke().await.expect("revoked");
    for (path, subject) in [("/a/3", "st-alice"), ("/b/3", "st-bob")] {
        let sent = get_as(path, subject).await.map(|r| r.status());
        assert_eq!(sent.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/1", "at-1"),
            bearer("/b/1", "at-2"),
            bearer("/a/2", "at-1"),
            bearer("/a/2", "at-3"),
            bearer("/b/2", "at-2"),
            bearer("/a/3", "at-3"),
            bearer("/b/3", "at-4"),
        ]
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-bob", "st-alice", "st-bob"])
    );
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-2&token_type_hint=access_token"]);
    // No subject: a typed error, nothing sent.
    crate::on_behalf::reqwest_middleware_pairs::a_request_with_no_subject_is_refused(
        &client,
        server.url("/none"),
    )
    .await;
    assert_eq!(server.resource_count(), 7);
}

// ---------------------------------------------------------------------------
// on_behalf × fleet

/// The key fleet processes encrypt with, in the encrypted tests.
const FLEET_KEY: [u8; 32] = [42; 32];

/// A fleet process: an `OnBehalfLayer` whose subjects' caches share a
/// Redis tier of this process's own (its own connection), encrypted with
/// [`FLEET_KEY`] when `encrypted`.
fn fleet_process(
    server: &TestServer,
    redis: &RedisServer,
    encrypted: bool,
) -> (RedisTier, OnBehalfLayer) {
    let tier = if encrypted {
        tier(redis).encryption_key(FLEET_KEY)
    } else {
        tier(redis)
    };
    let layer = fleet_layer(server.endpoint(), tier.clone());
    (tier, layer)
}

/// The token keys in Redis (`…:token`), sorted.
fn token_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", "*:token"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// The one token key in Redis that is not in `known`.
fn new_token_key(redis: &RedisServer, known: &[String]) -> String {
    let new: Vec<String> = token_keys(redis)
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    assert_eq!(new.len(), 1, "one new token key: {new:?}");
    new[0].clone()
}

/// Two cold processes (encrypted), the same subjects, their first
/// requests at once: one exchange per subject for the whole fleet (the
/// lease, or the token already in Redis), each subject's requests in both
/// processes carry that subject's token, and no key names a subject.
#[tokio::test]
async fn pair_on_behalf_fleet_two_cold_processes_share_one_exchange_per_subject() {
    if !available() {
        return;
    }
    let logs = capture().everywhere();
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    // Long enough that both processes usually find the other's lease.
    server.set_latency(Duration::from_millis(200));
    let one = fleet_process(&server, &redis, true).1.layer(http_client());
    let two = fleet_process(&server, &redis, true).1.layer(http_client());
    for subject in ["st-alice-obo7d1e", "st-bob-obo7d1e"] {
        let path = format!("/{subject}");
        let (a, b) = tokio::join!(
            kind_of(&one, as_subject(server.get(&path), subject)),
            kind_of(&two, as_subject(server.get(&path), subject)),
        );
        assert_eq!((a, b), (Ok(StatusCode::OK), Ok(StatusCode::OK)));
    }
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice-obo7d1e", "st-bob-obo7d1e"])
    );
    let sent = server.path_authorizations();
    assert_eq!(sent.len(), 4);
    for (path, auth) in sent {
        let expected = if path.contains("alice") {
            "Bearer at-1"
        } else {
            "Bearer at-2"
        };
        assert_eq!(auth.as_deref(), Some(expected), "{path}");
    }
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(!keys.contains("obo7d1e"), "a subject in a key name: {keys}");
    assert!(!logs.text().contains("obo7d1e"), "a subject in the logs");
}

/// A Redis and a test server where a first fleet process (encrypting
/// when `encrypt`) stored alice's token (at-1), then bob's (at-2); their
/// keys in Redis.
async fn alice_then_bob_in_redis(encrypt: bool) -> (RedisServer, TestServer, String, String) {
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let (_, first) = fleet_process(&server, &redis, encrypt);
    let first = first.layer(http_client());
    let sent = kind_of(&first, as_subject(server.get("/a/1"), "st-alice")).await;
    assert_eq!(sent, Ok(StatusCode::OK));
    let alice_key = new_token_key(&redis, &[]);
    let sent = kind_of(&first, as_subject(server.get("/b/1"), "st-bob")).await;
    assert_eq!(sent, Ok(StatusCode::OK));
    let bob_key = new_token_key(&redis, std::slice::from_ref(&alice_key));
    (redis, server, alice_key, bob_key)
}

/// The cross-user attack on the fleet, with an encryption key: someone
/// who can write Redis copies subject A's stored token (its value, byte
/// for byte) under subject B's key. A cold process for B does not decrypt
/// it (the key name is the ciphertext's associated data), counts it as a
/// bad value, and exchanges B's own token: A's token never reaches B. A
/// is still served from Redis, with no exchange.
#[tokio::test]
async fn pair_on_behalf_fleet_a_token_copied_under_another_subjects_key_is_refused_when_encrypted()
{
    if !available() {
        return;
    }
    let (redis, server, alice_key, bob_key) = alice_then_bob_in_redis(true).await;
    // The forgery: alice's value under bob's key name.
    assert_eq!(redis.cli(&["COPY", &alice_key, &bob_key, "REPLACE"]), "1");

    let (tier, cold) = fleet_process(&server, &redis, true);
    let cold = cold.layer(http_client());
    all_ok(
        &cold,
        &server,
        &[("/b/2", "st-bob"), ("/a/2", "st-alice"), ("/b/3", "st-bob")],
    )
    .await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/1", "at-1"),
            bearer("/b/1", "at-2"),
            bearer("/b/2", "at-3"),
            bearer("/a/2", "at-1"),
            bearer("/b/3", "at-3"),
        ]
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-bob", "st-bob"])
    );
    let stats = tier.stats();
    assert_eq!((stats.bad_values, stats.shared_hits), (1, 1), "{stats:?}");
}

/// A cold fleet process (no encryption key) sending bob's request for
/// `path`, answered 200; its tier.
async fn cold_process_for_bob(server: &TestServer, redis: &RedisServer, path: &str) -> RedisTier {
    let (tier, cold) = fleet_process(server, redis, false);
    let sent = kind_of(
        &cold.layer(http_client()),
        as_subject(server.get(path), "st-bob"),
    )
    .await;
    assert_eq!(sent, Ok(StatusCode::OK));
    tier
}

/// What trusting Redis means without an encryption key. A value copied
/// byte for byte under another subject's key is still refused: it names
/// the configuration (with the subject's hash) it was fetched for. But the
/// value is plain JSON, so whoever can write Redis can also rewrite that
/// name to the one in B's key and hand B any token, A's included: with no
/// encryption key, Redis is trusted like the token endpoint itself
/// (`fleet` module, "Secrets at rest").
#[tokio::test]
async fn pair_on_behalf_fleet_without_an_encryption_key_whoever_writes_redis_is_trusted() {
    if !available() {
        return;
    }
    let (redis, server, alice_key, bob_key) = alice_then_bob_in_redis(false).await;

    // A verbatim copy: refused (another configuration's), bob exchanges.
    assert_eq!(redis.cli(&["COPY", &alice_key, &bob_key, "REPLACE"]), "1");
    let tier = cold_process_for_bob(&server, &redis, "/b/2").await;
    assert_eq!(tier.stats().bad_values, 1);
    assert_eq!(
        server.path_authorizations().last(),
        Some(&bearer("/b/2", "at-3"))
    );

    // A rewritten copy: alice's value with bob's fingerprint (read from
    // bob's key name) is taken by a cold process for bob.
    let fingerprint = |key: &str| {
        let start = key.find('{').expect("a hash tag") + 1;
        let end = key.find('}').expect("a hash tag");
        key[start..end].to_owned()
    };
    let alices = redis.cli(&["GET", &alice_key]);
    let forged = alices.replace(&fingerprint(&alice_key), &fingerprint(&bob_key));
    assert_ne!(forged, alices);
    assert_eq!(redis.cli(&["SET", &bob_key, &forged, "PX", "600000"]), "OK");
    let tier = cold_process_for_bob(&server, &redis, "/b/3").await;
    assert_eq!(tier.stats().bad_values, 0);
    assert_eq!(
        server.path_authorizations().last(),
        Some(&bearer("/b/3", "at-1")),
        "the forged value was not taken: update this test and the fleet docs"
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-bob", "st-bob"])
    );
}

/// Revocation in a fleet: revoking one subject's cache in one process
/// removes that subject's token from Redis (a cold process exchanges
/// again for it) and leaves the other subject's there (a cold process
/// takes it, no exchange).
#[tokio::test]
async fn pair_on_behalf_fleet_revocation_a_revoked_subjects_token_leaves_redis_alone() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || {
        let tier = tier(&redis).encryption_key(FLEET_KEY);
        fleet_layer(revocable(&server), tier)
    };
    let first = process();
    let svc = first.layer(http_client());
    all_ok(&svc, &server, &[("/a/1", "st-alice"), ("/b/1", "st-bob")]).await;
    assert_eq!(token_keys(&redis).len(), 2);
    let alice = first.cache_for(&SubjectToken::new("st-alice"));
    alice
        .expect("alice's cache")
        .revoke()
        .await
        .expect("revoked");
    assert_eq!(
        token_keys(&redis).len(),
        1,
        "alice's token is still in Redis"
    );
    let cold = process().layer(http_client());
    all_ok(&cold, &server, &[("/b/2", "st-bob"), ("/a/2", "st-alice")]).await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/1", "at-1"),
            bearer("/b/1", "at-2"),
            bearer("/b/2", "at-2"),
            bearer("/a/2", "at-3"),
        ]
    );
    assert_eq!(
        subjects_exchanged(&server),
        some(&["st-alice", "st-bob", "st-alice"])
    );
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-1&token_type_hint=access_token"]);
}

// ---------------------------------------------------------------------------
// Attacks

/// A canary in every subject token: it must appear in no error and no log
/// line.
const CANARY: &str = "obo-canary-3f9c";

/// Subject tokens no token could be: huge, empty, or with a byte outside
/// visible ASCII (CR LF, a header injection; NUL; a tab; a space; DEL;
/// non-ASCII). Each fails with `NoSubject` before any exchange, the
/// subject quoted nowhere.
#[tokio::test]
async fn attack_on_behalf_a_huge_empty_or_control_character_subject_is_never_exchanged() {
    let logs = capture().everywhere();
    let server = TestServer::start().await;
    let layer = layer(server.endpoint());
    let svc = layer.clone().layer(http_client());
    let bad = [
        format!("{CANARY}{}", "h".repeat(20 * 1024)),
        String::new(),
        format!("{CANARY}\r\nx-injected: 1"),
        format!("{CANARY}\0"),
        format!("{CANARY}\tx"),
        format!("{CANARY} x"),
        format!("{CANARY}\u{7f}"),
        format!("{CANARY}é"),
    ];
    for (i, subject) in bad.iter().enumerate() {
        let err = match send(&svc, as_subject(server.get("/x"), subject)).await {
            Err(e) => e,
            Ok(status) => panic!(
                "bad subject {i} was exchanged ({} token requests) and sent: {status}",
                server.token_requests()
            ),
        };
        assert_eq!(err.kind(), ErrorKind::NoSubject, "bad subject {i}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(CANARY), "the subject in an error: {shown}");
        }
    }
    // The same through the inbound header, as a server takes it.
    let mut inbound = http::HeaderMap::new();
    let value = http::HeaderValue::from_str(&format!("Bearer {CANARY}\tx")).expect("a header");
    inbound.insert(http::header::AUTHORIZATION, value);
    let subject = SubjectToken::from_headers(&inbound).expect("a bearer token");
    let mut request = server.get("/x");
    request.extensions_mut().insert(subject);
    assert_eq!(kind_of(&svc, request).await, Err(ErrorKind::NoSubject));
    // And through the reqwest middleware.
    let endpoint = server.endpoint();
    let middleware = OnBehalfMiddleware::new(move |subject: &SubjectToken| {
        TokenCache::builder(endpoint.clone(), exchange(subject, AUDIENCE)).build()
    });
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let err = client
        .get(server.url("/x"))
        .with_extension(SubjectToken::new(format!("{CANARY}\r\n")))
        .send()
        .await
        .expect_err("refused");
    assert_eq!(
        token_error(&err).map(|e| e.kind()),
        Some(ErrorKind::NoSubject)
    );
    assert!(!err.to_string().contains(CANARY));

    assert_eq!(server.token_requests(), 0);
    assert_eq!(server.resource_count(), 0);
    assert_eq!(
        layer.subjects(),
        0,
        "a cache was made for a refused subject"
    );
    assert!(!logs.text().contains(CANARY), "the subject in the logs");
}

/// The token endpoint refuses exchanges in every way it can: `403` with
/// `invalid_grant` (echoing the subject token, as some servers do), a
/// `403` HTML page (echoing it too), `400 invalid_grant`, and a `200`
/// whose `token_type` is RFC 8693's `N_A` (not an access token). Each is a
/// typed error for its subject, the subject redacted from it; the
/// subject's next request gets `NoToken` from its backoff with no second
/// exchange; another subject is served as usual.
#[tokio::test]
async fn attack_on_behalf_a_token_endpoint_refusing_the_exchange_gives_typed_errors_and_exact_counts(
) {
    let logs = capture().everywhere();
    let server = TestServer::start().await;
    let subject = |i: usize| format!("st-{CANARY}-{i}");
    let echoed = |i: usize| {
        format!(
            r#"{{"error":"invalid_grant","error_description":"subject {} is not allowed"}}"#,
            subject(i)
        )
    };
    server.script([
        Canned::json(403, &echoed(0)),
        Canned::new(
            403,
            "text/html",
            format!("<html>forbidden: {}</html>", subject(1)),
        ),
        Canned::json(400, &echoed(2)),
        Canned::json(
            200,
            r#"{"access_token":"rt-not-an-access-token","token_type":"N_A",
                "issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token"}"#,
        ),
    ]);
    let svc = layer(server.endpoint()).layer(http_client());
    let expected = [
        (ErrorKind::OAuth, Some(ErrorCode::InvalidGrant)),
        (ErrorKind::HttpStatus, None),
        (ErrorKind::OAuth, Some(ErrorCode::InvalidGrant)),
        (ErrorKind::InvalidToken, None),
    ];
    for (i, (kind, code)) in expected.into_iter().enumerate() {
        let err = send(&svc, as_subject(server.get("/x"), &subject(i)))
            .await
            .expect_err("refused");
        assert_eq!(
            (err.kind(), err.oauth_error().map(|e| e.error().clone())),
            (kind, code),
            "subject {i}: {err}"
        );
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(CANARY), "the subject in an error: {shown}");
            assert!(
                !shown.contains("rt-not-an"),
                "the token in an error: {shown}"
            );
        }
        let again = kind_of(&svc, as_subject(server.get("/x"), &subject(i))).await;
        assert_eq!(again, Err(ErrorKind::NoToken), "subject {i}");
    }
    assert_eq!(server.token_requests(), 4);
    let fine = kind_of(&svc, as_subject(server.get("/y"), "st-fine")).await;
    assert_eq!(fine, Ok(StatusCode::OK));
    assert_eq!(auths(&server), values(&["Bearer at-1"]));
    let mut expected_subjects: Vec<String> = (0..4).map(subject).collect();
    expected_subjects.push("st-fine".to_owned());
    assert_eq!(
        subjects_exchanged(&server),
        expected_subjects.into_iter().map(Some).collect::<Vec<_>>()
    );
    assert!(!logs.text().contains(CANARY), "the subject in the logs");
}

// ---------------------------------------------------------------------------
// on_behalf × fleet × dpop rotation, the subject token looked for everywhere

/// A P-256 key (ES256) and an Ed25519 key (EdDSA), in PEM: the key file's
/// content before and after its rotation.
const KEY_BEFORE: &str = include_str!("../../src/testdata/p256-sec1.pem");
const KEY_AFTER: &str = include_str!("../../src/testdata/ed25519.pem");

/// A fleet process of the rotation test: its own `DpopKeys` read from the
/// key file both processes share, its own tier (no encryption key, so
/// every value in Redis is readable JSON), a subject's cache per subject.
fn rotating_fleet_process(
    server: &TestServer,
    redis: &RedisServer,
    key_file: &std::path::Path,
) -> (tower_oauth2::dpop::DpopKeys, RedisTier, OnBehalfLayer) {
    let keys = tower_oauth2::dpop::DpopKeys::from_file(key_file).expect("the key file");
    let tier = tier(redis);
    let layer = fleet_layer(server.endpoint().dpop_keys(keys.clone()), tier.clone())
        .destinations(Destinations::any());
    (keys, tier, layer)
}

/// on_behalf × fleet × dpop (a key file rotated under two processes).
/// Two processes read one DPoP key file; alice's and bob's subject
/// tokens (each holding [`CANARY`]) are exchanged once each for the
/// fleet, then the file gets a new key: each subject's next requests go
/// with its old token and old key until one exchange per subject with the
/// new key is done (by the first process; the second takes each from
/// Redis). Every resource request carries a token exchanged for its own
/// subject, proved with the key that token is bound to. A third
/// subject's exchange is refused with an `error_description` echoing its
/// subject token.
///
/// The subject token (a secret) is in no Redis key name or value, no log
/// line at any level, no error, no `Debug` of the layer, a subject's
/// cache, the tier or its stats.
#[tokio::test]
async fn pair_on_behalf_fleet_dpop_rotation_each_subjects_token_of_each_key_and_the_subject_nowhere(
) {
    if !available() {
        return;
    }
    let logs = capture().everywhere();
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.enable_dpop();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key_file = dir.path().join("dpop.pem");
    std::fs::write(&key_file, KEY_BEFORE).expect("the key file");
    let (keys_one, tier_one, layer_one) = rotating_fleet_process(&server, &redis, &key_file);
    let (keys_two, tier_two, layer_two) = rotating_fleet_process(&server, &redis, &key_file);
    let (one, two) = (
        layer_one.layer(http_client()),
        layer_two.layer(http_client()),
    );
    let before = keys_one.current().thumbprint().to_owned();
    let (alice, bob) = (format!("st-alice-{CANARY}"), format!("st-bob-{CANARY}"));
    let mut n = 0;
    let mut path = |who: &str| {
        n += 1;
        format!("/{who}/{n}")
    };

    // The fleet's first tokens: one exchange per subject.
    for svc in [&one, &two] {
        for (who, subject) in [("alice", &alice), ("bob", &bob)] {
            let sent = kind_of(svc, as_subject(server.get(&path(who)), subject)).await;
            assert_eq!(sent, Ok(StatusCode::OK));
        }
    }
    assert_eq!(server.token_requests(), 2);

    // The key file rotated (renamed over), both processes see it.
    let next = dir.path().join("dpop.pem.next");
    std::fs::write(&next, KEY_AFTER).expect("the new key");
    std::fs::rename(&next, &key_file).expect("the key file replaced");
    assert!(keys_one.reload().expect("the new key"));
    assert!(keys_two.reload().expect("the new key"));
    let after = keys_one.current().thumbprint().to_owned();
    assert_ne!(before, after);

    // Each subject's next requests through each process, until each
    // carries the new key's token: at-3 (alice's), at-4 (bob's).
    for svc in [&one, &two] {
        for (who, subject, token) in [("alice", &alice, "DPoP at-3"), ("bob", &bob, "DPoP at-4")] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let sent = kind_of(svc, as_subject(server.get(&path(who)), subject)).await;
                assert_eq!(
                    sent,
                    Ok(StatusCode::OK),
                    "a request failed during the rotation"
                );
                let last = server.authorizations().last().cloned().flatten();
                if last.as_deref() == Some(token) {
                    break;
                }
                assert!(Instant::now() < deadline, "{who} never sent {token}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert_eq!(
        subjects_exchanged(&server),
        [
            Some(alice.clone()),
            Some(bob.clone()),
            Some(alice.clone()),
            Some(bob.clone())
        ],
        "one exchange per subject and key for the whole fleet"
    );
    let proved: Vec<String> = (server.received().iter())
        .map(|r| {
            let proof = r.headers["dpop"].to_str().expect("a proof");
            crate::support::dpop::read(proof).expect("a proof").jkt
        })
        .collect();
    assert_eq!(proved, [&*before, &before, &after, &after]);
    // Each resource request: its subject's token, proved with its key.
    let mine = |path: &str| {
        if path.starts_with("/alice/") {
            ["DPoP at-1", "DPoP at-3"]
        } else {
            ["DPoP at-2", "DPoP at-4"]
        }
    };
    for (path, auth) in server.path_authorizations() {
        let auth = auth.unwrap_or_default();
        assert!(mine(&path).contains(&auth.as_str()), "{path}: {auth}");
    }
    for (token, proof_key, bound_to) in server.dpop_proofs() {
        assert_eq!(
            Some(proof_key),
            bound_to,
            "{token} sent with another key's proof"
        );
    }
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());

    // A refused subject, its token echoed by the token endpoint.
    let carol = format!("st-carol-{CANARY}");
    server.script([Canned::json(
        400,
        &format!(
            r#"{{"error":"invalid_grant","error_description":"subject {carol} is not active"}}"#
        ),
    )]);
    let refused = send(&one, as_subject(server.get("/carol/1"), &carol))
        .await
        .expect_err("carol's exchange refused");
    assert_eq!(refused.kind(), ErrorKind::OAuth);

    // The subject token nowhere.
    let mut shown = vec![
        refused.to_string(),
        format!("{refused:?}"),
        format!("{layer_one:?}"),
        format!("{one:?}"),
        format!("{tier_one:?} {:?}", tier_one.stats()),
        format!("{tier_two:?} {:?}", tier_two.stats()),
    ];
    for subject in [&alice, &bob, &carol] {
        let cache = layer_one.cache_for(&SubjectToken::new(subject.as_str()));
        shown.push(format!("{cache:?}"));
        if let Some(cache) = cache {
            shown.push(format!("{:?}", cache.stats()));
        }
    }
    for text in shown {
        assert!(!text.contains(CANARY), "a subject token shown: {text}");
    }
    let keys = redis.cli(&["KEYS", "*"]);
    assert!(!keys.is_empty());
    assert!(
        !keys.contains(CANARY),
        "a subject token in a key name: {keys}"
    );
    for key in keys.lines() {
        let value = match redis.cli(&["TYPE", key]).trim() {
            "string" => redis.cli(&["GET", key]),
            "hash" => redis.cli(&["HGETALL", key]),
            other => panic!("{key} holds a {other}"),
        };
        assert!(!value.contains(CANARY), "a subject token in {key}'s value");
    }
    let logged = logs.text();
    assert!(!logged.is_empty());
    assert!(!logged.contains(CANARY), "a subject token in the logs");
}

/// The exchange names its API (`audience`, an absolute URL), and no
/// destinations were chosen: the subject's exchanged token goes to that
/// API's origin only, as `OAuth2Layer::new` sends a token whose request
/// names its API. A request made on behalf of a subject to another origin
/// (a webhook, a URL the service was handed) goes out without it, with no
/// exchange: a token acting for the user never reaches an origin it was
/// not exchanged for.
#[tokio::test]
async fn attack_on_behalf_the_exchanged_token_goes_only_to_the_api_its_exchange_names() {
    let server = TestServer::start().await;
    let elsewhere = Landing::start().await;
    let layer = OnBehalfLayer::new(exchanging(server.endpoint(), server.url("")));
    let svc = layer.layer(http_client());
    for (request, subject) in [
        (server.get("/api/1"), "st-alice"),
        (get(&elsewhere.url("/hook/1")), "st-alice"),
        (get(&elsewhere.url("/hook/2")), "st-bob"),
    ] {
        assert_eq!(
            kind_of(&svc, as_subject(request, subject)).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        elsewhere.seen(),
        vec![("-".to_owned(), "-".to_owned()); 2],
        "the subject's exchanged token went to an origin its exchange does not name"
    );
    assert_eq!(server.path_authorizations(), [bearer("/api/1", "at-1")]);
    assert_eq!(subjects_exchanged(&server), some(&["st-alice"]));

    // The reqwest middleware alike (alice's cache there is its own).
    let middleware = OnBehalfMiddleware::new(exchanging(server.endpoint(), server.url("")));
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    for (url, subject) in [
        (server.url("/api/2"), "st-alice"),
        (elsewhere.url("/hook/3"), "st-carol"),
    ] {
        let sent = (client.get(url).with_extension(SubjectToken::new(subject)))
            .send()
            .await
            .map(|r| r.status());
        assert_eq!(sent.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    }
    assert_eq!(elsewhere.seen().len(), 3);
    assert_eq!(elsewhere.seen()[2], ("-".to_owned(), "-".to_owned()));
    assert_eq!(
        server.path_authorizations().last(),
        Some(&bearer("/api/2", "at-2"))
    );
    assert_eq!(subjects_exchanged(&server), some(&["st-alice", "st-alice"]));
}

/// Bounded: the fleet's Redis accepts connections and never answers (a
/// hung server, a black-holing proxy). Every subject's requests still
/// succeed, each subject exchanging its own token once: each Redis call
/// ends at the tier's deadline and the cache fetches alone.
#[tokio::test]
async fn pair_on_behalf_fleet_a_redis_that_accepts_and_never_answers_costs_each_subject_one_exchange(
) {
    // Accepts every connection (the kernel's backlog, then this task),
    // reads nothing, answers nothing, closes nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let url = format!("redis://{}", silent.local_addr().expect("its address"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let server = TestServer::start().await;
    let tier = RedisTier::standalone(&url)
        .expect("a Redis URL")
        .timeout(Duration::from_millis(200));
    let layer = fleet_layer(server.endpoint(), tier.clone());
    let svc = layer.layer(http_client());
    all_ok(
        &svc,
        &server,
        &[
            ("/a/1", "st-alice"),
            ("/b/1", "st-bob"),
            ("/a/2", "st-alice"),
            ("/b/2", "st-bob"),
        ],
    )
    .await;
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/1", "at-1"),
            bearer("/b/1", "at-2"),
            bearer("/a/2", "at-1"),
            bearer("/b/2", "at-2"),
        ]
    );
    assert_eq!(subjects_exchanged(&server), some(&["st-alice", "st-bob"]));
    assert!(tier.stats().fallbacks >= 2, "{:?}", tier.stats());
    held.abort();
}

/// A layer cloned, and the clone given other options (here: any
/// destination): each keeps its own. A subject first seen through the
/// clone must not lend the clone's options to the original, whose
/// exchange names its API: through the original, that subject's token
/// still goes to the API only.
#[tokio::test]
async fn attack_on_behalf_a_clone_given_other_options_does_not_lend_them_to_the_original() {
    let server = TestServer::start().await;
    let elsewhere = Landing::start().await;
    let original = OnBehalfLayer::new(exchanging(server.endpoint(), server.url("")));
    let anywhere = original.clone().destinations(Destinations::any());
    let (original, anywhere) = (original.layer(http_client()), anywhere.layer(http_client()));
    let sent = kind_of(&anywhere, as_subject(server.get("/api/1"), "st-alice")).await;
    assert_eq!(sent, Ok(StatusCode::OK));
    let elsewhere_request = get(&elsewhere.url("/hook/1"));
    let sent = kind_of(&original, as_subject(elsewhere_request, "st-alice")).await;
    assert_eq!(sent, Ok(StatusCode::OK));
    assert_eq!(
        elsewhere.seen(),
        [("-".to_owned(), "-".to_owned())],
        "the clone's destinations sent the subject's token through the original"
    );
}

/// Errors that say what to do: a request with no subject token, one too
/// long, one holding a byte no token has, each fails with `NoSubject`
/// and a message telling which, and how to give one (the extension,
/// `subject_from`, `max_subject_bytes`), never quoting the token.
#[tokio::test]
async fn attack_on_behalf_each_unusable_subject_says_what_is_wrong_and_what_to_do() {
    let server = TestServer::start().await;
    let svc = layer(server.endpoint())
        .max_subject_bytes(64)
        .layer(http_client());
    let failure = |subject: Option<String>| {
        let mut request = server.get("/x");
        if let Some(subject) = subject {
            request.extensions_mut().insert(SubjectToken::new(subject));
        }
        let svc = svc.clone();
        async move {
            let e = send(&svc, request).await.expect_err("no subject");
            assert_eq!(e.kind(), ErrorKind::NoSubject, "{e}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(CANARY), "the subject in an error: {shown}");
            e.to_string()
        }
    };
    let none = failure(None).await;
    assert!(
        none.contains("SubjectToken") && none.contains("subject_from"),
        "{none}"
    );
    let long = failure(Some(format!("{CANARY}{}", "x".repeat(64)))).await;
    assert!(
        long.contains("max_subject_bytes") && long.contains("64"),
        "{long}"
    );
    let broken = failure(Some(format!("{CANARY}\r\n"))).await;
    assert!(broken.contains("control character"), "{broken}");
    assert_eq!(server.token_requests(), 0);
}

/// Bounded: a token endpoint that accepts connections and never answers.
/// Each subject's request fails with `Timeout` at the endpoint's timeout,
/// the subject token quoted nowhere; each subject's cache then backs off
/// (an hour here), so its next request fails at once (`NoToken`, the
/// timeout its last error) with no new connection: one exchange attempt
/// per subject.
#[tokio::test]
async fn pair_on_behalf_backoff_a_token_endpoint_that_never_answers_times_out_once_per_subject() {
    let logs = capture();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let token_url = format!("http://{}/token", silent.local_addr().expect("its address"));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(stream);
        }
    });
    let resource = TestServer::start().await;
    let endpoint = TokenEndpoint::new(
        http_client(),
        tower_oauth2::TokenUrl::new(&token_url).expect("a loopback URL"),
        tower_oauth2::ClientAuth::client_secret_basic("svc", "secret"),
    )
    .timeout(Duration::from_millis(200));
    let svc = layer(endpoint).layer(http_client());
    // Then, backing off: `NoToken`, carrying the timeout as its last error.
    for (subject, kind) in [
        ("alice", ErrorKind::Timeout),
        ("bob", ErrorKind::Timeout),
        ("alice", ErrorKind::NoToken),
        ("bob", ErrorKind::NoToken),
    ] {
        let subject = format!("st-{subject}-{CANARY}");
        let failed = kind_of(&svc, as_subject(resource.get("/x"), &subject)).await;
        assert_eq!(failed, Err(kind), "{subject}");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(resource.resource_count(), 0);
    assert!(!logs.text().contains(CANARY), "a subject token in the logs");
    held.abort();
}

/// No metric label names a subject: the subjects' caches (each a series,
/// labelled by its fingerprint's prefix) report token requests that
/// succeeded and failed, and a 401's retry, and no label holds any part
/// of a subject token.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn attack_on_behalf_no_metric_label_names_a_subject() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let _guard = metrics::set_default_local_recorder(recorder);
    let server = TestServer::start().await;
    let svc = layer(server.endpoint()).layer(http_client());
    let (alice, bob) = (format!("st-alice-{CANARY}"), format!("st-bob-{CANARY}"));
    all_ok(&svc, &server, &[("/a/1", &alice)]).await;
    server.revoke("at-1");
    all_ok(&svc, &server, &[("/a/2", &alice)]).await;
    server.script([Canned::json(400, r#"{"error":"invalid_grant"}"#)]);
    let refused = kind_of(&svc, as_subject(server.get("/b/1"), &bob)).await;
    assert_eq!(refused, Err(ErrorKind::OAuth));
    let labels: Vec<String> = (recorder.snapshotter().snapshot().into_vec().into_iter())
        .flat_map(|(key, _, _, _)| {
            let key = key.key().clone();
            (key.labels())
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect::<Vec<_>>()
        })
        .collect();
    for wanted in ["outcome=success", "outcome=error", "action=retried"] {
        assert!(
            labels.iter().any(|l| l == wanted),
            "no {wanted}: {labels:?}"
        );
    }
    assert!(
        labels
            .iter()
            .all(|l| !l.contains(CANARY) && !l.contains("st-")),
        "a subject in a label: {labels:?}"
    );
}
