//! DPoP (RFC 9449) through the layer and the reqwest middleware, against
//! the test server with DPoP on: it checks every proof (signature with the
//! key in its header, `htm`, `htu`, `iat`, `jti` replay, `nonce`, `ath`),
//! issues `DPoP` tokens bound to the proof's key, and requires
//! `Authorization: DPoP` with a proof of that key at its resources.

#![cfg(feature = "dpop")]

mod support;

use http::{Method, StatusCode, Uri};
use support::client::{form_request, http_client, layered};
use support::dpop;
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
    let server = TestServer::start().await;
    server.set_dpop_nonces(Some("n-token-1"), Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    assert_eq!(get_status(&server, &cache, "/api").await, StatusCode::OK);
    // One token request refused for its nonce, one resent with it.
    assert_eq!(server.token_requests(), 2);
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
async fn the_nonce_of_a_refusal_not_resent_is_sent_by_the_next_request() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let cache = dpop_cache(&server, &key);
    let counts = || (server.resource_count(), server.unauthorized_count());
    // The retry off: the refusal comes back as it came, with its nonce.
    let no_retry = OAuth2Layer::new(cache.clone()).retry_unauthorized(false);
    let no_retry = tower::Layer::layer(&no_retry, http_client());
    let refused = no_retry.clone().oneshot(server.get("/api")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["dpop-nonce"], "n-resource-1");
    assert_eq!(counts(), (1, 1));
    // The next request carries the nonce: no second refusal.
    let answer = no_retry.oneshot(server.get("/api")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(counts(), (2, 1));
    // A body the layer keeps no copy of (`ReplayEmpty`: a form is not
    // empty): the same.
    server.set_dpop_nonces(None, Some("n-resource-2"));
    let post = form_request(Method::POST, &server.url("/api"), &[("a", "1")]);
    let refused = layered(&cache).oneshot(post).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(counts(), (3, 2));
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
