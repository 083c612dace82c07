//! Revocation (`TokenCache::revoke`, RFC 7009) with each other feature:
//! a revoked token is never sent again, and the next request gets a new
//! token without failing.

use http::StatusCode;
use tower::Layer;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

use super::*;
use crate::support::client::http_client;
use crate::support::token_server::{bearer, TestServer};

fn revocation_bodies(server: &TestServer) -> Vec<String> {
    server.revocations().into_iter().map(|r| r.body).collect()
}

/// A revoke during a 401 backoff step: the emptied cache fetches a new
/// token for the next request at once; the step does not hold it.
#[tokio::test]
async fn pair_revocation_backoff_a_revoked_cache_fetches_at_once_during_a_step() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = TokenCache::builder(revocable(&server), TokenRequest::client_credentials()).build();
    let svc = OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(an_hour())
        .layer(http_client());
    for i in 0..2 {
        let sent = status(&svc, server.get(&format!("/r/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(server.token_requests(), 2);
    cache.revoke().await.expect("revoked");
    assert_eq!(
        revocation_bodies(&server),
        ["token=at-2&token_type_hint=access_token"]
    );
    server.set_reject_all(false);
    assert_eq!(status(&svc, server.get("/after")).await, Ok(StatusCode::OK));
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-2", "Bearer at-3"])
    );
}

/// Path-only requests (tonic's): after a revoke, the next one carries a new
/// token.
#[tokio::test]
async fn pair_revocation_origin_form_the_next_path_only_request_gets_a_new_token() {
    let server = TestServer::start().await;
    let cache = TokenCache::builder(revocable(&server), TokenRequest::client_credentials()).build();
    let svc = over_connection(&server, OAuth2Layer::new(cache.clone())).await;
    let path = "/pkg.Svc/Call";
    assert_eq!(
        status(&svc, origin_form_get(&server, path)).await,
        Ok(StatusCode::OK)
    );
    cache.revoke().await.expect("revoked");
    assert_eq!(
        status(&svc, origin_form_get(&server, path)).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        server.path_authorizations(),
        [bearer(path, "at-1"), bearer(path, "at-2")]
    );
    assert_eq!(server.token_requests(), 2);
}

/// A revoked token is not restored from the token file by a restarted
/// process: it is never sent again.
#[tokio::test]
async fn pair_revocation_file_store_a_revoked_token_is_not_restored() {
    let server = TestServer::start().await;
    let dir = temp_dir();
    let path = token_file(&dir, "token.json");
    let process = || {
        TokenCache::builder(revocable(&server), TokenRequest::client_credentials())
            .store(FileStore::new(&path))
            .build()
    };
    let first = process();
    assert_eq!(
        status(&crate::support::client::layered(&first), server.get("/a")).await,
        Ok(StatusCode::OK)
    );
    first.revoke().await.expect("revoked");
    // "Revoke on shutdown": once `revoke` has returned the process may
    // exit, so the store must already say the token is not to be restored
    // (no waiting here for work left in the background).
    drop(first);
    let restarted = process();
    assert_eq!(
        status(
            &crate::support::client::layered(&restarted),
            server.get("/b")
        )
        .await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2"]),
        "the revoked token was restored and sent"
    );
}

/// Through the reqwest middleware: after a revoke, the next request
/// carries a new token.
#[tokio::test]
async fn pair_revocation_reqwest_the_next_request_gets_a_new_token() {
    let server = TestServer::start().await;
    let cache = TokenCache::builder(revocable(&server), TokenRequest::client_credentials()).build();
    let client = reqwest_client(OAuth2Middleware::new(cache.clone()));
    assert_eq!(
        reqwest_get(&client, &server.url("/a")).await,
        Ok(StatusCode::OK)
    );
    cache.revoke().await.expect("revoked");
    assert_eq!(
        reqwest_get(&client, &server.url("/b")).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        revocation_bodies(&server),
        ["token=at-1&token_type_hint=access_token"]
    );
    assert_eq!(auths(&server), values(&["Bearer at-1", "Bearer at-2"]));
}
