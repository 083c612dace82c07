//! `TokenCache::status`, `warm_up` and `refresh_now` (issue 22,
//! "Operable"): against the scriptable token server of `tests/support`,
//! during a backoff, and with the fleet's Redis tier up, down from the
//! start, and stopped mid-run.

use crate::support;

use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use support::token_server::{Canned, TestServer};
use tower_oauth2::cache::{Backoff, RefreshPolicy, TokenState};
use tower_oauth2::error::ErrorCode;
use tower_oauth2::{ErrorKind, TokenCache};

/// The header a request through `cache` would carry now.
async fn header(cache: &TokenCache) -> String {
    let h = cache.bearer_header().await.expect("a token");
    h.to_str().expect("ASCII").to_owned()
}

/// A minute of backoff after a failed fetch: it surely still runs when
/// the test looks.
fn a_minute() -> Backoff {
    let minute = Duration::from_secs(60);
    Backoff::new(minute, minute)
}

#[tokio::test]
async fn status_goes_from_empty_to_fresh_to_stale_to_expired() {
    let server = TestServer::start().await;
    server.set_ttl(Some(4));
    // No jitter, lead = half the lifetime: stale from 2 s after the token
    // request was sent, expired from 3.6 s (4 s less its tenth).
    let policy = RefreshPolicy::default().max_fraction(0.5).jitter(0.0);
    let cache = server.client_credentials().refresh_policy(policy).build();
    let status = cache.status();
    assert_eq!(status.token, TokenState::Empty);
    assert!(!status.is_ready());
    assert_eq!((status.generation, status.expires_at), (None, None));
    assert_eq!((status.fetching, status.failures), (false, 0));

    cache.warm_up().await.expect("the first token");
    // The token request was sent before this: its schedule is earlier.
    let got = Instant::now();
    let status = cache.status();
    assert_eq!(status.token, TokenState::Fresh);
    assert!(status.is_ready());
    assert_eq!(status.generation, Some(1));
    let expires_at = status.expires_at.expect("a token with expires_in");
    assert!(expires_at > SystemTime::now());
    assert_eq!(server.token_requests(), 1);
    // Ready already: no second fetch.
    cache.warm_up().await.expect("the cached token");
    assert_eq!(server.token_requests(), 1);

    // `status` starts no refresh: only a request (or warm_up) would.
    tokio::time::sleep_until((got + Duration::from_millis(2100)).into()).await;
    assert_eq!(cache.status().token, TokenState::Stale);
    assert!(cache.status().is_ready());
    tokio::time::sleep_until((got + Duration::from_millis(3700)).into()).await;
    let status = cache.status();
    assert_eq!(status.token, TokenState::Expired);
    assert!(!status.is_ready());
    assert_eq!(status.generation, Some(1));
    assert_eq!(server.token_requests(), 1);

    cache.warm_up().await.expect("a new token");
    assert_eq!(cache.status().token, TokenState::Fresh);
    assert_eq!(cache.status().generation, Some(2));
    assert_eq!(header(&cache).await, "Bearer at-2");
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn during_a_backoff_status_names_the_failure_warm_up_fails_fast_and_refresh_now_fetches() {
    let server = TestServer::start().await;
    server.set_failing(Some(Canned::invalid_client("bad credentials")));
    let cache = server.client_credentials().backoff(a_minute()).build();

    let before = SystemTime::now();
    let e = cache.warm_up().await.expect_err("the endpoint refuses");
    assert_eq!(e.kind(), ErrorKind::OAuth);
    let status = cache.status();
    assert_eq!(status.token, TokenState::Empty);
    assert_eq!((status.failures, status.fetching), (1, false));
    let until = status.backoff_until.expect("backing off");
    assert!(until > SystemTime::now());
    let last = status.last_error.clone().expect("the failure");
    assert_eq!(last.kind, ErrorKind::OAuth);
    assert_eq!(last.status, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(last.oauth_error, Some(ErrorCode::InvalidClient));
    assert!(last.at >= before && last.at <= SystemTime::now());
    // The line names the kind, the status and the code; no description
    // (a server may echo anything there) and no credential.
    let line = status.to_string();
    assert!(
        line.starts_with("empty, 1 failures in a row, backing off for "),
        "{line}"
    );
    assert!(
        line.contains("last error: OAuth (401 Unauthorized, invalid_client) "),
        "{line}"
    );
    assert!(!line.contains("bad credentials") && !line.contains("secret"));

    // A readiness probe during the backoff: the failure, at once.
    let e = cache.warm_up().await.expect_err("backing off");
    assert_eq!(e.kind(), ErrorKind::NoToken);
    assert_eq!(server.token_requests(), 1);

    // The credentials are fixed: refresh_now does not wait the minute.
    server.set_failing(None);
    cache.refresh_now().await.expect("a token at once");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(header(&cache).await, "Bearer at-1");
    let status = cache.status();
    assert_eq!(status.token, TokenState::Fresh);
    assert_eq!((status.failures, status.backoff_until), (0, None));
    // The last failure stays on record, with its time.
    assert_eq!(status.last_error, Some(last));
}

#[tokio::test]
async fn refresh_now_replaces_a_fresh_token_once_however_many_ask() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    cache.warm_up().await.expect("the first token");
    assert_eq!(header(&cache).await, "Bearer at-1");

    // The server takes its time: all 8 callers join the one flight.
    server.set_latency(Duration::from_millis(500));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.refresh_now().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile the fresh token is still sent.
    assert!(cache.status().fetching);
    assert_eq!(header(&cache).await, "Bearer at-1");
    for call in calls {
        call.await.expect("no panic").expect("a new token");
    }
    assert_eq!(server.token_requests(), 2, "one flight for eight callers");
    assert_eq!(header(&cache).await, "Bearer at-2");
    assert_eq!(cache.status().generation, Some(2));
}

#[tokio::test]
async fn a_failed_refresh_now_keeps_the_valid_token_and_sets_the_backoff() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().backoff(a_minute()).build();
    cache.warm_up().await.expect("the first token");
    server.set_failing(Some(Canned::json(
        503,
        r#"{"error":"temporarily_unavailable"}"#,
    )));

    let e = cache.refresh_now().await.expect_err("the endpoint fails");
    assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    let status = cache.status();
    assert_eq!(status.token, TokenState::Fresh);
    assert_eq!(status.generation, Some(1));
    assert_eq!(status.failures, 1);
    assert!(status.backoff_until.is_some());
    let last = status.last_error.expect("the failure");
    assert_eq!(last.status, Some(StatusCode::SERVICE_UNAVAILABLE));
    // Requests and readiness go on with the valid token; no fetch.
    assert_eq!(header(&cache).await, "Bearer at-1");
    cache.warm_up().await.expect("the valid token");
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn a_resource_refusing_new_tokens_too_shows_as_the_401_backoff_not_a_failure() {
    use tower::{Layer, ServiceExt};

    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let layer = tower_oauth2::OAuth2Layer::new(cache.clone()).unauthorized_backoff(a_minute());
    let client = layer.layer(support::client::http_client());
    let refused = client
        .clone()
        .oneshot(server.get("/orders"))
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // at-1 refused, at-2 refused too: the step runs.
    assert_eq!(server.token_requests(), 2);
    let status = cache.status();
    let until = status.unauthorized_backoff_until.expect("the 401 backoff");
    assert!(until > SystemTime::now());
    assert_eq!(status.token, TokenState::Fresh);
    assert_eq!((status.failures, status.backoff_until), (0, None));
    assert_eq!(status.last_error, None);
    let line = status.to_string();
    assert!(
        line.contains(", refused tokens: 401s passed through for "),
        "{line}"
    );
}

#[cfg(feature = "redis")]
mod fleet {
    //! With the fleet's Redis tier: up, down from the start, stopped
    //! mid-run.

    use super::*;

    use crate::redis_server;

    use redis_server::{available, free_port, RedisServer};
    use tower_oauth2::fleet::RedisTier;

    fn tier(url: &str) -> RedisTier {
        RedisTier::standalone(url)
            .expect("a Redis URL")
            .namespace("status")
            .expect("a namespace")
            .timeout(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(10))
    }

    #[tokio::test]
    async fn refresh_now_in_a_fleet_fetches_once_and_the_other_process_takes_it() {
        if !available() {
            return;
        }
        let redis = RedisServer::start();
        let server = TestServer::start().await;
        let a = server
            .client_credentials()
            .redis(tier(&redis.url()))
            .build();
        let b = server
            .client_credentials()
            .redis(tier(&redis.url()))
            .build();
        a.warm_up().await.expect("a's token");
        b.warm_up().await.expect("b takes a's");
        assert_eq!(
            (header(&a).await, header(&b).await),
            ("Bearer at-1".into(), "Bearer at-1".into())
        );
        assert_eq!(server.token_requests(), 1);

        // a's refresh replaces the token Redis holds (it never takes its
        // own back); b's finds that newer one and sends no token request.
        a.refresh_now().await.expect("a new token");
        b.refresh_now().await.expect("the fleet's new token");
        assert_eq!(header(&a).await, "Bearer at-2");
        assert_eq!(header(&b).await, "Bearer at-2");
        assert_eq!(server.token_requests(), 2);
        assert_eq!(b.status().token, TokenState::Fresh);
        assert_eq!(b.status().last_error, None);
    }

    #[tokio::test]
    async fn with_redis_down_from_the_start_warm_up_and_refresh_now_fetch_alone() {
        // Nothing listens on this port: no redis-server needed.
        let t = tier(&format!("redis://127.0.0.1:{}", free_port()));
        let server = TestServer::start().await;
        let cache = server.client_credentials().redis(t.clone()).build();
        cache.warm_up().await.expect("fetched alone");
        let status = cache.status();
        assert_eq!(status.token, TokenState::Fresh);
        // An outage of the shared tier is not a failed fetch.
        assert_eq!((status.failures, status.last_error), (0, None));
        cache.refresh_now().await.expect("fetched alone again");
        assert_eq!(header(&cache).await, "Bearer at-2");
        assert_eq!(server.token_requests(), 2);
        assert_eq!(t.stats().fallbacks, 2);
    }

    #[tokio::test]
    async fn redis_stopped_mid_run_and_a_failing_endpoint_show_as_a_backoff_with_the_token_kept() {
        if !available() {
            return;
        }
        let mut redis = RedisServer::start();
        let server = TestServer::start().await;
        let t = tier(&redis.url());
        let cache = server
            .client_credentials()
            .redis(t.clone())
            .backoff(a_minute())
            .build();
        cache.warm_up().await.expect("through the lease");
        assert_eq!((t.stats().leases, t.stats().published), (1, 1));

        redis.stop();
        cache.refresh_now().await.expect("fetched alone");
        assert_eq!(header(&cache).await, "Bearer at-2");
        assert_eq!(t.stats().fallbacks, 1);

        // Redis still down, and now the token endpoint too.
        server.set_failing(Some(Canned::invalid_client("bad credentials")));
        let e = cache
            .refresh_now()
            .await
            .expect_err("nowhere to get a token");
        assert_eq!(e.kind(), ErrorKind::OAuth);
        let status = cache.status();
        assert_eq!(status.token, TokenState::Fresh);
        assert_eq!(status.generation, Some(2));
        assert_eq!(status.failures, 1);
        assert!(status.backoff_until.is_some());
        let last = status.last_error.expect("the failure");
        assert_eq!(
            (last.kind, last.oauth_error),
            (ErrorKind::OAuth, Some(ErrorCode::InvalidClient))
        );
        // The valid token is still served and a readiness probe passes.
        cache.warm_up().await.expect("the valid token");
        assert_eq!(header(&cache).await, "Bearer at-2");
        assert_eq!(server.token_requests(), 3);
    }
}
