//! The fleet's shared Redis tier (feature `redis`) against real
//! `redis-server` processes the tests start on free loopback ports, and the
//! scriptable token server of `tests/support`.
//!
//! A fleet member is a thread with its own Tokio runtime and its own
//! `TokenCache` and `RedisTier` (its own Redis connection): for Redis, a
//! faithful model of a separate process. Tokens live 2 s, so a run of a few
//! seconds sees several refreshes.
#![cfg(feature = "redis")]

mod cluster;
mod connection;

mod lease;
mod processes;
use crate::redis_server;
mod refusals;
mod revoke;
mod secure;
use crate::support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis_server::{available, RedisServer};
use support::log::Capture;
use support::token_server::{Canned, State, TestServer};
use tower_oauth2::cache::{Stats, TokenCacheBuilder};
use tower_oauth2::fleet::{FleetStats, RedisTier};
use tower_oauth2::TokenCache;

/// Every token the test server issues lives this long.
const TTL_SECS: u64 = 2;
/// The earliest a 2 s token goes stale: `L − lead × 1.25`, lead = L / 4.
const EARLIEST_STALE: Duration = Duration::from_millis(1375);

/// A tier for tests: Redis calls get 2 s (a loaded CI machine must not
/// turn a slow answer into a fallback the assertions would count).
fn tier(url: &str) -> RedisTier {
    tier_with_lease(url, Duration::from_secs(1))
}

fn tier_with_lease(url: &str, lease: Duration) -> RedisTier {
    RedisTier::standalone(url)
        .expect("a Redis URL")
        .namespace("tests")
        .expect("a namespace")
        .lease(lease)
        .timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(10))
}

/// What a member did.
struct Report {
    ok: u64,
    failed: u64,
    stats: Stats,
    fleet: FleetStats,
}

/// A process of the fleet, modelled: `run` on a cache of its own, with its
/// own Redis connection, on a runtime of its own in a thread of its own.
/// The runtime is dropped when `run` ends, as a killed process's would be.
fn own_process<T, F, Fut>(builder: TokenCacheBuilder, tier: RedisTier, run: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce(TokenCache) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(builder.redis(tier).build()))
    })
}

/// Waits until the token endpoint has had a request (20 s at most).
async fn until_a_token_request(state: &State) {
    let started = Instant::now();
    while state.token_requests.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no token request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fleet member sending a request every 10 ms until `stop`.
fn member(
    builder: TokenCacheBuilder,
    tier: RedisTier,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Report> {
    own_process(builder, tier.clone(), |cache| async move {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match cache.bearer_header().await {
                Ok(_) => ok += 1,
                Err(e) => {
                    eprintln!("request failed: {e}");
                    failed += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Report {
            ok,
            failed,
            stats: cache.stats(),
            fleet: tier.stats(),
        }
    })
}

fn fleet(
    server: &TestServer,
    url: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Report>> {
    (0..n)
        .map(|_| member(server.client_credentials(), tier(url), stop.clone()))
        .collect()
}

fn sum(reports: &[Report], f: impl Fn(&Report) -> u64) -> u64 {
    reports.iter().map(f).sum()
}

async fn run_for(d: Duration, stop: &AtomicBool, members: Vec<JoinHandle<Report>>) -> Vec<Report> {
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || members.into_iter().map(|m| m.join().unwrap()).collect())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_members_send_the_token_requests_of_one() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_ttl(Some(TTL_SECS));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let reports = run_for(
        Duration::from_secs(6),
        &stop,
        fleet(&server, &redis.url(), 8, &stop),
    )
    .await;
    let elapsed = started.elapsed();

    let requests = server.token_requests() as u64;
    // One process sends the first request, then one per refresh: a token
    // is replaced only once it is stale, at the earliest 1.375 s after the
    // previous one was requested.
    let one_process = 1 + (elapsed.as_millis() / EARLIEST_STALE.as_millis()) as u64;
    eprintln!(
        "8 members, {elapsed:?}: {requests} token requests (one process: at most {one_process})"
    );
    assert_eq!(sum(&reports, |r| r.failed), 0);
    assert!(sum(&reports, |r| r.ok) > 8 * 10, "every member got tokens");
    assert!(
        requests >= 3 && requests <= one_process,
        "{requests} > {one_process}"
    );
    assert_eq!(sum(&reports, |r| r.stats.token_fetches), requests);
    assert_eq!(
        sum(&reports, |r| r.fleet.leases),
        requests,
        "every request under the lease"
    );
    assert_eq!(sum(&reports, |r| r.fleet.fallbacks), 0);
    assert_eq!(sum(&reports, |r| r.fleet.published), requests);
    assert!(sum(&reports, |r| r.fleet.shared_hits) >= 7 * (requests - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run_fails_no_request() {
    if !available() {
        return;
    }
    let mut redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_ttl(Some(TTL_SECS));
    let stop = Arc::new(AtomicBool::new(false));
    let members = fleet(&server, &redis.url(), 8, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_outage = server.token_requests();
    tokio::task::block_in_place(|| redis.stop());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_outage = server.token_requests() - before_outage;
    tokio::task::block_in_place(|| redis.restart());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published_at_restart = redis.cli(&["DBSIZE"]);
    let reports = run_for(Duration::from_secs(3), &stop, members).await;

    eprintln!(
        "{} token requests; {during_outage} of them during the 3 s outage; keys 1 s after the restart: {published_at_restart}",
        server.token_requests()
    );
    assert_eq!(sum(&reports, |r| r.failed), 0, "no request fails for Redis");
    assert!(
        sum(&reports, |r| r.fleet.fallbacks) >= 8,
        "each member fetched alone"
    );
    assert!(during_outage >= 8, "each member fetched its own token");
    // Back: the fleet shares again, and its token is in the new Redis.
    assert_ne!(redis.cli(&["DBSIZE"]), "0");
    assert!(sum(&reports, |r| r.fleet.shared_hits) > 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_that_dies_mid_fetch_is_taken_over_after_its_lease() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_ttl(Some(TTL_SECS));
    server.set_latency(Duration::from_secs(30));
    // A lease long enough that the dead holder's lock is surely still
    // there when the taker starts, however loaded the machine.
    let lease = Duration::from_secs(4);
    // The holder: its runtime is dropped while its token request hangs
    // (once the token endpoint has it, so the holder surely took the lease).
    let holder = {
        let state = server.state.clone();
        let tier = tier_with_lease(&redis.url(), lease);
        own_process(server.client_credentials(), tier, |cache| async move {
            tokio::select! {
                _ = cache.bearer_header() => {}
                _ = until_a_token_request(&state) => {}
            }
            // Then the runtime is dropped, as if the process were killed:
            // the fetch is gone, the lock stays.
        })
    };
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
    assert_eq!(server.token_requests(), 1);
    assert_ne!(
        redis.cli(&["KEYS", "*:lock"]),
        "",
        "the dead holder's lock is still there"
    );
    server.set_latency(Duration::ZERO);

    let taker_tier = tier_with_lease(&redis.url(), lease);
    let cache = server
        .client_credentials()
        .redis(taker_tier.clone())
        .build();
    let started = Instant::now();
    let header = cache
        .bearer_header()
        .await
        .expect("a token after the lease");
    eprintln!("taken over after {:?} (lease {lease:?})", started.elapsed());
    // The dead holder's request never got its token: the server numbers
    // tokens as it answers, and that answer never came.
    assert_eq!(header.to_str().unwrap(), "Bearer at-1");
    assert_eq!(server.token_requests(), 2);
    let fleet = taker_tier.stats();
    assert!(fleet.lease_waits >= 1, "{fleet:?}");
    assert_eq!(
        (fleet.leases, fleet.fallbacks, fleet.published),
        (1, 0, 1),
        "{fleet:?}"
    );
}

fn token_key(builder: &TokenCacheBuilder) -> String {
    format!("tower-oauth2:tests:{{{}}}:token", builder.fingerprint())
}

async fn header_of(cache: &tower_oauth2::TokenCache) -> (String, u64) {
    let (h, g) = cache
        .bearer_header_with_generation()
        .await
        .expect("a token");
    (h.to_str().unwrap().to_owned(), g)
}

/// Lines of the outage WARN for the Redis on `port`.
fn outage_warnings(logs: &Capture, port: u16) -> usize {
    let redis = format!("redis=127.0.0.1:{port} ");
    logs.text()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("Redis does not answer"))
        .filter(|l| l.contains(&redis))
        .count()
}

/// Two processes of a fleet, modelled: two caches, each with a tier of its
/// own from `make`. The second takes the first's token from Redis: one
/// token request, no fallback. The caches, still connected.
async fn two_share_one_token(
    server: &TestServer,
    make: impl Fn() -> RedisTier,
) -> (TokenCache, TokenCache) {
    let (ta, tb) = (make(), make());
    let a = server.client_credentials().redis(ta.clone()).build();
    let b = server.client_credentials().redis(tb.clone()).build();
    assert_eq!(header_of(&a).await.0, "Bearer at-1");
    assert_eq!(header_of(&b).await.0, "Bearer at-1", "b takes a's token");
    assert_eq!(server.token_requests(), 1);
    let (sa, sb) = (ta.stats(), tb.stats());
    assert_eq!((sa.leases, sa.published, sa.fallbacks), (1, 1, 0), "{sa:?}");
    assert_eq!(
        (sb.shared_hits, sb.leases, sb.fallbacks),
        (1, 0, 0),
        "{sb:?}"
    );
    (a, b)
}

/// A cache on `tier` whose Redis calls fail: it fetches its own token
/// (`Bearer at-{n}`), one fallback, nothing shared.
async fn fetches_alone(server: &TestServer, tier: &RedisTier, n: usize) {
    let cache = server.client_credentials().redis(tier.clone()).build();
    assert_eq!(header_of(&cache).await.0, format!("Bearer at-{n}"));
    let stats = tier.stats();
    assert_eq!(
        (stats.fallbacks, stats.shared_hits, stats.published),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_401_removes_the_shared_token_only_if_redis_still_holds_it() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let (ta, tb) = (tier(&redis.url()), tier(&redis.url()));
    let a = server.client_credentials().redis(ta.clone()).build();
    let b = server.client_credentials().redis(tb.clone()).build();
    let (h, ga) = header_of(&a).await;
    assert_eq!(h, "Bearer at-1");
    let (h, gb) = header_of(&b).await;
    assert_eq!(h, "Bearer at-1", "b takes a's token from Redis");
    assert_eq!(server.token_requests(), 1);

    // a sees a 401 for at-1: Redis still holds at-1, so it goes, and a fetches.
    a.invalidate(ga);
    assert_eq!(header_of(&a).await.0, "Bearer at-2");
    assert_eq!(ta.stats().invalidations, 1);
    // b sees a 401 for at-1 too: Redis holds at-2 now, which b uses as it is.
    b.invalidate(gb);
    assert_eq!(header_of(&b).await.0, "Bearer at-2");
    assert_eq!(tb.stats().invalidations, 0);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(a.stats().invalidations + b.stats().invalidations, 2);
}

#[tokio::test]
async fn encrypted_values_hide_the_token_and_a_wrong_key_is_ignored_and_overwritten() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let key = token_key(&server.client_credentials());
    let sealed = tier(&redis.url()).encryption_key([7; 32]);
    let a = server.client_credentials().redis(sealed.clone()).build();
    assert_eq!(header_of(&a).await.0, "Bearer at-1");
    let raw = redis.cli(&["GET", &key]);
    assert!(!raw.is_empty() && !raw.contains("at-1"), "{raw}");
    assert_eq!(redis.cli(&["KEYS", "*"]), key, "no secret in the key name");

    // Another key: the value does not decrypt, is ignored and overwritten.
    let other = tier(&redis.url()).encryption_key([8; 32]);
    let b = server.client_credentials().redis(other.clone()).build();
    assert_eq!(header_of(&b).await.0, "Bearer at-2");
    assert_eq!((other.stats().bad_values, other.stats().published), (1, 1));
    // No key at all: an encrypted value is not used either.
    let plain = tier(&redis.url());
    let c = server.client_credentials().redis(plain.clone()).build();
    assert_eq!(header_of(&c).await.0, "Bearer at-3");
    assert_eq!(plain.stats().bad_values, 1);
    assert!(
        redis.cli(&["GET", &key]).contains("at-3"),
        "unencrypted now"
    );
    assert_eq!(server.token_requests(), 3);
}

#[tokio::test]
async fn bad_data_in_redis_is_ignored_and_overwritten() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let key = token_key(&server.client_credentials());
    let hash = "ab".repeat(32);
    let other_config = format!(
        "{hash}\np{{\"access_token\":\"x\",\"token_type\":\"Bearer\",\"issued_at_ms\":1,\"config_fingerprint\":\"{}\"}}",
        "00".repeat(32)
    );
    let mut expected = 0;
    for bad in [
        "garbage",
        "",
        &format!("{hash}\nq{{}}"),
        &format!("{hash}\np{{}}"),
        &other_config,
    ] {
        redis.cli(&["SET", &key, bad]);
        let t = tier(&redis.url());
        let cache = server.client_credentials().redis(t.clone()).build();
        expected += 1;
        assert_eq!(
            header_of(&cache).await.0,
            format!("Bearer at-{expected}"),
            "{bad:?}"
        );
        assert_eq!(
            (t.stats().bad_values, t.stats().published),
            (1, 1),
            "{bad:?}"
        );
        assert!(redis
            .cli(&["GET", &key])
            .contains(&format!("at-{expected}")));
    }
    // Another type under the key reads as absent, and is overwritten too.
    redis.cli(&["DEL", &key]);
    redis.cli(&["HSET", &key, "f", "v"]);
    let t = tier(&redis.url());
    let cache = server.client_credentials().redis(t.clone()).build();
    assert_eq!(header_of(&cache).await.0, "Bearer at-6");
    assert_eq!(redis.cli(&["TYPE", &key]), "string");
    assert_eq!(server.token_requests(), 6);
}

#[tokio::test]
async fn with_no_redis_at_all_each_process_fetches_its_own_token() {
    // Needs no redis-server: nothing listens on this port.
    let port = redis_server::free_port();
    let server = TestServer::start().await;
    let t = tier(&format!("redis://127.0.0.1:{port}"));
    let cache = server.client_credentials().redis(t.clone()).build();
    assert_eq!(header_of(&cache).await.0, "Bearer at-1");
    assert_eq!(t.stats().fallbacks, 1);
    assert_eq!(cache.stats().token_fetches, 1);
}

#[test]
fn namespaces_and_urls_are_checked_without_quoting_secrets() {
    let e = RedisTier::standalone("http://user:hunter2@127.0.0.1").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    for bad in ["", "a{b}", "has space", &"x".repeat(65)] {
        assert!(
            RedisTier::standalone("redis://127.0.0.1")
                .unwrap()
                .namespace(bad)
                .is_err(),
            "{bad:?}"
        );
    }
    let t = RedisTier::standalone("redis://:hunter2@127.0.0.1")
        .unwrap()
        .encryption_key([9; 32]);
    let shown = format!("{t:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("encrypted: true"),
        "{shown}"
    );
}

/// A holder that loses its lease before its token comes (its renewals did
/// not reach Redis, a failover dropped the lock: here the test deletes it)
/// does not write that token over the one the process that took the lease
/// over published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_comes_after_its_lease_was_lost_is_not_published() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let lock = token_key(&server.client_credentials()).replace(":token", ":lock");
    // The first token request is answered after 6 s.
    server.set_latency(Duration::from_secs(6));
    let late_tier = tier_with_lease(&redis.url(), Duration::from_secs(1));
    let late = own_process(
        server.client_credentials(),
        late_tier.clone(),
        |cache| async move {
            let header = cache.bearer_header().await;
            header.map(|h| h.to_str().unwrap().to_owned())
        },
    );
    // Once the slow request is at the server, the holder's lock goes.
    until_a_token_request(&server.state).await;
    assert_eq!(
        tokio::task::block_in_place(|| redis.cli(&["DEL", &lock])),
        "1"
    );
    server.set_latency(Duration::ZERO);
    // Another process takes the lease at once, and publishes.
    let taker = server
        .client_credentials()
        .redis(tier_with_lease(&redis.url(), Duration::from_secs(1)))
        .build();
    let (taken, _) = header_of(&taker).await;
    let late_token = tokio::task::spawn_blocking(move || late.join().unwrap())
        .await
        .unwrap()
        .expect("the late holder still gets its own token");
    assert_ne!(late_token, taken, "two token requests, two tokens");
    assert_eq!(server.token_requests(), 2);
    let late_stats = late_tier.stats();
    assert_eq!(
        (late_stats.published, late_stats.late_publishes),
        (0, 1),
        "{late_stats:?}"
    );
    // Redis still holds the taker's token: a newcomer takes it, no request.
    let newcomer = server
        .client_credentials()
        .redis(tier(&redis.url()))
        .build();
    assert_eq!(header_of(&newcomer).await.0, taken);
    assert_eq!(server.token_requests(), 2);
}

/// `expires_in` at its extremes gives a token key a TTL Redis takes and
/// that ends: `1e30` (never expires, as the cache reads it) is kept a day
/// at most; none at all, the cache's assumed lifetime (an hour) and a
/// second; `-5` (expired on arrival) is not shared at all.
#[tokio::test]
async fn a_huge_missing_or_negative_expires_in_gives_a_bounded_ttl_in_redis() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let key = token_key(&server.client_credentials());
    let answer = |token: &str, expires_in: &str| {
        Canned::json(
            200,
            &format!(r#"{{"access_token":"{token}","token_type":"Bearer"{expires_in}}}"#),
        )
    };
    let pttl = || -> i64 { redis.cli(&["PTTL", &key]).parse().expect("a PTTL") };
    let day = 86_400_000;

    server.script([answer("huge", r#","expires_in":1e30"#)]);
    let t = tier(&redis.url());
    let cache = server.client_credentials().redis(t.clone()).build();
    assert_eq!(header_of(&cache).await.0, "Bearer huge");
    assert_eq!((t.stats().published, t.stats().fallbacks), (1, 0));
    let huge = pttl();
    assert!(day - 60_000 < huge && huge <= day, "{huge}");

    redis.cli(&["DEL", &key]);
    server.script([answer("unknown", "")]);
    let t = tier(&redis.url());
    let cache = server.client_credentials().redis(t.clone()).build();
    assert_eq!(header_of(&cache).await.0, "Bearer unknown");
    assert_eq!(t.stats().published, 1);
    let unknown = pttl();
    assert!(3_540_000 < unknown && unknown <= 3_601_000, "{unknown}");

    redis.cli(&["DEL", &key]);
    server.script([answer("expired", r#","expires_in":-5"#)]);
    let t = tier(&redis.url());
    let cache = server.client_credentials().redis(t.clone()).build();
    assert!(cache.bearer_header().await.is_err());
    assert_eq!(t.stats().published, 0);
    assert_eq!(pttl(), -2, "not shared");
    assert_eq!(server.token_requests(), 3);
}
