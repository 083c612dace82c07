//! OAuth2 access tokens for tower HTTP clients.
//!
//! `tower-oauth2` gets access tokens from an OAuth2 token endpoint and puts
//! them on your requests. This release holds the protocol core that the
//! middleware stands on:
//!
//! - [`request`]: building RFC 6749 token requests for every grant
//!   (`client_credentials`, `authorization_code` with PKCE, `refresh_token`,
//!   `password`, JWT bearer, token exchange, any extension grant) and every
//!   client authentication style (`client_secret_basic`, `client_secret_post`,
//!   `none`).
//! - [`authorize`]: the authorization URL of the code flow, PKCE and `state`.
//! - [`token`]: the typed token response, with expiry arithmetic that never
//!   panics.
//! - [`error`]: typed errors, including RFC 6749 §5.2 error responses.
//! - [`endpoint`]: [`TokenEndpoint`], which sends token requests over any
//!   tower HTTP service with a body-size limit and a timeout.
//! - [`discovery`]: the token endpoint (and the rest of the server's
//!   metadata) from an issuer URL, through OpenID Connect Discovery or
//!   RFC 8414, with the issuer checked.
//! - `reqwest` (feature `reqwest`): `OAuth2Middleware` for
//!   `reqwest-middleware`, sharing the [`TokenCache`] with the tower layer,
//!   and a transport to run the token endpoint over reqwest.
//!
//! Secrets (client secret, access, refresh and ID tokens, passwords,
//! assertions) are [`SecretString`]s and never appear in `Debug`, `Display`,
//! logs or errors.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `rustls` | no | [`tls`]: a hyper-util HTTPS client (rustls with `ring`, HTTP/1.1 and HTTP/2, Mozilla's roots or yours) and a one-line [`OAuth2Layer`] for `client_credentials` over it |
//!
//! Without features the crate brings no HTTP client: the layer and
//! [`TokenEndpoint`] work over any tower HTTP service you give them.
//!
//! # Example
//!
//! ```no_run
//! use tower_oauth2::{ClientAuth, TokenEndpoint, TokenRequest, TokenUrl};
//! # async fn example<S, B>(http_client: S) -> Result<(), tower_oauth2::Error>
//! # where
//! #     S: tower::Service<http::Request<http_body_util::Full<bytes::Bytes>>, Response = http::Response<B>> + Clone,
//! #     S::Error: Into<tower_oauth2::error::BoxError>,
//! #     B: http_body::Body,
//! #     B::Error: Into<tower_oauth2::error::BoxError>,
//! # {
//! let endpoint = TokenEndpoint::new(
//!     http_client, // e.g. a hyper_util::client::legacy::Client
//!     TokenUrl::new("https://as.example.com/oauth2/token")?,
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//! );
//! let token = endpoint
//!     .request(&TokenRequest::client_credentials().scope("inventory:read"))
//!     .await?;
//! println!("token expires in {:?}", token.expires_in());
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
pub mod endpoint;
pub mod error;
pub mod layer;
pub mod request;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
mod secret;
pub mod store;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
pub mod token;

pub use cache::TokenCache;
pub use endpoint::TokenEndpoint;
pub use error::{Error, ErrorKind};
pub use layer::{OAuth2Layer, OAuth2Service};
pub use request::{ClientAuth, TokenRequest, TokenUrl};
pub use secret::SecretString;
pub use token::Token;

// Compiles the README's examples as doctests (its reqwest sections need the
// feature, as does the README's test command, `cargo test --all-features`).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "reqwest"))]
pub struct ReadmeDoctests;
