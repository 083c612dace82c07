//! [`ClientIdentity`]: the certificate and private key a client presents in
//! mutual TLS (RFC 8705), and [`IdentityError`] when they cannot be used.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use sha2::{Digest, Sha256};

use crate::pem::{self, Problem};

/// A client certificate chain and its private key, for mutual TLS: what
/// [`https_client_with_identity`](super::https_client_with_identity)
/// presents to every server that asks for a certificate, for
/// `tls_client_auth` and `self_signed_tls_client_auth` at the token
/// endpoint (RFC 8705 §2) and for certificate-bound tokens at the resources
/// (RFC 8705 §3).
///
/// The key is read once, by rustls with the `ring` provider, and checked
/// against the first certificate. It is never printed: `Debug` shows the
/// number of certificates and the leaf's thumbprint. The DER copy of the key
/// is zeroized once `ring` has read it (rustls does that); the form `ring`
/// signs with and the PEM text you pass in are not. Cloning shares the key.
///
/// ```
/// use tower_oauth2::tls::ClientIdentity;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let made = rcgen::generate_simple_self_signed(["svc-orders".to_owned()])?;
/// # let (cert_pem, key_pem) = (made.cert.pem(), made.signing_key.serialize_pem());
/// // The certificate chain (leaf first) and the key, in PEM (one file
/// // holding both can be passed twice).
/// let identity = ClientIdentity::from_pem(&cert_pem, &key_pem)?;
/// // The value a certificate-bound token carries in `cnf.x5t#S256`.
/// assert_eq!(identity.certificate_thumbprint().len(), 43);
/// assert!(!format!("{identity:?}").contains("PRIVATE KEY"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClientIdentity {
    certified: Arc<CertifiedKey>,
    thumbprint: String,
}

impl ClientIdentity {
    /// Reads a certificate chain and its private key from PEM.
    ///
    /// `cert_chain` holds one or more `CERTIFICATE` blocks, the client's own
    /// certificate first; `key` holds one private key (`PRIVATE KEY`,
    /// `RSA PRIVATE KEY` or `EC PRIVATE KEY`: RSA, ECDSA P-256/P-384 or
    /// Ed25519). Blocks of other kinds are skipped, so one file holding both
    /// can be passed as both.
    pub fn from_pem(
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<Self, IdentityError> {
        let chain = pem::certificates(cert_chain.as_ref()).map_err(IdentityError::from)?;
        let key = pem::private_key(key.as_ref()).map_err(IdentityError::from)?;
        Self::from_der(chain, key)
    }

    /// A certificate chain (the client's own certificate first) and its
    /// private key, DER-encoded.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        let thumbprint = cert_chain
            .first()
            .map(|leaf| URL_SAFE_NO_PAD.encode(Sha256::digest(leaf)));
        let certified = pem::certified_key(cert_chain, key).map_err(IdentityError::from)?;
        Ok(ClientIdentity {
            certified: Arc::new(certified),
            thumbprint: thumbprint.unwrap_or_default(),
        })
    }

    /// The client certificate's SHA-256 thumbprint, base64url without
    /// padding: what a certificate-bound token carries as `cnf.x5t#S256`
    /// (RFC 8705 §3.1), and what a server registering a self-signed
    /// certificate may ask for.
    pub fn certificate_thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate chain, the client's own certificate first (for
    /// `self_signed_tls_client_auth`, it is what to register as the
    /// client's `x5c`).
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// A rustls certificate resolver presenting this identity, for a
    /// [`rustls::ClientConfig`] you build yourself
    /// (`ConfigBuilder::with_client_cert_resolver`).
    pub fn resolver(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(Resolver(self.clone()))
    }

    /// The certificate chain and signing key, as rustls presents them.
    pub(super) fn certified(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.certified.cert.len())
            .field("x5t#S256", &self.thumbprint)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Presents the identity to every server that asks, whatever CAs it names:
/// the server decides whether the certificate will do.
#[derive(Debug)]
struct Resolver(ClientIdentity);

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What is wrong with a client identity ([`IdentityError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityErrorKind {
    /// No certificate, or one that cannot be read (not PEM, not DER X.509).
    Certificate,
    /// No private key in the key PEM, or PEM that cannot be read.
    Key,
    /// A private key `ring` does not sign with (another curve, an encrypted
    /// PKCS#8 file, a DSA key).
    UnsupportedKey,
    /// The private key does not belong to the first certificate.
    KeyMismatch,
    /// A file ([`IdentityFiles`](super::IdentityFiles)) that does not exist
    /// or cannot be read.
    Unreadable,
}

/// A certificate chain and key that cannot be used as a [`ClientIdentity`].
/// Its message names the reason and never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    kind: IdentityErrorKind,
    detail: Cow<'static, str>,
}

impl IdentityError {
    /// A file that cannot be read: names it, and the I/O error (whose
    /// words never quote the file).
    pub(super) fn unreadable(path: &std::path::Path, error: &std::io::Error) -> Self {
        IdentityError {
            kind: IdentityErrorKind::Unreadable,
            detail: Cow::Owned(format!("{} cannot be read ({error})", path.display())),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> IdentityErrorKind {
        self.kind
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unusable TLS client identity: {}", self.detail)
    }
}

impl std::error::Error for IdentityError {}

impl From<Problem> for IdentityError {
    fn from(problem: Problem) -> Self {
        let kind = match problem {
            Problem::Certificate(_) => IdentityErrorKind::Certificate,
            Problem::Key(_) => IdentityErrorKind::Key,
            Problem::UnsupportedKey => IdentityErrorKind::UnsupportedKey,
            Problem::KeyMismatch => IdentityErrorKind::KeyMismatch,
        };
        IdentityError {
            kind,
            detail: problem.detail(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;

    fn self_signed(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed([name.to_owned()]).unwrap()
    }

    #[test]
    fn reads_pem_and_never_shows_the_key() {
        let made = self_signed("svc-orders");
        let key_pem = made.signing_key.serialize_pem();
        let identity = ClientIdentity::from_pem(made.cert.pem(), &key_pem).unwrap();
        let want = URL_SAFE_NO_PAD.encode(Sha256::digest(made.cert.der()));
        assert_eq!(identity.certificate_thumbprint(), want);
        assert_eq!(identity.certificate_chain(), [made.cert.der().clone()]);
        assert_eq!(
            format!("{identity:?}"),
            format!(
                "ClientIdentity {{ certificates: 1, x5t#S256: {want:?}, key: \"[redacted]\" }}"
            )
        );
        let key_body: String = key_pem.lines().nth(1).unwrap().chars().take(20).collect();
        let resolver = format!("{:?}", identity.resolver());
        assert!(!resolver.contains(&key_body), "{resolver}");
        assert!(identity.resolver().has_certs());

        // One file holding both, passed twice.
        let both = format!("{key_pem}{}", made.cert.pem());
        let again = ClientIdentity::from_pem(&both, &both).unwrap();
        assert_eq!(again.certificate_thumbprint(), want);
    }

    #[test]
    fn unusable_identities_are_typed_errors() {
        let a = self_signed("a");
        let b = self_signed("b");
        let (a_cert, a_key) = (a.cert.pem(), a.signing_key.serialize_pem());
        let b_key = b.signing_key.serialize_pem();
        let broken_key = a_key.replacen('M', "!", 1);
        let cases = [
            (
                String::new(),
                a_key.clone(),
                IdentityErrorKind::Certificate,
                "no CERTIFICATE block in the certificate PEM",
            ),
            (
                a_cert.clone(),
                a_cert.clone(),
                IdentityErrorKind::Key,
                "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in the key PEM",
            ),
            (
                a_cert.clone(),
                broken_key,
                IdentityErrorKind::Key,
                "a PEM block is not valid base64",
            ),
            (
                a_cert.clone(),
                a_key.replace("-----END PRIVATE KEY-----", ""),
                IdentityErrorKind::Key,
                "a PEM block has no END line",
            ),
            (
                a_cert.clone(),
                b_key,
                IdentityErrorKind::KeyMismatch,
                "the private key is not the key of the first certificate",
            ),
        ];
        for (cert, key, kind, detail) in cases {
            let e = ClientIdentity::from_pem(&cert, &key).unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(
                e.to_string(),
                format!("unusable TLS client identity: {detail}")
            );
        }
        let not_a_key = PrivateKeyDer::Pkcs8(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
        let e = ClientIdentity::from_der(vec![a.cert.der().clone()], not_a_key).unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::UnsupportedKey);
        let key = || PrivateKeyDer::from_pem_slice(a_key.as_bytes()).unwrap();
        let e = ClientIdentity::from_der(Vec::new(), key()).unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::Certificate);
        let not_a_cert = CertificateDer::from(vec![0x30, 0x00]);
        let e = ClientIdentity::from_der(vec![not_a_cert], key()).unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::Certificate, "{e}");
    }
}
