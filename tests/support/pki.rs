//! A test PKI made by rcgen: a CA, a certificate it issued for `localhost`
//! and `127.0.0.1`, client certificates (issued by the CA, or self-signed)
//! for mutual TLS, and TLS listeners that present the server certificate
//! and count handshakes (in front of a [`TestServer`], or of any
//! connection handler).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{crypto::ring, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
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
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key in PEM (as a client reads them), and
/// the certificate in DER (as a server sees it).
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
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
        issuer: ca,
    }
}

/// A self-signed client certificate for `name`.
pub fn self_signed_client_cert(name: &str) -> ClientCert {
    let key = KeyPair::generate().unwrap();
    let cert = client_params(name).self_signed(&key).unwrap();
    ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A TLS listener on 127.0.0.1 counting handshakes; it stops when dropped.
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
    /// `https://localhost:{port}{path}` (the server certificate's DNS name).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until a refused handshake is counted, at most 10 s: the server
    /// notices a client's alert, or counts its own refusal, after the
    /// client has returned.
    pub async fn wait_for_a_refusal(&self) {
        for _ in 0..1000 {
            if self.refused() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Pki {
    /// A TLS listener in front of `server`, offering these ALPN protocols.
    pub async fn serve(&self, server: &TestServer, alpn: &[&[u8]]) -> Frontend {
        let service = server.service();
        let config = self.server_config(None, alpn);
        serve_tls(config, move |tls| serve_connection(tls, service.clone())).await
    }

    /// A server config presenting the server certificate (`ring`
    /// provider), offering these ALPN protocols, and asking for client
    /// certificates when given a verifier.
    pub fn server_config(
        &self,
        client_verifier: Option<Arc<dyn ClientCertVerifier>>,
        alpn: &[&[u8]],
    ) -> ServerConfig {
        let builder = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// Client roots holding the test CA only.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
    }

    /// A certificate for `localhost` and `127.0.0.1` good for both ends of
    /// a connection (server and client authentication), issued by the test
    /// CA, and its key: what a server that reads files presents
    /// (redis-server; a Redis Cluster node presents it on its bus both
    /// ways).
    pub fn node_cert(&self) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client certificate for `name` issued by the test CA.
    pub fn client_cert(&self, name: &str) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let cert = client_params(name).signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// A TLS listener with `config`, handing each connection whose handshake
/// succeeded to `on_connection`.
pub async fn serve_tls<F, Fut>(config: ServerConfig, on_connection: F) -> Frontend
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (acc, rej) = (accepted.clone(), refused.clone());
    let serving = serve_tcp(move |tcp| {
        let (acceptor, acc, rej, on_connection) = (
            acceptor.clone(),
            acc.clone(),
            rej.clone(),
            on_connection.clone(),
        );
        async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    acc.fetch_add(1, Ordering::SeqCst);
                    on_connection(tls).await;
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
