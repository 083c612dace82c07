//! DPoP (RFC 9449): the cost of one proof, and of one request through the
//! layer with a DPoP token cached (a proof per request), next to the same
//! request with a bearer token. See BENCHMARKS.md, "DPoP".
//!
//! `cargo bench -p tower-oauth2-benches --features dpop --bench dpop`. For instruction counts, run
//! the built binary under callgrind with `DPOP_CALLGRIND=<function>` (one of
//! the names below) and `DPOP_CALLS=<n>`: it makes exactly `n` calls and
//! exits; the difference between two values of `n` is the cost per call.

#[allow(dead_code, reason = "this bench needs the no-op service only")]
mod common;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use common::{Body, Noop, OPAQUE_TOKEN};
use criterion::Criterion;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use tower::{Layer, Service};
use tower_oauth2::dpop::Dpop;
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

const URL: &str = "https://api.example.com/v1/items?page=2";

/// A cache holding a token of `token_type`, fetched before the clock
/// starts, with DPoP key `dpop` if given.
fn cache(token_type: &'static str, dpop: Option<&Dpop>) -> TokenCache {
    let http = tower::service_fn(move |_req: Request<Body>| async move {
        let json = format!(
            r#"{{"access_token":"{OPAQUE_TOKEN}","token_type":"{token_type}","expires_in":86400}}"#
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(json))))
    });
    let url = TokenUrl::new("https://as.example.com/oauth2/token").expect("token URL");
    let endpoint = TokenEndpoint::new(http, url, ClientAuth::client_secret_basic("b", "s"));
    let endpoint = match dpop {
        Some(dpop) => endpoint.dpop(dpop.clone()),
        None => endpoint,
    };
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(cache.bearer_header()).expect("a token");
    cache
}

/// One request through `svc`, polled once (the inner service answers at once).
fn one_call<S>(svc: &mut S, cx: &mut Context<'_>)
where
    S: Service<Request<Body>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let req = Request::get(URL).body(Body::default()).expect("request");
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(cx) {
        Poll::Ready(answer) => drop(black_box(answer.expect("answered"))),
        Poll::Pending => panic!("the inner service answers at once"),
    }
}

fn main() {
    let dpop = Dpop::generate().expect("a key");
    let uri: Uri = URL.parse().expect("URI");
    let long_token = "x".repeat(1024);
    if let Ok(function) = std::env::var("DPOP_CALLGRIND") {
        let calls: u64 = std::env::var("DPOP_CALLS").map_or(1, |n| n.parse().expect("DPOP_CALLS"));
        return count(&function, calls, &dpop, &uri);
    }
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("dpop");
    group.bench_function("proof_token_request", |b| {
        b.iter(|| dpop.proof(&Method::POST, black_box(&uri), None))
    });
    group.bench_function("proof_resource_43B_token", |b| {
        b.iter(|| dpop.proof(&Method::GET, black_box(&uri), Some(OPAQUE_TOKEN)))
    });
    group.bench_function("proof_resource_1KiB_token", |b| {
        b.iter(|| dpop.proof(&Method::GET, black_box(&uri), Some(&long_token)))
    });
    let mut cx = Context::from_waker(Waker::noop());
    let mut bearer = OAuth2Layer::new(cache("Bearer", None)).layer(Noop::default());
    group.bench_function("layer_call_bearer", |b| {
        b.iter(|| one_call(&mut bearer, &mut cx))
    });
    let mut bound = OAuth2Layer::new(cache("DPoP", Some(&dpop))).layer(Noop::default());
    group.bench_function("layer_call_dpop", |b| {
        b.iter(|| one_call(&mut bound, &mut cx))
    });
    group.finish();
    criterion.final_summary();
}

/// `calls` calls of `function`, for callgrind.
fn count(function: &str, calls: u64, dpop: &Dpop, uri: &Uri) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut bearer = OAuth2Layer::new(cache("Bearer", None)).layer(Noop::default());
    let mut bound = OAuth2Layer::new(cache("DPoP", Some(dpop))).layer(Noop::default());
    for _ in 0..black_box(calls) {
        match function {
            "proof_resource_43B_token" => {
                black_box(
                    dpop.proof(&Method::GET, uri, Some(OPAQUE_TOKEN))
                        .expect("proof"),
                );
            }
            "layer_call_bearer" => one_call(&mut bearer, &mut cx),
            "layer_call_dpop" => one_call(&mut bound, &mut cx),
            other => panic!("no function {other}"),
        }
    }
}
