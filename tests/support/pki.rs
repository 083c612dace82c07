//! A test PKI made by rcgen: a CA, a server certificate it issued for
//! `localhost` and `127.0.0.1`, and client certificates (issued by the CA,
//! or self-signed) for mutual TLS.
#![allow(dead_code, reason = "only the TLS test binaries use it")]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::RootCertStore;

/// A test CA and a certificate it issued for `localhost` and `127.0.0.1`.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub server_cert: CertificateDer<'static>,
    pub server_key: PrivatePkcs8KeyDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key, in PEM (as a client reads them) and
/// the certificate in DER (as a server sees it).
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tower-oauth2 test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();
        Pki {
            ca: ca_cert.der().clone(),
            server_cert: server_cert.der().clone(),
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
            issuer,
        }
    }

    /// Client roots holding the test CA only.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        roots
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
