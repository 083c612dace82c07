//! `TokenCache::revoke` (RFC 7009) against the test server's `/revoke`: what
//! goes on the wire (refresh token first, then access token, each with its
//! hint and the client's authentication), the cache empty afterwards, the
//! errors typed, and what happens to fetches and callers around it.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::client::{layered, Received};
use support::token_server::{Canned, ClientCheck, TestServer};
use tower::ServiceExt;
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::{ClientAuth, TokenCache, TokenRequest};

// base64("client:secret")
const BASIC: &str = "Basic Y2xpZW50OnNlY3JldA==";

/// A cache of password-grant tokens (each `at-N` with `rt-N`) from
/// `server`, whose endpoint has the server's revocation endpoint.
fn password_cache(server: &TestServer) -> TokenCache {
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    TokenCache::builder(endpoint, TokenRequest::password("alice", "pw")).build()
}

/// Each revocation request as (body, `Authorization`), checking that it was
/// a form POST to `/revoke`.
fn revocations(server: &TestServer) -> Vec<(String, Option<String>)> {
    let sent = server.revocations();
    sent.iter()
        .map(|r: &Received| {
            assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/revoke"));
            assert_eq!(
                r.headers["content-type"],
                "application/x-www-form-urlencoded"
            );
            (r.body.clone(), r.authorization().map(str::to_owned))
        })
        .collect()
}

/// The body of each revocation request.
fn bodies(server: &TestServer) -> Vec<String> {
    revocations(server).into_iter().map(|r| r.0).collect()
}

fn basic(body: &str) -> (String, Option<String>) {
    (body.to_owned(), Some(BASIC.to_owned()))
}

/// Polls `done` until it holds (the other task got there).
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn revoke_sends_the_refresh_token_then_the_access_token_and_empties_the_cache() {
    let server = TestServer::start().await;
    server.set_client("client", "secret", ClientCheck::Basic);
    let cache = password_cache(&server);
    let svc = layered(&cache);
    let ok = svc.clone().oneshot(server.get("/a")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 1);

    cache.revoke().await.unwrap();
    assert_eq!(
        revocations(&server),
        [
            basic("token=rt-1&token_type_hint=refresh_token"),
            basic("token=at-1&token_type_hint=access_token"),
        ]
    );
    assert!(!server.state.accepts("at-1"));
    assert!(!server.is_refresh_token_valid("rt-1"));
    assert_eq!(server.token_requests(), 1, "revoking fetches nothing");

    // The next request fetches exactly one new token, with the configured
    // grant: the revoked refresh token is forgotten.
    let ok = svc.clone().oneshot(server.get("/b")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    svc.clone().oneshot(server.get("/c")).await.unwrap();
    assert_eq!(server.token_requests(), 2);
    let grants: Vec<_> = (server.received().iter())
        .map(|r| r.param("grant_type").unwrap())
        .collect();
    assert_eq!(grants, ["password", "password"]);
    assert_eq!(
        server.authorizations(),
        [
            Some("Bearer at-1".to_owned()),
            Some("Bearer at-2".to_owned()),
            Some("Bearer at-2".to_owned()),
        ]
    );
    assert_eq!(server.unauthorized_count(), 0);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.fetch_failures), (2, 0));

    // Again for the new tokens; and an empty cache has nothing to send.
    cache.revoke().await.unwrap();
    cache.revoke().await.unwrap();
    let sent = revocations(&server);
    assert_eq!(
        sent[2..],
        [
            basic("token=rt-2&token_type_hint=refresh_token"),
            basic("token=at-2&token_type_hint=access_token"),
        ]
    );
}

#[tokio::test]
async fn post_and_public_clients_authenticate_as_for_tokens() {
    let server = TestServer::start().await;
    server.set_client("client", "secret", ClientCheck::Post);
    let endpoint = tower_oauth2::TokenEndpoint::new(
        support::client::http_client(),
        tower_oauth2::TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_post("client", "secret"),
    )
    .revocation_url(server.revocation_url());
    let cache = TokenCache::builder(endpoint.clone(), TokenRequest::client_credentials()).build();
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    cache.revoke().await.unwrap();
    // No refresh token: only the access token.
    assert_eq!(
        revocations(&server),
        [(
            "token=at-1&token_type_hint=access_token&client_id=client&client_secret=secret"
                .to_owned(),
            None
        )]
    );
    assert!(!server.state.accepts("at-1"));

    server.set_client("client", "", ClientCheck::Any);
    let public = tower_oauth2::TokenEndpoint::new(
        support::client::http_client(),
        endpoint.url().clone(),
        ClientAuth::none("client"),
    )
    .revocation_url(server.revocation_url());
    let cache = TokenCache::builder(public, TokenRequest::client_credentials()).build();
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-2");
    cache.revoke().await.unwrap();
    assert_eq!(
        revocations(&server)[1],
        (
            "token=at-2&token_type_hint=access_token&client_id=client".to_owned(),
            None
        )
    );
}

#[tokio::test]
async fn failures_are_typed_and_leave_what_was_not_revoked() {
    let server = TestServer::start().await;
    let cache = password_cache(&server);
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    let unsupported = r#"{"error":"unsupported_token_type","error_description":"not those"}"#;
    server.script_revocations([
        Canned::new(503, "text/html", "<h1>maintenance</h1>").header("retry-after", "3"),
        Canned::new(200, "text/plain", ""),
        Canned::json(400, unsupported),
    ]);
    let url = server.url("/revoke");

    // 503 for the refresh token (RFC 7009 §2.2.1): retryable, nothing lost.
    let e = cache.revoke().await.unwrap_err();
    assert!(e.is_revocation() && e.is_retryable());
    assert_eq!(e.kind(), ErrorKind::HttpStatus);
    assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(
        e.to_string(),
        format!(
            "revoking the refresh token at {url} failed: revocation endpoint answered 503 \
             Service Unavailable with a body that is not an OAuth2 error: \
             \"<h1>maintenance</h1>\" (retry after 3s)"
        )
    );
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");

    // Again: the refresh token is revoked, the access token's type is not
    // revocable there.
    let e = cache.revoke().await.unwrap_err();
    assert!(e.is_revocation() && !e.is_retryable());
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert_eq!(
        e.oauth_error().map(|r| r.error()),
        Some(&ErrorCode::UnsupportedTokenType)
    );
    assert_eq!(
        e.to_string(),
        format!(
            "revoking the access token at {url} failed: revocation endpoint answered \
             400 Bad Request: unsupported_token_type: not those"
        )
    );
    assert!(!format!("{e:?}").contains("at-1"));
    // The access token, still valid, is still used; no fetch.
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");

    // Once more: only the access token is left to revoke.
    cache.revoke().await.unwrap();
    assert_eq!(
        bodies(&server),
        [
            "token=rt-1&token_type_hint=refresh_token",
            "token=rt-1&token_type_hint=refresh_token",
            "token=at-1&token_type_hint=access_token",
            "token=at-1&token_type_hint=access_token",
        ]
    );
    assert_eq!(server.token_requests(), 1);
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-2");
    assert_eq!(
        server.received()[1].param("grant_type").unwrap(),
        "password"
    );
}

#[tokio::test]
async fn without_a_revocation_endpoint_nothing_is_sent_and_nothing_changes() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    let e = cache.revoke().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoRevocationEndpoint);
    assert!(!e.is_retryable() && !e.is_revocation());
    assert!(server.revocations().is_empty());
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn a_fetch_in_flight_is_waited_for_and_its_tokens_revoked() {
    let server = TestServer::start().await;
    server.set_latency(Duration::from_millis(100));
    let cache = password_cache(&server);
    let fetching = tokio::spawn({
        let cache = cache.clone();
        async move { cache.bearer_header().await }
    });
    until(|| server.token_requests() == 1).await;
    cache.revoke().await.unwrap();
    assert_eq!(fetching.await.unwrap().unwrap(), "Bearer at-1");
    assert_eq!(
        bodies(&server),
        [
            "token=rt-1&token_type_hint=refresh_token",
            "token=at-1&token_type_hint=access_token",
        ]
    );
    assert!(!server.state.accepts("at-1"));
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn callers_that_need_a_token_while_revoking_wait_then_get_a_typed_error() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    let cache = TokenCache::from_refresh_token(endpoint, "rt-seed").build();
    server.hold_revocations(true);
    let revoking = tokio::spawn({
        let cache = cache.clone();
        async move { cache.revoke().await }
    });
    until(|| server.revocations().len() == 1).await;
    // No token cached: the caller waits for the revocation, and no fetch
    // starts (it would send the refresh token being revoked).
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.bearer_header().await }
    });
    until(|| cache.stats().waits == 1).await;
    server.hold_revocations(false);
    revoking.await.unwrap().unwrap();
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Revoked);
    assert!(!e.is_retryable());
    assert_eq!(server.token_requests(), 0);
    assert_eq!(
        bodies(&server),
        ["token=rt-seed&token_type_hint=refresh_token"]
    );
    assert!(!server.is_refresh_token_valid("rt-seed"));
}

#[tokio::test]
async fn a_revocation_dropped_midway_frees_the_cache() {
    let server = TestServer::start().await;
    let cache = password_cache(&server);
    let (_, generation) = cache.bearer_header_with_generation().await.unwrap();
    server.hold_revocations(true);
    let revoking = tokio::spawn({
        let cache = cache.clone();
        async move { cache.revoke().await }
    });
    until(|| server.revocations().len() == 1).await;
    revoking.abort();
    assert!(revoking.await.unwrap_err().is_cancelled());
    // Nothing was revoked: the token is still cached, fetches start again.
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    cache.invalidate(generation);
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-2");
    assert_eq!(
        server.received()[1].param("grant_type").as_deref(),
        Some("refresh_token")
    );
    server.hold_revocations(false);
    cache.revoke().await.unwrap();
    assert!(!server.state.accepts("at-2"));
}

#[tokio::test]
async fn a_cache_built_from_a_refresh_token_needs_a_new_authorization_afterwards() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    let cache = TokenCache::from_refresh_token(endpoint, "rt-seed").build();
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    cache.revoke().await.unwrap();
    assert_eq!(
        bodies(&server),
        [
            "token=rt-seed&token_type_hint=refresh_token",
            "token=at-1&token_type_hint=access_token",
        ]
    );
    let e = cache.bearer_header().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReauthorizationRequired);
    assert_eq!(
        server.token_requests(),
        1,
        "no revoked refresh token is sent"
    );
}

#[test]
fn outside_a_tokio_runtime_revoke_is_a_typed_error() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start());
    let cache = password_cache(&server);
    rt.block_on(cache.bearer_header()).unwrap();

    let mut revoking = std::pin::pin!(cache.revoke());
    let polled = revoking
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    let Poll::Ready(Err(e)) = polled else {
        panic!("not answered at once: {polled:?}");
    };
    assert_eq!(e.kind(), ErrorKind::NoRuntime);
    assert!(server.revocations().is_empty());
    // Nothing was taken: on a runtime, it revokes.
    rt.block_on(cache.revoke()).unwrap();
    assert_eq!(server.revocations().len(), 2);
}
