//! Which requests get the token: when their URI names no destination
//! (origin-form request targets, `/pkg.Svc/Method`, as `hyper::client::conn`
//! and tonic send them, over a connection opened to 127.0.0.1), and when
//! one client calls two services (the default, `for_origin`).

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::client::{connection, http_client, origin_form_get, over_connection};
use support::log::capture;
use support::token_server::{bearer, TestServer};
use tower::{Layer, ServiceExt};
use tower_oauth2::layer::Destinations;
use tower_oauth2::{OAuth2Layer, TokenCache, TokenRequest};

#[tokio::test]
async fn over_hyper_conn_an_origin_form_request_gets_no_token_by_default() {
    let logs = capture();
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let conn = connection(&server).await;
    let layer = OAuth2Layer::new(cache.clone());
    let first = layer.layer(conn.clone());
    let second = first.clone();

    assert_eq!(get_items(&first, &server).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.path_authorizations(), [("/items".to_owned(), None)]);
    assert_eq!(get_items(&second, &server).await, StatusCode::UNAUTHORIZED);
    let other_layer = OAuth2Layer::new(cache.clone()).layer(conn);
    assert_eq!(
        get_items(&other_layer, &server).await,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(server.authorizations(), [None, None, None]);
    assert_eq!(server.token_requests(), 0);
    let stats = cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (0, 0));
    // Logged once per layer (its services share it), not per request.
    assert_eq!(logs.count("path-only (origin-form) URI"), 2);
    assert_eq!(logs.count("origin_form_to"), 2);
}

#[tokio::test]
async fn over_hyper_conn_told_the_connections_origin_the_token_is_sent() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = over_connection(&server, OAuth2Layer::new(cache.clone())).await;

    assert_eq!(get_items(&svc, &server).await, StatusCode::OK);
    assert_eq!(get_items(&svc, &server).await, StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [
            ("/items".to_owned(), Some("Bearer at-1".to_owned())),
            ("/items".to_owned(), Some("Bearer at-1".to_owned())),
        ]
    );
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn over_hyper_conn_allow_origin_form_sends_the_token_on_the_users_word() {
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let svc = OAuth2Layer::new(cache.clone())
        .destinations(Destinations::secure().allow_origin_form())
        .layer(connection(&server).await);
    assert_eq!(get_items(&svc, &server).await, StatusCode::OK);
    assert_eq!(
        server.path_authorizations(),
        [("/items".to_owned(), Some("Bearer at-1".to_owned()))]
    );
}

/// DPoP over a connection that sends origin-form requests (as tonic does):
/// the proof's `htu` is the origin `origin_form_to` named plus the path,
/// and the resource's nonce is remembered for that origin.
#[cfg(feature = "dpop")]
#[tokio::test]
async fn over_hyper_conn_dpop_proofs_name_the_origin_that_origin_form_to_gave() {
    use tower_oauth2::dpop::Dpop;
    use tower_oauth2::{TokenCache, TokenRequest};

    let server = TestServer::start().await;
    server.set_dpop_nonces(None, Some("n-resource-1"));
    let key = Dpop::generate().unwrap();
    let endpoint = server.endpoint().dpop(key.clone());
    let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials()).build();
    let svc = over_connection(&server, OAuth2Layer::new(cache.clone())).await;

    assert_eq!(get_items(&svc, &server).await, StatusCode::OK);
    // One refusal asking for the nonce; the resend's proof (its `htu` is
    // http://127.0.0.1:PORT/items, checked by the server) is accepted.
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    assert_eq!(
        server.path_authorizations(),
        [
            ("/items".to_owned(), Some("DPoP at-1".to_owned())),
            ("/items".to_owned(), Some("DPoP at-1".to_owned())),
        ]
    );
    let origin: http::Uri = server.url("/elsewhere").parse().unwrap();
    assert_eq!(key.nonce(&origin).as_deref(), Some("n-resource-1"));
    // The nonce is sent from now on: no more round trips.
    assert_eq!(get_items(&svc, &server).await, StatusCode::OK);
    assert_eq!(server.dpop_refusals(), ["resource: UseNonce"]);
    assert_eq!(server.token_requests(), 1);
}

// ---- Absolute URIs: where the token goes when the user chooses nothing,
// or one origin. Two servers on two loopback ports: A issues the tokens
// and is the API; B is another service the same client calls.

/// A, and B accepting A's first token (so a token B gets is not refused
/// and refetched).
async fn two_services() -> (TestServer, TestServer) {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    b.add_valid_token("at-1");
    (a, b)
}

/// A GET of `path` at `server` through `svc`: its status.
async fn get<S>(svc: &S, server: &TestServer, path: &str) -> StatusCode
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone,
    S::Error: std::fmt::Debug,
{
    svc.clone()
        .oneshot(server.get(path))
        .await
        .unwrap()
        .status()
}

/// A GET of `/items` with an origin-form URI at `server` (as over a
/// [`connection`] to it) through `svc`: its status.
async fn get_items<S>(svc: &S, server: &TestServer) -> StatusCode
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone,
    S::Error: std::fmt::Debug,
{
    let request = origin_form_get(server, "/items");
    svc.clone().oneshot(request).await.unwrap().status()
}

/// `http://127.0.0.1:port`, as the logs name an origin.
fn origin(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}", server.addr.port())
}

#[tokio::test]
async fn a_token_request_naming_its_api_sends_the_token_there_only() {
    let logs = capture();
    for named_by in ["resource", "audience"] {
        let (a, b) = two_services().await;
        // The API's URL, as RFC 8707 `resource` or an `audience` URL.
        let request = TokenRequest::client_credentials().param(named_by, a.url("/v1"));
        let cache = TokenCache::builder(a.endpoint(), request).build();
        let svc = OAuth2Layer::new(cache.clone()).layer(http_client());

        assert_eq!(get(&svc, &a, "/items").await, StatusCode::OK);
        // B, called through the same client, gets no token.
        assert_eq!(get(&svc, &b, "/other").await, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&svc, &b, "/other").await, StatusCode::UNAUTHORIZED);
        assert_eq!(a.path_authorizations(), [bearer("/items", "at-1")]);
        assert_eq!(
            b.path_authorizations(),
            [("/other".to_owned(), None), ("/other".to_owned(), None)],
            "{named_by}"
        );
        assert_eq!(a.token_requests(), 1);
        // The first request sent without the token is logged, once.
        let logged = logs
            .text()
            .lines()
            .filter(|l| l.contains("was sent without a token: the token request names its API"))
            .filter(|l| l.contains(&origin(&a)) && l.contains(&origin(&b)))
            .count();
        assert_eq!(logged, 1, "{named_by}");
    }
}

#[tokio::test]
async fn under_the_permissive_default_a_second_origin_is_logged_once_naming_both() {
    let logs = capture();
    let (a, b) = two_services().await;
    let cache = a.client_credentials().build();
    let layer = OAuth2Layer::new(cache);
    let (one, two) = (layer.layer(http_client()), layer.layer(http_client()));
    assert_eq!(get(&one, &a, "/items").await, StatusCode::OK);
    assert_eq!(get(&one, &b, "/other").await, StatusCode::OK);
    assert_eq!(get(&two, &b, "/other").await, StatusCode::OK);
    assert_eq!(get(&two, &a, "/items").await, StatusCode::OK);
    // The default sends it (it is permissive) ...
    let at_1 = Some("Bearer at-1".to_owned());
    assert_eq!(b.authorizations(), [at_1.clone(), at_1]);
    // ... and says so, once for the layer, naming both origins.
    let logged: Vec<String> = logs
        .text()
        .lines()
        .filter(|l| l.contains("no destination was chosen"))
        .filter(|l| l.contains(&origin(&a)) || l.contains(&origin(&b)))
        .map(str::to_owned)
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains(" WARN "), "{logged:?}");
    let (first, second) = (
        format!("first={}", origin(&a)),
        format!("second={}", origin(&b)),
    );
    assert!(
        logged[0].contains(&first) && logged[0].contains(&second),
        "{logged:?}"
    );
    assert!(logged[0].contains("OAuth2Layer::for_origin"), "{logged:?}");
}

#[tokio::test]
async fn for_origin_on_the_layer_sends_the_token_to_that_origin_only() {
    let (a, b) = two_services().await;
    let cache = a.client_credentials().build();
    let layer = OAuth2Layer::for_origin(cache, a.url("")).unwrap();
    let svc = layer.layer(http_client());
    assert_eq!(get(&svc, &a, "/items").await, StatusCode::OK);
    assert_eq!(get(&svc, &b, "/other").await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.path_authorizations(), [bearer("/items", "at-1")]);
    assert_eq!(b.path_authorizations(), [("/other".to_owned(), None)]);
    // Not an origin: refused when the layer is built.
    let cache = a.client_credentials().build();
    let e = OAuth2Layer::for_origin(cache, "https://api.example.com/v1").unwrap_err();
    assert_eq!(e.kind(), tower_oauth2::ErrorKind::InvalidDestination);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn for_origin_on_the_reqwest_middleware_sends_the_token_to_that_origin_only() {
    use tower_oauth2::reqwest::OAuth2Middleware;
    let (a, b) = two_services().await;
    let cache = a.client_credentials().build();
    let middleware = OAuth2Middleware::for_origin(cache, a.url("")).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let to_a = client.get(a.url("/items")).send().await.unwrap();
    assert_eq!(to_a.status(), StatusCode::OK);
    let to_b = client.get(b.url("/other")).send().await.unwrap();
    assert_eq!(to_b.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.path_authorizations(), [bearer("/items", "at-1")]);
    assert_eq!(b.path_authorizations(), [("/other".to_owned(), None)]);
}
