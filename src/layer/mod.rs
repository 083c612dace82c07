//! The middleware: [`OAuth2Layer`] puts `Authorization: Bearer <token>` on
//! every request and resends a request once when the resource server answers
//! 401.
//!
//! - The token comes from a [`TokenCache`](crate::cache::TokenCache): one fetch however many requests
//!   need it, refreshed in the background before it expires.
//! - The hot path (a fresh token cached) is one `ArcSwap` load, one clock
//!   read and one clone of a prebuilt `HeaderValue` marked sensitive: no lock,
//!   no allocation of the token string.
//! - Only requests to allowed [`Destinations`] get the token, so that a
//!   token for one API never reaches another that could replay it:
//!   [`OAuth2Layer::for_origin`] sends it to one origin. When you choose
//!   nothing, the layer chooses the origins of the API the token request
//!   names (its `resource`s, or an `audience` that is a URL), else
//!   [`Destinations::secure`], which never sends one in clear text over a
//!   network (`https` anywhere, `http` only to loopback, no credentials in
//!   the URI) and logs at `WARN`, once, the first time the token goes to a
//!   second origin. Others pass through untouched. A request whose URI is only a path
//!   (origin-form, `/pkg.Svc/Method`, as a tonic `Channel` or a
//!   `hyper::client::conn` sender gets it: they add the destination after
//!   the layer) gets no token unless the layer is told where such requests
//!   go: [`Destinations::origin_form_to`] with the channel's or connection's
//!   origin, checked by the same rule, or [`Destinations::allow_origin_form`]
//!   on your word that the connection is TLS or loopback. The first one
//!   refused is logged at `WARN`, once.
//! - By default an `Authorization` header the caller set is **replaced**:
//!   the layer owns that header. [`OAuth2Layer::keep_existing_authorization`]
//!   passes such requests through untouched instead (and never retries them).
//! - On a 401 that a new token may fix, or a gRPC response with
//!   `grpc-status: 16` (UNAUTHENTICATED), the token that was sent is
//!   invalidated (only that generation: if a newer token is cached already,
//!   the retry uses it without a fetch), and the request is sent once more
//!   if its body can be replayed: an empty body (`size_hint().exact() ==
//!   Some(0)`) always can; other bodies only through the [`ReplayBody`]
//!   policy, e.g. [`ReplayClone`] for `Full<Bytes>`; [`NoReplay`] for bodies
//!   with no empty value (hyper's `Incoming`). Otherwise the 401 is returned
//!   as it came. The second response is returned whatever it is.
//! - A new token cannot fix a 401 whose RFC 6750 challenge says
//!   `insufficient_scope` or `invalid_request`, nor one whose
//!   `WWW-Authenticate` challenges name other schemes only (`Basic realm=…`:
//!   counted in [`Stats::unauthorized_other_scheme`](crate::cache::Stats)):
//!   those are returned as they came, the token kept. A 401 with a `Bearer`
//!   (or `DPoP`) challenge, or with none, may be fixed.
//! - When a token fetched because of a 401 is refused too, new tokens do not
//!   help (a wrong audience, a proxy that refuses everything): refetches on
//!   401 back off, 1 s doubling to 5 min, jittered
//!   ([`OAuth2Layer::unauthorized_backoff`]), and meanwhile 401s are returned
//!   as they came, nothing invalidated ([`Stats::unauthorized_backed_off`](crate::cache::Stats),
//!   and one WARN log line per step with the challenge's `error`). The
//!   backoff is kept per resource server (origin): any answer other than
//!   401 from that resource for the current token ends it, another
//!   resource's answers do not. A resource that refuses every token costs
//!   about `log2(seconds) + 2` token requests, however many requests go to
//!   it and whatever other resources answer; background refresh
//!   before expiry goes on as usual. Every answer pays one relaxed atomic
//!   load for this.
//!
//! The settings and these decisions (who gets a token, what a refusal leads
//! to) are one [`AuthPolicy`] value, which the reqwest middleware (feature
//! `reqwest`) is built from too: [`OAuth2Layer::from_policy`].
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let token_http = service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
//! #     ))))
//! # });
//! // `token_http` is any tower HTTP client (a hyper-util `Client`, say).
//! let endpoint = TokenEndpoint::new(
//!     token_http,
//!     TokenUrl::new("https://as.example.com/token")?,
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//! );
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials().scope("inventory:read")).build();
//!
//! // The service being protected; here it echoes the header it got.
//! let api = service_fn(|req: Request<Full<Bytes>>| async move {
//!     let auth = req.headers()["authorization"].clone();
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::copy_from_slice(auth.as_bytes()))))
//! });
//! // The token goes to the API it is for, and nowhere else.
//! let oauth2 = OAuth2Layer::for_origin(cache.clone(), "https://api.example.com")?;
//! let client = ServiceBuilder::new().layer(oauth2).service(api);
//!
//! let request = Request::get("https://api.example.com/orders").body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(cache.stats().token_fetches, 1);
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("../docs/layer.md")]

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps an inner
/// service `S` in a field `inner`, as tower-http's middleware have them.
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Gives back the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use define_inner_service_accessors;

mod authorize;
mod boxed;
mod buffer;
mod destinations;
mod error;
mod future;
mod keyed;
#[allow(clippy::module_inception)]
mod layer;
pub(crate) mod policy;
mod replay;
mod service;
#[cfg(test)]
pub(crate) mod testing;

pub use boxed::{box_client, token_error, BoxClient};
pub use buffer::{
    BodyTimeout, BodyTooLarge, BufferBody, BufferBodyLayer, BufferFuture, DEFAULT_BODY_TIMEOUT,
};
pub use destinations::Destinations;
pub use error::ServiceError;
pub use future::ResponseFuture;
pub use keyed::{KeyedFuture, KeyedOAuth2Layer, KeyedService, Unmapped};
pub use layer::OAuth2Layer;
pub use policy::AuthPolicy;
pub use replay::{NoReplay, ReplayBody, ReplayClone, ReplayEmpty};
pub use service::OAuth2Service;
