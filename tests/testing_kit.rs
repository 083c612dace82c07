//! The testing kit (feature `testing`) and `BoxClient` (issue 22): a
//! boxed client under the layer as axum state, served for real; the
//! scripted token endpoint's answers, lifetimes and refresh-token
//! rotation; the fixed-token cache under the layer and under the reqwest
//! middleware.
#![cfg(feature = "testing")]

use crate::support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::client::http_client;
use support::serve::serve;
use support::token_server::TestServer;
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::cache::TokenState;
use tower_oauth2::layer::{box_client, BoxClient};
use tower_oauth2::testing::{fixed_token_cache, Answer, ScriptedTokenEndpoint};
use tower_oauth2::{ErrorKind, OAuth2Layer};

/// What an axum state must be.
fn assert_axum_state<T: Clone + Send + Sync + 'static>() {}

#[derive(Clone)]
struct AppState {
    inventory: BoxClient,
    url: String,
}

/// A handler calling the inventory through the state's client.
async fn stock(State(state): State<AppState>) -> (StatusCode, String) {
    let request = Request::get(&state.url)
        .body(Full::default())
        .expect("a request");
    match state.inventory.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().collect().await;
            let body = body.map(|b| b.to_bytes()).unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => {
            // The layer's typed error survives the boxing.
            let what = match tower_oauth2::layer::token_error(&*e) {
                Some(token) if token.kind() == ErrorKind::OAuth => "no token",
                _ => "transport",
            };
            (StatusCode::BAD_GATEWAY, what.to_owned())
        }
    }
}

fn app(inventory: BoxClient, url: String) -> axum::Router {
    axum::Router::new()
        .route("/stock", axum::routing::get(stock))
        .with_state(AppState { inventory, url })
}

/// `GET /stock` through `router`, served on 127.0.0.1: its status and body.
async fn get_stock(router: axum::Router) -> (StatusCode, String) {
    let serving = serve(router).await;
    let request = support::client::get(&serving.url("/stock"));
    let response = http_client().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_boxed_client_under_the_layer_is_axum_state_with_a_hyper_client() {
    assert_axum_state::<BoxClient>();
    let server = TestServer::start().await;
    let cache = server.client_credentials().build();
    let layer = OAuth2Layer::for_origin(cache.clone(), format!("http://{}", server.addr))
        .expect("the server's origin");
    let client = box_client(ServiceBuilder::new().layer(layer).service(http_client()));
    let router = app(client, server.url("/items/1"));
    assert_eq!(get_stock(router.clone()).await.0, StatusCode::OK);
    // A 401 through the box: one new token, one resend.
    server.revoke("at-1");
    assert_eq!(get_stock(router).await.0, StatusCode::OK);
    assert_eq!(
        server.authorizations(),
        [
            Some("Bearer at-1"),
            Some("Bearer at-1"),
            Some("Bearer at-2")
        ]
        .map(|a| a.map(str::to_owned))
    );
    assert_eq!(server.token_requests(), 2);
    assert_eq!(cache.stats().retries, 1);
}

#[tokio::test]
async fn a_boxed_client_keeps_the_layers_typed_token_error() {
    let endpoint = ScriptedTokenEndpoint::new();
    endpoint.queue(Answer::error(StatusCode::UNAUTHORIZED, "invalid_client"));
    let layer = OAuth2Layer::new(endpoint.cache());
    let client = box_client(ServiceBuilder::new().layer(layer).service(http_client()));
    let router = app(client, "http://127.0.0.1:1/items/1".to_owned());
    assert_eq!(
        get_stock(router).await,
        (StatusCode::BAD_GATEWAY, "no token".to_owned())
    );
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test]
async fn a_handler_tests_with_a_fixed_token_and_a_mock_resource_with_no_network() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let inventory = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let auth = request.headers().get("authorization");
        let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
        record.lock().expect("the record").push(auth);
        async { Ok::<_, Infallible>(Response::new(Full::from("42 in stock"))) }
    });
    let layer = OAuth2Layer::for_origin(fixed_token_cache("test-token"), "https://inventory.test")
        .expect("an origin");
    let client = box_client(ServiceBuilder::new().layer(layer).service(inventory));
    let router = app(client, "https://inventory.test/items/1".to_owned());
    for _ in 0..3 {
        let request = Request::get("/stock")
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = router.clone().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.expect("a body");
        assert_eq!(body.to_bytes(), "42 in stock");
    }
    assert_eq!(*seen.lock().expect("the record"), ["Bearer test-token"; 3]);
}

#[tokio::test]
async fn the_scripted_endpoint_answers_its_script_then_tokens_with_their_lifetime() {
    let endpoint = ScriptedTokenEndpoint::new().expires_in(Duration::from_secs(120));
    endpoint
        .queue(Answer::Status(StatusCode::BAD_GATEWAY))
        .queue(Answer::error(StatusCode::BAD_REQUEST, "invalid_scope"));
    let cache = endpoint.cache();
    let e = cache.refresh_now().await.expect_err("a 502 page");
    assert_eq!(
        (e.kind(), e.status()),
        (ErrorKind::HttpStatus, Some(StatusCode::BAD_GATEWAY))
    );
    let e = cache.refresh_now().await.expect_err("invalid_scope");
    assert_eq!(e.kind(), ErrorKind::OAuth);
    let last = cache.status().last_error.expect("the failure");
    assert_eq!(last.status, Some(StatusCode::BAD_REQUEST));
    cache.refresh_now().await.expect("a token");
    assert_eq!(cache.bearer_header().await.expect("a token"), "Bearer at-1");
    let token = cache.token().await.expect("a token");
    assert_eq!(token.expires_in(), Some(Duration::from_secs(120)));
    assert_eq!(cache.status().token, TokenState::Fresh);
    assert_eq!(endpoint.requests(), 3);
}

#[tokio::test]
async fn the_scripted_endpoint_rotates_refresh_tokens_and_refuses_a_spent_one() {
    let endpoint = ScriptedTokenEndpoint::new().refresh_tokens(true);
    let cache = endpoint.cache();
    cache.warm_up().await.expect("the first token");
    cache.refresh_now().await.expect("refreshed");
    cache.refresh_now().await.expect("refreshed again");
    assert_eq!(cache.bearer_header().await.expect("a token"), "Bearer at-3");
    assert_eq!(
        endpoint.grant_types(),
        ["client_credentials", "refresh_token", "refresh_token"]
    );
    // A second client holding the spent rt-1 is refused with invalid_grant.
    let spent =
        tower_oauth2::TokenCache::from_refresh_token(endpoint.token_endpoint(), "rt-1").build();
    let e = spent.warm_up().await.expect_err("a spent refresh token");
    assert!(e.is_reauthorization_required(), "{e}");
    assert_eq!(endpoint.requests(), 4);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_tests_with_a_fixed_token_and_a_mock_server() {
    use tower_oauth2::reqwest::OAuth2Middleware;

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let mock = serve(tower::service_fn(
        move |request: Request<hyper::body::Incoming>| {
            let auth = request.headers().get("authorization");
            let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
            record.lock().expect("the record").push(auth);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("42 in stock"))) }
        },
    ))
    .await;
    let middleware = OAuth2Middleware::for_origin(fixed_token_cache("test-token"), mock.url(""))
        .expect("the mock's origin");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let response = client
        .get(mock.url("/items/1"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("a body"), "42 in stock");
    assert_eq!(*seen.lock().expect("the record"), ["Bearer test-token"]);
}
