//! The demo's one HTTP client, for the token endpoint and the resource:
//! `https` over rustls, trusting Mozilla's root certificates and the CAs of
//! `--ca-file`, and plain `http`, which the demo sends secrets over on
//! loopback only ([`tower_oauth2::TokenUrl`] refuses any other `http` token
//! URL, and the layer puts no token on a request to one).
//!
//! It makes the same choices as the crate's `tls::https_client_with_roots`
//! (feature `rustls`): Mozilla's roots compiled in (`webpki-roots`), the
//! `ring` provider passed explicitly, HTTP/1.1 or HTTP/2 by ALPN. It is
//! built here from the same crates because examples build without the
//! crate's features, and because the demo's own servers speak plain `http`
//! on 127.0.0.1, which that HTTPS-only client refuses.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A hyper-util client over `http` or `https` sending `Full<Bytes>` bodies.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client, trusting Mozilla's roots and every certificate in
/// `ca_file` (PEM). `Err`: the file cannot be read, holds no certificate,
/// or holds one that is not a usable CA certificate.
pub fn http_client(ca_file: Option<&Path>) -> Result<HttpClient, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        for cert in ca_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
        }
    }
    let tls = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        // Without a timer, idle pooled connections are never closed.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
}

/// The certificates of a PEM file (other sections, such as keys, skipped);
/// at least one.
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let err = |e: &dyn std::fmt::Display| format!("--ca-file {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(&e))?;
    if certs.is_empty() {
        return Err(err(&"no PEM certificate in it"));
    }
    Ok(certs)
}
