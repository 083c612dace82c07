//! The token cache against a real token endpoint on 127.0.0.1, where things
//! go wrong: a fetch that panics or whose runtime dies never wedges it; a
//! caller that waits longer than its wait timeout gets a typed error while
//! the fetch goes on for the next caller; a rotated refresh token is kept
//! even when the access token beside it is unusable; odd refresh policies
//! neither panic nor refetch on every request.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::client::http_client;
use support::token_server::{Canned, TestServer};
use tower::ServiceExt;
use tower_oauth2::cache::RefreshPolicy;
use tower_oauth2::error::ErrorKind;
use tower_oauth2::{TokenCache, TokenRequest};

#[tokio::test(start_paused = true)]
async fn a_panicking_http_client_does_not_wedge_the_cache() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let inner = http_client();
    let flaky = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let inner = inner.clone();
        async move {
            if n == 0 {
                panic!("a bug in the HTTP client");
            }
            inner.oneshot(req).await
        }
    });
    let cache = TokenCache::builder(
        server.endpoint_over(flaky),
        TokenRequest::client_credentials(),
    )
    .backoff(tower_oauth2::cache::Backoff::new(
        Duration::from_millis(10),
        Duration::from_millis(10),
    ))
    .build();
    let e = cache.bearer_header().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FetchAborted);
    assert!(e.is_retryable() && !e.is_transport(), "{e}");
    assert_eq!(
        e.to_string(),
        "the token fetch ended without an answer (it panicked, or its Tokio runtime shut \
         down); the next call starts a new fetch"
    );
    tokio::time::advance(Duration::from_millis(50)).await;
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_runtime_shutting_down_mid_fetch_does_not_wedge_the_cache() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(TestServer::start());
    server.set_latency(Duration::from_millis(300));
    let cache = server
        .client_credentials()
        // No backoff after the aborted fetch: the next caller fetches at
        // once, with no wait for time to pass.
        .backoff(tower_oauth2::cache::Backoff::new(
            Duration::ZERO,
            Duration::ZERO,
        ))
        .build();
    let first = tokio::runtime::Runtime::new().unwrap();
    let c = cache.clone();
    first.spawn(async move {
        let _ = c.bearer_header().await;
    });
    std::thread::sleep(Duration::from_millis(100));
    first.shutdown_timeout(Duration::from_millis(10));
    server.set_latency(Duration::ZERO);
    let second = tokio::runtime::Runtime::new().unwrap();
    let header = second.block_on(cache.bearer_header()).unwrap();
    assert!(
        header.to_str().unwrap().starts_with("Bearer at-"),
        "{header:?}"
    );
    drop(second);
    drop(server);
}

#[tokio::test]
async fn a_caller_gives_up_at_its_wait_timeout_and_the_fetch_goes_on_for_the_next() {
    let server = TestServer::start().await;
    server.set_latency(Duration::from_millis(500));
    let cache = server
        .client_credentials()
        .wait_timeout(Duration::from_millis(20))
        .build();

    // The token endpoint takes 500 ms; the caller waits 20 ms at most.
    let e = cache.bearer_header().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WaitTimeout);
    assert!(
        e.is_timeout() && e.is_retryable() && !e.is_transport(),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "no token within 20ms: gave up waiting for the token fetch, which goes on; a later \
         call gets its token"
    );

    // The fetch went on without it: a later caller gets its token, with no
    // second token request (callers that find it still running give up too).
    let mut gave_up = 1;
    let header = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match cache.bearer_header().await {
                Ok(header) => return header,
                Err(e) => assert_eq!(e.kind(), ErrorKind::WaitTimeout, "{e}"),
            }
            gave_up += 1;
        }
    })
    .await
    .expect("the fetch never landed");
    assert_eq!(header, "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.token_fetches,
            stats.fetch_failures,
            stats.fail_fast,
            stats.wait_timeouts
        ),
        (1, 0, 0, gave_up),
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rotated_refresh_token_is_kept_when_its_access_token_is_unusable() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.set_rotate_refresh(true);
    // The first answer is a token that is already expired on arrival.
    server.script([Canned::json(
        200,
        r#"{"access_token":"dead","token_type":"Bearer","expires_in":0,"refresh_token":"rt-rotated"}"#,
    )]);
    server.add_refresh_token("rt-rotated");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .backoff(tower_oauth2::cache::Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
        ))
        .on_refresh_token(move |rt| s.lock().unwrap().push(rt.expose_secret().to_owned()))
        .build();
    let e = cache.bearer_header().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidToken);
    tokio::time::advance(Duration::from_millis(50)).await;
    assert_eq!(cache.bearer_header().await.unwrap(), "Bearer at-1");
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("refresh_token").unwrap())
        .collect();
    assert_eq!(sent, ["rt-seed", "rt-rotated"]);
    assert_eq!(*seen.lock().unwrap(), ["rt-rotated", "rt-1"]);
}

#[tokio::test]
async fn extreme_policies_neither_panic_nor_refetch_on_every_request() {
    let server = TestServer::start().await;
    server.set_ttl(Some(60));
    let cache = server
        .client_credentials()
        .refresh_policy(RefreshPolicy::default().max_fraction(0.9).jitter(1.0))
        .build();
    for _ in 0..20 {
        cache.bearer_header().await.unwrap();
    }
    assert_eq!(server.token_requests(), 1);

    server.script([Canned::json(
        200,
        r#"{"access_token":"forever","token_type":"Bearer","expires_in":1e30}"#,
    )]);
    let cache = server
        .client_credentials()
        .refresh_policy(
            RefreshPolicy::default()
                .refresh_before(Duration::MAX)
                .max_fraction(0.9)
                .jitter(1.0),
        )
        .build();
    for _ in 0..10 {
        assert_eq!(cache.bearer_header().await.unwrap(), "Bearer forever");
    }
    assert_eq!(server.token_requests(), 2);
}
