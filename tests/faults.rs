//! Failure and hostile-input behaviour of the token endpoint, through the
//! layer, against real servers on 127.0.0.1 that misbehave on purpose.
//!
//! Every fault must give the caller a typed error promptly, keep memory
//! bounded, and heal without a restart once the endpoint is healthy.

use crate::support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::client::{http_client, layered, HttpClient};
use support::serve::{serve, serve_tcp, Serving};
use support::token_server::{Canned, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_oauth2::cache::{Backoff, RefreshPolicy, TokenCacheBuilder};
use tower_oauth2::error::{ErrorCode, ErrorKind};
use tower_oauth2::layer::{OAuth2Service, ServiceError};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// Short timeouts and backoff so a test sees several attempts quickly.
fn cache_for(token_url: &str) -> TokenCacheBuilder {
    let endpoint = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(token_url).unwrap(),
        ClientAuth::client_secret_basic("client", "s3cr3t-client"),
    )
    .timeout(Duration::from_millis(500))
    .max_body_bytes(64 * 1024);
    TokenCache::builder(endpoint, TokenRequest::client_credentials()).backoff(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(20),
    ))
}

async fn call(
    svc: &OAuth2Service<HttpClient>,
    url: &str,
) -> Result<StatusCode, ServiceError<hyper_util::client::legacy::Error>> {
    let req = Request::get(url).body(Full::<Bytes>::default()).unwrap();
    // A guard against hangs, not a timing assertion: every fault must end well before this.
    tokio::time::timeout(Duration::from_secs(20), svc.clone().oneshot(req))
        .await
        .expect("the request hung")
        .map(|r| r.status())
}

fn token_error(
    r: Result<StatusCode, ServiceError<hyper_util::client::legacy::Error>>,
) -> tower_oauth2::Error {
    match r {
        Err(ServiceError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

/// Waits out the 20 ms backoff (on paused time), then checks the layer heals.
async fn heals(svc: &OAuth2Service<HttpClient>, url: &str) {
    tokio::time::advance(Duration::from_millis(60)).await;
    assert_eq!(call(svc, url).await.unwrap(), StatusCode::OK);
}

// ---------------------------------------------------------------------------
// A token endpoint that misbehaves at the TCP level, switchable to healthy.

const HEALTHY: u8 = 0;
const SILENT: u8 = 1;
const DRIP: u8 = 2;
const ENDLESS_CHUNKED: u8 = 3;
const HUGE: u8 = 4;

struct RawEndpoint {
    url: String,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
    bytes_sent: Arc<AtomicU64>,
    _serving: Serving,
}

async fn raw_endpoint(healthy_token: &'static str) -> RawEndpoint {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let requests = Arc::new(AtomicU64::new(0));
    let bytes_sent = Arc::new(AtomicU64::new(0));
    let (m, r, b) = (mode.clone(), requests.clone(), bytes_sent.clone());
    let serving = serve_tcp(move |mut sock| {
        let (m, r, b) = (m.clone(), r.clone(), b.clone());
        async move {
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            // Write errors mean the client hung up: nothing more to do.
            let mode = m.load(Ordering::SeqCst);
            let _ = answer(&mut sock, mode, &b, healthy_token).await;
        }
    })
    .await;
    RawEndpoint {
        url: serving.url("/token"),
        mode,
        requests,
        bytes_sent,
        _serving: serving,
    }
}

/// Answers one token request as `mode` says, counting the body bytes sent.
async fn answer(
    sock: &mut tokio::net::TcpStream,
    mode: u8,
    sent: &AtomicU64,
    healthy_token: &str,
) -> std::io::Result<()> {
    const JSON_200: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n";
    match mode {
        SILENT => tokio::time::sleep(Duration::from_secs(3600)).await,
        DRIP => {
            let body = format!(r#"{{"access_token":"{healthy_token}"}}"#);
            let resp = format!("{JSON_200}content-length: 60\r\n\r\n{body:<60}");
            for byte in resp.bytes() {
                sock.write_all(&[byte]).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        ENDLESS_CHUNKED => {
            let head = format!("{JSON_200}transfer-encoding: chunked\r\n\r\n");
            sock.write_all(head.as_bytes()).await?;
            let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
            // Stops when the client hangs up.
            loop {
                sock.write_all(chunk.as_bytes()).await?;
                sent.fetch_add(0x4000, Ordering::Relaxed);
            }
        }
        HUGE => {
            let head = format!("{JSON_200}content-length: 10485760\r\n\r\n");
            sock.write_all(head.as_bytes()).await?;
            let block = vec![b' '; 64 * 1024];
            for _ in 0..160 {
                sock.write_all(&block).await?;
                sent.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
        }
        _ => {
            let body = format!(
                r#"{{"access_token":"{healthy_token}","token_type":"Bearer","expires_in":3600}}"#
            );
            let resp = format!(
                "{JSON_200}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
        }
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn transport_level_faults_are_typed_bounded_and_heal() {
    let resource = TestServer::start().await;
    resource.add_valid_token("good-token");
    let api = resource.url("/api");
    let raw = raw_endpoint("good-token").await;
    let cache = cache_for(&raw.url).build();
    let svc = layered(&cache);

    // Accepts and never answers: the 500 ms timeout ends it.
    raw.mode.store(SILENT, Ordering::SeqCst);
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable());
    raw.mode.store(HEALTHY, Ordering::SeqCst);
    heals(&svc, &api).await;

    // Answers one byte every 100 ms: the timeout covers the body too.
    cache.invalidate(cache.bearer_header_with_generation().await.unwrap().1);
    raw.mode.store(DRIP, Ordering::SeqCst);
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    raw.mode.store(HEALTHY, Ordering::SeqCst);
    heals(&svc, &api).await;

    // Endless chunked body: reading stops at the 64 KiB limit.
    cache.invalidate(cache.bearer_header_with_generation().await.unwrap().1);
    raw.mode.store(ENDLESS_CHUNKED, Ordering::SeqCst);
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.kind(), ErrorKind::BodyTooLarge, "{e}");
    assert!(e.to_string().contains("65536-byte limit"), "{e}");
    raw.mode.store(HEALTHY, Ordering::SeqCst);
    heals(&svc, &api).await;

    // A declared 10 MiB body is refused on its Content-Length.
    cache.invalidate(cache.bearer_header_with_generation().await.unwrap().1);
    raw.mode.store(HUGE, Ordering::SeqCst);
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.kind(), ErrorKind::BodyTooLarge, "{e}");
    raw.mode.store(HEALTHY, Ordering::SeqCst);
    heals(&svc, &api).await;

    // The endless body was cut off: the server wrote far less than it would have
    // (it stops when the client hangs up); the socket buffers hold some more.
    let sent = raw.bytes_sent.load(Ordering::Relaxed);
    assert!(
        sent < 10 * 1024 * 1024,
        "{sent} bytes were pushed before the client hung up"
    );
    // Four faults, each followed by one healthy fetch.
    assert_eq!(raw.requests.load(Ordering::SeqCst), 8);
    assert_eq!(cache.stats().fetch_failures, 4);
}

#[tokio::test(start_paused = true)]
async fn connection_refused_then_the_endpoint_comes_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = cache_for(&format!("http://127.0.0.1:{port}/token")).build();
    let svc = layered(&cache);
    let resource_first = TestServer::start().await;
    let e = token_error(call(&svc, &resource_first.url("/api")).await);
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(e.is_transport() && e.is_retryable());
    // The endpoint comes up on that port; no restart of anything else.
    let server = TestServer::start_on(port).await;
    heals(&svc, &server.url("/api")).await;
    assert_eq!(server.token_requests(), 1);
}

/// (canned answer, the error kind the caller sees)
fn status_faults() -> Vec<(&'static str, Canned, ErrorKind)> {
    vec![
        (
            "500",
            Canned::json(500, r#"{"error":"server_error"}"#),
            ErrorKind::OAuth,
        ),
        (
            "502 html",
            Canned::new(
                502,
                "text/html",
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            ),
            ErrorKind::HttpStatus,
        ),
        (
            "503 empty",
            Canned::new(503, "text/plain", ""),
            ErrorKind::HttpStatus,
        ),
        (
            "invalid json",
            Canned::json(200, r#"{"access_token": "#),
            ErrorKind::InvalidResponse,
        ),
        (
            "no access_token",
            Canned::json(200, r#"{"token_type":"Bearer","expires_in":60}"#),
            ErrorKind::InvalidResponse,
        ),
        (
            "token_type mac",
            Canned::json(
                200,
                r#"{"access_token":"m","token_type":"mac","expires_in":60}"#,
            ),
            ErrorKind::InvalidToken,
        ),
        (
            "token_type DPoP",
            Canned::json(
                200,
                r#"{"access_token":"d","token_type":"DPoP","expires_in":60}"#,
            ),
            ErrorKind::InvalidToken,
        ),
        (
            "expires_in 0",
            Canned::json(
                200,
                r#"{"access_token":"z","token_type":"Bearer","expires_in":0}"#,
            ),
            ErrorKind::InvalidToken,
        ),
        (
            "expires_in -5",
            Canned::json(
                200,
                r#"{"access_token":"n","token_type":"Bearer","expires_in":-5}"#,
            ),
            ErrorKind::InvalidToken,
        ),
        (
            "expires_in abc",
            Canned::json(
                200,
                r#"{"access_token":"s","token_type":"Bearer","expires_in":"abc"}"#,
            ),
            ErrorKind::InvalidResponse,
        ),
        (
            "CRLF in token",
            Canned::json(
                200,
                r#"{"access_token":"x\r\nX-Injected: 1","token_type":"Bearer"}"#,
            ),
            ErrorKind::InvalidToken,
        ),
        (
            "LF in token",
            Canned::json(200, r#"{"access_token":"x\ny","token_type":"Bearer"}"#),
            ErrorKind::InvalidToken,
        ),
        (
            "NUL in token",
            Canned::json(200, r#"{"access_token":"x\u0000y","token_type":"Bearer"}"#),
            ErrorKind::InvalidToken,
        ),
        (
            "error in 200",
            Canned::json(
                200,
                r#"{"error":"invalid_grant","error_description":"nope"}"#,
            ),
            ErrorKind::OAuth,
        ),
        (
            "redirect",
            Canned::new(307, "text/plain", "").header("location", "http://127.0.0.1:9/token"),
            ErrorKind::Redirect,
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn http_level_faults_are_typed_never_sent_and_heal() {
    let server = TestServer::start().await;
    let api = server.url("/api");
    let cache = cache_for(&server.token_url()).build();
    let svc = layered(&cache);
    let mut expected_token_requests = 0;
    for (heals_done, (name, answer, kind)) in status_faults().into_iter().enumerate() {
        server.script([answer]);
        let e = token_error(call(&svc, &api).await);
        expected_token_requests += 1;
        assert_eq!(e.kind(), kind, "{name}: {e}");
        // Nothing reached the resource server: a bad token is never sent.
        assert_eq!(server.resource_count(), heals_done, "{name}");
        // Healthy again: a fresh token, the request goes through.
        heals(&svc, &api).await;
        expected_token_requests += 1;
        assert_eq!(server.token_requests(), expected_token_requests, "{name}");
        cache.invalidate(cache.bearer_header_with_generation().await.unwrap().1);
    }
    // Only the healthy tokens ever reached the resource server.
    for (_, auth, _) in server.resource_requests() {
        let auth = auth.unwrap();
        assert!(
            auth.starts_with("Bearer at-") && !auth.contains('\n'),
            "{auth:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_with_credentials() {
    let elsewhere = TestServer::start().await;
    let server = TestServer::start().await;
    server.script([Canned::new(307, "text/plain", "").header("location", &elsewhere.token_url())]);
    let cache = cache_for(&server.token_url()).build();
    let e = token_error(call(&layered(&cache), &server.url("/api")).await);
    assert_eq!(e.kind(), ErrorKind::Redirect);
    assert!(
        e.to_string().contains("configure the final token URL"),
        "{e}"
    );
    assert_eq!(elsewhere.token_requests(), 0);
}

#[tokio::test]
async fn odd_but_usable_answers() {
    let server = TestServer::start().await;
    // 1e30 seconds: kept, never stale; DPoP accepted when configured.
    server.script([Canned::json(
        200,
        r#"{"access_token":"huge","token_type":"Bearer","expires_in":1e30}"#,
    )]);
    server.add_valid_token("huge");
    let cache = cache_for(&server.token_url()).build();
    let svc = layered(&cache);
    for _ in 0..3 {
        assert_eq!(
            call(&svc, &server.url("/api")).await.unwrap(),
            StatusCode::OK
        );
    }
    assert_eq!(server.token_requests(), 1);

    server.script([Canned::json(
        200,
        r#"{"access_token":"dpop-ish","token_type":"N_A","expires_in":60}"#,
    )]);
    server.add_valid_token("dpop-ish");
    let cache = cache_for(&server.token_url())
        .accept_any_token_type(true)
        .build();
    assert_eq!(
        call(&layered(&cache), &server.url("/api")).await.unwrap(),
        StatusCode::OK
    );
    let (_, auth, _) = server.resource_requests().pop().unwrap();
    assert_eq!(auth.as_deref(), Some("Bearer dpop-ish"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let server = TestServer::start().await;
    server.script([Canned::json(429, r#"{"error":"slow_down"}"#).header("retry-after", "1")]);
    let cache = cache_for(&server.token_url()).build();
    let svc = layered(&cache);
    let api = server.url("/api");
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.oauth_error().unwrap().error(), &ErrorCode::SlowDown);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    // The backoff is 20 ms, but the server asked for 1 s: no new attempt yet.
    tokio::time::advance(Duration::from_millis(100)).await;
    let e = token_error(call(&svc, &api).await);
    assert_eq!(e.kind(), ErrorKind::NoToken);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(server.token_requests(), 1);
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(call(&svc, &api).await.unwrap(), StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
}

// On paused time: the stale window, the backoffs and the expiry pass with
// no real sleep.
#[tokio::test(start_paused = true)]
async fn serve_stale_while_refresh_fails_then_fail_fast_then_heal() {
    let server = TestServer::start().await;
    server.set_ttl(Some(2));
    let api = server.url("/api");
    // Stale at 1.0 s (half the lifetime), expired at 1.9 s.
    let cache = cache_for(&server.token_url())
        .refresh_policy(RefreshPolicy::default().max_fraction(0.5).jitter(0.0))
        .backoff(Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(200),
        ))
        .build();
    let svc = layered(&cache);
    let started = tokio::time::Instant::now();
    assert_eq!(call(&svc, &api).await.unwrap(), StatusCode::OK);
    server.set_failing(Some(Canned::new(
        503,
        "text/html",
        "<h1>down for maintenance</h1>",
    )));

    // While the token is valid (until 1.9 s), no request fails, and the
    // failing refreshes back off: at most one attempt per 50 ms at first,
    // then per 100 ms.
    let mut ok = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(call(&svc, &api).await.unwrap(), StatusCode::OK);
        ok += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A failing refresh may still be in flight: let its failure be recorded.
    for _ in 0..200 {
        if cache.stats().fetch_failures as usize == server.token_requests() - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during_outage = server.token_requests() - 1;
    assert!(
        (1..=8).contains(&during_outage),
        "{during_outage} token requests in the stale window"
    );
    assert!(ok > 50);
    let stats = cache.stats();
    assert_eq!(stats.fetch_failures as usize, during_outage);

    // No valid token: 50 concurrent requests fail with the endpoint's error,
    // and cost at most two token requests (one per backoff window passed).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = server.token_requests();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (svc, api) = (svc.clone(), api.clone());
            tokio::spawn(async move { call(&svc, &api).await })
        })
        .collect();
    for t in tasks {
        let e = token_error(t.await.unwrap());
        assert!(
            matches!(e.kind(), ErrorKind::NoToken | ErrorKind::HttpStatus),
            "{e}"
        );
        assert_eq!(e.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(e.to_string().contains("down for maintenance"), "{e}");
    }
    assert!(
        server.token_requests() - before <= 2,
        "{} token requests",
        server.token_requests() - before
    );

    // Healthy again: recovery without a restart.
    server.set_failing(None);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call(&svc, &api).await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn destinations_keep_the_token_where_it_belongs() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let cache = cache_for(&server.token_url()).build();
    let only_server = tower::Layer::layer(
        &OAuth2Layer::new(cache.clone()).destinations(
            tower_oauth2::layer::Destinations::origins([format!("http://{}", server.addr)])
                .unwrap(),
        ),
        http_client(),
    );
    assert_eq!(
        call(&only_server, &server.url("/api")).await.unwrap(),
        StatusCode::OK
    );
    // Another origin (another port on the same host): no token, no retry.
    assert_eq!(
        call(&only_server, &other.url("/api")).await.unwrap(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(other.resource_requests()[0].1, None);
    assert_eq!(other.resource_count(), 1);
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn insufficient_scope_is_not_refetched() {
    // A resource server that answers 401 with insufficient_scope.
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let resource = serve(tower::service_fn(move |_: Request<Incoming>| {
        h.fetch_add(1, Ordering::SeqCst);
        let challenge = "Basic realm=\"x\", Bearer realm=\"api\", \
                         error=\"insufficient_scope\", scope=\"orders:write\"";
        let response = Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", challenge)
            .body(Full::<Bytes>::default());
        std::future::ready(Ok::<_, Infallible>(response.unwrap()))
    }))
    .await;
    let server = TestServer::start().await;
    let cache = cache_for(&server.token_url()).build();
    let status = call(&layered(&cache), &resource.url("/orders"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(cache.stats().invalidations, 0);
}
