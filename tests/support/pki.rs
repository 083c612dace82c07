//! A test PKI made by rcgen: a CA, a certificate it issued for `localhost`
//! and `127.0.0.1`, and TLS listeners in front of a [`TestServer`] that
//! present it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{crypto::ring, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::serve::{serve_connection, serve_tcp, Serving};
use super::token_server::{ClientCheck, TestServer};

/// A test CA and a certificate it issued for `localhost` and `127.0.0.1`.
pub struct Pki {
    /// The CA certificate, DER.
    pub ca: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

/// A new CA, and a server certificate it issued.
pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tower-oauth2 test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca: ca_cert.der().clone(),
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.der().clone(),
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
    }
}

/// A TLS listener in front of a [`TestServer`] (same state, same counters),
/// counting handshakes; it stops when dropped.
pub struct Frontend {
    serving: Serving,
    /// Connections whose TLS handshake succeeded.
    accepted: Arc<AtomicUsize>,
    /// Connections whose TLS handshake was refused.
    refused: Arc<AtomicUsize>,
}

impl Frontend {
    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.serving.addr.port()
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Pki {
    /// A TLS listener in front of `server`, offering these ALPN protocols.
    pub async fn serve(&self, server: &TestServer, alpn: &[&[u8]]) -> Frontend {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let accepted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (acc, rej, service) = (accepted.clone(), refused.clone(), server.service());
        let serving = serve_tcp(move |tcp| {
            let (acceptor, acc, rej, service) =
                (acceptor.clone(), acc.clone(), rej.clone(), service.clone());
            async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        serve_connection(tls, service).await;
                    }
                    Err(_) => {
                        rej.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
        .await;
        Frontend {
            serving,
            accepted,
            refused,
        }
    }

    /// Client roots holding the test CA only.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
    }
}

/// A [`TestServer`] for client `svc-orders` (secret `s3cret`,
/// `client_secret_basic`), with two TLS listeners in front of it: one for
/// the token endpoint (HTTP/1.1 only), one for the resource server (HTTP/2
/// too).
pub async fn tls_servers(pki: &Pki) -> (TestServer, Frontend, Frontend) {
    let server = TestServer::start().await;
    server.set_client("svc-orders", "s3cret", ClientCheck::Basic);
    let token = pki.serve(&server, &[b"http/1.1"]).await;
    let resource = pki.serve(&server, &[b"h2", b"http/1.1"]).await;
    (server, token, resource)
}
