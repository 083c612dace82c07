//! Stampede: 10,000 concurrent requests on a cold cache, and again when the
//! cached token has expired, through `OAuth2Layer` over a no-op inner
//! service; the token endpoint (in-process, no network) takes 50 ms. Prints
//! the wall time from the first request sent to the last answer, and the
//! number of token requests the endpoint saw (must be 1 each time).
//!
//! `cargo bench -p tower-oauth2-benches --bench stampede` (a custom harness, not criterion: the
//! numbers wanted are a wall time and a count, per round). Under
//! `cargo test --benches` it runs one small round as a smoke test.

mod common;

use std::time::{Duration, Instant};

use common::{Body, LocalTokenServer, Noop};
use http::Request;
use tower::{Layer, ServiceExt};
use tower_oauth2::OAuth2Layer;

const LATENCY: Duration = Duration::from_millis(50);

/// Sends `n` requests at once through `layer` and waits for all of them.
async fn burst(layer: &OAuth2Layer, n: usize) -> Duration {
    let svc = layer.layer(Noop::default());
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(Request::new(Body::default())).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("request");
    }
    start.elapsed()
}

fn main() {
    let bench = common::is_bench_run();
    let (n, rounds) = if bench { (10_000, 7) } else { (200, 1) };
    let rt = common::runtime(2);
    println!(
        "stampede: {n} concurrent requests, token endpoint latency {LATENCY:?}, \
         tokio multi-thread runtime with 2 workers, {rounds} rounds"
    );
    println!(
        "{:>5} | {:>12} {:>9} | {:>12} {:>9}",
        "round", "cold wall", "fetches", "expiry wall", "fetches"
    );
    let mut cold = Vec::new();
    let mut expiry = Vec::new();
    rt.block_on(async {
        for round in 1..=rounds {
            // A 1-second token: with the default policy it counts as expired
            // after 0.95 s; nothing is sent between the bursts, so no
            // background refresh has started when the second burst comes.
            let server = LocalTokenServer::new(common::OPAQUE_TOKEN, 1, LATENCY);
            let cache = server.cache_builder().build();
            let layer = common::layer(cache.clone());

            let wall_cold = burst(&layer, n).await;
            let fetches_cold = server.token_requests();

            tokio::time::sleep(Duration::from_millis(1_100)).await;
            let wall_expiry = burst(&layer, n).await;
            let fetches_expiry = server.token_requests() - fetches_cold;

            println!(
                "{round:>5} | {:>12.1?} {fetches_cold:>9} | {:>12.1?} {fetches_expiry:>9}",
                wall_cold, wall_expiry
            );
            assert_eq!(
                (fetches_cold, fetches_expiry),
                (1, 1),
                "single flight broken"
            );
            cold.push(wall_cold);
            expiry.push(wall_expiry);
        }
    });
    cold.sort();
    expiry.sort();
    println!(
        "median | cold {:.1?} (min {:.1?}, max {:.1?}) | expiry {:.1?} (min {:.1?}, max {:.1?}) | \
         token requests per burst: 1",
        cold[cold.len() / 2],
        cold[0],
        cold[cold.len() - 1],
        expiry[expiry.len() / 2],
        expiry[0],
        expiry[expiry.len() - 1],
    );
}
