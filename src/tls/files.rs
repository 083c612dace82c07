//! [`IdentityFiles`]: a client identity read from a certificate file and a
//! key file, and read again when they change (a certificate that
//! cert-manager, a SPIFFE helper or a vault agent renews on disk).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::identity::{ClientIdentity, IdentityError};
use crate::credentials::FileStamp;

/// The most read of a certificate or key file: 1 MiB, far above any
/// certificate chain, so a path pointed at the wrong file (a device, a
/// log) fails instead of being read whole during a handshake.
const MAX_IDENTITY_FILE_BYTES: u64 = 1024 * 1024;

/// A [`ClientIdentity`] kept in two PEM files (they may be one file holding
/// both), read when built and read again when either changes: each new TLS
/// connection presents the identity the files hold then, so a renewed
/// certificate is used without a restart. Connections already open keep
/// the certificate of their handshake until they close.
///
/// A change is seen from the files' metadata (modification time, length
/// and, on Unix, inode: a Kubernetes secret volume swaps a symlink), looked
/// at on each handshake. Files that do not make a usable identity (caught
/// half-written, a key that does not match the certificate) leave the last
/// good identity in use; the problem is logged at WARN once per change,
/// naming the files and never their content. Each file must be a regular
/// file (a symbolic link to one is followed) of at most 1 MiB: a FIFO, a
/// device or a directory is refused at once, never waited on during a
/// handshake ([`IdentityErrorKind::Unreadable`](super::IdentityErrorKind::Unreadable)).
///
/// With certificate-bound tokens (RFC 8705 §3), a token bound to the old
/// certificate is refused over a connection presenting the new one; the
/// layer's 401 handling fetches a token bound to the new certificate.
///
/// ```no_run
/// use tower_oauth2::tls::{self, IdentityFiles};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = IdentityFiles::new("/var/run/secrets/tls/tls.crt", "/var/run/secrets/tls/tls.key")?;
/// let https = tls::https_client_with_identity_files(&identity, tls::webpki_root_store());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The files' stamps when `identity` was read from them.
    read: Stamps,
    identity: ClientIdentity,
    /// The stamps of files found unusable, logged once.
    refused: Option<Stamps>,
}

type Stamps = (Option<FileStamp>, Option<FileStamp>);

impl IdentityFiles {
    /// Reads the certificate chain (PEM, the client's own certificate
    /// first) from `cert` and its private key (PEM) from `key`, as
    /// [`ClientIdentity::from_pem`] does. An error names the file that
    /// could not be read, or what is wrong with what it holds.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, IdentityError> {
        let (cert, key) = (cert.into(), key.into());
        let read = (FileStamp::of(&cert), FileStamp::of(&key));
        let identity = read_identity(&cert, &key)?;
        Ok(IdentityFiles {
            inner: Arc::new(Inner {
                cert,
                key,
                state: Mutex::new(State {
                    read,
                    identity,
                    refused: None,
                }),
            }),
        })
    }

    /// The identity the files hold now (the last usable one when they hold
    /// none): what the next TLS connection presents.
    pub fn current(&self) -> ClientIdentity {
        let inner = &self.inner;
        let now = (FileStamp::of(&inner.cert), FileStamp::of(&inner.key));
        // A poisoned lock only means a panic elsewhere while holding it;
        // the state itself is always whole.
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.read && state.refused != Some(now) {
            match read_identity(&inner.cert, &inner.key) {
                Ok(identity) => {
                    tracing::info!(
                        cert = %inner.cert.display(),
                        x5t_s256 = %identity.certificate_thumbprint(),
                        "the TLS client identity files changed: new connections present the new certificate"
                    );
                    state.identity = identity;
                    state.read = now;
                    state.refused = None;
                }
                Err(e) => {
                    tracing::warn!(
                        cert = %inner.cert.display(),
                        key = %inner.key.display(),
                        error = %e,
                        "the TLS client identity files changed but hold no usable identity; \
                         the previous one is still presented"
                    );
                    state.refused = Some(now);
                }
            }
        }
        state.identity.clone()
    }

    /// A rustls certificate resolver presenting [`IdentityFiles::current`]
    /// to every server that asks, for a [`rustls::ClientConfig`] you build
    /// yourself (`ConfigBuilder::with_client_cert_resolver`).
    pub fn resolver(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(Resolver(self.clone()))
    }
}

fn read_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, IdentityError> {
    // Bounded, and never blocking on a FIFO: this runs in a handshake.
    let read = |path: &Path| {
        crate::credentials::read_regular_file(path, MAX_IDENTITY_FILE_BYTES)
            .map_err(|e| IdentityError::unreadable(path, &e))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    ClientIdentity::from_pem(cert_pem, key_pem)
}

#[derive(Debug)]
struct Resolver(IdentityFiles);

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::IdentityErrorKind;

    fn self_signed(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed([name.to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    /// A unique directory under the system's temporary one.
    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tower-oauth2-identity-files-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Replaces `path` with `content` as a new file (a new inode: what a
    /// rename or a Kubernetes volume update does).
    fn replace(path: &Path, content: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_renewed_certificate_is_read_and_a_broken_one_leaves_the_last_good() {
        let dir = dir("renewed");
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let (a_cert, a_key) = self_signed("svc-a");
        replace(&cert, &a_cert);
        replace(&key, &a_key);
        let files = IdentityFiles::new(&cert, &key).unwrap();
        let a = files.current().certificate_thumbprint().to_owned();

        let (b_cert, b_key) = self_signed("svc-b");
        replace(&cert, &b_cert);
        replace(&key, &b_key);
        let b = files.current().certificate_thumbprint().to_owned();
        assert_ne!(a, b);

        // Caught half-way: a new certificate, the old key.
        let (c_cert, _) = self_signed("svc-c");
        replace(&cert, &c_cert);
        assert_eq!(files.current().certificate_thumbprint(), b);
        // Then the other half lands.
        let (d_cert, d_key) = self_signed("svc-d");
        replace(&cert, &d_cert);
        replace(&key, &d_key);
        let d = files.current().certificate_thumbprint().to_owned();
        assert!(d != b && d != a);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_unusable_file_is_an_error_naming_it_never_its_content() {
        let dir = dir("errors");
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let e = IdentityFiles::new(&cert, &key).unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::Unreadable);
        assert!(e.to_string().contains("tls.crt"), "{e}");
        let (a_cert, _) = self_signed("svc-a");
        replace(&cert, &a_cert);
        replace(&key, "CANARY not a key");
        let e = IdentityFiles::new(&cert, &key).unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::Key);
        assert!(!format!("{e} {e:?}").contains("CANARY"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
