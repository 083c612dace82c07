//! Every path that fetches a token sends the same token request, byte for
//! byte: the first fetch, the refetch after a 401, a background refresh
//! before expiry, the fleet's lease holder (a real `redis-server`), and the
//! fallback to the configured grant once a refresh token is refused (the
//! refresh itself names the same `resource`). A
//! path that built its own request (and dropped the `resource`, say) would
//! get a token for another API.
#![cfg(feature = "redis")]

use crate::redis_server;
use crate::support;

use std::time::{Duration, Instant};

use http::StatusCode;
use redis_server::{available, RedisServer};
use support::client::http_client;
use support::token_server::{Canned, TestServer};
use tower::{Layer, ServiceExt};
use tower_oauth2::cache::RefreshPolicy;
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

/// The configured grant: scope, an RFC 8707 resource and an audience.
fn request() -> TokenRequest {
    TokenRequest::client_credentials()
        .scope("orders:read")
        .resource("https://orders.example/")
        .audience("orders")
}

/// Its body, as the token endpoint must see it on every path.
const BODY: &str = "grant_type=client_credentials&scope=orders%3Aread\
                    &resource=https%3A%2F%2Forders.example%2F&audience=orders";

/// Waits (at most 10 s) until `server` has seen `n` token requests.
async fn until_token_requests(server: &TestServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.token_requests() < n {
        assert!(
            Instant::now() < deadline,
            "{} token requests",
            server.token_requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_path_to_a_new_token_sends_the_same_token_request() {
    if !available() {
        return;
    }
    // Paused time until Redis is needed: the refresh comes without sleeping.
    tokio::time::pause();
    let server = TestServer::start().await;
    // 6 s tokens, stale from 3 s (half the lifetime, no jitter), expired
    // from 5.4 s.
    server.set_ttl(Some(6));
    let policy = RefreshPolicy::default().max_fraction(0.5).jitter(0.0);
    let cache = TokenCache::builder(server.endpoint(), request())
        .refresh_policy(policy)
        .build();
    let svc = OAuth2Layer::for_origin(cache.clone(), server.url(""))
        .unwrap()
        .layer(http_client());
    let get = |path: &str| svc.clone().oneshot(server.get(path));

    // 1. The first fetch.
    assert_eq!(get("/first").await.unwrap().status(), StatusCode::OK);
    // 2. The refetch after a 401.
    server.revoke("at-1");
    assert_eq!(get("/refused").await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    // 3. A background refresh: at-2 is stale after 3 s.
    tokio::time::advance(Duration::from_millis(3300)).await;
    assert_eq!(get("/stale").await.unwrap().status(), StatusCode::OK);
    until_token_requests(&server, 3).await;
    assert_eq!(cache.stats().background_refreshes, 1);

    // 4. The fleet's lease holder: Redis counts real time.
    tokio::time::resume();
    let redis = RedisServer::start();
    let tier = RedisTier::standalone(&redis.url())
        .expect("a Redis URL")
        .namespace("bodies")
        .expect("a namespace")
        .timeout(Duration::from_secs(2));
    let fleet = TokenCache::builder(server.endpoint(), request())
        .redis(tier.clone())
        .build();
    fleet.bearer_header().await.unwrap();
    assert_eq!(server.token_requests(), 4);
    let stats = tier.stats();
    assert_eq!((stats.leases, stats.published, stats.fallbacks), (1, 1, 0));

    // 5. The fallback to the configured grant: a token that came with a
    // refresh token the server then refuses.
    server.script([Canned::json(
        200,
        r#"{"access_token":"at-x","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-x"}"#,
    )]);
    let refreshing = TokenCache::builder(server.endpoint(), request()).build();
    let (_, first) = refreshing.bearer_header_with_generation().await.unwrap();
    refreshing.invalidate(first);
    refreshing.bearer_header().await.unwrap();
    assert_eq!(server.token_requests(), 7);

    let bodies: Vec<String> = server.received().into_iter().map(|r| r.body).collect();
    // RFC 8707 §2.2: the refresh names the same resource, so the new
    // token is for the same API (no scope: RFC 6749 §6, the one granted).
    let refresh = "grant_type=refresh_token&refresh_token=rt-x\
                   &resource=https%3A%2F%2Forders.example%2F";
    assert_eq!(bodies, [BODY, BODY, BODY, BODY, BODY, refresh, BODY]);
}
