//! The fleet's Redis tier with each other feature.

use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use tower::Layer;
use tower_oauth2::dpop::Dpop;
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::layer::KeyedOAuth2Layer;
use tower_oauth2::reqwest::OAuth2Middleware;
use tower_oauth2::store::FileStore;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

use super::*;
use crate::redis_server::{available, RedisServer};
use crate::support::client::{http_client, layered};
use crate::support::log::capture;
use crate::support::token_server::{Canned, TestServer};

/// Every key the fleet wrote: none may name a subject or hold a secret.
fn assert_no_identity_in_keys(redis: &RedisServer, secrets: &[&str]) {
    let keys = redis.cli(&["KEYS", "*"]);
    for secret in secrets {
        assert!(!keys.contains(secret), "{secret:?} in a key name: {keys}");
    }
}

/// Alice's cache asks first and gets the first token; Bob's, on the same
/// Redis, gets a second one, not Alice's.
async fn alice_then_bob_get_their_own_tokens(alice: &TokenCache, bob: &TokenCache) {
    assert_eq!(header(alice).await, Ok("Bearer at-1".to_owned()));
    assert_eq!(
        header(bob).await,
        Ok("Bearer at-2".to_owned()),
        "bob got alice's token through Redis"
    );
}

/// Issue 19, defect 1: two subjects (different refresh tokens), same token
/// URL, client and scope, one Redis. Each gets its own token, in every
/// process, and no key names either.
#[tokio::test]
async fn pair_fleet_grants_refresh_token_subjects_never_receive_each_others_token() {
    if !available() {
        return;
    }
    let logs = capture().everywhere();
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice-secret");
    server.add_refresh_token("rt-bob-secret");
    let user = |rt: &str| {
        TokenCache::from_refresh_token(server.endpoint(), rt.to_owned())
            .redis(tier(&redis))
            .build()
    };
    let (alice, bob) = (user("rt-alice-secret"), user("rt-bob-secret"));
    alice_then_bob_get_their_own_tokens(&alice, &bob).await;
    assert_eq!(
        token_params(&server, "refresh_token"),
        some(&["rt-alice-secret", "rt-bob-secret"])
    );
    // New processes of each subject take that subject's token from Redis.
    let (alice2, bob2) = (user("rt-alice-secret"), user("rt-bob-secret"));
    assert_eq!(header(&bob2).await, Ok("Bearer at-2".to_owned()));
    assert_eq!(header(&alice2).await, Ok("Bearer at-1".to_owned()));
    assert_eq!(server.token_requests(), 2);
    assert_no_identity_in_keys(&redis, &["rt-", "alice", "bob", "secret"]);
    assert!(!logs.text().contains("rt-alice-secret"));
}

/// Defect 1 for token exchange: the `subject_token` makes the token
/// someone's.
#[tokio::test]
async fn pair_fleet_grants_token_exchange_subjects_never_receive_each_others_token() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let exchange = |subject: &str| {
        let request = TokenRequest::token_exchange(subject.to_owned(), ACCESS_TOKEN_TYPE);
        TokenCache::builder(server.endpoint(), request)
            .redis(tier(&redis))
            .build()
    };
    let (alice, bob) = (exchange("st-alice"), exchange("st-bob"));
    alice_then_bob_get_their_own_tokens(&alice, &bob).await;
    assert_eq!(
        token_params(&server, "subject_token"),
        some(&["st-alice", "st-bob"])
    );
    let bob2 = exchange("st-bob");
    assert_eq!(header(&bob2).await, Ok("Bearer at-2".to_owned()));
    assert_eq!(server.token_requests(), 2);
    assert_no_identity_in_keys(&redis, &["st-", "alice", "bob"]);
}

/// Issue 19, defect 14 in the fleet tier: a keyed layer with
/// `max_keys(1)` on one Redis. A token the resource refused (the 401 comes
/// back as it came) is not taken back from Redis when its key returns.
#[tokio::test]
async fn pair_fleet_keyed_a_refused_token_is_not_taken_back_from_redis() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let (endpoint, tier) = (server.endpoint(), tier(&redis));
    let svc = KeyedOAuth2Layer::new(api_of, move |api: &String| {
        let request = TokenRequest::client_credentials().audience(api.clone());
        let builder = TokenCache::builder(endpoint.clone(), request);
        Some(builder.redis(tier.clone()).build())
    })
    .max_keys(1)
    .retry_unauthorized(false)
    .layer(http_client());
    let taken_back = "the refused token was taken back from Redis";
    a_refused_token_is_not_taken_back(&server, &svc, std::future::ready(()), taken_back).await;
}

/// Two processes, each a keyed layer by API (each API's token asked for
/// with its own `audience`): one token request per API for the fleet,
/// each API's requests carry that API's token in every process.
#[tokio::test]
async fn pair_fleet_keyed_one_token_per_key_for_the_whole_fleet() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || keyed_fleet_process(&server, &redis);
    let (one, two) = (process(), process());
    for svc in [&one, &two] {
        for path in ["/orders/1", "/billing/1"] {
            assert_eq!(status(svc, server.get(path)).await, Ok(StatusCode::OK));
        }
    }
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-1", "Bearer at-2"])
    );
    assert_eq!(
        token_params(&server, "audience"),
        some(&["orders", "billing"])
    );
}

/// Defect 1 through keyed layers: a key per user (header `x-user`), each
/// user's cache built from that user's refresh token, two processes on one
/// Redis. A user's requests carry that user's token only.
#[tokio::test]
async fn pair_fleet_keyed_a_key_per_user_never_sends_another_users_token() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.add_refresh_token("rt-alice");
    server.add_refresh_token("rt-bob");
    let user_of = |_: &Uri, headers: &HeaderMap| {
        let user = headers.get("x-user")?.to_str().ok()?;
        Some(user.to_owned())
    };
    let process = || {
        let (endpoint, tier) = (server.endpoint(), tier(&redis));
        KeyedOAuth2Layer::new(user_of, move |user: &String| {
            let builder = TokenCache::from_refresh_token(endpoint.clone(), format!("rt-{user}"));
            Some(builder.redis(tier.clone()).build())
        })
        .layer(http_client())
    };
    let as_user = |user: &str| {
        let mut request = server.get("/me");
        let value = http::HeaderValue::from_str(user).expect("a header value");
        request.headers_mut().insert("x-user", value);
        request
    };
    let (one, two) = (process(), process());
    for svc in [&one, &two] {
        for user in ["alice", "bob"] {
            assert_eq!(status(svc, as_user(user)).await, Ok(StatusCode::OK));
        }
    }
    assert_eq!(
        auths(&server),
        values(&["Bearer at-1", "Bearer at-2", "Bearer at-1", "Bearer at-2"]),
        "a user got another user's token"
    );
    assert_eq!(
        token_params(&server, "refresh_token"),
        some(&["rt-alice", "rt-bob"])
    );
}

/// Processes with the same DPoP key share one bound token; a process with
/// another key never takes a token bound to a key it does not hold.
#[tokio::test]
async fn pair_fleet_dpop_a_bound_token_is_shared_only_by_holders_of_its_key() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.enable_dpop();
    let process = |key: &Dpop| {
        let endpoint = server.endpoint().dpop(key.clone());
        let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
        builder.redis(tier(&redis)).build()
    };
    a_bound_token_goes_only_to_holders_of_its_key(&server, process).await;
}

/// Issue 19, defect 6: a DPoP fetch with a nonce resend takes two
/// exchanges, longer than the default lease (one exchange's timeout, the
/// store's, and 5 s). The lease holder keeps the lease to the end: the
/// other process waits for its token and fetches none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_fleet_dpop_a_fetch_with_a_nonce_resend_keeps_the_lease_to_its_end() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_dpop_nonces(Some("n-token-1"), None);
    // Each exchange takes 5.75 s of its 6 s: the fetch 11.5 s, the
    // default lease 6 s + 1 ms + 5 s.
    let timeout = Duration::from_secs(6);
    server.set_latency(Duration::from_millis(5750));
    let key = a_key();
    let process = || {
        let endpoint = server.endpoint().dpop(key.clone()).timeout(timeout);
        let builder = TokenCache::builder(endpoint, TokenRequest::client_credentials());
        // No lease set on the tier: the default the cache derives.
        let tier = RedisTier::standalone(&redis.url())
            .expect("a Redis URL")
            .namespace("matrix")
            .expect("a namespace")
            .timeout(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(10));
        let cache = builder
            .store_timeout(Duration::from_millis(1))
            .redis(tier.clone())
            .build();
        (cache, tier)
    };
    let (a, _) = process();
    let holder = tokio::spawn(async move { header(&a).await });
    until("the lease holder's token request", || {
        server.token_requests() >= 1
    })
    .await;
    let (b, b_tier) = process();
    let waiter = header(&b).await;
    let holder = holder.await.expect("the holder's task");
    assert_eq!(holder, Ok("DPoP at-1".to_owned()));
    assert_eq!(waiter, Ok("DPoP at-1".to_owned()), "the waiter fetched");
    assert_eq!(b_tier.stats().leases, 0, "{:?}", b_tier.stats());
    // One fetch: the nonce challenge and the token.
    assert_eq!(server.token_requests(), 2);
}

/// Issue 19, defect 7: one process revokes the fleet's token. No process
/// adopts the revoked token again, and the others move to a new token
/// without a failed request.
#[tokio::test]
async fn pair_fleet_revocation_a_revoked_token_is_adopted_by_no_process() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || {
        let builder = TokenCache::builder(revocable(&server), TokenRequest::client_credentials());
        builder.redis(tier(&redis)).build()
    };
    let (a, b) = (process(), process());
    for cache in [&a, &b] {
        assert_eq!(
            status(&layered(cache), server.get("/before")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_eq!(server.token_requests(), 1);
    a.revoke().await.expect("revoked");
    assert!(!server.state.accepts("at-1"));
    let revoked_at = server.resource_count();
    // A process started now does not take the revoked token from Redis.
    let c = process();
    assert_ne!(
        header(&c).await,
        Ok("Bearer at-1".to_owned()),
        "a new process adopted the revoked token"
    );
    for cache in [&c, &a, &b] {
        assert_eq!(
            status(&layered(cache), server.get("/after")).await,
            Ok(StatusCode::OK)
        );
    }
    // Only `b`, which held it, may send the revoked token once more (and
    // resend with the new one).
    let after: Vec<String> = auths(&server).split_off(revoked_at);
    let revoked_sent = after.iter().filter(|a| *a == "Bearer at-1").count();
    assert!(
        revoked_sent <= 1,
        "the revoked token went out again: {after:?}"
    );
    assert_eq!(server.token_requests(), 2, "one new token for the fleet");
}

/// A resource that refuses every token, seen by two processes: the second
/// joins the first's backoff step through Redis and spends no token.
#[tokio::test]
async fn pair_fleet_backoff_a_refused_fleet_spends_the_tokens_of_one_process() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let process = || {
        let cache = server.client_credentials().redis(tier(&redis)).build();
        OAuth2Layer::new(cache)
            .unauthorized_backoff(an_hour())
            .layer(http_client())
    };
    let one = process();
    for i in 0..3 {
        let sent = status(&one, server.get(&format!("/one/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(server.token_requests(), 2);
    // The step is written to Redis in a task of its own.
    until("the fleet's record of the step", || {
        !redis.cli(&["KEYS", "*:refused"]).is_empty()
    })
    .await;
    let two = process();
    for i in 0..3 {
        let sent = status(&two, server.get(&format!("/two/{i}"))).await;
        assert_eq!(sent, Ok(StatusCode::UNAUTHORIZED));
    }
    assert_eq!(server.token_requests(), 2, "the second process fetched");
    // The first 401 gets one new token, whose refusal starts the step.
    let mut expected = values(&["Bearer at-1"]);
    expected.extend(vec!["Bearer at-2".to_owned(); 6]);
    assert_eq!(auths(&server), expected);
}

/// Path-only requests (tonic's) in two processes: the fleet's token goes on
/// both, one token request.
#[tokio::test]
async fn pair_fleet_origin_form_the_fleets_token_goes_on_path_only_requests() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    for _ in 0..2 {
        let cache = server.client_credentials().redis(tier(&redis)).build();
        let svc = over_connection(&server, OAuth2Layer::new(cache)).await;
        let sent = status(&svc, origin_form_get(&server, "/pkg.Svc/Call")).await;
        assert_eq!(sent, Ok(StatusCode::OK));
    }
    assert_eq!(
        server.path_authorizations(),
        [
            crate::support::token_server::bearer("/pkg.Svc/Call", "at-1"),
            crate::support::token_server::bearer("/pkg.Svc/Call", "at-1"),
        ]
    );
    assert_eq!(server.token_requests(), 1);
}

/// Processes with a token file each and one Redis: one token request for
/// all of them, through a restart, and through an emptied Redis.
#[tokio::test]
async fn pair_fleet_file_store_one_token_through_restarts_and_an_emptied_redis() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let dir = temp_dir();
    let process = |file: &str| {
        let store = FileStore::new(token_file(&dir, file));
        let builder = server.client_credentials().store(store);
        builder.redis(tier(&redis)).build()
    };
    assert_eq!(header(&process("a.json")).await, Ok("Bearer at-1".into()));
    assert_eq!(header(&process("b.json")).await, Ok("Bearer at-1".into()));
    // A restart of `a` with Redis emptied: its file has the token.
    redis.cli(&["FLUSHALL"]);
    assert_eq!(header(&process("a.json")).await, Ok("Bearer at-1".into()));
    assert_eq!(server.token_requests(), 1);
}

/// Two reqwest clients, two processes: one token; a token the resource
/// refuses is replaced once for the fleet, and each client's request is
/// resent with the new one.
#[tokio::test]
async fn pair_fleet_reqwest_one_token_and_one_replacement_for_the_fleet() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || {
        let cache = server.client_credentials().redis(tier(&redis)).build();
        reqwest_client(OAuth2Middleware::new(cache))
    };
    let (one, two) = (process(), process());
    for client in [&one, &two] {
        assert_eq!(
            reqwest_get(client, &server.url("/a")).await,
            Ok(StatusCode::OK)
        );
    }
    server.revoke("at-1");
    for client in [&one, &two] {
        assert_eq!(
            reqwest_get(client, &server.url("/b")).await,
            Ok(StatusCode::OK)
        );
    }
    assert_one_refetch_for_both_processes(&server);
}

/// The fleet's one token key (`…:token`), found in Redis.
fn the_token_key(redis: &RedisServer) -> String {
    let keys = redis.cli(&["KEYS", "*:token"]);
    assert_eq!(keys.lines().count(), 1, "one token key: {keys}");
    keys
}

/// Writes a forged `…:refused` record beside the fleet's token: a running
/// backoff step for the token whose SHA-256 is `hash` (hex), an hour long.
fn forge_refusal_record(redis: &RedisServer, hash: &str) {
    let refused = the_token_key(redis).replace(":token", ":refused");
    let value = format!("{hash} 1 60000");
    redis.cli(&["SET", &refused, &value, "PX", "3660000"]);
}

/// A token the resource revoked, two processes holding it, and a 401
/// refetch: with `forged_hash` (given the fleet's token value) written
/// as a running step first, every request still succeeds with one new
/// token for the fleet.
async fn refetch_despite_a_forged_record(encrypted: bool, forged_hash: fn(&str) -> String) {
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let process = || {
        let tier = tier(&redis);
        let tier = if encrypted {
            tier.encryption_key([7; 32])
        } else {
            tier
        };
        let cache = server.client_credentials().redis(tier).build();
        OAuth2Layer::new(cache).layer(http_client())
    };
    let (a, b) = (process(), process());
    for svc in [&a, &b] {
        assert_eq!(status(svc, server.get("/before")).await, Ok(StatusCode::OK));
    }
    let stored = redis.cli(&["GET", &the_token_key(&redis)]);
    forge_refusal_record(&redis, &forged_hash(&stored));
    server.revoke("at-1");
    for svc in [&a, &b] {
        assert_eq!(
            status(svc, server.get("/after")).await,
            Ok(StatusCode::OK),
            "a forged refusal record held a request at 401"
        );
    }
    assert_one_refetch_for_both_processes(&server);
}

/// Issue 19, defect 3: a `…:refused` record naming a token other than the
/// one refused is not joined: the refetch after the 401 gets a new token.
#[tokio::test]
async fn pair_fleet_backoff_a_refusal_record_for_another_token_is_not_joined() {
    if !available() {
        return;
    }
    refetch_despite_a_forged_record(false, |_| "ab".repeat(32)).await;
}

/// Issue 19, defect 3: with encryption at rest, a `…:refused` record is
/// authenticated: one forged by someone who can write Redis (and read the
/// token's hash in front of its value) is not joined.
#[tokio::test]
async fn pair_fleet_backoff_a_forged_refusal_record_is_ignored_when_encrypted() {
    if !available() {
        return;
    }
    refetch_despite_a_forged_record(true, |stored| stored[..64].to_owned()).await;
}

/// Issue 19 ("check and settle"): the fleet's lease holder, the refetch
/// after a 401, a background refresh and the fallback from a refused
/// refresh token all send the same token request, byte for byte.
#[tokio::test]
async fn pair_fleet_grants_every_path_sends_the_same_token_request() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let request = TokenRequest::client_credentials()
        .scope("read write")
        .audience("api");
    let cache = |fleet: bool| {
        let builder = TokenCache::builder(server.endpoint(), request.clone());
        let builder = if fleet {
            builder.redis(tier(&redis))
        } else {
            builder
        };
        builder.build()
    };
    // The lease holder, then its refetch after a 401.
    let holder = layered(&cache(true));
    assert_eq!(status(&holder, server.get("/a")).await, Ok(StatusCode::OK));
    server.revoke("at-1");
    assert_eq!(status(&holder, server.get("/b")).await, Ok(StatusCode::OK));
    // A refresh token the server does not know: the 401's refetch tries
    // it, gets `invalid_grant`, and falls back to the grant.
    server.script([Canned::json(
        200,
        r#"{"access_token":"at-canned","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-unknown"}"#,
    )]);
    server.add_valid_token("at-canned");
    let alone = layered(&cache(false));
    assert_eq!(status(&alone, server.get("/c")).await, Ok(StatusCode::OK));
    server.revoke("at-canned");
    assert_eq!(status(&alone, server.get("/d")).await, Ok(StatusCode::OK));
    // A background refresh of a token that goes stale, on paused time (no
    // Redis in this cache).
    tokio::time::pause();
    server.set_ttl(Some(2));
    let refreshed = cache(false);
    assert!(header(&refreshed).await.is_ok());
    let before = server.token_requests();
    tokio::time::advance(std::time::Duration::from_millis(1600)).await;
    assert!(header(&refreshed).await.is_ok());
    until("the background refresh", || {
        server.token_requests() > before
    })
    .await;
    tokio::time::resume();

    let bodies: Vec<String> = server.received().into_iter().map(|r| r.body).collect();
    let grant = "grant_type=client_credentials&scope=read+write&audience=api";
    assert_eq!(
        bodies,
        [
            grant,
            grant,
            grant,
            "grant_type=refresh_token&refresh_token=rt-unknown",
            grant,
            grant,
            grant
        ]
    );
}
