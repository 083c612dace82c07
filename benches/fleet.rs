//! The fleet (feature `redis`): how many token requests a fleet of 1, 2, 4,
//! 8 and 16 members sends per token lifetime, each member with its own
//! cache, with and without a shared Redis; and what a request pays when its
//! cache must consult Redis, next to a refresh without Redis.
//!
//! A member is a thread with its own Tokio runtime, `TokenCache` and
//! `RedisTier` (its own Redis connection), asking for a token every 10 ms:
//! for Redis and the token endpoint, a faithful model of a process. The
//! token endpoint is `tests/support`'s server over loopback HTTP (2 s
//! tokens); Redis a `redis-server` this program starts on a free loopback
//! port (no persistence).
//!
//! A second table: a resource that refuses every token (401 `Bearer
//! error="invalid_token"`), members sending through the layer every 20 ms
//! with the default 401 backoff (1 s doubling, × U[0.5, 1)): the token
//! requests of a fleet of 1, 2, 4 and 8 in a fixed run, without Redis, with
//! Redis, and with Redis and members joining one after another, as in a
//! rolling deploy (ARCHITECTURE.md, invariants 6 and 12).
//!
//! `cargo bench -p tower-oauth2-benches --bench fleet --features redis` (a custom harness: the
//! numbers wanted are counts and percentiles). Under `cargo test --benches
//! --all-features` it runs one small round; without `redis-server` on the
//! PATH it prints `SKIPPED (redis)` and ends (in CI, with `CI` set, that
//! is a failure, as for tests/fleet).

#[allow(dead_code, reason = "this bench uses the runtime and the mode only")]
mod common;
#[path = "../src/test_support/redis_server.rs"]
#[allow(dead_code, reason = "no cluster here")]
mod redis_server;
// The tests' token server and what it needs (it names them as `super::…`).
#[path = "../tests/support/client.rs"]
#[allow(
    dead_code,
    reason = "the tests' client; the token server needs a few parts"
)]
mod client;
#[path = "../tests/support/dpop.rs"]
#[allow(
    dead_code,
    reason = "the token server checks proofs; no bench sends any"
)]
mod dpop;
#[path = "../tests/support/serve.rs"]
#[allow(dead_code, reason = "the token server's serve loop")]
mod serve;
#[path = "../tests/support/token_server.rs"]
#[allow(
    dead_code,
    reason = "the token server; this bench uses a few of its knobs"
)]
mod token_server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::{get, http_client};
use http::StatusCode;
use redis_server::RedisServer;
use token_server::TestServer;
use tower::{Layer, ServiceExt};
use tower_oauth2::cache::TokenCacheBuilder;
use tower_oauth2::fleet::RedisTier;
use tower_oauth2::{OAuth2Layer, TokenCache};

fn tier(redis: &RedisServer) -> RedisTier {
    RedisTier::standalone(&redis.url())
        .expect("a Redis URL")
        .namespace("bench")
        .expect("a namespace")
}

/// A member asking for a token every 10 ms until `stop`.
fn member(builder: TokenCacheBuilder, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let cache = builder.build();
        let mut failed = 0;
        rt.block_on(async {
            while !stop.load(Ordering::Relaxed) {
                failed += u64::from(cache.bearer_header().await.is_err());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        failed
    })
}

/// A member sending a GET of `url` through the layer every 20 ms until
/// `stop`, to a resource that refuses every token: its requests that got
/// no 401 (none should).
fn refused_member(
    builder: TokenCacheBuilder,
    url: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let svc = OAuth2Layer::new(builder.build()).layer(http_client());
            let mut not_refused = 0;
            while !stop.load(Ordering::Relaxed) {
                let answer = svc.clone().oneshot(get(&url)).await;
                let refused = answer.is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED);
                not_refused += u64::from(!refused);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            not_refused
        })
    })
}

/// The token requests of a fleet of `n` whose every token is refused,
/// running `run`; a member joins every `join_every` (zero: all at once).
async fn refused_fleet(
    n: usize,
    redis: Option<&RedisServer>,
    run: Duration,
    join_every: Duration,
) -> usize {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    server.set_challenges(&[r#"Bearer error="invalid_token""#]);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && !join_every.is_zero() {
            tokio::time::sleep(join_every).await;
        }
        let mut b = server.client_credentials();
        if let Some(r) = redis {
            b = b.redis(tier(r));
        }
        members.push(refused_member(b, server.url("/r"), stop.clone()));
    }
    tokio::time::sleep(run.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let not_refused: u64 = tokio::task::spawn_blocking(move || {
        members.into_iter().map(|m| m.join().expect("member")).sum()
    })
    .await
    .expect("members");
    assert_eq!(not_refused, 0, "every request answered with the 401");
    if let Some(r) = redis {
        r.cli(&["FLUSHALL"]);
    }
    server.token_requests()
}

/// Token requests per token lifetime of a fleet of `n`, running `run`.
async fn fleet(n: usize, redis: Option<&RedisServer>, ttl: u64, run: Duration) -> (usize, f64) {
    let server = TestServer::start().await;
    server.set_ttl(Some(ttl));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let members: Vec<_> = (0..n)
        .map(|_| {
            let mut b = server.client_credentials();
            if let Some(r) = redis {
                b = b.redis(tier(r));
            }
            member(b, stop.clone())
        })
        .collect();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let failed: u64 = tokio::task::spawn_blocking(move || {
        members.into_iter().map(|m| m.join().expect("member")).sum()
    })
    .await
    .expect("members");
    let lifetimes = started.elapsed().as_secs_f64() / ttl as f64;
    assert_eq!(failed, 0, "no request may fail");
    if let Some(r) = redis {
        r.cli(&["FLUSHALL"]);
    }
    let requests = server.token_requests();
    (requests, requests as f64 / lifetimes)
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    (at(50), at(99))
}

/// The wait of a request whose cache's token was refused (invalidated),
/// `n` times: `before` runs first each time, untimed.
async fn waits(cache: &TokenCache, n: usize, before: impl AsyncFn()) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        before().await;
        let (_, g) = cache.bearer_header_with_generation().await.expect("token");
        cache.invalidate(g);
        let t = Instant::now();
        cache.bearer_header().await.expect("token");
        samples.push(t.elapsed());
    }
    percentiles(samples)
}

/// The three ways a cache gets a new token, each timed `n` times.
async fn latencies(redis: &RedisServer, n: usize) -> [(&'static str, (Duration, Duration)); 3] {
    let server = TestServer::start().await;
    let alone = server.client_credentials().build();
    let refresh = waits(&alone, n, async || {}).await;
    // Another member has published a newer token: taken from Redis.
    let other = server.client_credentials().redis(tier(redis)).build();
    let member = server.client_credentials().redis(tier(redis)).build();
    let hit = waits(&member, n, async || {
        let (_, g) = other.bearer_header_with_generation().await.expect("token");
        other.invalidate(g);
        other.bearer_header().await.expect("token");
    })
    .await;
    // Redis holds the refused token: delete it, lease, fetch, publish.
    let lead = waits(&member, n, async || {}).await;
    [
        ("no Redis: token request (loopback HTTP)", refresh),
        ("Redis: a newer token is there (read)", hit),
        ("Redis: lease, token request, publish", lead),
    ]
}

fn main() {
    let bench = common::is_bench_run();
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start();
    let (sizes, ttl, lifetimes, n): (&[usize], u64, u32, usize) = if bench {
        (&[1, 2, 4, 8, 16], 2, 4, 1000)
    } else {
        (&[2], 1, 1, 20)
    };
    let run = Duration::from_secs(ttl) * lifetimes;
    let rt = common::runtime(2);
    println!(
        "fleet: members are threads (own runtime, cache, Redis connection), a token every 10 ms \
         each; {ttl} s tokens, {run:?} a run"
    );
    println!(
        "{:>7} | {:>22} | {:>22}",
        "members", "no Redis: req (/life)", "Redis: req (/life)"
    );
    rt.block_on(async {
        for &size in sizes {
            let (alone, alone_rate) = fleet(size, None, ttl, run).await;
            let (shared, shared_rate) = fleet(size, Some(&redis), ttl, run).await;
            println!(
                "{size:>7} | {alone:>12} ({alone_rate:>5.2}) | {shared:>12} ({shared_rate:>5.2})"
            );
        }
        let (refused_sizes, refused_run, join_every) = if bench {
            (
                &[1, 2, 4, 8][..],
                Duration::from_secs(30),
                Duration::from_secs(3),
            )
        } else {
            (&[2][..], Duration::from_secs(2), Duration::from_secs(1))
        };
        let t = refused_run.as_secs_f64();
        println!(
            "\nevery token refused (401), a request every 20 ms each, default 401 backoff, \
             {refused_run:?}: token requests (one process: at most 2 + log2(2t + 1) = {:.1})",
            2.0 + (2.0 * t + 1.0).log2()
        );
        println!(
            "{:>7} | {:>8} | {:>8} | Redis, one joining every {join_every:?}",
            "members", "no Redis", "Redis"
        );
        for &size in refused_sizes {
            let zero = Duration::ZERO;
            let alone = refused_fleet(size, None, refused_run, zero).await;
            let shared = refused_fleet(size, Some(&redis), refused_run, zero).await;
            let joining = refused_fleet(size, Some(&redis), refused_run, join_every).await;
            println!("{size:>7} | {alone:>8} | {shared:>8} | {joining:>8}");
        }
        println!("\nwait of a request whose token was refused, {n} times each (p50, p99):");
        for (what, (p50, p99)) in latencies(&redis, n).await {
            println!("{what:<42} p50 {p50:>9.1?}  p99 {p99:>9.1?}");
        }
    });
}
