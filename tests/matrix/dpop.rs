//! DPoP (RFC 9449) with each other feature. The test server checks every
//! proof (signature, `htm`, `htu`, `iat`, `jti`, `nonce`, `ath`) and the key
//! a token is bound to: `dpop_refusals()` lists every proof it refused.

use http::StatusCode;
use tower::Layer;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

use super::*;
use crate::support::client::{http_client, layered};
use crate::support::token_server::{Canned, TestServer};

/// A cache of client-credentials tokens from `server`, bound to a new key.
fn dpop_cache(server: &TestServer) -> TokenCache {
    let endpoint = server.endpoint().dpop(a_key());
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).build()
}

/// Two subjects (token exchange), one DPoP key: each gets its own bound
/// token, sent with a proof of the key.
#[tokio::test]
async fn pair_dpop_grants_token_exchange_subjects_each_get_their_own_bound_token() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let key = a_key();
    let exchange = |subject: &str| {
        let request = TokenRequest::token_exchange(subject.to_owned(), ACCESS_TOKEN_TYPE);
        TokenCache::builder(server.endpoint().dpop(key.clone()), request).build()
    };
    let (alice, bob) = (exchange("st-alice"), exchange("st-bob"));
    for cache in [&alice, &bob, &alice] {
        assert_eq!(
            status(&layered(cache), server.get("/me")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        auths(&server),
        values(&["DPoP at-1", "DPoP at-2", "DPoP at-1"])
    );
    assert_eq!(
        token_params(&server, "subject_token"),
        some(&["st-alice", "st-bob"])
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// A refresh token bound to the key: a refused token is replaced through
/// the subject's (rotated, bound) refresh token, with a proof.
#[tokio::test]
async fn pair_dpop_grants_a_bound_refresh_token_replaces_a_refused_token() {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.set_rotate_refresh(true);
    let endpoint = server.endpoint().dpop(a_key());
    let cache = TokenCache::builder(endpoint, TokenRequest::password("ada", "pw")).build();
    let svc = layered(&cache);
    assert_eq!(status(&svc, server.get("/a")).await, Ok(StatusCode::OK));
    server.revoke("at-1");
    assert_eq!(status(&svc, server.get("/b")).await, Ok(StatusCode::OK));
    assert_eq!(
        auths(&server),
        values(&["DPoP at-1", "DPoP at-1", "DPoP at-2"])
    );
    assert_eq!(
        token_params(&server, "grant_type"),
        some(&["password", "refresh_token"])
    );
    assert_eq!(
        token_params(&server, "refresh_token")[1],
        some(&["rt-1"])[0]
    );
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// Issue 19, defect 11: a token endpoint requiring a nonce challenges the
/// first token request only; the refresh after a 401 sends the nonce it
/// learned (one token request per token while the nonce stays valid).
#[tokio::test]
async fn pair_dpop_grants_the_refresh_sends_the_token_endpoints_nonce() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(Some("n-token-1"), None);
    server.set_rotate_refresh(true);
    let endpoint = server.endpoint().dpop(a_key());
    let cache = TokenCache::builder(endpoint, TokenRequest::password("ada", "pw")).build();
    let svc = layered(&cache);
    assert_eq!(status(&svc, server.get("/a")).await, Ok(StatusCode::OK));
    assert_eq!(server.token_requests(), 2, "one nonce challenge, one token");
    server.revoke("at-1");
    assert_eq!(status(&svc, server.get("/b")).await, Ok(StatusCode::OK));
    assert_eq!(
        token_params(&server, "grant_type"),
        some(&["password", "password", "refresh_token"]),
        "the refresh was challenged for the nonce again"
    );
    assert_eq!(server.dpop_refusals(), ["token: UseNonce"]);
    assert_eq!(
        auths(&server),
        values(&["DPoP at-1", "DPoP at-1", "DPoP at-2"])
    );
}

/// Revoking a DPoP cache: the bound token is revoked, the next request
/// gets a new bound token with a valid proof.
#[tokio::test]
async fn pair_dpop_revocation_the_next_request_gets_a_new_bound_token() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let endpoint = revocable(&server).dpop(a_key());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let svc = layered(&cache);
    assert_eq!(status(&svc, server.get("/a")).await, Ok(StatusCode::OK));
    cache.revoke().await.expect("revoked");
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["token=at-1&token_type_hint=access_token"]);
    assert_eq!(status(&svc, server.get("/b")).await, Ok(StatusCode::OK));
    assert_eq!(auths(&server), values(&["DPoP at-1", "DPoP at-2"]));
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// Issue 19, defect 2: a resource rotating its nonce faster than the
/// client sends answers the nonce resend `use_dpop_nonce` again. That is
/// never a refusal of the token: no token thrown away, no backoff.
#[tokio::test]
async fn pair_dpop_backoff_a_nonce_challenge_to_the_resend_refuses_no_token() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let cache = dpop_cache(&server);
    let svc = OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    // The first request and its nonce resend both get a fresh nonce.
    server.force_resource_nonce_challenges(2);
    let _ = status(&svc, server.get("/a")).await;
    // The latest nonce is sent, with the same token, and accepted.
    for path in ["/b", "/c"] {
        assert_eq!(status(&svc, server.get(path)).await, Ok(StatusCode::OK));
    }
    let stats = cache.stats();
    let backed_off = stats.unauthorized_backed_off;
    assert_eq!(
        (stats.token_fetches, stats.invalidations, backed_off),
        (1, 0, 0),
        "a use_dpop_nonce answer was taken for a refusal of the token"
    );
    assert!(
        auths(&server).iter().all(|a| a == "DPoP at-1"),
        "{:?}",
        auths(&server)
    );
    assert_eq!(server.token_requests(), 1);
}

/// A resource refusing every DPoP token: two tokens, then the refusals
/// pass through, each sent with a valid proof.
#[tokio::test]
async fn pair_dpop_backoff_an_always_refusing_resource_costs_two_tokens() {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.set_reject_all(true);
    server.set_challenges(&[r#"DPoP error="invalid_token", algs="ES256""#]);
    let cache = dpop_cache(&server);
    let svc = OAuth2Layer::new(cache)
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    for i in 0..5 {
        let sent = status(&svc, server.get(&format!("/r/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    let mut expected = values(&["DPoP at-1"]);
    expected.extend(vec!["DPoP at-2".to_owned(); 5]);
    assert_eq!(auths(&server), expected);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
}

/// Path-only requests with DPoP through `OAuth2Layer`: the proof's `htu`
/// is the `origin_form_to` origin plus the path (checked by the server).
#[tokio::test]
async fn pair_dpop_origin_form_proofs_name_the_origin_form_to_origin() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let cache = dpop_cache(&server);
    let svc = over_connection(&server, OAuth2Layer::new(cache)).await;
    for _ in 0..2 {
        let sent = status(&svc, origin_form_get(&server, "/pkg.Svc/Call")).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(auths(&server), values(&["DPoP at-1", "DPoP at-1"]));
    assert_eq!(server.dpop_refusals(), Vec::<String>::new());
    assert_eq!(server.token_requests(), 1);
}

/// A stored bound token is restored by a cache holding its key only; a
/// cache with another key fetches its own.
#[tokio::test]
async fn pair_dpop_file_store_a_stored_bound_token_is_restored_by_its_key_only() {
    let server = TestServer::start().await;
    server.enable_dpop();
    let dir = temp_dir();
    let path = token_file(&dir, "token.json");
    // Each cache is built (and so reads the file) after the one before
    // it saved its token.
    let process = |key: &Dpop| {
        let endpoint = server.endpoint().dpop(key.clone());
        let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
        builder.store(FileStore::new(&path)).build()
    };
    a_bound_token_goes_only_to_holders_of_its_key(&server, process).await;
}

/// The reqwest middleware with a resource whose nonce changes: one nonce
/// round trip, then the nonce each answer gives is sent, one token.
#[tokio::test]
async fn pair_dpop_reqwest_nonces_followed_with_one_token() {
    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let cache = dpop_cache(&server);
    let client = reqwest_client(OAuth2Middleware::new(cache.clone()));
    assert_eq!(
        reqwest_get(&client, &server.url("/a")).await,
        Ok(StatusCode::OK)
    );
    server.rotate_resource_nonce("n-resource-2");
    for path in ["/b", "/c"] {
        assert_eq!(
            reqwest_get(&client, &server.url(path)).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(auths(&server), vec!["DPoP at-1".to_owned(); 4]);
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.invalidations), (1, 0));
}

/// A redirect to another origin (issue 19, "a `DPoP` header must not
/// follow a cross-origin redirect"). reqwest follows redirects inside the
/// client, below the middleware, taking only `Authorization` off; so the
/// client is built with `redirect_policy()`, as the reqwest module says:
/// neither the token nor the proof reaches the other origin, and the 3xx
/// is the answer. A client left with reqwest's default policy, which the
/// middleware cannot change, gets the WARN that says so.
#[tokio::test]
async fn pair_dpop_reqwest_no_proof_follows_a_cross_origin_redirect() {
    let logs = crate::support::log::capture();
    let server = TestServer::start().await;
    server.enable_dpop();
    let landing = Landing::start().await;
    let moved = redirecting_to(landing.url("/elsewhere")).await;
    let cache = dpop_cache(&server);
    let stopping = reqwest::Client::builder()
        .redirect(tower_oauth2::reqwest::redirect_policy())
        .build()
        .expect("a reqwest client");
    let client = reqwest_middleware::ClientBuilder::new(stopping)
        .with(OAuth2Middleware::new(cache.clone()))
        .build();
    assert_eq!(
        reqwest_get(&client, &moved.url("/api")).await,
        Ok(StatusCode::FOUND)
    );
    assert_eq!(
        landing.seen(),
        Vec::<(String, String)>::new(),
        "the request followed the redirect to another origin"
    );
    // reqwest's default policy: the proof goes on (the token does not),
    // and the middleware says how to stop it.
    let default = reqwest_client(OAuth2Middleware::new(cache));
    assert_eq!(
        reqwest_get(&default, &moved.url("/api")).await,
        Ok(StatusCode::OK)
    );
    let seen = landing.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "-", "the token followed the redirect");
    // Once per process: another test may have caused it first.
    assert!(
        logs.whole_process()
            .text()
            .contains("redirect(tower_oauth2::reqwest::redirect_policy())"),
        "no WARN about the proof that followed the redirect"
    );
}

/// Bounded: a resource answering every request `401 use_dpop_nonce` with a
/// fresh nonce each time (a broken or hostile server). Each request is
/// sent twice (once, then once more with the nonce given), never more;
/// the token is never taken for refused (one token request for them all),
/// through the tower layer and through reqwest alike; the 401 is the
/// answer.
#[tokio::test]
async fn pair_dpop_backoff_a_resource_rotating_its_nonce_at_every_answer_costs_two_sends_per_request(
) {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.force_resource_nonce_challenges(usize::MAX);
    let cache = dpop_cache(&server);
    let svc = OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    let client =
        reqwest_client(OAuth2Middleware::new(cache.clone()).unauthorized_backoff(an_hour()));
    for i in 0..5 {
        let sent = status(&svc, server.get(&format!("/tower/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
        let sent = reqwest_get(&client, &server.url(&format!("/reqwest/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(server.resource_count(), 20, "not two sends per request");
    assert_eq!(auths(&server), vec!["DPoP at-1".to_owned(); 20]);
    let stats = cache.stats();
    assert_eq!((server.token_requests(), stats.invalidations), (1, 0));
}

/// Bounded: a token endpoint answering every token request `400
/// use_dpop_nonce` with a fresh nonce each time. A fetch sends its token
/// request twice (once, then once with the nonce given), never more, and
/// fails with the endpoint's error; the cache's backoff then holds the
/// next requests (no token request), and no resource request is sent.
#[tokio::test]
async fn pair_dpop_backoff_a_token_endpoint_rotating_its_nonce_at_every_answer_costs_two_token_requests(
) {
    let server = TestServer::start().await;
    server.enable_dpop();
    server.script((0..10).map(|i| {
        Canned::json(400, r#"{"error":"use_dpop_nonce"}"#)
            .header("dpop-nonce", &format!("as-nonce-{i}"))
    }));
    let endpoint = server.endpoint().dpop(a_key());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .backoff(an_hour())
        .build();
    let svc = OAuth2Layer::new(cache).layer(http_client());
    for i in 0..3 {
        let failed = status(&svc, server.get(&format!("/r/{i}"))).await;
        let failed = failed.expect_err("no token");
        assert!(failed.contains("use_dpop_nonce"), "{failed}");
    }
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.resource_count(), 0);
}
