//! DPoP (RFC 9449) against oidc-provider: client credentials tokens bound
//! to the cache's key (`cnf.jkt` by introspection), the server's nonce
//! round trip at its token endpoint, and a resource server here that
//! checks every proof (signature with the embedded key, `htm`, `htu`,
//! `ath`, `iat`, `jti` replay, its own nonce) and the token's binding.

use http::{Method, StatusCode, Uri};
use tower::ServiceExt as _;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::{TokenCache, TokenRequest};

use super::client::{get as get_request, http_client, oauth_error};
use super::dpop_proof;
use super::server::{basic, RealServer};
use super::{Through, INVALID_GRANT};

/// A cache of client-credentials tokens for `client_id`, with DPoP key
/// `key`; and what its token endpoint client sent.
fn dpop_cache(
    server: &RealServer,
    client_id: &str,
    key: &Dpop,
) -> (TokenCache, super::client::Recording) {
    let (endpoint, wire) = server.endpoint(basic(client_id));
    let request = TokenRequest::client_credentials().scope("inventory:read");
    let cache = TokenCache::builder(endpoint.dpop(key.clone()), request).build();
    (cache, wire)
}

/// The claims of the DPoP proof of a recorded request.
fn proof_claims(sent: &super::client::Received) -> serde_json::Value {
    let proof = sent.headers["dpop"].to_str().unwrap();
    dpop_proof::read(proof).unwrap().claims
}

#[tokio::test]
async fn a_dpop_bound_token_is_fetched_and_accepted_with_a_proof_per_request() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let algs = server.metadata["dpop_signing_alg_values_supported"].to_string();
    assert!(algs.contains("\"ES256\""), "{algs}");
    let key = Dpop::generate().unwrap();
    let (cache, wire) = dpop_cache(&server, "svc-dpop", &key);
    let through = Through::start(&server, &cache).await;
    for _ in 0..3 {
        let (status, body) = through.get("/items?page=1").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-dpop"));
    }
    let token = cache.token().await.unwrap();
    assert_eq!(token.token_type().as_str(), "DPoP");
    let info = server
        .introspect(token.access_token().expose_secret())
        .await;
    assert_eq!(info["cnf"]["jkt"], key.thumbprint());
    assert_eq!(info["token_type"], "DPoP");
    let sent = wire.sent();
    assert_eq!(sent.len(), 1);
    let claims = proof_claims(&sent[0]);
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], server.token_endpoint.as_str());
    assert_eq!(claims.get("ath"), None);
    assert_eq!(through.rs.dpop_refusals(), Vec::<String>::new());
    assert_eq!((through.rs.requests(), through.rs.unauthorized()), (3, 0));
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (1, 0));
}

/// A key for each algorithm the server lists (RSA keys from the test data:
/// one made here would take seconds in a debug build).
fn key_for(alg: &str) -> Option<Dpop> {
    use tower_oauth2::jose::{Algorithm, SigningKey};
    let alg = Algorithm::from_name(alg)?;
    if matches!(alg, Algorithm::RS256 | Algorithm::PS256) {
        if !cfg!(feature = "jwt-rsa") {
            return None;
        }
        let pem = include_str!("../../src/testdata/rsa2048.pem");
        return Some(Dpop::from_key(SigningKey::from_pem(alg, pem).unwrap()).unwrap());
    }
    Some(Dpop::generate_with(alg).unwrap())
}

#[tokio::test]
async fn proofs_of_every_algorithm_the_server_lists_are_accepted() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let listed = &server.metadata["dpop_signing_alg_values_supported"];
    let listed: Vec<String> = serde_json::from_value(listed.clone()).unwrap();
    assert_eq!(listed, ["ES256", "Ed25519", "EdDSA", "PS256", "RS256"]);
    let mut tried = Vec::new();
    for alg in &listed {
        let Some(key) = key_for(alg) else {
            continue;
        };
        let (cache, wire) = dpop_cache(&server, "svc-dpop", &key);
        let through = Through::start(&server, &cache).await;
        for _ in 0..2 {
            let (status, body) = through.get("/items").await.unwrap();
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "svc-dpop"),
                "{alg}"
            );
        }
        let token = cache.token().await.unwrap();
        let info = server
            .introspect(token.access_token().expose_secret())
            .await;
        assert_eq!(info["cnf"]["jkt"], key.thumbprint(), "{alg}");
        let sent = wire.sent();
        let proof = dpop_proof::read(sent[0].headers["dpop"].to_str().unwrap()).unwrap();
        assert_eq!(proof.header["alg"], alg.as_str());
        assert_eq!(through.rs.dpop_refusals(), Vec::<String>::new(), "{alg}");
        assert_eq!(cache.stats().token_fetches, 1, "{alg}");
        tried.push(alg.as_str());
    }
    let expected: &[&str] = if cfg!(feature = "jwt-rsa") {
        &["ES256", "Ed25519", "EdDSA", "PS256", "RS256"]
    } else {
        &["ES256", "Ed25519", "EdDSA"]
    };
    assert_eq!(tried, expected);
    // With nothing chosen, the key follows the server's list.
    let metadata = tower_oauth2::discovery::ProviderMetadata::from_json(
        server.metadata["issuer"].as_str().unwrap(),
        server.metadata.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(metadata.dpop().unwrap().algorithm().as_str(), "ES256");
}

#[tokio::test]
async fn nonces_round_trip_at_the_token_endpoint_and_at_the_resource() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let key = Dpop::generate().unwrap();
    let (cache, wire) = dpop_cache(&server, "svc-dpop-nonce", &key);
    let through = Through::start(&server, &cache).await;
    through.rs.require_dpop_nonce("rs-nonce-1");
    let (status, body) = through.get("/items").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-dpop-nonce"));
    // The token endpoint asked for its nonce once; the resource too.
    let sent = wire.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(proof_claims(&sent[0]).get("nonce"), None);
    let token_nonce = proof_claims(&sent[1])["nonce"].clone();
    assert!(
        token_nonce.as_str().is_some_and(|n| !n.is_empty()),
        "{token_nonce}"
    );
    assert_eq!((through.rs.requests(), through.rs.unauthorized()), (2, 1));
    assert_eq!(through.rs.dpop_refusals(), ["use_dpop_nonce"]);
    // Neither is a token refetch, nor a 401 retry.
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
    // Remembered: the next request needs no round trip.
    let (status, _) = through.get("/items").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!((through.rs.requests(), through.rs.unauthorized()), (3, 1));
    let token = cache.token().await.unwrap();
    let info = server
        .introspect(token.access_token().expose_secret())
        .await;
    assert_eq!(info["cnf"]["jkt"], key.thumbprint());
}

#[tokio::test]
async fn a_replayed_proof_or_a_proof_of_another_key_is_refused() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let key = Dpop::generate().unwrap();
    let (cache, _) = dpop_cache(&server, "svc-dpop", &key);
    let through = Through::start(&server, &cache).await;
    let header = cache.bearer_header().await.unwrap();
    let token = header
        .to_str()
        .unwrap()
        .strip_prefix("DPoP ")
        .unwrap()
        .to_owned();
    let url = through.rs.url("/items");
    let uri: Uri = url.parse().unwrap();
    let send = |proof: http::HeaderValue, scheme: &str| {
        let mut req = get_request(&url);
        let authorization = format!("{scheme} {token}").parse().unwrap();
        req.headers_mut().insert("authorization", authorization);
        req.headers_mut().insert("dpop", proof);
        http_client().oneshot(req)
    };
    let proof = key.proof(&Method::GET, &uri, Some(&token)).unwrap();
    assert_eq!(
        send(proof.clone(), "DPoP").await.unwrap().status(),
        StatusCode::OK
    );
    let replayed = send(proof, "DPoP").await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    let other = Dpop::generate().unwrap();
    let foreign = other.proof(&Method::GET, &uri, Some(&token)).unwrap();
    assert_eq!(
        send(foreign, "DPoP").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // As a bearer token, the bound token is refused.
    let fresh = key.proof(&Method::GET, &uri, Some(&token)).unwrap();
    assert_eq!(
        send(fresh, "Bearer").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let refusals = through.rs.dpop_refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].starts_with("jti "), "{refusals:?}");
    assert!(
        refusals[1].starts_with("not bound to the proof's key"),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn a_dpop_bound_client_without_a_proof_is_refused() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (endpoint, _) = server.endpoint(basic("svc-dpop"));
    let err = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    // oidc-provider keeps the reason (no proof) to itself.
    assert_eq!(oauth_error(&err), INVALID_GRANT, "{err}");
}

/// oidc-provider with `requireNonce` gives its nonce in the 400
/// `use_dpop_nonce` and in every answer to a proof that did not carry its
/// latest one; the nonce stays valid for minutes. The key keeps it from one
/// fetch to the next: the second fetch is sent once, with it.
#[tokio::test]
async fn the_token_endpoints_nonce_is_kept_from_one_fetch_to_the_next() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let key = Dpop::generate().unwrap();
    let (cache, wire) = dpop_cache(&server, "svc-dpop-nonce", &key);
    let (_, first) = cache.bearer_header_with_generation().await.unwrap();
    // The first fetch: one 400 use_dpop_nonce, then the token.
    assert_eq!(wire.sent().len(), 2);
    cache.invalidate(first);
    let (_, second) = cache.bearer_header_with_generation().await.unwrap();
    assert_ne!(first, second);
    // The second: sent once, with the nonce learned by the first.
    let sent = wire.sent();
    assert_eq!(sent.len(), 3, "the second fetch met a use_dpop_nonce");
    let nonce = proof_claims(&sent[2])["nonce"].clone();
    assert!(nonce.as_str().is_some_and(|n| !n.is_empty()), "{nonce}");
    assert_eq!(cache.stats().token_fetches, 2);
}

/// A resource that rotates its nonce while 16 requests at a time are in
/// flight, and gives it only in its `use_dpop_nonce` challenges: every
/// challenged request is resent with the new nonce; none fails, and the
/// one token serves them all.
#[tokio::test]
async fn a_resource_rotating_its_nonce_under_concurrency_fails_no_request() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let key = Dpop::generate().unwrap();
    let (cache, wire) = dpop_cache(&server, "svc-dpop-nonce", &key);
    let through = std::sync::Arc::new(Through::start(&server, &cache).await);
    through.rs.require_dpop_nonce("rs-nonce-0");
    let (per_worker, workers) = (20, 16);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let through = through.clone();
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for i in 0..per_worker {
                    // Worker 0 rotates the nonce every 8 of its requests.
                    if w == 0 && i % 8 == 7 {
                        through.rs.require_dpop_nonce(&format!("rs-nonce-{i}"));
                    }
                    match through.get("/items").await {
                        Ok((StatusCode::OK, _)) => {}
                        other => failed.push(format!("{other:?}")),
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        failed.extend(task.await.unwrap());
    }
    assert_eq!(failed, Vec::<String>::new());
    let refusals = through.rs.dpop_refusals();
    assert!(
        refusals.iter().all(|r| r == "use_dpop_nonce"),
        "{refusals:?}"
    );
    let total = per_worker * workers;
    assert_eq!(through.rs.requests(), total + refusals.len());
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.invalidations),
        (1, 0, 0)
    );
    // One token: one 400 use_dpop_nonce and the request that got it.
    assert_eq!(wire.sent().len(), 2);
}

/// Issue 23: a key rotated while requests run. The next token request
/// proves the new key and the server binds the new token to it (its
/// `cnf.jkt` is the new key's thumbprint); every request succeeds, the old
/// token with the old key until the new one is cached.
#[tokio::test]
async fn real_server_dpop_a_rotated_key_gets_a_token_bound_to_it() {
    let Some(server) = RealServer::connect().await else {
        return;
    };
    let (old, new) = (Dpop::generate().unwrap(), Dpop::generate().unwrap());
    let (cache, wire) = dpop_cache(&server, "svc-dpop", &old);
    let through = Through::start(&server, &cache).await;
    let (status, _) = through.get("/items").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let before = cache.token().await.unwrap();
    cache.rotate_dpop_key(new.clone());
    // Requests go on (with whichever token is cached) until the new one is.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, body) = through.get("/items").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "svc-dpop"));
        let now = cache.token().await.unwrap();
        if now.access_token() != before.access_token() {
            let info = server.introspect(now.access_token().expose_secret()).await;
            assert_eq!(info["cnf"]["jkt"], new.thumbprint());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token of the new key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, _) = through.get("/items").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let info = server
        .introspect(before.access_token().expose_secret())
        .await;
    assert_eq!(info["cnf"]["jkt"], old.thumbprint());
    let sent = wire.sent();
    let keys: Vec<String> = (sent.iter())
        .map(|r| {
            dpop_proof::read(r.headers["dpop"].to_str().unwrap())
                .unwrap()
                .jkt
        })
        .collect();
    // A nonce round trip may repeat a token request; each proves its key.
    assert_eq!(keys.first().map(String::as_str), Some(old.thumbprint()));
    assert_eq!(keys.last().map(String::as_str), Some(new.thumbprint()));
    assert_eq!(through.rs.dpop_refusals(), Vec::<String>::new());
    assert_eq!(through.rs.unauthorized(), 0);
    assert_eq!(cache.stats().token_fetches, 2);
}
