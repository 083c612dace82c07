//! [`HttpTransport`]: the HTTP client a [`TokenCache`](crate::TokenCache)
//! sends its token requests with.
//!
//! Any tower HTTP service qualifies (a hyper-util `Client`, a
//! `tower::util::BoxCloneService`, the `reqwest` feature's
//! `ReqwestTransport`, a `service_fn` in tests) as long as it can be moved to
//! the cache's fetch task: it is `Clone + Send + 'static`, its futures and
//! response bodies are `Send`, and its errors convert into [`BoxError`].
//! `HttpTransport` names those bounds once, so code generic over a
//! transport writes `T: HttpTransport` instead of seven lines.
//!
//! # Example
//!
//! ```
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use tower_oauth2::{ClientAuth, HttpTransport, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! /// One cache for a service account, over whatever HTTP client the caller has.
//! fn service_account<T: HttpTransport>(http: T) -> Result<TokenCache, tower_oauth2::Error> {
//!     let endpoint = TokenEndpoint::new(
//!         http,
//!         TokenUrl::new("https://as.example.com/token")?,
//!         ClientAuth::client_secret_basic("svc", "secret"),
//!     );
//!     Ok(TokenCache::builder(endpoint, TokenRequest::client_credentials()).build())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::Error> {
//! let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
//!         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
//!     ))))
//! });
//! let cache = service_account(http)?;
//! assert_eq!(cache.bearer_header().await?, "Bearer at-1");
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use crate::error::BoxError;

/// A tower HTTP service a [`TokenCache`](crate::TokenCache) can send token
/// requests over from its fetch task.
///
/// Implemented for every service that meets its bounds; you never implement
/// it yourself. Written out, `T: HttpTransport` means:
///
/// ```text
/// T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
/// T::Future: Send,
/// T::Error: Into<BoxError>,
/// B: Body + Send + 'static,
/// B::Data: Send,
/// B::Error: Into<BoxError>,
/// ```
pub trait HttpTransport:
    Service<
        Request<Full<Bytes>>,
        Response = Response<Self::ResponseBody>,
        Error: Into<BoxError>,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
    /// The body of the service's responses (`B` above).
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<T, B> HttpTransport for T
where
    T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResponseBody = B;
}
