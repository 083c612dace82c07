//! [`BoxClient`]: a client under the layer as one nameable type, cloneable
//! and `Sync`, for axum state and for tests that swap the HTTP client.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;
use tower_service::Service;

use crate::error::BoxError;

/// An HTTP client (any tower HTTP service, usually one under
/// [`OAuth2Layer`](crate::OAuth2Layer)) with its type erased: requests
/// with `ReqBody` bodies (default `Full<Bytes>`), responses with a boxed
/// body, errors as `BoxError`. It is `Clone + Send + Sync + 'static`, so it
/// fits axum state, and a handler written against it takes a hyper client
/// in production and a `tower::service_fn` in its tests. Make one with
/// [`box_client`].
///
/// Why not `ServiceBuilder::new().boxed_clone_sync()` in front of the
/// layer: that layer wants the response future to be `Sync`, and neither
/// this layer's future nor hyper-util's client's is (a future is only ever
/// polled from one thread at a time; it need not be `Sync`).
/// `BoxCloneSyncService::new`, which [`box_client`] calls, asks only for
/// the service to be `Sync`.
///
/// # Example: axum state
///
/// ```
/// use axum::extract::State;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_oauth2::layer::{box_client, BoxClient};
/// use tower_oauth2::{OAuth2Layer, TokenCache};
///
/// #[derive(Clone)]
/// struct AppState {
///     inventory: BoxClient,
/// }
///
/// async fn stock(State(state): State<AppState>) -> Result<String, String> {
///     let request = http::Request::get("https://inventory.example.com/items/1")
///         .body(Full::default())
///         .map_err(|e| e.to_string())?;
///     let response = state.inventory.oneshot(request).await.map_err(|e| e.to_string())?;
///     let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
///     Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
/// }
///
/// fn app<S>(cache: TokenCache, http: S) -> Result<axum::Router, tower_oauth2::Error>
/// where
///     S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>>
///         + Clone + Send + Sync + 'static,
///     S::Future: Send + 'static,
///     S::Error: std::error::Error + Send + Sync + 'static,
/// {
///     let oauth2 = OAuth2Layer::for_origin(cache, "https://inventory.example.com")?;
///     let inventory = box_client(ServiceBuilder::new().layer(oauth2).service(http));
///     Ok(axum::Router::new()
///         .route("/stock", axum::routing::get(stock))
///         .with_state(AppState { inventory }))
/// }
/// ```
pub type BoxClient<ReqBody = Full<Bytes>> =
    BoxCloneSyncService<Request<ReqBody>, Response<UnsyncBoxBody<Bytes, BoxError>>, BoxError>;

/// The token error in `err`'s `source()` chain, if a token could not be
/// had: for errors that lost their type on the way, a [`BoxClient`]'s
/// `BoxError` above all (an inner error of the layer is not one).
///
/// ```
/// # use tower_oauth2::layer::BoxClient;
/// # async fn call(client: BoxClient, request: http::Request<http_body_util::Full<bytes::Bytes>>) {
/// use tower::ServiceExt;
/// match client.oneshot(request).await {
///     Ok(response) => println!("{}", response.status()),
///     Err(e) => match tower_oauth2::layer::token_error(&*e) {
///         Some(token) => eprintln!("no token: {token}"),
///         None => eprintln!("the call failed: {e}"),
///     },
/// }
/// # }
/// ```
pub fn token_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a crate::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(token) = e.downcast_ref::<crate::Error>() {
            return Some(token);
        }
        next = e.source();
    }
    None
}

/// `service` as a [`BoxClient`]: its response bodies boxed, its errors made
/// `BoxError`s (a [`ServiceError`](crate::ServiceError) of the layer stays
/// one: `downcast_ref::<ServiceError<E>>()` finds it).
pub fn box_client<S, ReqBody, ResBody>(service: S) -> BoxClient<ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let boxed = service
        .map_response(|response: Response<ResBody>| {
            response.map(|body| body.map_err(Into::into).boxed_unsync())
        })
        .map_err(Into::into);
    BoxCloneSyncService::new(boxed)
}
