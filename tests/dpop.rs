//! DPoP (RFC 9449) through the layer and the reqwest middleware, against
//! the test server with DPoP on: it checks every proof (signature with the
//! key in its header, `htm`, `htu`, `iat`, `jti` replay, `nonce`, `ath`),
//! issues `DPoP` tokens bound to the proof's key, and requires
//! `Authorization: DPoP` with a proof of that key at its resources.

#![cfg(feature = "dpop")]

use crate::support;

use http::{Method, StatusCode, Uri};
use support::client::{form_request, http_client, layered};
use support::dpop;
use support::dpop::{NonceResource, Rotation};
use support::token_server::{Canned, TestServer};
use tower::ServiceExt as _;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

/// A cache of client-credentials tokens from `server` with DPoP key `key`.
fn dpop_cache(server: &TestServer, key: &Dpop) -> TokenCache {
    let endpoint = server.endpoint().dpop(key.clone());
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

async fn get_status(server: &TestServer, cache: &TokenCache, path: &str) -> StatusCode {
    let response = layered(cache).oneshot(server.get(path)).await.unwrap();
    response.status()
}

/// A server asking for a nonce at its token endpoint (`n-token-1`) and at
/// its resources (`n-resource-1`), and a DPoP cache's first request there,
/// which succeeds: the first token request is refused for its nonce (a 400
/// `use_dpop_nonce`), and resent with it.
async fn a_first_request_with_nonces_at_both_ends() -> (TestServer, Dpop, TokenCache) {
    let server = TestServer::start().await;
    server.set_dpop_nonces(Some("n-token-1"), Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    (server, key, cache)
}

#[tokio::test]
async fn a_dpop_token_is_fetched_with_a_proof_and_sent_with_a_fresh_proof_per_request() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    for _ in 0..3 {
        assert_eq!(
            get_status(&server, &cache, "/api/orders?page=2").await,
            StatusCode::OK
        );
    }
    assert_eq!(server.token_requests(), 1);
    assert_eq!(
        server.authorizations(),
        vec![Some("DPoP at-1".to_owned()); 3]
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    // The token request's proof, exactly.
    let sent = &server.received()[0];
    let proof = dpop::read(sent.headers["dpop"].to_str().unwrap()).unwrap();
    assert_eq!(proof.jkt, key.thumbprint());
    assert_eq!(proof.header["jwk"], key.public_jwk());
    let mut names: Vec<_> = proof.claims.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["htm", "htu", "iat", "jti"]);
    assert_eq!(proof.claims["htm"], "POST");
    assert_eq!(proof.claims["htu"], server.token_url());
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn nonces_are_sent_after_one_use_dpop_nonce_at_the_token_endpoint_and_at_the_resource() {
    let (server, key, cache) = a_first_request_with_nonces_at_both_ends().await;
    // One resource request refused for its nonce, one resent with it.
    assert_eq!(server.resource_count(), 2);
    assert_eq!(server.unauthorized_count(), 1);
    assert_eq!(
        server.dpop_refusals(),
        ["token: UseNonce", "resource: UseNonce"]
    );
    let proofs: Vec<_> = (server.received().iter())
        .map(|r| {
            dpop::read(r.headers["dpop"].to_str().unwrap())
                .unwrap()
                .claims
        })
        .collect();
    assert_eq!(proofs[0].get("nonce"), None);
    assert_eq!(proofs[1]["nonce"], "n-token-1");
    // Neither round trip is a token refetch, nor counted as a 401 retry.
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
    // The nonces are remembered per origin: no more round trips.
    let api: Uri = server.url("/other").parse().unwrap();
    assert_eq!(key.nonce(&api).as_deref(), Some("n-resource-1"));
    assert_eq!(get_status(&server, &cache, "/other").await, StatusCode::OK);
    assert_eq!(
        (server.resource_count(), server.unauthorized_count()),
        (3, 1)
    );
    // A new nonce at the resource: one more round trip, same token.
    server.set_dpop_nonces(Some("n-token-1"), Some("n-resource-2"));
    assert_eq!(get_status(&server, &cache, "/other").await, StatusCode::OK);
    assert_eq!(
        (server.resource_count(), server.unauthorized_count()),
        (5, 2)
    );
    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        server.authorizations(),
        vec![Some("DPoP at-1".to_owned()); 5]
    );
}

#[tokio::test]
async fn a_nonce_is_resent_with_the_401_retry_off_and_one_not_resent_is_sent_next() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let counts = || (server.resource_count(), server.unauthorized_count());
    // The 401 retry off: a nonce's resend is not that retry, and happens.
    let no_retry = OAuth2Layer::new(cache.clone()).retry_unauthorized(false);
    let no_retry = tower::Layer::layer(&no_retry, http_client());
    let answer = no_retry.clone().oneshot(server.get("/api")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(counts(), (2, 1));
    // A body the layer keeps no copy of (`ReplayEmpty`: a form is not
    // empty): the refusal comes back as it came, with its nonce.
    server.set_dpop_nonces(None, Some("n-resource-2"));
    let post = form_request(Method::POST, &server.url("/api"), &[("a", "1")]);
    let refused = no_retry.oneshot(post).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["dpop-nonce"], "n-resource-2");
    assert_eq!(counts(), (3, 2));
    // The next request carries the nonce: no second refusal.
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    assert_eq!(counts(), (4, 2));
    assert_eq!(
        server.dpop_refusals(),
        ["resource: UseNonce", "resource: UseNonce"]
    );
    assert_eq!(
        server.authorizations(),
        vec![Some("DPoP at-1".to_owned()); 4]
    );
    // No refetch, no retry: the token stays.
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn the_nonce_in_the_answer_to_a_resend_is_sent_by_the_next_request() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    // The answer that accepts the resend gives the next nonce.
    server.rotate_resource_nonce("n-resource-2");
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let counts = || (server.resource_count(), server.unauthorized_count());
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    assert_eq!(counts(), (2, 1));
    let api: Uri = server.url("/api").parse().unwrap();
    assert_eq!(key.nonce(&api).as_deref(), Some("n-resource-2"));
    // The next request carries it: no refusal.
    assert_eq!(get_status(&server, &cache, "/other").await, StatusCode::OK);
    assert_eq!(counts(), (3, 1));
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn a_replayed_proof_or_a_proof_of_another_key_is_refused() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let (header, _) = cache.bearer_header_with_generation().await.unwrap();
    assert_eq!(header, "DPoP at-1");
    let uri: Uri = server.url("/api").parse().unwrap();
    let send = |proof: http::HeaderValue| {
        let mut req = server.get("/api");
        req.headers_mut().insert("authorization", header.clone());
        req.headers_mut().insert("dpop", proof);
        http_client().oneshot(req)
    };
    let proof = key.proof(&Method::GET, &uri, Some("at-1")).unwrap();
    assert_eq!(send(proof.clone()).await.unwrap().status(), StatusCode::OK);
    let replayed = send(proof).await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        replayed.headers()["www-authenticate"],
        r#"DPoP error="invalid_dpop_proof", algs="ES256""#
    );
    let other = Dpop::generate().unwrap();
    let foreign = other.proof(&Method::GET, &uri, Some("at-1")).unwrap();
    assert_eq!(
        send(foreign).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let wrong_method = key.proof(&Method::POST, &uri, Some("at-1")).unwrap();
    assert_eq!(
        send(wrong_method).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let refusals = server.dpop_refusals();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals[0].starts_with("resource: jti "), "{refusals:?}");
    assert_eq!(refusals[1], "resource: another key");
    assert!(
        refusals[2].starts_with("resource: htm/htu \"POST\""),
        "{refusals:?}"
    );
    // Sent as a bearer token, the bound token is refused too.
    let mut bearer = server.get("/api");
    bearer
        .headers_mut()
        .insert("authorization", "Bearer at-1".parse().unwrap());
    let answer = http_client().oneshot(bearer).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_refresh_token_bound_to_the_key_refreshes_with_a_proof() {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.set_rotate_refresh(true);
    let key = Dpop::generate().unwrap();
    let endpoint = server.endpoint().dpop(key.clone());
    let cache = TokenCache::builder(endpoint, TokenRequest::password("ada", "pw")).build();
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    server.revoke("at-1");
    // The 401 gets a new token: the bound refresh token, sent with a proof.
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].param("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(received[1].param("refresh_token").as_deref(), Some("rt-1"));
    let proof = dpop::read(received[1].headers["dpop"].to_str().unwrap()).unwrap();
    assert_eq!(proof.jkt, key.thumbprint());
    assert_eq!(
        server.authorizations(),
        ["DPoP at-1", "DPoP at-1", "DPoP at-2"].map(|a| Some(a.to_owned()))
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

#[tokio::test]
async fn the_key_joins_the_fingerprint_and_a_dpop_token_is_still_refused_without_dpop() {
    let server = TestServer::start().await;
    let request = TokenRequest::client_credentials();
    let plain = TokenCache::builder(server.endpoint(), request.clone());
    let key = Dpop::generate().unwrap();
    let bound = TokenCache::builder(server.endpoint().dpop(key.clone()), request.clone());
    assert_eq!(
        *bound.fingerprint(),
        plain.fingerprint().with_dpop_key(key.thumbprint())
    );
    let other = Dpop::generate().unwrap();
    let rebound = TokenCache::builder(server.endpoint().dpop(other), request);
    assert_ne!(bound.fingerprint(), rebound.fingerprint());
    // A `DPoP` token: refused by a cache without DPoP, as before; sent
    // with a proof by one with DPoP.
    let dpop_token = r#"{"access_token":"at-x","token_type":"DPoP","expires_in":60}"#;
    server.script([Canned::json(200, dpop_token), Canned::json(200, dpop_token)]);
    let err = plain.build().bearer_header().await.unwrap_err();
    assert_eq!(err.kind(), tower_oauth2::ErrorKind::InvalidToken);
    assert_eq!(bound.build().bearer_header().await.unwrap(), "DPoP at-x");
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_sends_proofs_and_follows_nonces() {
    use tower_oauth2::reqwest::OAuth2Middleware;
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    for _ in 0..2 {
        let response = client.get(server.url("/api?x=1")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 1);
    assert_eq!(
        (server.resource_count(), server.unauthorized_count()),
        (3, 1)
    );
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    assert_eq!(
        server.authorizations(),
        vec![Some("DPoP at-1".to_owned()); 3]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
}

/// `total` GETs of `url` through `svc`, `concurrency` at a time: the
/// statuses of their answers (the layer's errors panic).
async fn send_concurrently<S>(
    svc: S,
    url: String,
    total: usize,
    concurrency: usize,
) -> Vec<StatusCode>
where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
        > + Clone
        + Send
        + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let per_worker = total / concurrency;
    let workers = (0..concurrency).map(|_| {
        let (svc, url) = (svc.clone(), url.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..per_worker {
                let answer = svc.clone().oneshot(support::client::get(&url)).await;
                statuses.push(answer.expect("an answer").status());
            }
            statuses
        })
    });
    let mut statuses = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        statuses.extend(worker.await.expect("a worker"));
    }
    statuses
}

/// RFC 9449 §9: a resource may give a new nonce with every answer. Under
/// concurrency, a resend's proof may carry a nonce that another answer has
/// replaced already; the resend's `use_dpop_nonce` is returned as it came,
/// but it says nothing about the token: one token for everything, nothing
/// invalidated, and every challenged first send resent.
#[tokio::test]
async fn a_nonce_rotated_on_every_answer_never_costs_the_token() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let resource = NonceResource::start(Rotation::EveryAnswer).await;
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let total = 120;
    let statuses = send_concurrently(layered(&cache), resource.url("/api"), total, 8).await;
    let returned_401 = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let counts = resource.counts();
    assert_eq!(counts.invalid, Vec::<String>::new());
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.invalidations, stats.retries),
        (1, 0, 0)
    );
    // Every request challenged on its first send was resent once: the
    // resends are the challenges but those of resends, which were returned.
    let resends = counts.requests - total;
    assert_eq!(resends, counts.challenged - returned_401, "{counts:?}");
    assert!(counts.challenged > 0, "{counts:?}");
}

/// A resource that rotates its nonce (here every 48 requests; on a timer
/// in production) and gives it only in its challenges: every request in
/// flight when it rotates is challenged with the same new nonce, and each
/// one is resent with it, not only the first one whose answer taught it.
/// With the 401 retry off too: a nonce's resend is not the 401 retry.
#[tokio::test]
async fn requests_in_flight_when_the_nonce_rotates_are_all_resent() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    for retry in [true, false] {
        let resource = NonceResource::start(Rotation::EveryRequests(48)).await;
        let layer = OAuth2Layer::new(cache.clone()).retry_unauthorized(retry);
        let svc = tower::Layer::layer(&layer, http_client());
        let statuses = send_concurrently(svc, resource.url("/api"), 240, 16).await;
        let failed: Vec<_> = statuses.iter().filter(|s| **s != StatusCode::OK).collect();
        let counts = resource.counts();
        assert_eq!(
            failed,
            Vec::<&StatusCode>::new(),
            "retry {retry}: {counts:?}"
        );
        assert_eq!(counts.invalid, Vec::<String>::new());
        assert_eq!(counts.requests, 240 + counts.challenged);
    }
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.invalidations, stats.retries),
        (1, 0, 0)
    );
}

/// A keyed layer over a connection that sends origin-form URIs (as tonic
/// does), with DPoP: each key's policy keeps the layer's `origin_form_to`,
/// so every proof's `htu` names that origin.
#[tokio::test]
async fn a_keyed_layer_proves_origin_form_requests_for_the_origin_form_to_origin() {
    use std::sync::{Arc, Mutex};
    use support::client::{connection, origin_form_get, to_connection};
    use tower_oauth2::layer::KeyedOAuth2Layer;

    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    // The connection, recording each request's proof.
    let conn = connection(&server).await;
    let proofs = Arc::new(Mutex::new(Vec::new()));
    let seen = proofs.clone();
    let recording = tower::service_fn(
        move |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
            let proof = req.headers().get("dpop");
            let proof = proof.map(|p| p.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(proof);
            conn.clone().oneshot(req)
        },
    );
    let layer = KeyedOAuth2Layer::new(|_, _| Some(()), move |_| Some(cache.clone()))
        .destinations(to_connection(&server));
    let svc = tower::Layer::layer(&layer, recording);
    for path in ["/items", "/orders"] {
        let answer = svc.clone().oneshot(origin_form_get(&server, path)).await;
        let status = answer.map(|a| a.status()).map_err(|e| e.to_string());
        assert_eq!(status, Ok(StatusCode::OK), "{path}");
    }
    let htus: Vec<_> = (proofs.lock().unwrap().iter())
        .map(|p| dpop::read(p.as_deref().expect("a proof")).unwrap().claims["htu"].clone())
        .collect();
    assert_eq!(htus, [server.url("/items"), server.url("/orders")]);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    assert_eq!(
        server.path_authorizations(),
        [
            ("/items".to_owned(), Some("DPoP at-1".to_owned())),
            ("/orders".to_owned(), Some("DPoP at-1".to_owned())),
        ]
    );
    assert_eq!(server.token_requests(), 1);
}

/// Path-only requests allowed with no origin to name
/// (`Destinations::allow_origin_form`, a misconfiguration with DPoP): a
/// proof has no `htu`, so each fails typed and none is sent, through the
/// single and the keyed layer alike; and with no token cached none is
/// fetched for them, as none could go.
#[tokio::test]
async fn path_only_requests_no_proof_can_name_fail_before_any_token_is_fetched() {
    use support::client::{connection, origin_form_get};
    use tower_oauth2::layer::{Destinations, KeyedOAuth2Layer};
    use tower_oauth2::{ErrorKind, ServiceError};

    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let nowhere = Destinations::secure().allow_origin_form();
    let single = OAuth2Layer::new(cache.clone()).destinations(nowhere.clone());
    let single = tower::Layer::layer(&single, connection(&server).await);
    let keyed =
        KeyedOAuth2Layer::new(|_, _| Some(()), move |_| Some(cache.clone())).destinations(nowhere);
    let keyed = tower::Layer::layer(&keyed, connection(&server).await);
    let kind = |answer: Result<_, ServiceError<_>>| match answer {
        Err(ServiceError::Token(e)) => e.kind(),
        other => panic!("not a token error: {other:?}"),
    };
    for _ in 0..2 {
        let answer = single.clone().oneshot(origin_form_get(&server, "/a")).await;
        assert_eq!(kind(answer), ErrorKind::InvalidDestination);
        let answer = keyed.clone().oneshot(origin_form_get(&server, "/b")).await;
        assert_eq!(kind(answer), ErrorKind::InvalidDestination);
    }
    assert_eq!(server.token_requests(), 0);
    assert_eq!(server.path_authorizations(), []);
}

/// A resource at one loopback port that redirects (307) every request to
/// another origin, that origin's server, and what it recorded.
#[cfg(feature = "reqwest")]
async fn redirecting_to_another_origin() -> (
    support::serve::Serving,
    support::serve::Serving,
    support::redirect::Landed,
) {
    let (elsewhere, landed) = support::redirect::recording().await;
    let redirecting = support::redirect::redirecting(elsewhere.url("/landing")).await;
    (redirecting, elsewhere, landed)
}

/// reqwest follows redirects by default and takes only `Authorization`
/// (and cookies) off when the origin changes: the `DPoP` proof would go on
/// to the other origin. With the crate's redirect policy the client stops
/// at a redirect to another origin and the caller gets the 3xx; a client
/// that follows anyway is caught and logged.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_never_lets_a_dpop_proof_follow_a_redirect_to_another_origin() {
    use tower_oauth2::reqwest::{redirect_policy, OAuth2Middleware};
    let logs = support::log::capture();
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let (redirecting, _elsewhere, landed) = redirecting_to_another_origin().await;
    let reqwest_client = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest_client)
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    let response = client.get(redirecting.url("/api")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(*landed.lock().unwrap(), Vec::new());

    // A client that follows anyway: reqwest sends the proof on (not the
    // token); the middleware says so.
    let follows = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    let response = follows.get(redirecting.url("/api")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let landed = landed.lock().unwrap().clone();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].1, None);
    // Once per process (another test may have caused it first).
    assert_eq!(
        logs.whole_process()
            .count("followed a redirect to another origin"),
        1
    );
    // Nothing was learned from, or judged by, the other origin's answer.
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.invalidations), (1, 0));
}

/// The crate's redirect policy follows redirects within one origin.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_crates_redirect_policy_follows_redirects_within_the_origin() {
    let server = support::serve::serve(tower::service_fn(
        |req: http::Request<hyper::body::Incoming>| {
            let answer = if req.uri().path() == "/old" {
                http::Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header("location", "/new")
                    .body(http_body_util::Full::<bytes::Bytes>::default())
            } else {
                http::Response::builder().body(http_body_util::Full::from("new"))
            };
            async move { Ok::<_, std::convert::Infallible>(answer.unwrap()) }
        },
    ))
    .await;
    let client = reqwest::Client::builder()
        .redirect(tower_oauth2::reqwest::redirect_policy())
        .build()
        .unwrap();
    let response = client.get(server.url("/old")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "new");
}

/// A token endpoint and a resource at one origin (as this test server, or
/// an authorization server mounted beside the API), each with its own
/// nonce: a resource's challenge does not replace the token endpoint's
/// nonce, so the next token fetch is sent once, with the right one.
#[tokio::test]
async fn a_token_endpoint_and_a_resource_at_one_origin_keep_their_own_nonces() {
    let (server, _, cache) = a_first_request_with_nonces_at_both_ends().await;
    let (_, generation) = cache.bearer_header_with_generation().await.unwrap();
    cache.invalidate(generation);
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    // The second: sent once, with the token endpoint's nonce.
    assert_eq!(server.token_requests(), 3);
    let received = server.received();
    let proof = dpop::read(received[2].headers["dpop"].to_str().unwrap()).unwrap();
    assert_eq!(proof.claims["nonce"], "n-token-1");
    // And the resource's nonce was kept for the resource.
    assert_eq!(
        server.dpop_refusals(),
        ["token: UseNonce", "resource: UseNonce"]
    );
}
