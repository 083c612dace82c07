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
//! Where each piece lives, the data flow and the rules the code keeps:
//! [ARCHITECTURE.md](https://github.com/tower-oauth2/tower-oauth2/blob/main/ARCHITECTURE.md).
//! The guides are in the module docs: [`layer`] (which requests get the
//! token, the 401 retry, errors and deadlines, axum, tonic, one client for
//! several APIs), [`cache`] (refresh timing, single flight, statistics,
//! status and warm-up, logs and tracing spans), [`request`] (grants and
//! client authentication), [`discovery`],
//! [`revocation`] (revoke on shutdown), [`store`] (persisting tokens),
//! [`tier`] (sharing tokens with a fleet through any store),
//! [`on_behalf`] (RFC 8693 token exchange per caller), and the feature
//! modules below.
//!
//! Secrets (client secret, access, refresh and ID tokens, passwords,
//! assertions) are [`SecretString`]s and never appear in `Debug`, `Display`,
//! logs or errors. The `Authorization` header is marked sensitive.
//!
//! # Feature flags
//!
//! No feature is on by default.
//!
//! | feature | what it adds | dependencies it turns on | Rust |
//! | --- | --- | --- | --- |
//! | `rustls` | module `tls`: `https_client()` (Mozilla's roots), `https_client_with_roots`, `https_client_with_identity` (a client certificate for RFC 8705 mutual TLS: `ClientIdentity`, `IdentityError`), `https_client_with_config` (your own rustls `ClientConfig`), `webpki_root_store()`, the `HttpsClient` type, and `client_credentials_layer` / `client_credentials_layer_with`, an [`OAuth2Layer`] for `client_credentials` over that client in one call; re-exports `rustls`. (`ClientAuth::tls_client_auth` / `self_signed_tls_client_auth` and discovery's `mtls_endpoint_aliases` need no feature: they shape requests, whatever client carries the certificate.) | `hyper-util` (legacy client, HTTP/1, HTTP/2), `hyper-rustls`, `rustls` (`ring` provider, TLS 1.2 and 1.3), `webpki-roots` | 1.85 |
//! | `reqwest` | module `reqwest`: `OAuth2Middleware` for a reqwest-middleware client, sharing the [`TokenCache`] with the tower layer (same destination check, same 401 handling); `ReqwestTransport`, a tower service over a `reqwest::Client` that follows no redirects, for the token endpoint and discovery; `token_error` | `reqwest` (no default features: pick its TLS backend on your own `reqwest` dependency), `reqwest-middleware`, `async-trait` | 1.88 |
//! | `jwt` | module `jose`: `SigningKey` (ES256, EdDSA; PEM, DER or JWK), `ClientAuth::private_key_jwt` and `ClientAuth::client_secret_jwt` (HS256) with a fresh assertion per token request (RFC 7523 §2.2), `TokenRequest::jwt_bearer_signed` and `JwtClaims` (RFC 7523 §2.1) | `p256`, `ed25519-dalek`, `hmac`, `zeroize` (RustCrypto, pure Rust) | 1.85 |
//! | `jwt-rsa` | `jwt`, and RS256 and PS256 keys (2048 bits or more); see `jose` on RUSTSEC-2023-0071 | `rsa`, `rand_core` | 1.85 |
//! | `jwt-ring` | `jwt`, with ES256 and RSA signatures (DPoP proofs, client assertions) made by `ring`: ten times faster ES256; the keys are still read by RustCrypto, Ed25519 still signed by `ed25519-dalek` (faster) | `ring` (as `rustls` builds it) | 1.85 |
//! | `dpop` | module `dpop`: DPoP-bound tokens (RFC 9449), a proof per token request and per resource request (ES256, EdDSA/Ed25519, RS256/PS256 with `jwt-rsa`; the algorithm from discovery's `dpop_signing_alg_values_supported` when not chosen), server nonces per origin; enables `jwt` | `jwt`'s | 1.85 |
//! | `metrics` | module `metrics`: token requests by outcome and reason, their duration, the token lifetime, 401s and waits through the `metrics` facade; `TokenCacheBuilder::metrics_name` | `metrics` (the facade only) | 1.85 |
//! | `redis` | module `fleet`: `RedisTier` and `TokenCacheBuilder::redis`, one token for a fleet of processes (standalone or Cluster, `rediss://`, ACL users), one token request per refresh for the whole fleet, optional ChaCha20-Poly1305 encryption at rest | `redis`, `chacha20poly1305`, `rustls` (`ring`) | 1.85 |
//! | `testing` | module `testing`, for your own tests: `fixed_token_cache` (a cache whose token is always the one given) and `ScriptedTokenEndpoint` (a token endpoint in process, a tower service: lifetimes, errors, `429` with `Retry-After`, refresh-token rotation, a count of requests); no network | none | 1.85 |
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
mod clock;
pub mod config;
pub mod credentials;
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
pub mod on_behalf;
#[cfg(any(feature = "rustls", feature = "redis"))]
mod pem;
mod proof;
pub mod request;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod revocation;
mod secret;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod tier;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
pub mod token;
pub mod transport;
mod url;

pub use cache::TokenCache;
pub use endpoint::TokenEndpoint;
pub use error::{Error, ErrorKind};
pub use layer::{AuthPolicy, Destinations, OAuth2Layer, OAuth2Service, ServiceError};
pub use request::{ClientAuth, TokenRequest, TokenUrl};
pub use secret::SecretString;
pub use token::Token;
pub use transport::{HttpClient, HttpTransport};

// Compiles the README's example as a doctest (it needs no feature). The
// feature guides are compiled where they live, in the module docs.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
