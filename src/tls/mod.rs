//! HTTPS in one line: a hyper-util client over rustls, and an
//! [`OAuth2Layer`] for the `client_credentials` grant that uses it
//! (feature `rustls`).
//!
//! - [`https_client`] is a hyper-util [`Client`] that speaks HTTPS only,
//!   HTTP/1.1 or HTTP/2 as the server chooses by ALPN, over rustls with the
//!   `ring` crypto provider, trusting Mozilla's root certificates (the
//!   `webpki-roots` crate).
//! - [`https_client_with_roots`] trusts the roots you give it instead: your
//!   own CA for a token endpoint inside your network, or the operating
//!   system's store loaded with `rustls-native-certs`.
//!   [`https_client_with_config`] takes a whole rustls [`ClientConfig`]
//!   (another crypto provider, a custom verifier).
//! - [`https_client_with_identity`] also presents a client certificate
//!   ([`ClientIdentity`]) to every server that asks for one: RFC 8705 mutual
//!   TLS, for [`ClientAuth::tls_client_auth`] or
//!   [`ClientAuth::self_signed_tls_client_auth`] at the token endpoint and
//!   for certificate-bound tokens at the resources (see
//!   [mutual TLS](#mutual-tls-rfc-8705) below).
//!   [`https_client_with_identity_files`] reads it from files
//!   ([`IdentityFiles`]) and again when they change: a renewed certificate
//!   is presented from the next connection, with no restart.
//! - [`client_credentials_layer`] gives the layer and the client it wraps,
//!   from a token URL, a [`ClientAuth`] and the scopes;
//!   [`client_credentials_layer_with`] does the same over a client you built.
//!
//! # Why these choices
//!
//! - **Mozilla's roots compiled in, not the system's.** The client then
//!   behaves the same on a laptop, in CI and in a `scratch` or distroless
//!   container that has no CA bundle, and never fails at start-up because a
//!   certificate directory is missing. The price is that a CA your operating
//!   system trusts and Mozilla does not (a company CA) must be passed in:
//!   [`https_client_with_roots`] takes any [`RootCertStore`], and
//!   [`webpki_root_store`] is the starting point to add one to.
//! - **`ring`, passed explicitly.** The configs are built with
//!   `ring`'s provider rather than rustls' process-wide default, so nothing
//!   panics when another crate in the program turns on `aws-lc-rs` too, and
//!   no C toolchain for `aws-lc-sys` is needed.
//! - **HTTPS only.** The client carries bearer tokens to every URL it is
//!   given; a plain `http` URL is refused by the connector instead of sending
//!   the token in clear text. (For a sidecar on loopback, use a plain
//!   hyper-util client: [`crate::TokenUrl`] accepts `http` there.)
//!
//! # Mutual TLS (RFC 8705)
//!
//! With `tls_client_auth` (the server checks the certificate against its
//! CAs and the subject registered for the client) or
//! `self_signed_tls_client_auth` (the server checks it against the
//! certificate registered for the client), the token request carries
//! `client_id` and no secret: the TLS handshake is the proof. A token the
//! server then issues may be bound to the certificate (its `cnf.x5t#S256`
//! is [`ClientIdentity::certificate_thumbprint`]), and the resource servers
//! accept it only over a connection presenting that same certificate. So
//! one client, made by [`https_client_with_identity`], serves both, as
//! [`client_credentials_layer_with`] arranges:
//!
//! ```no_run
//! use tower::ServiceBuilder;
//! use tower_oauth2::{tls, ClientAuth};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let identity = tls::ClientIdentity::from_pem(
//!     std::fs::read("/run/secrets/svc-orders.crt")?,
//!     std::fs::read("/run/secrets/svc-orders.key")?,
//! )?;
//! let https = tls::https_client_with_identity(&identity, tls::webpki_root_store());
//! let (oauth2, https) = tls::client_credentials_layer_with(
//!     https,
//!     "https://mtls.as.example.com/oauth2/token",
//!     ClientAuth::tls_client_auth("svc-orders"),
//!     ["inventory:read"],
//! )?;
//! let client = ServiceBuilder::new().layer(oauth2).service(https);
//! # Ok(())
//! # }
//! ```
//!
//! With discovery, [`ProviderMetadata::endpoint`](crate::discovery::ProviderMetadata::endpoint)
//! takes the token endpoint from the server's `mtls_endpoint_aliases`
//! (RFC 8705 §5) for these clients.
//!
//! A server that wants a certificate and gets none (or one it does not
//! trust) ends the handshake: the token fetch fails with
//! [`ErrorKind::Transport`](crate::ErrorKind::Transport).
//!
//! # Example
//!
//! ```
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::{tls, ClientAuth};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let (oauth2, https) = tls::client_credentials_layer(
//!     "https://as.example.com/oauth2/token",
//!     ClientAuth::client_secret_basic("svc-orders", "s3cret"),
//!     ["inventory:read"],
//! )?;
//! let client = ServiceBuilder::new().layer(oauth2).service(https);
//! # let _ = async {
//! let response = client
//!     .oneshot(http::Request::get("https://inventory.example.com/items").body(Full::default())?)
//!     .await?;
//! # Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response) };
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("../docs/tls.md")]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::WantsClientCert;
use rustls::{ClientConfig, RootCertStore};

use crate::{ClientAuth, Error, OAuth2Layer, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};

mod files;
mod identity;

pub use files::IdentityFiles;
pub use identity::{ClientIdentity, IdentityError, IdentityErrorKind};

/// The rustls crate these functions take types from, so callers name the
/// same version.
pub use rustls;

/// A hyper-util client over HTTPS (HTTP/1.1 or HTTP/2) sending
/// `Full<Bytes>` bodies: what the functions of this module build.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client trusting Mozilla's root certificates (`webpki-roots`).
///
/// It is cheap to clone (clones share one connection pool), so one client
/// serves the token endpoint and every resource server.
///
/// ```no_run
/// use http_body_util::Full;
/// use tower::ServiceExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let https = tower_oauth2::tls::https_client();
/// let response = https
///     .oneshot(http::Request::get("https://www.rust-lang.org/").body(Full::default())?)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn https_client() -> HttpsClient {
    https_client_with_roots(webpki_root_store())
}

/// An HTTPS client trusting exactly the certificates in `roots`.
///
/// ```
/// use tower_oauth2::tls::{self, rustls::pki_types::CertificateDer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let company_ca_der: CertificateDer<'static> = rcgen::generate_simple_self_signed(["ca.internal".to_owned()])?.cert.der().clone();
/// // Mozilla's roots and the company CA (DER-encoded).
/// let mut roots = tls::webpki_root_store();
/// roots.add(company_ca_der)?;
/// let https = tls::https_client_with_roots(roots);
/// # Ok(())
/// # }
/// ```
pub fn https_client_with_roots(roots: RootCertStore) -> HttpsClient {
    https_client_with_config(config_builder(roots).with_no_client_auth())
}

/// An HTTPS client trusting exactly the certificates in `roots` and
/// presenting `identity` to every server that asks for a client
/// certificate (RFC 8705 mutual TLS; see the [module docs](self#mutual-tls-rfc-8705)).
///
/// Use it for the token endpoint and for the resource servers alike: a
/// certificate-bound token is accepted only over a connection presenting
/// the certificate it is bound to.
///
/// ```
/// use tower_oauth2::tls::{self, ClientIdentity};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let made = rcgen::generate_simple_self_signed(["svc-orders".to_owned()])?;
/// # let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
/// let identity = ClientIdentity::from_pem(&cert_pem, &key_pem)?;
/// let https = tls::https_client_with_identity(&identity, tls::webpki_root_store());
/// # Ok(())
/// # }
/// ```
pub fn https_client_with_identity(identity: &ClientIdentity, roots: RootCertStore) -> HttpsClient {
    https_client_with_config(config_builder(roots).with_client_cert_resolver(identity.resolver()))
}

/// [`https_client_with_identity`] with the identity kept in files
/// ([`IdentityFiles`]): each new connection presents what the files hold
/// then, so a renewed certificate is used without a restart.
pub fn https_client_with_identity_files(
    identity: &IdentityFiles,
    roots: RootCertStore,
) -> HttpsClient {
    https_client_with_config(config_builder(roots).with_client_cert_resolver(identity.resolver()))
}

/// A rustls config builder with the `ring` provider, its default protocol
/// versions and `roots`, waiting for the client certificate choice.
fn config_builder(roots: RootCertStore) -> rustls::ConfigBuilder<ClientConfig, WantsClientCert> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots)
}

/// An HTTPS client using `config` as it is, except for its ALPN protocols,
/// which are set to `h2` and `http/1.1`.
///
/// For what [`https_client_with_roots`] and [`https_client_with_identity`]
/// do not cover: another crypto provider, a custom verifier, a client
/// certificate chosen per server ([`ClientIdentity::resolver`] presents one
/// to all).
pub fn https_client_with_config(mut config: ClientConfig) -> HttpsClient {
    // hyper-rustls sets ALPN itself and refuses a config that has some.
    config.alpn_protocols.clear();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new())
        // Without a timer, idle pooled connections are never closed.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Mozilla's root certificates (the `webpki-roots` crate), the trust store
/// of [`https_client`]: a starting point to add your own CA to.
pub fn webpki_root_store() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A layer getting `client_credentials` tokens with `scopes` from
/// `token_url` over [`https_client`], and that client, for the layer to wrap.
///
/// `token_url` must be `https` (or `http` on loopback, which this client then
/// refuses: see the [module docs](self)). The layer's cache is reachable as
/// [`OAuth2Layer::cache`]; no token is fetched until the first request.
/// An empty list (`None::<&str>`, say) sends no `scope` parameter.
///
/// ```no_run
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_oauth2::{tls, ClientAuth};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let (oauth2, https) = tls::client_credentials_layer(
///     "https://as.example.com/oauth2/token",
///     ClientAuth::client_secret_basic("svc-orders", std::env::var("CLIENT_SECRET")?),
///     ["inventory:read", "inventory:write"],
/// )?;
/// let client = ServiceBuilder::new().layer(oauth2).service(https);
/// let response = client
///     .oneshot(http::Request::get("https://inventory.example.com/items").body(Full::default())?)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn client_credentials_layer(
    token_url: &str,
    client: ClientAuth,
    scopes: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(OAuth2Layer, HttpsClient), Error> {
    client_credentials_layer_with(https_client(), token_url, client, scopes)
}

/// Like [`client_credentials_layer`], over a client you built (with
/// [`https_client_with_roots`], say). The token endpoint is reached through
/// a clone of `https`, sharing its connection pool; `https` is given back.
///
/// ```no_run
/// use tower::ServiceBuilder;
/// use tower_oauth2::{tls, ClientAuth};
///
/// # fn run(company_ca_der: tls::rustls::pki_types::CertificateDer<'static>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mut roots = tls::rustls::RootCertStore::empty();
/// roots.add(company_ca_der)?;
/// let (oauth2, https) = tls::client_credentials_layer_with(
///     tls::https_client_with_roots(roots),
///     "https://sso.corp.internal/oauth2/token",
///     ClientAuth::client_secret_post("svc-orders", std::env::var("CLIENT_SECRET")?),
///     ["inventory:read"],
/// )?;
/// let client = ServiceBuilder::new().layer(oauth2).service(https);
/// # Ok(())
/// # }
/// ```
pub fn client_credentials_layer_with(
    https: HttpsClient,
    token_url: &str,
    client: ClientAuth,
    scopes: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(OAuth2Layer, HttpsClient), Error> {
    let endpoint = TokenEndpoint::new(https.clone(), TokenUrl::new(token_url)?, client);
    let request = TokenRequest::client_credentials().scopes(scopes);
    let cache = TokenCache::builder(endpoint, request).build();
    Ok((OAuth2Layer::new(cache), https))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn plain_http_token_url_off_loopback_is_refused() {
        let err = client_credentials_layer(
            "http://as.example.com/token",
            ClientAuth::client_secret_basic("svc", "secret"),
            ["a"],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn a_config_with_its_own_alpn_is_accepted() {
        // hyper-rustls would panic on a config that already has ALPN set.
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let _client = https_client_with_config(config);
    }

    #[test]
    fn mozilla_roots_are_loaded() {
        assert!(webpki_root_store().len() > 100);
    }
}
