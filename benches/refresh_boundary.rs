//! Refresh boundary: request latency across token refreshes, background
//! refresh (the default policy) against lazy refresh, with a token endpoint
//! that takes 50 ms and tokens that live 2 s.
//!
//! Load: 8 tasks, each sending one request through `OAuth2Layer` (over a
//! no-op inner service) every millisecond (`tokio::time::interval`, missed
//! ticks sent at once), for 10 s per mode: about five refreshes. Two
//! latencies are recorded per request:
//!
//! - *service time*: from the call to the answer;
//! - *response time*: from the tick the request was due at to the answer,
//!   so requests queued behind a waiting one count their wait too (no
//!   coordinated omission).
//!
//! "Lazy" is emulated with `RefreshPolicy::default().max_fraction(0.0)
//! .jitter(0.0)`: the refresh lead is then 0, so the token never goes stale
//! before it counts as expired (at 95 % of its lifetime), and the first
//! request after that waits for the fetch.
//!
//! `cargo bench -p tower-oauth2-benches --bench refresh_boundary`; under `cargo test --benches` it
//! runs a short smoke round.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Body, LocalTokenServer, Noop};
use http::Request;
use tokio::time::MissedTickBehavior;
use tower::{Layer, ServiceExt};
use tower_oauth2::cache::RefreshPolicy;

const LATENCY: Duration = Duration::from_millis(50);
const TASKS: usize = 8;

struct Run {
    service: Vec<Duration>,
    response: Vec<Duration>,
    fetches: usize,
    waits: u64,
}

async fn run(policy: RefreshPolicy, ttl_secs: u64, duration: Duration) -> Run {
    let server = LocalTokenServer::new(common::OPAQUE_TOKEN, ttl_secs, LATENCY);
    let cache = server.cache_builder().refresh_policy(policy).build();
    // The first token is fetched before the clock starts: only refreshes
    // are measured.
    cache.bearer_header().await.expect("first token");
    let svc = common::layer(cache.clone()).layer(Noop::default());
    let samples = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let svc = svc.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut service = Vec::with_capacity(20_000);
                let mut response = Vec::with_capacity(20_000);
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
                loop {
                    let due = ticks.tick().await.into_std();
                    if due >= end {
                        break;
                    }
                    let sent = Instant::now();
                    svc.clone()
                        .oneshot(Request::new(Body::default()))
                        .await
                        .expect("request");
                    let done = Instant::now();
                    service.push(done - sent);
                    response.push(done.saturating_duration_since(due));
                }
                let mut s = samples.lock().unwrap();
                s.0.extend(service);
                s.1.extend(response);
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let (mut service, mut response) = std::mem::take(&mut *samples.lock().unwrap());
    service.sort();
    response.sort();
    Run {
        service,
        response,
        fetches: server.token_requests(),
        // The first token, fetched above, was one wait.
        waits: cache.stats().waits.saturating_sub(1),
    }
}

/// Percentile (nearest rank) of sorted `xs`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "Lazy" refresh: no lead, no jitter, so a token never goes stale before it
/// counts as expired and requests wait for the fetch at expiry.
pub fn lazy_policy() -> RefreshPolicy {
    RefreshPolicy::default().max_fraction(0.0).jitter(0.0)
}

fn line(mode: &str, kind: &str, xs: &[Duration]) {
    let p = |q| percentile(xs, q);
    println!(
        "{mode:<11} {kind:<14} {:>9} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?}",
        xs.len(),
        p(50.0),
        p(99.0),
        p(99.9),
        xs.last().copied().unwrap_or_default(),
    );
}

fn main() {
    let bench = common::is_bench_run();
    let (ttl, duration) = if bench {
        (2, Duration::from_secs(10))
    } else {
        (1, Duration::from_millis(1_500))
    };
    let rt = common::runtime(2);
    println!(
        "refresh boundary: {TASKS} tasks x 1 request/ms for {duration:?}, tokens live {ttl} s, \
         token endpoint latency {LATENCY:?}, 2 tokio workers"
    );
    println!(
        "{:<11} {:<14} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "mode", "latency", "requests", "p50", "p99", "p99.9", "max"
    );
    for (mode, policy) in [
        ("background", RefreshPolicy::default()),
        ("lazy", lazy_policy()),
    ] {
        let r = rt.block_on(run(policy, ttl, duration));
        line(mode, "service time", &r.service);
        line(mode, "response time", &r.response);
        println!(
            "{mode:<11} token requests: {} (first token included), requests that waited for a refresh: {}",
            r.fetches, r.waits
        );
    }
}
