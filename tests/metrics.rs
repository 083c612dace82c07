//! The `metrics` feature: what a recorder sees after fetches, failures,
//! waits and 401 retries, read back exactly through metrics-util's
//! `DebuggingRecorder`.
//!
//! Each test installs its recorder for its own thread only
//! (`metrics::set_default_local_recorder`), so the tests run in parallel
//! without seeing each other's metrics. That recorder sees what the fetch
//! task records because the tests run on a current-thread runtime: the
//! task runs on the test's thread. (An application installs its recorder
//! globally, for every thread.)
#![cfg(feature = "metrics")]

use crate::support;

use std::time::Duration;

use http::StatusCode;
use metrics::LocalRecorderGuard;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::client::{http_client, layered, HttpClient};
use support::token_server::{Canned, ClientCheck, TestServer};
use tower::ServiceExt;
use tower_oauth2::cache::{Backoff, TokenCacheBuilder};
use tower_oauth2::metrics::{
    REQUESTS_WAITED_TOTAL, TOKEN_EXPIRES_IN_SECONDS, TOKEN_REQUESTS_TOTAL,
    TOKEN_REQUEST_DURATION_SECONDS, UNAUTHORIZED_TOTAL,
};
use tower_oauth2::{ClientAuth, OAuth2Service, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// A metric's value as the tests compare it: a histogram by its number of
/// samples (durations are not asserted).
#[derive(Debug, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Samples(usize),
}

/// A recorder for this thread until the guard drops (see the module
/// docs), and its reader. The recorder is leaked: a few per test binary.
fn record_here() -> (LocalRecorderGuard<'static>, Snapshotter) {
    let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let guard = metrics::set_default_local_recorder(recorder);
    (guard, recorder.snapshotter())
}

/// What the recorder got since the last call, as `name{k=v,…}` and value,
/// sorted; metrics with nothing new are left out.
fn recorded(snapshotter: &Snapshotter) -> Vec<(String, Value)> {
    let mut metrics: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => Value::Counter(n),
                DebugValue::Gauge(x) => Value::Gauge(x.into_inner()),
                DebugValue::Histogram(xs) => Value::Samples(xs.len()),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        // Read values are reset to 0 (a gauge too: this recorder swaps it),
        // and the token lifetime gauge is never 0.
        .filter(|(_, v)| {
            *v != Value::Counter(0) && *v != Value::Samples(0) && *v != Value::Gauge(0.0)
        })
        .collect();
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    metrics
}

fn metric(name: &str, labels: &str, value: Value) -> (String, Value) {
    (format!("{name}{{{labels}}}"), value)
}

/// What one call that waited for a successful fetch records, for cache
/// `name`, the token living `lifetime` seconds (sorted as [`recorded`]).
fn waited_for_a_token(name: &str, lifetime: f64) -> Vec<(String, Value)> {
    let cache = format!("cache={name}");
    vec![
        metric(REQUESTS_WAITED_TOTAL, &cache, Value::Counter(1)),
        metric(TOKEN_EXPIRES_IN_SECONDS, &cache, Value::Gauge(lifetime)),
        metric(TOKEN_REQUEST_DURATION_SECONDS, &cache, Value::Samples(1)),
        metric(
            TOKEN_REQUESTS_TOTAL,
            &format!("{cache},outcome=success"),
            Value::Counter(1),
        ),
    ]
}

/// Sends a GET of `path` through `svc`: the status, or the error's text.
async fn call(svc: &OAuth2Service<HttpClient>, server: &TestServer, path: &str) -> String {
    match svc.clone().oneshot(server.get(path)).await {
        Ok(response) => response.status().to_string(),
        Err(e) => e.to_string(),
    }
}

/// A cache named `name` for `server`, failures backing off for a minute.
fn named(server: &TestServer, name: &str) -> TokenCache {
    let minute = Duration::from_secs(60);
    server
        .client_credentials()
        .backoff(Backoff::new(minute, minute))
        .metrics_name(name)
        .build()
}

#[tokio::test]
async fn a_fetched_token_is_one_success_one_duration_its_lifetime_and_one_wait() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    server.set_ttl(Some(300));
    let cache = named(&server, "inventory");
    let svc = layered(&cache);

    assert_eq!(call(&svc, &server, "/r/1").await, "200 OK");
    assert_eq!(
        recorded(&snapshotter),
        waited_for_a_token("inventory", 300.0)
    );

    // Served from the cache: nothing recorded.
    for i in 2..=5 {
        assert_eq!(call(&svc, &server, &format!("/r/{i}")).await, "200 OK");
    }
    assert_eq!(recorded(&snapshotter), []);
    assert_eq!(cache.stats().token_fetches, 1);
}

#[tokio::test]
async fn a_cache_with_no_name_is_labelled_by_its_fingerprint() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    let builder = server.client_credentials();
    let fingerprint = builder.fingerprint().to_string();
    let cache = builder.build();

    cache.bearer_header().await.unwrap();
    let label = format!("cache={}", &fingerprint[..8]);
    let metrics = recorded(&snapshotter);
    assert_eq!(metrics.len(), 4, "{metrics:?}");
    assert!(
        metrics.iter().all(|(key, _)| key.contains(&label)),
        "{metrics:?}"
    );
}

/// The token requests counted after one request through a cache whose
/// token endpoint answers `canned`, with the request's result.
async fn failed_fetch(canned: Canned) -> (String, Vec<(String, Value)>) {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    server.set_failing(Some(canned));
    let cache = named(&server, "orders");
    let result = call(&layered(&cache), &server, "/r").await;
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.fetch_failures), (1, 1));
    let requests = recorded(&snapshotter)
        .into_iter()
        .filter(|(key, _)| key.starts_with(TOKEN_REQUESTS_TOTAL))
        .collect();
    (result, requests)
}

#[tokio::test]
async fn a_failed_fetch_is_counted_with_its_error_kind_and_oauth_code() {
    let errors = |labels: &str| {
        vec![metric(
            TOKEN_REQUESTS_TOTAL,
            &format!("cache=orders,outcome=error,{labels}"),
            Value::Counter(1),
        )]
    };
    let (result, requests) = failed_fetch(Canned::invalid_client("bad secret")).await;
    assert!(result.contains("invalid_client"), "{result}");
    assert_eq!(requests, errors("reason=oauth,error=invalid_client"));

    // A code this crate does not know is `other`: what a server sends
    // cannot add label values.
    let unknown = Canned::json(400, r#"{"error":"custom_at-1_code"}"#);
    let (_, requests) = failed_fetch(unknown).await;
    assert_eq!(requests, errors("reason=oauth,error=other"));

    let html = Canned::new(502, "text/html", "<html>bad gateway</html>");
    let (_, requests) = failed_fetch(html).await;
    assert_eq!(requests, errors("reason=http_status"));

    let garbage = Canned::json(200, r#"{"token_type":"Bearer"}"#);
    let (_, requests) = failed_fetch(garbage).await;
    assert_eq!(requests, errors("reason=invalid_response"));

    // Issued, then refused by the cache: the request counts as an error.
    let dpop = Canned::json(
        200,
        r#"{"access_token":"at-dpop","token_type":"DPoP","expires_in":300}"#,
    );
    let (result, requests) = failed_fetch(dpop).await;
    assert!(result.contains("not Bearer"), "{result}");
    assert_eq!(requests, errors("reason=invalid_token"));
}

#[tokio::test]
async fn a_token_endpoint_out_of_reach_or_too_slow_is_transport_or_timeout() {
    let (_local, snapshotter) = record_here();
    // Bind then drop: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&format!("http://127.0.0.1:{port}/token")).unwrap(),
        ClientAuth::client_secret_basic("client", "secret"),
    );
    let cache = TokenCache::builder(unreachable, TokenRequest::client_credentials())
        .metrics_name("unreachable")
        .build();
    assert!(cache.bearer_header().await.unwrap_err().is_transport());

    let server = TestServer::start().await;
    server.set_latency(Duration::from_secs(30));
    let slow = server.endpoint().timeout(Duration::from_millis(100));
    let cache = TokenCache::builder(slow, TokenRequest::client_credentials())
        .metrics_name("slow")
        .build();
    assert!(cache.bearer_header().await.unwrap_err().is_timeout());

    let errors = |cache: &str, reason: &str| {
        metric(
            TOKEN_REQUESTS_TOTAL,
            &format!("cache={cache},outcome=error,reason={reason}"),
            Value::Counter(1),
        )
    };
    let samples = |cache: &str| {
        metric(
            TOKEN_REQUEST_DURATION_SECONDS,
            &format!("cache={cache}"),
            Value::Samples(1),
        )
    };
    let waited = |cache: &str| {
        metric(
            REQUESTS_WAITED_TOTAL,
            &format!("cache={cache}"),
            Value::Counter(1),
        )
    };
    assert_eq!(
        recorded(&snapshotter),
        [
            waited("slow"),
            waited("unreachable"),
            samples("slow"),
            samples("unreachable"),
            errors("slow", "timeout"),
            errors("unreachable", "transport"),
        ]
    );
}

#[tokio::test]
async fn a_401_retry_is_counted_as_retried_with_the_second_fetch() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    let cache = named(&server, "inventory");
    let svc = layered(&cache);
    assert_eq!(call(&svc, &server, "/r/1").await, "200 OK");
    recorded(&snapshotter);

    server.revoke("at-1");
    assert_eq!(call(&svc, &server, "/r/2").await, "200 OK");
    assert_eq!(server.unauthorized_count(), 1);
    // The resend waited for the new token.
    let mut expected = waited_for_a_token("inventory", 3600.0);
    expected.push(metric(
        UNAUTHORIZED_TOTAL,
        "cache=inventory,action=retried",
        Value::Counter(1),
    ));
    assert_eq!(recorded(&snapshotter), expected);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries, stats.waits), (2, 1, 2));
}

#[tokio::test]
async fn passed_through_and_backed_off_401s_are_counted_by_action() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    let cache = named(&server, "inventory");
    // A backoff of an hour: the counts below cannot depend on timing.
    let hour = Duration::from_secs(3600);
    let layer = tower_oauth2::OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(Backoff::new(hour, hour));
    let svc: OAuth2Service<HttpClient> = tower::Layer::layer(&layer, http_client());
    assert_eq!(call(&svc, &server, "/ok").await, "200 OK");
    recorded(&snapshotter);

    server.set_reject_all(true);
    // Other schemes only: passed through, no new token.
    server.set_challenges(&["Basic realm=\"x\""]);
    for _ in 0..3 {
        assert_eq!(call(&svc, &server, "/basic").await, "401 Unauthorized");
    }
    // Ours: one refetch and resend, refused too; then backed off.
    server.set_challenges(&["Bearer error=\"invalid_token\""]);
    for _ in 0..4 {
        assert_eq!(call(&svc, &server, "/bearer").await, "401 Unauthorized");
    }
    let unauthorized = |action: &str, n: u64| {
        let labels = format!("cache=inventory,action={action}");
        metric(UNAUTHORIZED_TOTAL, &labels, Value::Counter(n))
    };
    let got = recorded(&snapshotter);
    for expected in [
        unauthorized("passed_through", 3),
        unauthorized("retried", 1),
        unauthorized("backed_off", 4),
    ] {
        assert!(got.contains(&expected), "{expected:?} not in {got:?}");
    }
    let stats = cache.stats();
    assert_eq!(
        (
            stats.token_fetches,
            stats.unauthorized_other_scheme,
            stats.retries,
            stats.unauthorized_backed_off
        ),
        (2, 3, 1, 4)
    );
}

#[tokio::test]
async fn concurrent_callers_each_count_one_wait_for_one_token_request() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    // The fetch stays in flight while all five join it.
    server.set_latency(Duration::from_millis(200));
    let cache = named(&server, "inventory");
    let svc = layered(&cache);
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let svc = svc.clone();
            let request = server.get(&format!("/r/{i}"));
            tokio::spawn(async move { svc.oneshot(request).await.map(|r| r.status()) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 1);
    let waits: Vec<_> = recorded(&snapshotter)
        .into_iter()
        .filter(|(key, _)| key.starts_with(REQUESTS_WAITED_TOTAL))
        .collect();
    assert_eq!(
        waits,
        [metric(
            REQUESTS_WAITED_TOTAL,
            "cache=inventory",
            Value::Counter(5)
        )]
    );
    assert_eq!(cache.stats().waits, 5);
}

/// A builder for `server` with a client id, a secret and tokens that are
/// easy to spot (and none of them hex, as the default label is).
fn spotted(server: &TestServer) -> TokenCacheBuilder {
    server.set_client("client-id-ghost", "SECRET-squirrel", ClientCheck::Basic);
    server.set_token_prefix("TOKEN-");
    let endpoint = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_basic("client-id-ghost", "SECRET-squirrel"),
    );
    TokenCache::builder(endpoint, TokenRequest::client_credentials().scope("read"))
}

#[tokio::test]
async fn no_label_carries_a_token_or_a_secret() {
    let (_local, snapshotter) = record_here();
    let server = TestServer::start().await;
    let backoff = Duration::from_millis(1);
    let builder = spotted(&server).backoff(Backoff::new(backoff, backoff));
    let label = builder.fingerprint().to_string()[..8].to_owned();
    let cache = builder.build();
    let svc = layered(&cache);
    // A fetch, a 401 retry with a second fetch, then a 401 whose refetch
    // fails with a code and a description that carry the secret and a token.
    assert_eq!(call(&svc, &server, "/r/1").await, "200 OK");
    server.revoke("TOKEN-at-1");
    assert_eq!(call(&svc, &server, "/r/2").await, "200 OK");
    server.script([Canned::json(
        400,
        r#"{"error":"TOKEN-at-9 SECRET-squirrel","error_description":"SECRET-squirrel"}"#,
    )]);
    server.revoke_all();
    call(&svc, &server, "/r/3").await;

    let metrics = recorded(&snapshotter);
    let keys: Vec<&str> = metrics.iter().map(|(key, _)| key.as_str()).collect();
    let refused =
        format!("{TOKEN_REQUESTS_TOTAL}{{cache={label},outcome=error,reason=oauth,error=other}}");
    assert!(keys.contains(&refused.as_str()), "{keys:?}");
    for key in &keys {
        for spot in ["TOKEN", "SECRET", "squirrel", "ghost", "Bearer"] {
            assert!(!key.contains(spot), "{spot} in {key}");
        }
    }
    // Each token request counted once, by its outcome.
    let total: u64 = metrics
        .iter()
        .filter(|(key, _)| key.starts_with(TOKEN_REQUESTS_TOTAL))
        .map(|(_, value)| match value {
            Value::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 3);
    assert_eq!(cache.stats().token_fetches, 3);
}
