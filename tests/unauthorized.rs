//! A resource server that answers 401 to every token (ARCHITECTURE.md,
//! invariant 6): the token endpoint sees a bounded number of requests,
//! however many requests go through the layer.
//!
//! The counts are exact: the layers here back off for an hour once new
//! tokens are refused too, longer than any test runs. With the default
//! backoff (1 s doubling to 5 min) only the bound is asserted; the delays
//! themselves are unit-tested with the random value passed in.

use crate::support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::client::{http2_client, http_client, HttpClient};
use support::token_server::{bearer, TestServer};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::cache::Backoff;
use tower_oauth2::{OAuth2Layer, OAuth2Service, TokenCache};

/// A backoff longer than any test: the counts do not depend on how fast
/// the machine runs the test.
fn an_hour() -> Backoff {
    let hour = Duration::from_secs(3600);
    Backoff::new(hour, hour)
}

/// `client` under the layer, backing off for an hour.
fn layered(cache: &TokenCache, client: HttpClient) -> OAuth2Service<HttpClient> {
    OAuth2Layer::new(cache.clone())
        .unauthorized_backoff(an_hour())
        .layer(client)
}

/// Sends `n` GETs of `/r/{i}` one after another; their statuses.
async fn send_sequentially(
    svc: &OAuth2Service<HttpClient>,
    server: &TestServer,
    n: usize,
) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        let req = server.get(&format!("/r/{i}"));
        statuses.push(svc.clone().oneshot(req).await.unwrap().status());
    }
    statuses
}

/// (token_fetches, invalidations, retries, unauthorized_backed_off,
/// unauthorized_other_scheme) of `cache`.
fn counts(cache: &TokenCache) -> (u64, u64, u64, u64, u64) {
    let s = cache.stats();
    (
        s.token_fetches,
        s.invalidations,
        s.retries,
        s.unauthorized_backed_off,
        s.unauthorized_other_scheme,
    )
}

/// 100 requests one after another, through the layer, to a resource that
/// refuses every token with `challenges`: the server and the cache after.
async fn a_hundred_refused(challenges: &[&str]) -> (TestServer, TokenCache) {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    server.set_challenges(challenges);
    let cache = server.client_credentials().build();
    let svc = layered(&cache, http_client());
    let statuses = send_sequentially(&svc, &server, 100).await;
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 100], "{challenges:?}");
    (server, cache)
}

/// A resource that refuses every token with `challenges`, 100 requests one
/// after another: at-1 is refused, refetched and the request resent with
/// at-2, refused too; from then on new tokens are known not to help and
/// every 401 passes through (the resend's included).
async fn a_token_refused_after_a_refetch_backs_off(challenges: &[&str]) {
    let (server, cache) = a_hundred_refused(challenges).await;

    assert_eq!(server.token_requests(), 2, "{challenges:?}");
    let sent = server.path_authorizations();
    assert_eq!(sent.len(), 101, "{challenges:?}");
    assert_eq!(
        sent[..3],
        [
            bearer("/r/0", "at-1"),
            bearer("/r/0", "at-2"),
            bearer("/r/1", "at-2")
        ]
    );
    assert!(sent[1..]
        .iter()
        .all(|(_, a)| a.as_deref() == Some("Bearer at-2")));
    // One invalidation and one resend (for /r/0); the resend's 401 and the
    // 99 others passed through as they came.
    assert_eq!(counts(&cache), (2, 1, 1, 100, 0), "{challenges:?}");
}

#[tokio::test]
async fn always_401_with_a_bearer_challenge_costs_two_token_requests() {
    a_token_refused_after_a_refetch_backs_off(&[r#"Bearer realm="api", error="invalid_token""#])
        .await;
}

#[tokio::test]
async fn always_401_with_no_challenge_costs_two_token_requests() {
    a_token_refused_after_a_refetch_backs_off(&[]).await;
}

#[tokio::test]
async fn always_401_with_only_other_schemes_costs_the_first_token_request_only() {
    for challenges in [
        &[r#"Basic realm="x""#][..],
        // Several headers, several challenges in one: still none is ours.
        &[
            r#"Basic realm="x", Digest realm="y", nonce="n""#,
            "Negotiate",
        ][..],
    ] {
        let (server, cache) = a_hundred_refused(challenges).await;

        assert_eq!(server.token_requests(), 1, "{challenges:?}");
        assert_eq!(server.resource_count(), 100, "{challenges:?}");
        assert!(server
            .authorizations()
            .iter()
            .all(|a| a.as_deref() == Some("Bearer at-1")));
        // Not ours to fix: no invalidation, no resend, each one counted.
        assert_eq!(counts(&cache), (1, 0, 0, 0, 100), "{challenges:?}");
    }
}

#[tokio::test]
async fn a_bearer_challenge_next_to_another_scheme_is_ours() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = layered(&cache, http_client());
    svc.clone().oneshot(server.get("/warm")).await.unwrap();
    server.revoke("at-1");
    server.set_challenges(&[
        r#"Basic realm="x""#,
        r#"Negotiate, Bearer error="invalid_token""#,
    ]);
    let resp = svc.oneshot(server.get("/x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/warm", "at-1"),
            bearer("/x", "at-1"),
            bearer("/x", "at-2")
        ]
    );
    assert_eq!(counts(&cache), (2, 1, 1, 0, 0));
}

#[tokio::test]
async fn an_answer_other_than_401_for_the_current_token_ends_the_backoff() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let svc = layered(&cache, http_client());
    // /r/0: at-1 refused, at-2 refused on the resend, which starts the
    // backoff; /r/1: at-2 refused again, passed through.
    let statuses = send_sequentially(&svc, &server, 2).await;
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 2]);
    assert_eq!(counts(&cache), (2, 1, 1, 2, 0));

    // The resource takes at-2 once: the backoff is over.
    server.set_reject_all(false);
    let ok = svc.clone().oneshot(server.get("/ok")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // So the next refusal is answered with a new token again.
    server.set_reject_all(true);
    let refused = svc.clone().oneshot(server.get("/again")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.token_requests(), 3);
    assert_eq!(
        server.path_authorizations()[3..],
        [
            bearer("/ok", "at-2"),
            bearer("/again", "at-2"),
            bearer("/again", "at-3")
        ]
    );
    // at-3 was fetched because of that 401, and is refused too: back off.
    assert_eq!(counts(&cache), (3, 2, 2, 3, 0));
    let refused = svc.oneshot(server.get("/then")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.token_requests(), 3);
    assert_eq!(counts(&cache), (3, 2, 2, 4, 0));
}

#[tokio::test]
async fn a_token_taken_on_the_resend_is_replaced_when_refused_later() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = layered(&cache, http_client());
    svc.clone().oneshot(server.get("/warm")).await.unwrap();
    // Each token is revoked once it has been used: a new one always helps.
    for (path, revoked) in [("/a", "at-1"), ("/b", "at-2"), ("/c", "at-3")] {
        server.revoke(revoked);
        let resp = svc.clone().oneshot(server.get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(server.token_requests(), 4);
    assert_eq!(
        server.path_authorizations()[1..],
        [
            bearer("/a", "at-1"),
            bearer("/a", "at-2"),
            bearer("/b", "at-2"),
            bearer("/b", "at-3"),
            bearer("/c", "at-3"),
            bearer("/c", "at-4")
        ]
    );
    assert_eq!(counts(&cache), (4, 3, 3, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_against_always_401_cost_two_token_requests() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let svc = layered(&cache, http2_client());
    // 100 callers, 10 requests each, one after another.
    let tasks: Vec<_> = (0..100)
        .map(|c| {
            let svc = svc.clone();
            let requests: Vec<_> = (0..10)
                .map(|i| server.get(&format!("/c/{c}/{i}")))
                .collect();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for req in requests {
                    statuses.push(svc.clone().oneshot(req).await.unwrap().status());
                }
                statuses
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), [StatusCode::UNAUTHORIZED; 10]);
    }
    // at-1, and at-2 fetched when at-1 was refused; at-2's refusal stops
    // the refetches. Which 401s came back before that one is up to the
    // scheduler: each of the 1000 either passed through, or was resent once
    // (with at-2) and the resend's 401 passed through.
    assert_eq!(server.token_requests(), 2);
    let (fetches, invalidations, retries, backed_off, other) = counts(&cache);
    assert_eq!((fetches, invalidations, backed_off, other), (2, 1, 1000, 0));
    assert_eq!(server.resource_count() as u64, 1000 + retries);
}

#[tokio::test]
async fn with_the_default_backoff_100_refusals_cost_at_most_three_token_requests() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let svc = OAuth2Layer::new(cache.clone()).layer(http_client());

    let statuses = send_sequentially(&svc, &server, 100).await;

    assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 100]);
    // 2, unless the machine took longer than the first step (0.5–1 s).
    let fetches = server.token_requests();
    assert!((2..=3).contains(&fetches), "{fetches} token requests");
    let (token_fetches, invalidations, retries, backed_off, other) = counts(&cache);
    assert_eq!(token_fetches, fetches as u64);
    let refetches = fetches as u64 - 1;
    assert_eq!((invalidations, retries, other), (refetches, refetches, 0));
    // Each 401 passed through, or was resent and the resend's 401 did.
    assert_eq!(backed_off, 100);
}

/// A resource server on its own port that takes every token: the
/// `Authorization` headers it received.
async fn always_200() -> (support::serve::Serving, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let serving = support::serve::serve(tower::service_fn(move |req: Request<Incoming>| {
        let header = req.headers().get("authorization");
        let header = header.map(|h| h.to_str().unwrap_or("(not text)").to_owned());
        record.lock().expect("the record").push(header);
        async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
    }))
    .await;
    (serving, seen)
}

/// 100 pairs, one after another: a request to a resource (X) that refuses
/// every token, then one to another (Y, on another port) that takes them.
/// Y's 200s do not end X's backoff: X costs what it costs alone (2 token
/// requests, as `always_401_with_a_bearer_challenge_costs_two_token_requests`),
/// and Y keeps the token it was using.
async fn x_401_y_200_pairs(post: bool) {
    let x = TestServer::start().await;
    x.set_reject_all(true);
    let (y, y_saw) = always_200().await;
    let cache = x.client_credentials().build();
    let svc = layered(&cache, http_client());
    for i in 0..100 {
        // A POST with a body is not resent (no copy is kept of it): its
        // answer is still recorded for X.
        let to_x = if post {
            Request::post(x.url(&format!("/x/{i}"))).body(Full::from("order"))
        } else {
            Request::get(x.url(&format!("/x/{i}"))).body(Full::default())
        };
        let refused = svc.clone().oneshot(to_x.unwrap()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "x {i}");
        let to_y = Request::get(y.url(&format!("/y/{i}"))).body(Full::default());
        let taken = svc.clone().oneshot(to_y.unwrap()).await.unwrap();
        assert_eq!(taken.status(), StatusCode::OK, "y {i}");
    }
    assert_eq!(x.token_requests(), 2, "post: {post}");
    let y_saw = y_saw.lock().unwrap().clone();
    assert_eq!(y_saw.len(), 100);
    assert!(
        y_saw.iter().all(|h| h.as_deref() == Some("Bearer at-2")),
        "post: {post}: {y_saw:?}"
    );
    // GET: at-1 refused, resent with at-2, refused: X's step; then every
    // X 401 passed through. POST: at-1 refused (not resent), at-2 refused
    // on /x/1: X's step.
    let (fetches, invalidations, retries, backed_off, _) = counts(&cache);
    let want = if post { (2, 1, 0, 99) } else { (2, 1, 1, 100) };
    assert_eq!((fetches, invalidations, retries, backed_off), want);
}

#[tokio::test]
async fn a_second_resource_taking_the_token_does_not_end_the_backoff_of_one_refusing_it() {
    x_401_y_200_pairs(false).await;
}

#[tokio::test]
async fn a_second_resource_taking_the_token_does_not_end_the_backoff_of_post_refusals() {
    x_401_y_200_pairs(true).await;
}

/// The reqwest middleware keeps the record per resource server too.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn through_reqwest_a_second_resource_taking_the_token_does_not_end_the_backoff() {
    use tower_oauth2::reqwest::OAuth2Middleware;
    let x = TestServer::start().await;
    x.set_reject_all(true);
    let (y, y_saw) = always_200().await;
    let cache = x.client_credentials().build();
    let middleware = OAuth2Middleware::new(cache.clone()).unauthorized_backoff(an_hour());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    for i in 0..100 {
        let refused = client.get(x.url(&format!("/x/{i}"))).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "x {i}");
        let taken = client.get(y.url(&format!("/y/{i}"))).send().await.unwrap();
        assert_eq!(taken.status(), StatusCode::OK, "y {i}");
    }
    assert_eq!(x.token_requests(), 2);
    let y_saw = y_saw.lock().unwrap().clone();
    assert!(
        y_saw.iter().all(|h| h.as_deref() == Some("Bearer at-2")),
        "{y_saw:?}"
    );
    assert_eq!(counts(&cache), (2, 1, 1, 100, 0));
}

/// Issue 23, the pair clone per request × 401: a handle used for many
/// requests keeps its own copy of the token; a 401 for that token (sent
/// by a clone of it) invalidates it for every handle: the handle itself, a
/// clone made before the 401 and clones made after all send the new token,
/// fetched once.
#[tokio::test]
async fn a_refused_token_is_sent_by_no_handle_a_used_one_its_clones_made_before_or_after() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let mut used = layered(&cache, http_client());
    for path in ["/used/1", "/used/2", "/used/3"] {
        let ready = used.ready().await.expect("ready");
        let resp = ready.call(server.get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let before = used.clone();
    server.revoke("at-1");
    let resp = used.clone().oneshot(server.get("/x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = before.oneshot(server.get("/before")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ready = used.ready().await.expect("ready");
    let resp = ready.call(server.get("/used")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = used.clone().oneshot(server.get("/after")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        server.path_authorizations()[3..],
        [
            bearer("/x", "at-1"),
            bearer("/x", "at-2"),
            bearer("/before", "at-2"),
            bearer("/used", "at-2"),
            bearer("/after", "at-2")
        ]
    );
    assert_eq!(counts(&cache), (2, 1, 1, 0, 0));
}
