//! OAuth2 access tokens for tower HTTP clients.
//!
//! [`OAuth2Layer`] wraps any tower HTTP service (a hyper-util `Client`, an
//! axum or hyper stack, a tonic `Channel`) and puts `Authorization: Bearer
//! <token>` on every request. The token comes from a [`TokenCache`]: fetched
//! from the token endpoint once however many requests need it, refreshed in
//! the background before it expires, and, when the resource server still
//! answers 401 (or gRPC answers UNAUTHENTICATED), replaced, with the request
//! sent once more.
//!
//! | module | what |
//! | --- | --- |
//! | [`layer`] | [`OAuth2Layer`], [`OAuth2Service`], the 401 retry, [`layer::Destinations`], [`layer::BufferBodyLayer`] |
//! | [`cache`] | [`TokenCache`]: fresh/stale/expired, single flight, generations, backoff, statistics |
//! | [`request`] | RFC 6749 token requests: every grant (`client_credentials`, `authorization_code` + PKCE, `refresh_token`, `password`, JWT bearer, token exchange, extension grants) and client authentication (`client_secret_basic`, `client_secret_post`, `none`, `private_key_jwt` and `client_secret_jwt` with feature `jwt`, `tls_client_auth` and `self_signed_tls_client_auth`) |
//! | [`authorize`] | the code flow's authorization URL, PKCE, `state`, callback checking |
//! | [`token`] | typed token responses; expiry arithmetic that never panics |
//! | [`error`] | typed errors, RFC 6749 §5.2 error responses, `is_retryable()` |
//! | [`endpoint`] | [`TokenEndpoint`]: token requests over any tower HTTP service, with a size limit and a timeout |
//! | [`transport`] | [`HttpClient`], [`HttpTransport`]: the bounds on the HTTP service tokens are fetched with |
//! | [`challenge`] | `WWW-Authenticate` parsing, RFC 6750 bearer errors |
//! | [`discovery`] | the token endpoint from an issuer (OpenID Connect Discovery, RFC 8414), issuer checked |
//! | [`revocation`] | RFC 7009 token revocation: [`TokenEndpoint::revoke`], and [`TokenCache::revoke`] on shutdown |
//! | [`store`] | persisting tokens, atomically, so the newest refresh token survives a crash; a stored token is used only by the configuration that fetched it |
//! | `dpop` (feature `dpop`) | DPoP (RFC 9449): the key, its proofs on token and resource requests, nonces per origin |
//! | `jose` (feature `jwt`) | signing keys and JWS for client assertions and the signed JWT-bearer grant |
//! | `tls` (feature `rustls`) | a hyper-util HTTPS client (with a client certificate for RFC 8705 mutual TLS if you give one) and a one-line layer |
//! | `reqwest` (feature `reqwest`) | `OAuth2Middleware` for reqwest-middleware, sharing the [`TokenCache`] |
//! | `metrics` (feature `metrics`) | token requests, 401s and waits through the `metrics` facade |
//! | `fleet` (feature `redis`) | one token for a fleet of processes: a shared Redis tier with fleet-wide single flight |
//!
//! Secrets (client secret, access, refresh and ID tokens, passwords,
//! assertions) are [`SecretString`]s and never appear in `Debug`, `Display`,
//! logs or errors. The `Authorization` header is marked sensitive.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `rustls` | no | `tls`: a hyper-util HTTPS client (rustls with `ring`, HTTP/1.1 and HTTP/2, Mozilla's roots or yours) and a one-line [`OAuth2Layer`] for `client_credentials` over it |
//! | `reqwest` | no | `reqwest`: `OAuth2Middleware` for reqwest-middleware and `ReqwestTransport` |
//! | `jwt` | no | `jose`: `private_key_jwt` (ES256, EdDSA) and `client_secret_jwt` (HS256) client authentication, and the JWT-bearer grant with an assertion signed per request |
//! | `dpop` | no | `dpop`: DPoP-bound tokens (RFC 9449), an ES256 proof per token request and per resource request, server nonces; enables `jwt` |
//! | `jwt-rsa` | no | `jwt` plus RS256 and PS256 keys (see the README on RUSTSEC-2023-0071) |
//! | `metrics` | no | `metrics`: counters, a histogram and a gauge through the `metrics` facade, and `TokenCacheBuilder::metrics_name` |
//! | `redis` | no | `fleet`: `RedisTier` and `TokenCacheBuilder::redis`, one token request per refresh for a whole fleet, optional encryption at rest |
//!
//! Without features the crate brings no HTTP client: the layer and
//! [`TokenEndpoint`] work over any tower HTTP service you give them. Token
//! fetches run on the Tokio runtime.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::{ClientAuth, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//! # async fn example<S>(http_client: S) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
//! # where
//! #     S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<Full<Bytes>>> + Clone + Send + Sync + 'static,
//! #     S::Future: Send,
//! #     S::Error: std::error::Error + Send + Sync + 'static,
//! # {
//! // `http_client`: a hyper_util::client::legacy::Client, say.
//! let endpoint = TokenEndpoint::new(
//!     http_client.clone(),
//!     TokenUrl::new("https://as.example.com/oauth2/token")?,
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//! );
//! let cache = TokenCache::builder(endpoint, TokenRequest::client_credentials().scope("inventory:read")).build();
//! // The token goes to the API it is for, and nowhere else.
//! let oauth2 = OAuth2Layer::for_origin(cache, "https://inventory.example.com")?;
//! let client = ServiceBuilder::new().layer(oauth2).service(http_client);
//! let response = client
//!     .oneshot(http::Request::get("https://inventory.example.com/items").body(Full::default())?)
//!     .await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```

#![deny(
    missing_docs,
    unreachable_pub,
    unsafe_code,
    missing_debug_implementations
)]
#![warn(rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod authorize;
pub mod cache;
pub mod challenge;
pub mod discovery;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub mod dpop;
pub mod endpoint;
pub mod error;
mod exchange;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod fleet;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jose;
pub mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(any(feature = "rustls", feature = "redis"))]
mod pem;
pub mod request;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod revocation;
mod secret;
pub mod store;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
pub mod token;
pub mod transport;
mod url;

pub use cache::TokenCache;
pub use endpoint::TokenEndpoint;
pub use error::{Error, ErrorKind};
pub use layer::{AuthPolicy, OAuth2Layer, OAuth2Service};
pub use request::{ClientAuth, TokenRequest, TokenUrl};
pub use secret::SecretString;
pub use token::Token;
pub use transport::{HttpClient, HttpTransport};

// Compiles the README's examples as doctests (its reqwest, jwt, dpop and redis
// sections need those features, as does the README's test command, `cargo test
// --all-features`).
#[doc = include_str!("../README.md")]
#[cfg(all(
    doctest,
    feature = "reqwest",
    feature = "jwt",
    feature = "dpop",
    feature = "redis"
))]
pub struct ReadmeDoctests;
