//! Service to service with axum, the shape of `examples/axum_service.rs`:
//! an outer axum service ("orders") whose handler calls an inner axum
//! service ("inventory") through a hyper-util client wrapped in
//! `OAuth2Layer`. The token endpoint is the test server on 127.0.0.1, and
//! inventory accepts only the tokens it issued.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request as AxumRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::client::{http_client, layered, HttpClient};
use support::serve::{serve, Serving};
use support::token_server::{Canned, ClientCheck, TestServer};
use tower::ServiceExt;
use tower_oauth2::layer::ServiceError;
use tower_oauth2::{ClientAuth, OAuth2Service, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

/// What inventory saw: the `Authorization` header of each request and the
/// status it answered.
#[derive(Default)]
struct InventoryLog(Mutex<Vec<(Option<String>, u16)>>);

impl InventoryLog {
    fn entries(&self) -> Vec<(Option<String>, u16)> {
        self.0.lock().unwrap().clone()
    }
}

struct Inventory {
    auth: Arc<support::token_server::State>,
    log: InventoryLog,
}

async fn require_token(
    State(inventory): State<Arc<Inventory>>,
    request: AxumRequest,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let live = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| inventory.auth.accepts(t));
    let response = if live {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="inventory", error="invalid_token""#,
            )],
        )
            .into_response()
    };
    inventory
        .log
        .0
        .lock()
        .unwrap()
        .push((authorization, response.status().as_u16()));
    response
}

async fn item(Path(sku): Path<String>) -> String {
    format!("item {sku}")
}

type InventoryClient = OAuth2Service<HttpClient>;

#[derive(Clone)]
struct Orders {
    inventory: InventoryClient,
    inventory_url: String,
}

/// How orders answers when it could not call inventory: 503 with the token
/// endpoint's error code, or 502.
fn unavailable(e: ServiceError<hyper_util::client::legacy::Error>) -> (StatusCode, String) {
    match e {
        ServiceError::Token(e) => {
            let code = e.oauth_error().map_or("?", |r| r.error().as_str());
            (StatusCode::SERVICE_UNAVAILABLE, format!("no token: {code}"))
        }
        ServiceError::Inner(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn order(
    State(orders): State<Orders>,
    Path(id): Path<u32>,
) -> Result<String, (StatusCode, String)> {
    let url = format!("{}/items/sku-{id}", orders.inventory_url);
    let call = orders.inventory.clone().oneshot(support::client::get(&url));
    let response = call.await.map_err(unavailable)?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    if status != StatusCode::OK {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!("inventory answered {status}"),
        ));
    }
    Ok(format!("order {id}: {body}"))
}

/// The test server as the token endpoint, inventory and orders, running.
struct Services {
    auth: TestServer,
    inventory: Arc<Inventory>,
    cache: TokenCache,
    orders: SocketAddr,
    _running: [Serving; 2],
}

async fn services() -> Services {
    let auth = TestServer::start().await;
    auth.set_client("svc-orders", "s3cret", ClientCheck::Basic);
    let inventory = Arc::new(Inventory {
        auth: auth.state.clone(),
        log: InventoryLog::default(),
    });
    let inventory_server = serve(Router::new().route("/items/{sku}", get(item)).layer(
        middleware::from_fn_with_state(inventory.clone(), require_token),
    ))
    .await;

    let endpoint = TokenEndpoint::new(
        http_client(),
        TokenUrl::new(&auth.token_url()).unwrap(),
        ClientAuth::client_secret_basic("svc-orders", "s3cret"),
    );
    let cache = TokenCache::builder(
        endpoint,
        TokenRequest::client_credentials().scope("inventory:read"),
    )
    .build();
    let orders = serve(
        Router::new()
            .route("/orders/{id}", get(order))
            .with_state(Orders {
                inventory: layered(&cache),
                inventory_url: inventory_server.url(""),
            }),
    )
    .await;
    Services {
        auth,
        inventory,
        cache,
        orders: orders.addr,
        _running: [inventory_server, orders],
    }
}

impl Services {
    /// Calls orders from outside, with no token: (status, body).
    async fn call(&self, id: u32) -> (StatusCode, String) {
        call(self.orders, id).await
    }
}

async fn call(orders: SocketAddr, id: u32) -> (StatusCode, String) {
    let request = http::Request::get(format!("http://{orders}/orders/{id}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handlers_calls_carry_one_fetched_token_for_many_requests() {
    let s = services().await;

    assert_eq!(
        s.call(0).await,
        (StatusCode::OK, "order 0: item sku-0".into())
    );
    let tasks: Vec<_> = (1..=30)
        .map(|id| tokio::spawn(call(s.orders, id)))
        .collect();
    for (id, task) in (1..=30).zip(tasks) {
        assert_eq!(
            task.await.unwrap(),
            (StatusCode::OK, format!("order {id}: item sku-{id}"))
        );
    }

    // One token request, client_credentials with the scope, client_secret_basic.
    assert_eq!(s.auth.token_requests(), 1);
    let received = s.auth.received();
    let sent = (received[0].authorization(), received[0].body.as_str());
    let basic = "Basic c3ZjLW9yZGVyczpzM2NyZXQ="; // svc-orders:s3cret
    let form = "grant_type=client_credentials&scope=inventory%3Aread";
    assert_eq!(sent, (Some(basic), form));
    // Inventory saw 31 requests, each with exactly that token, each let in.
    assert_eq!(s.inventory.log.entries(), vec![(bearer("at-1"), 200); 31]);
    let stats = s.cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_gives_401_then_one_refetch_then_200_through_the_handler() {
    let s = services().await;
    assert_eq!(s.call(1).await.0, StatusCode::OK);

    s.auth.revoke("at-1");
    // The caller of orders sees only the 200: the layer got a new token and
    // resent inventory's request once.
    assert_eq!(
        s.call(2).await,
        (StatusCode::OK, "order 2: item sku-2".into())
    );
    assert_eq!(
        s.inventory.log.entries(),
        vec![
            (bearer("at-1"), 200),
            (bearer("at-1"), 401),
            (bearer("at-2"), 200),
        ]
    );
    assert_eq!(s.auth.token_requests(), 2);
    let stats = s.cache.stats();
    assert_eq!((stats.token_fetches, stats.retries), (2, 1));

    // The new token is cached: no more fetches.
    assert_eq!(s.call(3).await.0, StatusCode::OK);
    assert_eq!(s.inventory.log.entries()[3], (bearer("at-2"), 200));
    assert_eq!(s.auth.token_requests(), 2);

    // Revoked under 10 calls at once: however many of them got a 401, one
    // fetch replaces the token, and every call ends in a 200 with it.
    s.auth.revoke("at-2");
    let tasks: Vec<_> = (10..20)
        .map(|id| tokio::spawn(call(s.orders, id)))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(s.auth.token_requests(), 3);
    let later = s.inventory.log.entries().split_off(4);
    let refused: Vec<_> = later.iter().filter(|(_, status)| *status == 401).collect();
    let admitted: Vec<_> = later.iter().filter(|(_, status)| *status == 200).collect();
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|(a, _)| *a == bearer("at-2")));
    assert_eq!(admitted.len(), 10);
    assert!(admitted.iter().all(|(a, _)| *a == bearer("at-3")));
    assert_eq!(s.cache.stats().retries, 1 + refused.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_failure_reaches_the_handler_as_a_typed_error() {
    let s = services().await;
    s.auth.set_failing(Some(Canned::json(
        401,
        r#"{"error":"invalid_client","error_description":"unknown client"}"#,
    )));

    assert_eq!(
        s.call(1).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no token: invalid_client".into()
        )
    );
    // Nothing was sent to inventory without a token.
    assert!(s.inventory.log.entries().is_empty());
    assert_eq!(s.auth.token_requests(), 1);
}
