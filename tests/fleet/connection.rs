//! One Redis connection per tier: every cache built from a tier or its
//! clones shares it, and its outage log.

use std::time::Duration;

use tower_oauth2::{TokenCache, TokenRequest};

use super::{header_of, outage_warnings, tier};
use crate::redis_server::{available, free_port, RedisServer};
use crate::support::log::capture;
use crate::support::token_server::TestServer;

/// The clients connected to `redis`, redis-cli's own (which asks) left out.
fn connections(redis: &RedisServer) -> usize {
    let list = redis.cli(&["CLIENT", "LIST"]);
    list.lines()
        .filter(|l| !l.contains(" cmd=client|list "))
        .count()
}

/// A cache for `server` asking for `scope`: another configuration, so
/// other keys in Redis.
fn scoped(server: &TestServer, scope: &str) -> tower_oauth2::cache::TokenCacheBuilder {
    TokenCache::builder(
        server.endpoint(),
        TokenRequest::client_credentials().scope(scope),
    )
}

#[tokio::test]
async fn caches_built_from_one_tier_and_its_clones_share_one_connection() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let t = tier(&redis.url());
    let a = server.client_credentials().redis(t.clone()).build();
    let b = scoped(&server, "orders:read").redis(t.clone()).build();
    let clone = t.clone();
    let c = scoped(&server, "orders:write").redis(clone).build();
    assert_eq!(header_of(&a).await.0, "Bearer at-1");
    assert_eq!(header_of(&b).await.0, "Bearer at-2");
    assert_eq!(header_of(&c).await.0, "Bearer at-3");
    assert_eq!(connections(&redis), 1, "one tier, one connection");
    // Each cache its own keys and lease: three configurations, three tokens.
    let keys = redis.cli(&["KEYS", "*:token"]);
    assert_eq!(keys.lines().count(), 3, "{keys}");
    let stats = t.stats();
    assert_eq!((stats.leases, stats.published, stats.fallbacks), (3, 3, 0));

    // A clone with another deadline has a connection of its own.
    let own = t.clone().timeout(Duration::from_secs(3));
    let d = scoped(&server, "orders:admin").redis(own).build();
    assert_eq!(header_of(&d).await.0, "Bearer at-4");
    assert_eq!(connections(&redis), 2);
    // A newcomer with its own tier (another process) takes a's token.
    let e = server
        .client_credentials()
        .redis(tier(&redis.url()))
        .build();
    assert_eq!(header_of(&e).await.0, "Bearer at-1");
    assert_eq!(connections(&redis), 3);
    assert_eq!(server.token_requests(), 4);
}

#[tokio::test]
async fn caches_of_one_tier_log_an_outage_once() {
    let logs = capture().everywhere();
    // Needs no redis-server: nothing listens on this port.
    let port = free_port();
    let server = TestServer::start().await;
    let t = tier(&format!("redis://127.0.0.1:{port}"));
    let a = server.client_credentials().redis(t.clone()).build();
    let b = scoped(&server, "orders:read").redis(t.clone()).build();
    assert_eq!(header_of(&a).await.0, "Bearer at-1");
    assert_eq!(header_of(&b).await.0, "Bearer at-2");
    assert_eq!(t.stats().fallbacks, 2);
    assert_eq!(
        outage_warnings(&logs, port),
        1,
        "one connection, one outage"
    );
}
