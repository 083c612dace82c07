//! OAuth2Layer against a real token endpoint and resource server on 127.0.0.1.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::client::{http2_client, http_client, layered, oauth_error};
use support::token_server::{bearer, Canned, TestServer, INVALID_CLIENT};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_oauth2::cache::RefreshPolicy;
use tower_oauth2::error::ErrorKind;
use tower_oauth2::layer::{NoReplay, ReplayClone, ServiceError};
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_1000_concurrent_requests_fetch_one_token() {
    let server = TestServer::start().await;
    // A slow endpoint keeps the fetch in flight while the requests pile up.
    server.set_latency(Duration::from_millis(200));
    let cache = server.client_credentials().build();
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http2_client());
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let svc = svc.clone();
        let req = server.get(&format!("/r/{i}"));
        tasks.push(tokio::spawn(async move { svc.oneshot(req).await }));
    }
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 1000);
    assert!(server
        .authorizations()
        .iter()
        .all(|a| a.as_deref() == Some("Bearer at-1")));
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.fetch_failures, stats.retries),
        (1, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refresh_across_five_lifetimes_never_makes_a_request_wait() {
    let server = TestServer::start().await;
    let ttl = Duration::from_secs(2);
    server.set_ttl(Some(ttl.as_secs()));
    // Stale at 80 % of the lifetime (1.6 s), expired at 90 % (1.8 s).
    let policy = RefreshPolicy::default().max_fraction(0.2).jitter(0.0);
    let cache = server.client_credentials().refresh_policy(policy).build();
    let svc = layered(&cache);

    // Warm up: the one request that waits.
    let resp = svc.clone().oneshot(server.get("/warm")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(cache.stats().waits, 1);

    let started = Instant::now();
    let run = ttl * 5;
    // Workers 0 and 1 send each request on a fresh clone; 2 and 3 on their
    // one service, which answers from its own copy of the token (whose
    // every use the server checks: an expired token would be a 401).
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let mut svc = svc.clone();
            let url = server.url(&format!("/w/{w}"));
            tokio::spawn(async move {
                let mut n = 0u32;
                while started.elapsed() < run {
                    let req = Request::get(url.as_str()).body(Full::default()).unwrap();
                    let resp = if w < 2 {
                        svc.clone().oneshot(req).await.unwrap()
                    } else {
                        svc.ready().await.unwrap().call(req).await.unwrap()
                    };
                    assert_eq!(resp.status(), StatusCode::OK);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                n
            })
        })
        .collect();
    let mut sent = 0;
    for w in workers {
        sent += w.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A background fetch may still be on its way to the server: let it land.
    for _ in 0..200 {
        if server.token_requests() as u64 == cache.stats().token_fetches {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = cache.stats();
    // Each token serves 1.6 s of its 2 s; the refresh happens at the first
    // request after that, so fetches lie between elapsed / 2 s and
    // elapsed / 1.6 s, plus the warm-up fetch.
    let fetches = stats.token_fetches as f64;
    let (low, high) = (elapsed / 2.0, elapsed / 1.6 + 2.0);
    assert!(
        fetches >= low && fetches <= high,
        "{fetches} fetches in {elapsed:.1} s, want {low:.1}..{high:.1}"
    );
    assert!(stats.token_fetches >= 5, "{stats:?}");
    assert_eq!(
        stats.background_refreshes,
        stats.token_fetches - 1,
        "{stats:?}"
    );
    assert_eq!(
        stats.waits, 1,
        "a request waited on the token endpoint: {stats:?}"
    );
    assert_eq!(server.unauthorized_count(), 0);
    assert_eq!(server.token_requests() as u64, stats.token_fetches);
    assert!(sent > 100);
}

#[tokio::test]
async fn revoked_token_is_refetched_once_and_the_request_resent() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    // Each request on the one service, polled ready first.
    let mut svc = layered(&cache);
    for path in ["/a", "/b"] {
        let ready = svc.ready().await.unwrap();
        let resp = ready.call(server.get(path)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        if path == "/a" {
            server.revoke("at-1");
        }
    }
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.unauthorized_count(), 1);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/a", "at-1"),
            bearer("/b", "at-1"),
            bearer("/b", "at-2")
        ]
    );
    let stats = cache.stats();
    assert_eq!((stats.retries, stats.invalidations), (1, 1));
}

#[tokio::test]
async fn a_service_used_for_many_requests_sends_each_new_token() {
    // One service, each request polled ready first: from its second
    // request on it answers from its own copy of the token, which must
    // follow a refusal (/3), a token dropped from the cache (/5: the
    // server would still take it) and one another handle fetched (/7).
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let mut svc = layered(&cache);
    let mut other = layered(&cache);
    for path in ["/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8"] {
        if path == "/3" {
            server.revoke("at-1");
        }
        if path == "/5" || path == "/7" {
            let (_, generation) = cache.bearer_header_with_generation().await.unwrap();
            cache.invalidate(generation);
        }
        if path == "/7" {
            let resp = other.ready().await.unwrap().call(server.get("/other"));
            assert_eq!(resp.await.unwrap().status(), StatusCode::OK);
        }
        let resp = svc.ready().await.unwrap().call(server.get(path)).await;
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 4);
    assert_eq!(server.unauthorized_count(), 1);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/1", "at-1"),
            bearer("/2", "at-1"),
            bearer("/3", "at-1"),
            bearer("/3", "at-2"),
            bearer("/4", "at-2"),
            bearer("/5", "at-3"),
            bearer("/6", "at-3"),
            bearer("/other", "at-4"),
            bearer("/7", "at-4"),
            bearer("/8", "at-4"),
        ]
    );
    let stats = cache.stats();
    assert_eq!((stats.retries, stats.invalidations), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_401s_for_one_token_cause_one_fetch() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http2_client());
    svc.clone().oneshot(server.get("/warm")).await.unwrap();
    server.revoke("at-1");
    // No 401 is answered before all 100 requests (with at-1) have arrived.
    server.hold_resource_answers_until(1 + 100);
    server.set_latency(Duration::from_millis(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let req = server.get(&format!("/c/{i}"));
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(req).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.unauthorized_count(), 100);
    assert_eq!(cache.stats().invalidations, 1);
    assert_eq!(cache.stats().retries, 100);
    let sent = server.authorizations();
    let with = |t: &str| sent.iter().filter(|a| a.as_deref() == Some(t)).count();
    assert_eq!(
        (with("Bearer at-1"), with("Bearer at-2"), sent.len()),
        (101, 100, 201)
    );
}

#[tokio::test]
async fn non_replayable_body_gets_its_401_back_without_retry() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = layered(&cache);
    svc.clone().oneshot(server.get("/warm")).await.unwrap();
    server.revoke("at-1");
    let post = Request::post(server.url("/p"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let resp = svc.clone().oneshot(post).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="test", error="invalid_token""#
    );
    assert_eq!(server.resource_count(), 2); // warm-up + the one POST
    assert_eq!(server.token_requests(), 1); // invalidated, not refetched yet
    assert_eq!(cache.stats().retries, 0);
    // The next request gets a new token.
    let resp = svc.oneshot(server.get("/next")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn replayable_body_is_resent_with_the_same_bytes() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()).replay_body(ReplayClone))
        .service(http_client());
    svc.clone().oneshot(server.get("/warm")).await.unwrap();
    server.revoke("at-1");
    let post = Request::post(server.url("/p"))
        .header("x-trace", "t-1")
        .body(Full::new(Bytes::from_static(b"{\"order\":42}")))
        .unwrap();
    let resp = svc.oneshot(post).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "{\"order\":42}"
    );
    let seen = server.resource_requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1],
        (
            "/p".into(),
            Some("Bearer at-1".into()),
            Bytes::from_static(b"{\"order\":42}")
        )
    );
    assert_eq!(
        seen[2],
        (
            "/p".into(),
            Some("Bearer at-2".into()),
            Bytes::from_static(b"{\"order\":42}")
        )
    );
}

#[tokio::test]
async fn a_second_401_is_returned_with_no_loop() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let svc = layered(&cache);
    let resp = svc.oneshot(server.get("/x")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.resource_count(), 2);
    assert_eq!(server.token_requests(), 2);
    assert_eq!(cache.stats().retries, 1);
}

#[tokio::test]
async fn a_cancelled_first_caller_does_not_strand_the_others() {
    let server = TestServer::start().await;
    server.set_latency(Duration::from_millis(300));
    let cache = server.client_credentials().build();
    let svc = layered(&cache);
    // The first caller starts the fetch, then gives up and is dropped.
    let first = svc.clone().oneshot(server.get("/first"));
    assert!(tokio::time::timeout(Duration::from_millis(50), first)
        .await
        .is_err());
    // The others still get the token from that one fetch.
    let (a, b) = tokio::join!(
        svc.clone().oneshot(server.get("/a")),
        svc.clone().oneshot(server.get("/b"))
    );
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 2);
}

#[tokio::test]
async fn refresh_token_rotation_reaches_the_callback() {
    let server = TestServer::start().await;
    server.add_refresh_token("rt-seed");
    server.set_rotate_refresh(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let cache = TokenCache::from_refresh_token(server.endpoint(), "rt-seed")
        .on_refresh_token(move |rt| seen2.lock().unwrap().push(rt.expose_secret().to_owned()))
        .build();
    let svc = layered(&cache);
    assert_eq!(
        svc.clone()
            .oneshot(server.get("/a"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    server.revoke("at-1");
    assert_eq!(
        svc.clone()
            .oneshot(server.get("/b"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(*seen.lock().unwrap(), ["rt-1", "rt-2"]);
    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("refresh_token").unwrap())
        .collect();
    assert_eq!(sent, ["rt-seed", "rt-1"]);
    assert!(server
        .received()
        .iter()
        .all(|r| r.param("grant_type").as_deref() == Some("refresh_token")));
}

#[tokio::test]
async fn password_grant_then_refresh_token_then_fallback() {
    let server = TestServer::start().await;
    let rotated = Arc::new(Mutex::new(Vec::new()));
    let r2 = rotated.clone();
    let cache = TokenCache::builder(server.endpoint(), TokenRequest::password("alice", "pw"))
        .on_refresh_token(move |rt| r2.lock().unwrap().push(rt.expose_secret().to_owned()))
        .build();
    let svc = layered(&cache);
    svc.clone().oneshot(server.get("/a")).await.unwrap();
    server.revoke("at-1");
    svc.clone().oneshot(server.get("/b")).await.unwrap();
    // The refresh token is refused: back to the password grant, at once.
    server.script([Canned::json(400, r#"{"error":"invalid_grant"}"#)]);
    server.revoke("at-2");
    let resp = svc.clone().oneshot(server.get("/c")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let grants: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.param("grant_type").unwrap())
        .collect();
    assert_eq!(
        grants,
        ["password", "refresh_token", "refresh_token", "password"]
    );
    // The scripted refusal issued nothing, so the password grant makes token 3.
    assert_eq!(*rotated.lock().unwrap(), ["rt-1", "rt-3"]);
}

#[tokio::test]
async fn existing_authorization_is_replaced_by_default_or_kept_if_asked() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let with_header = || {
        Request::get(server.url("/h"))
            .header("authorization", "Bearer caller-set")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let replace = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http_client());
    replace.oneshot(with_header()).await.unwrap();
    let keep = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()).keep_existing_authorization(true))
        .service(http_client());
    let resp = keep.oneshot(with_header()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED); // not ours: no retry
    assert_eq!(
        server.authorizations(),
        [Some("Bearer at-1".into()), Some("Bearer caller-set".into())]
    );
    assert_eq!(cache.stats().retries, 0);
}

#[tokio::test]
async fn token_endpoint_errors_reach_the_caller_and_fail_fast() {
    let server = TestServer::start().await;
    let cache = server.failing_invalid_client();
    let svc = layered(&cache);
    let err = svc.clone().oneshot(server.get("/a")).await.unwrap_err();
    let ServiceError::Token(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(oauth_error(e), INVALID_CLIENT);
    // Within the backoff, the next request fails at once with the same cause.
    let err = svc.clone().oneshot(server.get("/b")).await.unwrap_err();
    let (kind, code, _) = oauth_error(err.token_error().unwrap());
    assert_eq!((kind, code), (ErrorKind::NoToken, INVALID_CLIENT.1));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 0);
    assert_eq!(cache.stats().fail_fast, 1);
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn the_injected_header_is_marked_sensitive() {
    // The inner service here only records the header object it was handed
    // (sensitivity is a flag on the value, invisible on the wire).
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        *s.lock().unwrap() = req.headers().get("authorization").cloned();
        async { Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default())) }
    });
    let mut svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache))
        .service(inner);
    // The first request gets the cache's header, the next ones the
    // service's own copy of it.
    for _ in 0..3 {
        let req = Request::get("https://api.example.com/x")
            .body(Full::default())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
        let header = seen.lock().unwrap().take().unwrap();
        assert_eq!(header, "Bearer at-1");
        assert!(header.is_sensitive());
    }
}

#[tokio::test]
async fn common_tower_stacks_fit() {
    let server = TestServer::start().await;
    // A boxed, non-`Sync` token transport.
    let boxed = tower::util::BoxCloneService::new(http_client().map_err(BoxError::from));
    let cache = TokenCache::builder(
        server.endpoint_over(boxed),
        TokenRequest::client_credentials(),
    )
    .build();
    // A BoxError inner service (tower's Timeout): `?` into BoxError works
    // through `ServiceError::into_box_error` (a `Box<dyn Error>` is no
    // `Error`, so neither is `ServiceError<BoxError>`).
    let mut svc = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .timeout(Duration::from_secs(5))
        .service(http_client());
    async fn call<S>(svc: &mut S, url: String) -> Result<http::StatusCode, BoxError>
    where
        S: Service<
            Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = ServiceError<BoxError>,
        >,
    {
        let resp = svc
            .ready()
            .await
            .map_err(ServiceError::into_box_error)?
            .call(Request::get(url).body(Full::default())?)
            .await
            .map_err(ServiceError::into_box_error)?;
        Ok(resp.status())
    }
    assert_eq!(call(&mut svc, server.url("/api")).await.unwrap(), 200);
    // Bodies with no empty value (hyper's Incoming, in a proxy) with NoReplay.
    let proxy = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache).replay_body(NoReplay))
        .service(tower::service_fn(
            |r: Request<hyper::body::Incoming>| async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(r.into_body()))
            },
        ));
    fn takes_incoming<S: Service<Request<hyper::body::Incoming>>>(_: &S) {}
    takes_incoming(&proxy);
}

/// A transport failure reaches the caller with its whole cause: the
/// hyper-util client's error (`client error (Connect)`), then what it
/// wraps, down to the refused connection's `io::Error`.
#[tokio::test]
async fn a_transport_failure_keeps_its_whole_source_chain() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    // A port nothing listens on any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/items", closed.local_addr().unwrap());
    drop(closed);
    let svc = OAuth2Layer::for_origin(cache, &closed_url[..closed_url.len() - "/items".len()])
        .unwrap()
        .layer(http_client());
    let request = Request::get(&closed_url).body(Full::default()).unwrap();
    let err = svc.oneshot(request).await.unwrap_err();
    assert!(matches!(err, ServiceError::Inner(_)), "{err:?}");

    let mut chain: Vec<String> = Vec::new();
    let mut refused = false;
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(e) = next {
        chain.push(e.to_string());
        refused |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        next = e.source();
    }
    assert!(refused, "no ConnectionRefused in the chain: {chain:?}");
    // Transparent, as its Display is the inner error's: no cause twice.
    assert_eq!(err.to_string(), "client error (Connect)");
    assert!(!chain.contains(&err.to_string()), "{chain:?}");
}
