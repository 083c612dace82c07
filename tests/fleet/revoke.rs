//! `TokenCache::revoke` in one process of a fleet: the revoked token leaves
//! Redis, so no process takes it up again, and the processes that still
//! hold it move to the fleet's next token on their next request (its 401
//! is answered by a resend), with no request failed.

use http::StatusCode;
use tower::ServiceExt;
use tower_oauth2::{TokenCache, TokenRequest};

use super::{tier, token_key};
use crate::redis_server::{available, RedisServer};
use crate::support::client::{get, layered};
use crate::support::token_server::{bearer, TestServer};

/// A cache of client-credentials tokens whose endpoint can revoke, sharing
/// `redis`'s tier.
fn process(server: &TestServer, redis: &RedisServer) -> TokenCache {
    let endpoint = server.endpoint().revocation_url(server.revocation_url());
    TokenCache::builder(endpoint, TokenRequest::client_credentials())
        .redis(tier(&redis.url()))
        .build()
}

async fn status(cache: &TokenCache, server: &TestServer, path: &str) -> StatusCode {
    let answer = layered(cache).oneshot(get(&server.url(path))).await;
    answer.expect("an answer").status()
}

#[tokio::test]
async fn a_token_revoked_by_one_process_is_taken_up_by_no_other() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let key = token_key(&server.client_credentials());
    let (a, b) = (process(&server, &redis), process(&server, &redis));
    assert_eq!(status(&a, &server, "/a/0").await, StatusCode::OK);
    assert_eq!(status(&b, &server, "/b/0").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 1, "b takes a's token from Redis");

    // a shuts down: at-1 is revoked at the server (the resource refuses it
    // from now on) and leaves Redis.
    a.revoke().await.expect("revoked");
    assert!(!server.state.accepts("at-1"));
    assert_eq!(redis.cli(&["EXISTS", &key]), "0", "at-1 left Redis");

    // A process that starts now never sends at-1: it fetches at-2 for the
    // fleet.
    let c = process(&server, &redis);
    assert_eq!(status(&c, &server, "/c/0").await, StatusCode::OK);
    // b still holds at-1: refused, then resent with at-2 from Redis.
    assert_eq!(status(&b, &server, "/b/1").await, StatusCode::OK);
    assert_eq!(server.token_requests(), 2, "one new token for the fleet");
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a/0", "at-1"),
            bearer("/b/0", "at-1"),
            bearer("/c/0", "at-2"),
            bearer("/b/1", "at-1"),
            bearer("/b/1", "at-2"),
        ]
    );
    assert_eq!(server.unauthorized_count(), 1);
    assert!(redis.cli(&["GET", &key]).contains("at-2"));
}
