//! Grants with a subject (refresh token, token exchange) with each other
//! feature: a subject's token reaches that subject's requests only.

use http::StatusCode;
use tower::Layer;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{ErrorKind, OAuth2Layer, TokenCache, TokenRequest};

use super::*;
use crate::support::client::{http_client, layered};
use crate::support::token_server::{bearer, TestServer};

/// Revoking one subject's cache revokes that subject's refresh and access
/// tokens only; that subject must authorize again, the other is untouched.
#[tokio::test]
async fn pair_grants_revocation_a_subject_revokes_its_own_tokens_only() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    let user = |rt: &str| TokenCache::from_refresh_token(revocable(&server), rt.to_owned()).build();
    let (alice, bob) = (user("rt-alice"), user("rt-bob"));
    for cache in [&alice, &bob] {
        assert_eq!(
            status(&layered(cache), server.get("/me")).await,
            Ok(StatusCode::OK)
        );
    }
    alice.revoke().await.expect("revoked");
    let bodies: Vec<String> = server.revocations().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        [
            "token=rt-alice&token_type_hint=refresh_token",
            "token=at-1&token_type_hint=access_token"
        ]
    );
    let err = alice
        .bearer_header()
        .await
        .expect_err("nothing to refresh with");
    assert_eq!(err.kind(), ErrorKind::ReauthorizationRequired);
    assert_eq!(
        status(&layered(&bob), server.get("/me")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-2"])
    );
    assert!(server.is_refresh_token_valid("rt-bob"));
    assert_eq!(server.token_requests(), 2);
}

/// A resource refusing every token: the refetch after a 401 uses the
/// subject's rotated refresh token, then the backoff holds (two tokens).
#[tokio::test]
async fn pair_grants_backoff_the_refetch_uses_the_subjects_rotated_refresh_token() {
    let server = TestServer::start().await;
    server.set_rotate_refresh(true);
    server.add_refresh_token("rt-alice");
    server.set_reject_all(true);
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-alice").build();
    let svc = OAuth2Layer::new(cache)
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    for i in 0..4 {
        let sent = status(&svc, server.get(&format!("/r/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(
        token_params(&server, "refresh_token"),
        some(&["rt-alice", "rt-1"])
    );
    let mut expected = values(&["Bearer at-1"]);
    expected.extend(vec!["Bearer at-2".to_owned(); 4]);
    assert_eq!(auths(&server), expected);
}

/// A token-exchange subject's token on path-only requests (tonic's).
#[tokio::test]
async fn pair_grants_origin_form_the_subjects_token_goes_on_path_only_requests() {
    let server = TestServer::start().await;
    let request = TokenRequest::token_exchange("st-alice", ACCESS_TOKEN_TYPE);
    let cache = TokenCache::builder(server.endpoint(), request).build();
    let svc = over_connection(&server, OAuth2Layer::new(cache)).await;
    for _ in 0..2 {
        let sent = status(&svc, origin_form_get(&server, "/pkg.Svc/Call")).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/pkg.Svc/Call", "at-1"),
            bearer("/pkg.Svc/Call", "at-1")
        ]
    );
    assert_eq!(token_params(&server, "subject_token"), some(&["st-alice"]));
}

/// Issue 19, defect 1 in the file tier: two subjects whose caches share a
/// token file never restore each other's token.
#[tokio::test]
async fn pair_grants_file_store_subjects_never_restore_each_others_token() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    let dir = temp_dir();
    let shared = token_file(&dir, "tokens.json");
    let alice = TokenCache::from_refresh_token(server.endpoint(), "rt-alice")
        .store(FileStore::new(&shared))
        .build();
    assert_eq!(header(&alice).await, Ok("Bearer at-1".to_owned()));
    let bob = TokenCache::from_refresh_token(server.endpoint(), "rt-bob")
        .store(FileStore::new(&shared))
        .build();
    assert_eq!(
        header(&bob).await,
        Ok("Bearer at-2".to_owned()),
        "bob restored alice's token"
    );
    // Token exchange: the subject token makes the token someone's too.
    let exchanged = token_file(&dir, "exchanged.json");
    let exchange = |subject: &str| {
        let request = TokenRequest::token_exchange(subject.to_owned(), ACCESS_TOKEN_TYPE);
        let builder = TokenCache::builder(server.endpoint(), request);
        builder.store(FileStore::new(&exchanged)).build()
    };
    assert_eq!(
        header(&exchange("st-carol")).await,
        Ok("Bearer at-3".into())
    );
    assert_eq!(
        header(&exchange("st-dave")).await,
        Ok("Bearer at-4".into()),
        "dave restored carol's token"
    );
    assert_eq!(server.token_requests(), 4);
}

/// Two subjects, two reqwest clients: each request carries its subject's
/// token.
#[tokio::test]
async fn pair_grants_reqwest_each_client_sends_its_subjects_token() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    let alice = TokenCache::from_refresh_token(server.endpoint(), "rt-alice").build();
    let request = TokenRequest::token_exchange("st-bob", ACCESS_TOKEN_TYPE);
    let bob = TokenCache::builder(server.endpoint(), request).build();
    let clients = [
        reqwest_client(OAuth2Middleware::new(alice)),
        reqwest_client(OAuth2Middleware::new(bob)),
    ];
    for client in clients.iter().chain(clients.iter()) {
        assert_eq!(
            reqwest_get(client, &server.url("/me")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-1", "Bearer at-2"])
    );
    assert_eq!(server.token_requests(), 2);
}
