//! A testing kit for your own tests (feature `testing`): test the code
//! that calls other services through this crate with no token endpoint,
//! no port and no network.
//!
//! - [`fixed_token_cache`]: a [`TokenCache`] whose token is always the
//!   one you give;
//! - [`ScriptedTokenEndpoint`]: a token endpoint in process (a tower
//!   service) answering from a script: lifetimes, errors, `429` with
//!   `Retry-After`, refresh-token rotation, and a count of requests;
//! - and, needing no feature, [`BoxClient`](crate::layer::BoxClient): a
//!   client under the layer as one cloneable `Sync` type, so an axum
//!   handler's state takes a hyper client in production and a
//!   `tower::service_fn` in its tests.
//!
//! A cache fetches on a Tokio runtime: use these from `#[tokio::test]`s.
//!
//! # Example: an axum handler tested with a mock resource
//!
//! The handler calls the inventory service through the layer; its test
//! gives it a fixed-token cache and a mock inventory that checks the
//! token, and calls the handler through the router, as axum would.
//!
//! ```
//! use axum::extract::State;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::layer::{box_client, BoxClient};
//! use tower_oauth2::testing::fixed_token_cache;
//! use tower_oauth2::OAuth2Layer;
//!
//! #[derive(Clone)]
//! struct AppState {
//!     inventory: BoxClient,
//! }
//!
//! async fn stock(State(state): State<AppState>) -> Result<String, String> {
//!     let request = http::Request::get("https://inventory.example.com/items/1")
//!         .body(Full::default())
//!         .map_err(|e| e.to_string())?;
//!     let response = state.inventory.oneshot(request).await.map_err(|e| e.to_string())?;
//!     let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
//!     Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
//! }
//!
//! fn app(inventory: BoxClient) -> axum::Router {
//!     axum::Router::new()
//!         .route("/stock", axum::routing::get(stock))
//!         .with_state(AppState { inventory })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The test: a fixed token, and a mock inventory under the layer.
//! let cache = fixed_token_cache("test-token");
//! let inventory = tower::service_fn(|request: http::Request<Full<Bytes>>| async move {
//!     let auth = request.headers().get("authorization").cloned();
//!     assert_eq!(auth.as_ref().and_then(|v| v.to_str().ok()), Some("Bearer test-token"));
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::from("42 in stock")))
//! });
//! let oauth2 = OAuth2Layer::for_origin(cache, "https://inventory.example.com")?;
//! let client = box_client(ServiceBuilder::new().layer(oauth2).service(inventory));
//!
//! let request = http::Request::get("/stock").body(axum::body::Body::empty())?;
//! let response = app(client).oneshot(request).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "42 in stock");
//! # Ok(())
//! # }
//! ```
//!
//! The same with the reqwest middleware (feature `reqwest`): give
//! `OAuth2Middleware::new` the fixed-token cache, and point the client at
//! a local mock server (reqwest sends over the network, so the mock is a
//! server on `127.0.0.1`).

use std::time::Duration;

use crate::TokenCache;

mod endpoint;

pub use endpoint::{Answer, ScriptedTokenEndpoint};

/// A cache whose token is always `token` (`Bearer`, living a day), from a
/// [`ScriptedTokenEndpoint`] in process: the first request "fetches" it
/// with no network, and a refresh or a refetch after a 401 gets the same
/// token again (so a resource refusing it sees it twice, then the 401
/// backoff passes its refusals through).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_oauth2::Error> {
/// let cache = tower_oauth2::testing::fixed_token_cache("test-token");
/// assert_eq!(cache.bearer_header().await?, "Bearer test-token");
/// # Ok(())
/// # }
/// ```
pub fn fixed_token_cache(token: &str) -> TokenCache {
    ScriptedTokenEndpoint::new()
        .fixed_token(token)
        .expires_in(Duration::from_secs(86_400))
        .cache()
}
