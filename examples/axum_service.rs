//! `cargo run --example axum_service`: an axum service calling another axum
//! service with OAuth2 bearer tokens (service to service).
//!
//! Three servers start on 127.0.0.1 in this process; nothing else is needed:
//!
//! - **auth**, an OAuth2 token endpoint: the `client_credentials` grant with
//!   `client_secret_basic`, issuing opaque tokens that live 5 minutes;
//! - **inventory**, an axum service that answers only requests bearing a
//!   token auth issued with the scope `inventory:read` (it asks auth, as
//!   RFC 7662 introspection would), and 401 otherwise;
//! - **orders**, an axum service whose handler calls inventory through a
//!   hyper-util client wrapped in [`OAuth2Layer`]. The handler never sees a
//!   token: the layer fetches one on the first call, reuses it, and when
//!   inventory answers 401 gets a new one and sends the call once more.
//!
//! Then `main` plays the outside world: it asks orders for a few orders,
//! 10 at once, has auth revoke every token it issued (a key rotation, say),
//! asks again, and prints what each side saw. It ends with one line
//! `summary: calls=N ok=N inventory_requests=N inventory_401=N token_fetches=N retries=N`
//! and exits non-zero if any call failed or the layer did not fetch exactly
//! two tokens and resend exactly once.
//!
//! Orders holds its inventory client as a [`BoxClient`]: one cloneable,
//! `Sync` type, so the handler's tests (at the end of this file,
//! `cargo test --example axum_service --features testing`) give it a
//! fixed-token cache and a mock inventory instead, with no server and no
//! network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Request as AxumRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::layer::{box_client, token_error, BoxClient};
use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

// ---------------------------------------------------------------- auth ----

/// The authorization server: one registered client, the tokens it issued.
#[derive(Default)]
struct Auth {
    issued: Mutex<HashMap<String, Issued>>,
    next: AtomicU64,
}

#[derive(Clone)]
struct Issued {
    serial: u64,
    scope: String,
    revoked: bool,
}

const CLIENT_ID: &str = "orders";
const CLIENT_SECRET: &str = "orders-secret";

impl Auth {
    fn revoke_all(&self) {
        for t in self.issued.lock().unwrap().values_mut() {
            t.revoked = true;
        }
    }

    /// What inventory asks: is this token live, and for which scope?
    fn introspect(&self, token: &str) -> Option<Issued> {
        let issued = self.issued.lock().unwrap();
        issued.get(token).filter(|t| !t.revoked).cloned()
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = Json(json!({ "error": error, "error_description": description }));
    (status, body).into_response()
}

/// `POST /oauth2/token` (RFC 6749 §4.4).
async fn token_endpoint(
    State(auth): State<Arc<Auth>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    // client_secret_basic: base64 of the form-urlencoded id and secret
    // (RFC 6749 §2.3.1); these two need no encoding.
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if presented != Some(expected.as_str()) {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"auth\""),
        );
        return response;
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials",
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let serial = auth.next.fetch_add(1, Ordering::Relaxed) + 1;
    let access_token = format!("opaque-{serial}-{:016x}", random_u64());
    auth.issued.lock().unwrap().insert(
        access_token.clone(),
        Issued {
            serial,
            scope: scope.clone(),
            revoked: false,
        },
    );
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": scope,
    }))
    .into_response()
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("system randomness");
    u64::from_le_bytes(bytes)
}

fn auth_app(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token_endpoint))
        .with_state(auth)
}

// ----------------------------------------------------------- inventory ----

struct Inventory {
    auth: Arc<Auth>,
    requests: AtomicU64,
    unauthorized: AtomicU64,
}

/// Lets through only requests bearing a live token with `inventory:read`
/// (RFC 6750 §3 for the 401).
async fn require_token(
    State(inventory): State<Arc<Inventory>>,
    request: AxumRequest,
    next: Next,
) -> Response {
    inventory.requests.fetch_add(1, Ordering::Relaxed);
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let grant = token.and_then(|t| inventory.auth.introspect(t));
    match grant {
        Some(g) if g.scope.split(' ').any(|s| s == "inventory:read") => {
            println!(
                "  inventory: {} with token #{} -> 200",
                request.uri().path(),
                g.serial
            );
            next.run(request).await
        }
        _ => {
            inventory.unauthorized.fetch_add(1, Ordering::Relaxed);
            println!(
                "  inventory: {} with a dead token -> 401",
                request.uri().path()
            );
            (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="inventory", error="invalid_token""#,
                )],
            )
                .into_response()
        }
    }
}

/// `GET /items/{sku}`.
async fn item(Path(sku): Path<String>) -> Json<Value> {
    let in_stock = sku.bytes().map(u64::from).sum::<u64>() % 50;
    Json(json!({ "sku": sku, "in_stock": in_stock }))
}

fn inventory_app(inventory: Arc<Inventory>) -> Router {
    Router::new()
        .route("/items/{sku}", get(item))
        .layer(middleware::from_fn_with_state(inventory, require_token))
}

// -------------------------------------------------------------- orders ----

#[derive(Clone)]
struct Orders {
    /// The client orders calls inventory with: hyper-util under the OAuth2
    /// layer here, a mock in the tests.
    inventory: BoxClient,
    inventory_url: String,
}

/// `GET /orders/{id}`: the order with its item's stock, from inventory.
async fn order(
    State(orders): State<Orders>,
    Path(id): Path<u32>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let sku = format!("sku-{}", id % 4 + 1);
    let request = http::Request::get(format!("{}/items/{sku}", orders.inventory_url))
        .body(Full::default())
        .expect("a valid request");
    // No token here: the layer adds it (and retries once on a 401).
    let response =
        orders
            .inventory
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| match token_error(&*e) {
                // Typed: the token endpoint's own error code is in `token`.
                Some(token) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no token for inventory: {token}"),
                ),
                None => (StatusCode::BAD_GATEWAY, format!("inventory: {e}")),
            })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("inventory: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!("inventory answered {status}"),
        ));
    }
    let item: Value = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("inventory sent bad JSON: {e}"),
        )
    })?;
    Ok(Json(json!({ "order": id, "item": item })))
}

fn orders_app(orders: Orders) -> Router {
    Router::new()
        .route("/orders/{id}", get(order))
        .with_state(orders)
}

// ---------------------------------------------------------------- main ----

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::main]
async fn main() -> ExitCode {
    let auth = Arc::new(Auth::default());
    let inventory = Arc::new(Inventory {
        auth: auth.clone(),
        requests: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
    });
    let auth_addr = serve(auth_app(auth.clone())).await;
    let inventory_addr = serve(inventory_app(inventory.clone())).await;

    // What orders sets up once at start-up: a token cache for its client
    // credentials, and the layer around the client it calls inventory with.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let endpoint = TokenEndpoint::new(
        http.clone(),
        TokenUrl::new(&format!("http://{auth_addr}/oauth2/token")).expect("a loopback URL"),
        ClientAuth::client_secret_basic(CLIENT_ID, CLIENT_SECRET),
    );
    let cache = TokenCache::builder(
        endpoint,
        TokenRequest::client_credentials().scope("inventory:read"),
    )
    .build();
    // The token is for inventory: it goes there and nowhere else.
    let inventory_origin = format!("http://{inventory_addr}");
    let oauth2 =
        OAuth2Layer::for_origin(cache.clone(), &inventory_origin).expect("inventory's origin");
    let inventory_client = box_client(ServiceBuilder::new().layer(oauth2).service(http));
    let orders_addr = serve(orders_app(Orders {
        inventory: inventory_client,
        inventory_url: inventory_origin,
    }))
    .await;
    println!("auth {auth_addr}, inventory {inventory_addr}, orders {orders_addr}");

    // The outside world calls orders with a plain client: no token.
    let outside = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = |id: u32| {
        let outside = outside.clone();
        async move {
            let request = http::Request::get(format!("http://{orders_addr}/orders/{id}"))
                .body(Full::default())
                .expect("a valid request");
            let response = outside.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            if status == StatusCode::OK {
                Ok(body)
            } else {
                Err(format!("{status}: {body}"))
            }
        }
    };
    let (mut calls, mut ok) = (0u64, 0u64);
    let mut tally = |result: Result<String, String>, show: bool| {
        calls += 1;
        match result {
            Ok(body) => {
                ok += 1;
                if show {
                    println!("orders -> {body}");
                }
            }
            Err(e) => println!("orders FAILED -> {e}"),
        }
    };

    println!("\n3 calls, one after another (the first one fetches the token):");
    for id in 1..=3 {
        tally(call(id).await, true);
    }

    println!("\n10 calls at once (all on the cached token):");
    let batch: Vec<_> = (100..110).map(|id| tokio::spawn(call(id))).collect();
    for task in batch {
        tally(task.await.expect("task"), false);
    }
    println!("orders -> 10 answers");

    println!("\nauth revokes every token; 2 more calls (401, one refetch, resent):");
    auth.revoke_all();
    for id in 4..=5 {
        tally(call(id).await, true);
    }

    let stats = cache.stats();
    println!(
        "\nsummary: calls={calls} ok={ok} inventory_requests={} inventory_401={} \
         token_fetches={} retries={}",
        inventory.requests.load(Ordering::Relaxed),
        inventory.unauthorized.load(Ordering::Relaxed),
        stats.token_fetches,
        stats.retries,
    );
    // What this example claims: every call answered, one token for all the
    // calls before the revocation, one more after it, one resend.
    if ok == calls && (stats.token_fetches, stats.retries) == (2, 1) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// --------------------------------------------------------------- tests ----

/// The orders handler tested as a unit: a fixed token, a mock inventory
/// (a `tower::service_fn`) under the same layer, no server, no network.
/// `cargo test --example axum_service --features testing`.
#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower_oauth2::testing::{fixed_token_cache, Answer, ScriptedTokenEndpoint};

    use super::*;

    const INVENTORY: &str = "https://inventory.test";

    /// Orders, calling `inventory` under the OAuth2 layer with `cache`.
    fn orders_with<S>(cache: TokenCache, inventory: S) -> Router
    where
        S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: std::error::Error + Send + Sync + 'static,
    {
        let oauth2 = OAuth2Layer::for_origin(cache, INVENTORY).expect("an origin");
        orders_app(Orders {
            inventory: box_client(ServiceBuilder::new().layer(oauth2).service(inventory)),
            inventory_url: INVENTORY.to_owned(),
        })
    }

    async fn get_order(app: Router, id: u32) -> (StatusCode, String) {
        let request = http::Request::get(format!("/orders/{id}"))
            .body(Body::empty())
            .expect("a request");
        let response = app.oneshot(request).await.expect("an answer");
        let status = response.status();
        let body = response.into_body().collect().await.expect("a body");
        (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    }

    #[tokio::test]
    async fn an_order_carries_its_items_stock_fetched_with_the_token() {
        let inventory = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
            assert_eq!(request.headers()["authorization"], "Bearer test-token");
            assert_eq!(request.uri().path(), "/items/sku-2");
            let item = r#"{"sku":"sku-2","in_stock":7}"#;
            Ok::<_, Infallible>(http::Response::new(Full::from(item)))
        });
        let app = orders_with(fixed_token_cache("test-token"), inventory);
        let (status, body) = get_order(app, 1).await;
        assert_eq!(status, StatusCode::OK);
        let order: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            order,
            json!({ "order": 1, "item": { "sku": "sku-2", "in_stock": 7 } })
        );
    }

    #[tokio::test]
    async fn no_token_for_inventory_is_a_503_naming_the_token_endpoints_error() {
        let auth = ScriptedTokenEndpoint::new();
        auth.queue(Answer::error(StatusCode::UNAUTHORIZED, "invalid_client"));
        let inventory = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::from("never called")))
        });
        let (status, body) = get_order(orders_with(auth.cache(), inventory), 1).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("no token for inventory: "), "{body}");
        assert!(body.contains("invalid_client"), "{body}");
        assert_eq!(auth.requests(), 1);
    }
}
