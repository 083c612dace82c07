//! A bounded soak run: 1-second tokens, many concurrent requests, and a token
//! endpoint that fails 10 % of the time. Counts every request that fails
//! while a valid token existed (the goal: zero).
//!
//! ```text
//! cargo run --release --example soak -- [--seconds 30] [--concurrency 64] [--failure-rate 0.1]
//! ```
//!
//! Everything runs on 127.0.0.1 and stops by itself.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

#[derive(Default)]
struct Server {
    next: AtomicU64,
    token_requests: AtomicU64,
    token_failures: AtomicU64,
    valid: Mutex<HashMap<String, Instant>>,
    rng: Mutex<u64>,
    failure_rate: Mutex<f64>,
}

impl Server {
    fn coin(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn handle(&self, req: axum::extract::Request) -> Response<Full<Bytes>> {
        if req.uri().path() == "/token" {
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let rate = *self.failure_rate.lock().unwrap_or_else(|p| p.into_inner());
            if self.coin() < rate {
                self.token_failures.fetch_add(1, Ordering::Relaxed);
                return reply(503, r#"{"error":"temporarily_unavailable"}"#);
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let token = format!("soak-{n}");
            self.valid
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), Instant::now() + Duration::from_secs(1));
            return reply(
                200,
                &format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":1}}"#),
            );
        }
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| {
                self.valid
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(t)
                    .is_some_and(|exp| Instant::now() < *exp)
            });
        if ok {
            reply(200, "{}")
        } else {
            reply(401, r#"{"error":"invalid_token"}"#)
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> ExitCode {
    let seconds: u64 = arg("--seconds", 30);
    let concurrency: usize = arg("--concurrency", 64);
    let failure_rate: f64 = arg("--failure-rate", 0.1);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Arc::new(Server {
        rng: Mutex::new(0x9e37_79b9_7f4a_7c15),
        failure_rate: Mutex::new(failure_rate),
        ..Server::default()
    });
    let s = server.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move { s.handle(req).await }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let endpoint = TokenEndpoint::new(
        http.clone(),
        TokenUrl::new(&format!("http://{addr}/token")).expect("url"),
        ClientAuth::client_secret_basic("soak", "soak-secret"),
    )
    .timeout(Duration::from_secs(2));
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    // The token goes to the API's origin only.
    let oauth2 =
        OAuth2Layer::for_origin(cache.clone(), format!("http://{addr}")).expect("an origin");
    let svc = ServiceBuilder::new().layer(oauth2).service(http);

    // Warm up until the first token exists (the endpoint may refuse it).
    let url = format!("http://{addr}/api");
    loop {
        let req = Request::get(url.as_str())
            .body(Full::default())
            .expect("request");
        if let Ok(r) = svc.clone().oneshot(req).await {
            if r.status() == StatusCode::OK {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let run = Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (svc, url, ok, failed, latencies) = (
                svc.clone(),
                url.clone(),
                ok.clone(),
                failed.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while started.elapsed() < run {
                    let req = Request::get(url.as_str())
                        .body(Full::default())
                        .expect("request");
                    let t = Instant::now();
                    match svc.clone().oneshot(req).await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let _ = r.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            eprintln!("soak: {}", r.status());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("soak: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    mine.push(t.elapsed());
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let stats = cache.stats();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "soak: {elapsed:.1} s, concurrency {concurrency}, 1 s tokens, token endpoint failing {:.0} %",
        failure_rate * 100.0
    );
    println!(
        "requests: ok={ok} failed={failed} ({:.0}/s); latency p50={:?} p99={:?} max={:?}",
        (ok + failed) as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or_default()
    );
    println!(
        "token endpoint: requests={} refused={}; cache: fetches={} failures={} background={} waits={} retries={}",
        server.token_requests.load(Ordering::Relaxed),
        server.token_failures.load(Ordering::Relaxed),
        stats.token_fetches,
        stats.fetch_failures,
        stats.background_refreshes,
        stats.waits,
        stats.retries
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
