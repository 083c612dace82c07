//! The lease lock against what a bad day puts in Redis: a lock key this
//! crate never writes, a Redis that answers the lease call too late, a
//! fetch that takes longer than the lease. In each, one process fetches
//! for the fleet or, failing that, each process fetches at once: nobody
//! waits out a lease for nobody's fetch.

use std::time::{Duration, Instant};

use tower_oauth2::cache::TokenCacheBuilder;
use tower_oauth2::fleet::RedisTier;

use super::{header_of, tier_with_lease, token_key, until_a_token_request};
use crate::redis_server::{available, RedisServer};
use crate::support::log;
use crate::support::token_server::TestServer;

fn lock_key(builder: &TokenCacheBuilder) -> String {
    token_key(builder).replace(":token", ":lock")
}

/// Polls `done` every 10 ms until it holds, failing after `within`.
async fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A key of another type at the lock (read as "no lock" by `MGET`, and
/// `SET NX` fails), a string lock with no TTL, or one with an hour to live
/// (no holder with this lease writes either): the process fetches its own
/// token at once, instead of waiting out the lease (30 s here), or the
/// hour, on every fetch. The cache's wait timeout (3 s) would fail any
/// wait for the lease. A lock with no TTL gets the lease as its TTL, so it
/// ends; the others are left as they are, and logged once.
#[tokio::test]
async fn a_lock_this_crate_never_writes_is_redis_trouble_and_nobody_waits_on_it() {
    if !available() {
        return;
    }
    let logs = log::capture().everywhere();
    let lease = Duration::from_secs(30);
    let odd_locks: [&[&str]; 4] = [
        &["HSET", "f", "v"],
        &["RPUSH", "x"],
        &["SET", "stuck"],
        &["SET", "an-hour", "PX", "3600000"],
    ];
    for make in odd_locks {
        let redis = RedisServer::start();
        let server = TestServer::start().await;
        let lock = lock_key(&server.client_credentials());
        let mut command = vec![make[0], &lock];
        command.extend_from_slice(&make[1..]);
        redis.cli(&command);
        let t = tier_with_lease(&redis.url(), lease);
        let cache = server
            .client_credentials()
            .wait_timeout(Duration::from_secs(3))
            .redis(t.clone())
            .build();
        let header = cache.bearer_header_with_generation().await;
        let (header, generation) = header.unwrap_or_else(|e| panic!("{make:?}: {e}"));
        assert_eq!(header.to_str().unwrap(), "Bearer at-1", "{make:?}");
        assert_eq!(server.token_requests(), 1, "{make:?}");
        let stats = t.stats();
        assert_eq!(
            (stats.fallbacks, stats.leases, stats.published),
            (1, 0, 0),
            "{make:?}: {stats:?}"
        );
        if make[1] == "stuck" {
            // Repaired: it ends within the lease now.
            let pttl: i64 = redis.cli(&["PTTL", &lock]).parse().unwrap();
            assert!((1..=30_000).contains(&pttl), "{pttl}");
            assert_eq!(redis.cli(&["GET", &lock]), "stuck");
            continue;
        }
        // Left as it is; the next fetch does not wait either, and the
        // WARN is not repeated.
        if make[0] == "SET" {
            let pttl: i64 = redis.cli(&["PTTL", &lock]).parse().unwrap();
            assert!(pttl > 30_000, "{pttl}");
        } else {
            assert_ne!(redis.cli(&["TYPE", &lock]), "string");
        }
        cache.invalidate(generation);
        assert_eq!(header_of(&cache).await.0, "Bearer at-2", "{make:?}");
        assert_eq!(t.stats().fallbacks, 2);
        let warned = logs
            .text()
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains(&lock))
            .count();
        assert_eq!(warned, 1, "{make:?}");
    }
}

/// The lease call gets no answer within the deadline (Redis pauses
/// writes): the process fetches alone, as on any Redis trouble. When Redis
/// answers again the `SET` lands with this process's owner id; the lock
/// must not then hold the fleet for a whole lease (30 s here) for nobody's
/// fetch: it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_call_answered_too_late_leaves_no_lock_behind() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    let lock = lock_key(&server.client_credentials());
    // Another process holds the lock: this one looks, then waits, reading
    // the lock (reads are not paused).
    redis.cli(&["SET", &lock, "another-process", "PX", "20000"]);
    let t = RedisTier::standalone(&redis.url())
        .unwrap()
        .namespace("tests")
        .unwrap()
        .lease(Duration::from_secs(30))
        .timeout(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(10));
    let cache = server.client_credentials().redis(t.clone()).build();
    let fetch = tokio::spawn(async move { header_of(&cache).await.0 });
    until(Duration::from_secs(20), "waiting for the lock", || {
        t.stats().lease_waits >= 1
    })
    .await;
    // The lock ends while writes are paused: the waiting process's next
    // lease call is not answered before the pause ends, 6 s later.
    tokio::task::block_in_place(|| {
        redis.cli(&["PEXPIRE", &lock, "2500"]);
        redis.cli(&["CLIENT", "PAUSE", "6000", "WRITE"]);
        let pttl: i64 = redis.cli(&["PTTL", &lock]).parse().unwrap();
        assert!(pttl > 0, "the pause began after the lock ended ({pttl})");
    });
    assert_eq!(fetch.await.unwrap(), "Bearer at-1");
    assert_eq!(server.token_requests(), 1);
    let stats = t.stats();
    assert_eq!(
        (stats.fallbacks, stats.leases, stats.published),
        (1, 0, 0),
        "{stats:?}"
    );
    // A write waits for the pause to end (and the late `SET` with it).
    tokio::task::block_in_place(|| redis.cli(&["SET", "after-the-pause", "1"]));
    // The late `SET` landed, and is released.
    until(Duration::from_secs(15), "the lock released", || {
        redis.cli(&["EXISTS", &lock]) == "0"
    })
    .await;
    // A newcomer takes the lease at once, and fetches for the fleet.
    let newcomer_tier = tier_with_lease(&redis.url(), Duration::from_secs(30));
    let newcomer = server
        .client_credentials()
        .wait_timeout(Duration::from_secs(3))
        .redis(newcomer_tier.clone())
        .build();
    assert_eq!(header_of(&newcomer).await.0, "Bearer at-2");
    let stats = newcomer_tier.stats();
    assert_eq!((stats.leases, stats.fallbacks), (1, 0), "{stats:?}");
}

/// A token request that takes longer than the lease (3 s against 1 s):
/// the holder renews its lease while it fetches, so the second
/// process waits for its token instead of taking the lease over and
/// fetching a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_longer_than_the_lease_is_still_the_fleets_only_fetch() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let server = TestServer::start().await;
    server.set_latency(Duration::from_secs(3));
    let lease = Duration::from_secs(1);
    let (ta, tb) = (
        tier_with_lease(&redis.url(), lease),
        tier_with_lease(&redis.url(), lease),
    );
    let a = server.client_credentials().redis(ta.clone()).build();
    let b = server.client_credentials().redis(tb.clone()).build();
    let first = tokio::spawn(async move { header_of(&a).await.0 });
    // a holds the lease: its token request is at the server.
    until_a_token_request(&server.state).await;
    let second = header_of(&b).await.0;
    assert_eq!(first.await.unwrap(), "Bearer at-1");
    assert_eq!(second, "Bearer at-1", "b waits for a's token");
    assert_eq!(server.token_requests(), 1);
    let (sa, sb) = (ta.stats(), tb.stats());
    assert_eq!(
        (sa.leases, sa.published, sa.late_publishes),
        (1, 1, 0),
        "{sa:?}"
    );
    assert_eq!(
        (sb.leases, sb.shared_hits, sb.fallbacks),
        (0, 1, 0),
        "{sb:?}"
    );
}
