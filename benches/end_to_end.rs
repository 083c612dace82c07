//! End to end: a hyper-util client calling a hyper server over loopback
//! (127.0.0.1, port 0), requests/s without the layer, with it, and with it
//! but no 401 retry. Both ends run in this process on one Tokio runtime with
//! 2 workers; the server answers `200` with a 2-byte body after checking
//! that the `Authorization` header is the expected one (when one is
//! expected). The token endpoint is in-process; the token is cached before
//! the clock starts.
//!
//! Load: 32 tasks, each sending requests one after another, until 20,000
//! have been answered (HTTP/1.1 keep-alive, so up to 32 pooled connections;
//! and again over one HTTP/2 connection). The three clients take turns, 5
//! rounds each; the median and range of requests/s are printed.
//!
//! `cargo bench -p tower-oauth2-benches --bench end_to_end`; under `cargo test --benches` it runs a
//! short smoke round.

mod common;
#[path = "../tests/support/serve.rs"]
#[allow(
    dead_code,
    reason = "the tests' serve loop; this bench uses `serve` only"
)]
mod serve;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Body, LocalTokenServer};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serve::{serve, Serving};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::OAuth2Layer;

const TASKS: usize = 32;

/// A server answering `200 ok`, or `401` when `expected` is set and the
/// `Authorization` header is not it.
async fn start_server(expected: Option<&'static str>) -> Serving {
    serve(tower::service_fn(move |req: Request<Incoming>| {
        let ok = match expected {
            Some(e) => req.headers().get("authorization").is_some_and(|h| h == e),
            None => true,
        };
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
        if !ok {
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok::<_, Infallible>(resp))
    }))
    .await
}

/// Sends `total` GETs to `uri` from `TASKS` tasks through `svc`; returns
/// requests/s.
async fn load<S>(svc: S, uri: &str, total: usize) -> f64
where
    S: Service<Request<Body>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let left = Arc::new(AtomicUsize::new(total));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let svc = svc.clone();
            let left = left.clone();
            let uri: http::Uri = uri.parse().expect("uri");
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let req = Request::get(uri.clone())
                        .body(Body::default())
                        .expect("request");
                    let resp = svc.clone().oneshot(req).await.expect("response");
                    assert_eq!(resp.status(), StatusCode::OK);
                    resp.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn summary(xs: &mut [f64]) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "{:>9.0} {:>9.0} {:>9.0}",
        xs[xs.len() / 2],
        xs[0],
        xs[xs.len() - 1]
    )
}

fn main() {
    let bench = common::is_bench_run();
    let (total, rounds) = if bench { (20_000, 5) } else { (500, 1) };
    let rt = common::runtime(2);
    println!(
        "end to end over loopback: {TASKS} tasks, {total} requests per round, {rounds} rounds, \
         client and server in one process on 2 tokio workers"
    );
    println!(
        "{:<8} {:<26} {:>9} {:>9} {:>9}",
        "protocol", "client", "median/s", "min/s", "max/s"
    );
    rt.block_on(async {
        let token = format!("Bearer {}", common::OPAQUE_TOKEN);
        let token: &'static str = Box::leak(token.into_boxed_str());
        let open = start_server(None).await;
        let guarded = start_server(Some(token)).await;

        let server = LocalTokenServer::new(common::OPAQUE_TOKEN, 3600, Duration::ZERO);
        let cache = server.cache_builder().build();
        cache.bearer_header().await.expect("first token");

        for (protocol, http2) in [("http/1.1", false), ("http/2", true)] {
            let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .build_http();
            let with = OAuth2Layer::new(cache.clone()).layer(client.clone());
            let no_retry = OAuth2Layer::new(cache.clone())
                .retry_unauthorized(false)
                .layer(client.clone());
            let open_uri = open.url("/items");
            let guarded_uri = guarded.url("/items");
            // Warm the connection pools.
            load(client.clone(), &open_uri, 200).await;
            load(with.clone(), &guarded_uri, 200).await;
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                a.push(load(client.clone(), &open_uri, total).await);
                b.push(load(with.clone(), &guarded_uri, total).await);
                c.push(load(no_retry.clone(), &guarded_uri, total).await);
            }
            println!(
                "{protocol:<8} {:<26} {}",
                "without the layer",
                summary(&mut a)
            );
            println!("{protocol:<8} {:<26} {}", "OAuth2Layer", summary(&mut b));
            println!(
                "{protocol:<8} {:<26} {}",
                "OAuth2Layer, no 401 retry",
                summary(&mut c)
            );
        }
        assert_eq!(server.token_requests(), 1);
    });
}
