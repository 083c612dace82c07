//! OAuth2Middleware (reqwest-middleware) and ReqwestTransport against a real
//! token endpoint and resource server on 127.0.0.1.
#![cfg(feature = "reqwest")]

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use support::client::{http_client, oauth_error};
use support::token_server::{bearer, Canned, ClientCheck, TestServer, INVALID_CLIENT};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::cache::{Backoff, TokenCacheBuilder};
use tower_oauth2::error::ErrorKind;
use tower_oauth2::layer::{AuthPolicy, Destinations};
use tower_oauth2::reqwest::{token_error, OAuth2Middleware, ReqwestTransport};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// A cache whose token endpoint is reached over reqwest.
fn reqwest_cache(server: &TestServer) -> TokenCacheBuilder {
    let endpoint = TokenEndpoint::new(
        ReqwestTransport::new(),
        TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_basic("client", "secret"),
    );
    TokenCache::builder(endpoint, TokenRequest::client_credentials())
}

/// Destinations that are `server`'s origin and no other.
fn origin_of(server: &TestServer) -> Destinations {
    Destinations::origins([format!("http://{}", server.addr)]).unwrap()
}

fn client(middleware: OAuth2Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// Runs after the OAuth2 middleware and records the Authorization header it
/// set and whether that header is marked sensitive.
#[derive(Clone, Default)]
struct SeeAuthorization(Arc<Mutex<Vec<(String, bool)>>>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for SeeAuthorization {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if let Some(v) = req.headers().get("authorization") {
            let seen = (v.to_str().unwrap().to_owned(), v.is_sensitive());
            self.0.lock().unwrap().push(seen);
        }
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn the_header_is_injected_sensitive_and_the_token_cached() {
    let server = TestServer::start().await;
    server.set_client("client", "secret", ClientCheck::Basic);
    let cache = server.client_credentials().build();
    let seen = SeeAuthorization::default();
    let http = ClientBuilder::new(reqwest::Client::new())
        .with(OAuth2Middleware::new(cache.clone()))
        .with(seen.clone())
        .build();
    for path in ["/a", "/b"] {
        let resp = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            ("Bearer at-1".to_owned(), true),
            ("Bearer at-1".to_owned(), true)
        ]
    );
    assert_eq!(
        server.path_authorizations(),
        [bearer("/a", "at-1"), bearer("/b", "at-1")]
    );
    assert_eq!(server.token_requests(), 1);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.waits, stats.retries), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_fetch_one_token() {
    let server = TestServer::start().await;
    // A slow endpoint keeps the fetch in flight while the requests pile up.
    server.set_latency(Duration::from_millis(200));
    let cache = server.client_credentials().build();
    let http = client(OAuth2Middleware::new(cache.clone()));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let request = http.get(server.url(&format!("/r/{i}")));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 200);
    assert!(server
        .path_authorizations()
        .iter()
        .all(|(_, a)| a.as_deref() == Some("Bearer at-1")));
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.fetch_failures, stats.retries),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn a_revoked_token_is_refetched_once_and_the_request_resent() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let http = client(OAuth2Middleware::new(cache.clone()));
    assert_eq!(
        http.get(server.url("/a")).send().await.unwrap().status(),
        StatusCode::OK
    );
    server.revoke("at-1");
    // A body in memory can be cloned, so it is resent with the same bytes.
    let resp = http
        .post(server.url("/b"))
        .header("x-trace", "t-1")
        .body("{\"order\":42}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "{\"order\":42}");
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.unauthorized_count(), 1);
    let seen = server.resource_requests();
    assert_eq!(
        seen.iter()
            .map(|(p, a, b)| (p.as_str(), a.as_deref().unwrap(), b.clone()))
            .collect::<Vec<_>>(),
        [
            ("/a", "Bearer at-1", Bytes::new()),
            ("/b", "Bearer at-1", Bytes::from_static(b"{\"order\":42}")),
            ("/b", "Bearer at-2", Bytes::from_static(b"{\"order\":42}")),
        ]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.invalidations, stats.retries),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_streamed_body_gets_its_401_back_without_retry() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let http = client(OAuth2Middleware::new(cache.clone()));
    http.get(server.url("/warm")).send().await.unwrap();
    server.revoke("at-1");
    // `Body::wrap` makes a streaming body, which `Request::try_clone` refuses.
    let body = reqwest::Body::wrap(Full::new(Bytes::from_static(b"payload")));
    let resp = http.post(server.url("/p")).body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer realm="test", error="invalid_token""#
    );
    assert_eq!(resp.text().await.unwrap(), "unauthorized");
    assert_eq!(server.resource_count(), 2); // warm-up + the one POST
    assert_eq!(server.token_requests(), 1); // invalidated, not refetched yet
    let stats = cache.stats();
    assert_eq!((stats.invalidations, stats.retries), (1, 0));
    // The next request gets a new token.
    let resp = http.get(server.url("/next")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/warm", "at-1"),
            bearer("/p", "at-1"),
            bearer("/next", "at-2")
        ]
    );
}

#[tokio::test]
async fn a_second_401_is_returned_with_no_loop() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let http = client(OAuth2Middleware::new(cache.clone()));
    let resp = http.get(server.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.path_authorizations(),
        [bearer("/x", "at-1"), bearer("/x", "at-2")]
    );
    assert_eq!(server.token_requests(), 2);
    assert_eq!(cache.stats().retries, 1);
}

#[tokio::test]
async fn a_resource_refusing_every_token_costs_two_token_requests() {
    let server = TestServer::start().await;
    server.set_reject_all(true);
    let cache = server.client_credentials().build();
    let hour = Duration::from_secs(3600);
    // An hour's backoff: no run of this test outlasts its first step.
    let middleware =
        OAuth2Middleware::new(cache.clone()).unauthorized_backoff(Backoff::new(hour, hour));
    let http = client(middleware);
    for i in 0..100 {
        let resp = http
            .get(server.url(&format!("/r/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // at-1 refused, refetched and resent with at-2, refused too: new tokens
    // do not help, and that 401 and the 99 others pass through.
    assert_eq!(server.token_requests(), 2);
    let sent = server.path_authorizations();
    assert_eq!(
        sent[..3],
        [
            bearer("/r/0", "at-1"),
            bearer("/r/0", "at-2"),
            bearer("/r/1", "at-2")
        ]
    );
    assert_eq!(sent.len(), 101);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.token_fetches,
            stats.invalidations,
            stats.retries,
            stats.unauthorized_backed_off,
            stats.unauthorized_other_scheme
        ),
        (2, 1, 1, 100, 0)
    );
}

#[tokio::test]
async fn retry_can_be_turned_off() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let http = client(OAuth2Middleware::new(cache.clone()).retry_unauthorized(false));
    http.get(server.url("/warm")).send().await.unwrap();
    server.revoke("at-1");
    let resp = http.get(server.url("/x")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = http.get(server.url("/y")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/warm", "at-1"),
            bearer("/x", "at-1"),
            bearer("/y", "at-2")
        ]
    );
    let stats = cache.stats();
    assert_eq!((stats.invalidations, stats.retries), (1, 0));
}

#[tokio::test]
async fn existing_authorization_is_replaced_by_default_or_kept_if_asked() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let replace = client(OAuth2Middleware::new(cache.clone()));
    let keep = client(OAuth2Middleware::new(cache.clone()).keep_existing_authorization(true));
    let caller_set = |http: &ClientWithMiddleware, path: &str| {
        let request = http.get(server.url(path));
        request.header("authorization", "Bearer caller-set").send()
    };
    let resp = caller_set(&replace, "/r").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = caller_set(&keep, "/k").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED); // not ours: no retry
    let resp = keep.get(server.url("/n")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK); // none set: ours is added
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/r", "at-1"),
            bearer("/k", "caller-set"),
            bearer("/n", "at-1")
        ]
    );
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (1, 0));
}

#[tokio::test]
async fn one_cache_serves_the_tower_layer_and_the_reqwest_middleware() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let tower_client = ServiceBuilder::new()
        .layer(OAuth2Layer::new(cache.clone()))
        .service(http_client());
    let reqwest_client = client(OAuth2Middleware::new(cache.clone()));
    let tower_get = |path: &str| {
        tower_client.clone().oneshot(
            Request::get(server.url(path))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
    };

    // One fetch serves both.
    assert_eq!(tower_get("/t1").await.unwrap().status(), StatusCode::OK);
    let resp = reqwest_client.get(server.url("/q1")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 1);

    // A 401 seen by reqwest invalidates the token for the tower layer too:
    // the refetched token serves the layer with no further fetch.
    server.revoke("at-1");
    let resp = reqwest_client.get(server.url("/q2")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(tower_get("/t2").await.unwrap().status(), StatusCode::OK);

    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/t1", "at-1"),
            bearer("/q1", "at-1"),
            bearer("/q2", "at-1"),
            bearer("/q2", "at-2"),
            bearer("/t2", "at-2"),
        ]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.invalidations, stats.retries),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn token_endpoint_errors_are_typed_and_downcastable() {
    let server = TestServer::start().await;
    let cache = server.failing_invalid_client();
    let http = client(OAuth2Middleware::new(cache.clone()));
    let err = http.get(server.url("/a")).send().await.unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("{err:?}")
    };
    let e = inner.downcast_ref::<tower_oauth2::Error>().unwrap();
    assert_eq!(oauth_error(e), INVALID_CLIENT);
    assert!(!e.is_retryable());
    assert_eq!(
        err.to_string(),
        "token endpoint answered 401 Unauthorized: invalid_client: Client authentication failed"
    );
    // Within the backoff, the next request fails at once with the same cause.
    let err = http.get(server.url("/b")).send().await.unwrap_err();
    let (kind, code, _) = oauth_error(token_error(&err).unwrap());
    assert_eq!((kind, code), (ErrorKind::NoToken, INVALID_CLIENT.1));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 0);
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn the_token_endpoint_runs_over_reqwest() {
    let server = TestServer::start().await;
    server.set_client("client", "secret", ClientCheck::Basic);
    let cache = reqwest_cache(&server).build();
    let http = client(OAuth2Middleware::new(cache.clone()));
    let resp = http.get(server.url("/a")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.path_authorizations(), [bearer("/a", "at-1")]);
    let received = server.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/token"));
    assert_eq!(r.headers["authorization"], "Basic Y2xpZW50OnNlY3JldA==");
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(r.headers["content-length"], "29");
    assert_eq!(r.body, "grant_type=client_credentials");
}

#[tokio::test]
async fn the_reqwest_transport_does_not_follow_a_redirect_from_the_token_endpoint() {
    let server = TestServer::start().await;
    // A 307 keeps method and body: following it would post the client
    // secret to /elsewhere.
    server.script([Canned::new(307, "text/plain", "moved").header("location", "/elsewhere")]);
    let endpoint = TokenEndpoint::new(
        ReqwestTransport::new(),
        TokenUrl::new(&server.token_url()).unwrap(),
        ClientAuth::client_secret_post("client", "secret"),
    );
    let err = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Redirect);
    assert_eq!(err.status(), Some(StatusCode::TEMPORARY_REDIRECT));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.resource_count(), 0);

    // A client that does follow redirects is caught afterwards.
    server.script([Canned::new(307, "text/plain", "moved").header("location", "/token")]);
    let endpoint = TokenEndpoint::new(
        ReqwestTransport::from_client(reqwest::Client::new()),
        TokenUrl::new(&server.url("/token?moved")).unwrap(),
        ClientAuth::client_secret_post("client", "secret"),
    );
    let err = endpoint
        .request(&TokenRequest::client_credentials())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("followed a redirect"), "{source}");
}

#[tokio::test]
async fn the_token_goes_only_to_allowed_destinations() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let cache = server.client_credentials().build();
    let only_server = origin_of(&server);
    let client = client(OAuth2Middleware::new(cache.clone()).destinations(only_server));
    let resp = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Another origin: no token, no retry of its 401.
    let resp = client.get(other.url("/b")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(other.path_authorizations(), [("/b".to_owned(), None)]);
    assert_eq!(server.token_requests(), 1);
    assert_eq!(cache.stats().retries, 0);
}

#[tokio::test]
async fn one_auth_policy_configures_the_layer_and_the_middleware_alike() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let cache = server.client_credentials().build();
    let policy = AuthPolicy::new(cache.clone())
        .destinations(origin_of(&server))
        .keep_existing_authorization(true);
    let tower_client = ServiceBuilder::new()
        .layer(OAuth2Layer::from_policy(policy.clone()))
        .service(http_client());
    let reqwest_client = client(OAuth2Middleware::from_policy(policy));

    for (transport, to_server, kept, to_other) in [
        ("tower", "/t", "/tk", "/to"),
        ("reqwest", "/q", "/qk", "/qo"),
    ] {
        let send = |url: String, caller_set: bool| {
            let mut get = Request::get(url);
            if caller_set {
                get = get.header("authorization", "Bearer caller-set");
            }
            let request = get.body(Full::<Bytes>::default()).unwrap();
            let tower_client = tower_client.clone();
            let reqwest_client = reqwest_client.clone();
            async move {
                if transport == "tower" {
                    tower_client.oneshot(request).await.unwrap().status()
                } else {
                    let request = reqwest::Request::try_from(request.map(|_| Vec::new())).unwrap();
                    reqwest_client.execute(request).await.unwrap().status()
                }
            }
        };
        assert_eq!(send(server.url(to_server), false).await, StatusCode::OK);
        // The caller's header is kept, and its 401 is not retried.
        let status = send(server.url(kept), true).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{transport}");
        // Another origin gets no token, and its 401 is not retried.
        let status = send(other.url(to_other), false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{transport}");
    }
    assert_eq!(
        server.path_authorizations(),
        [
            bearer("/t", "at-1"),
            bearer("/tk", "caller-set"),
            bearer("/q", "at-1"),
            bearer("/qk", "caller-set"),
        ]
    );
    assert_eq!(
        other.path_authorizations(),
        [("/to".to_owned(), None), ("/qo".to_owned(), None)]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.token_fetches, stats.invalidations, stats.retries),
        (1, 0, 0)
    );
}
