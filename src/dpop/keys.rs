//! [`DpopKeys`]: the DPoP key a token endpoint proves, which may change
//! while the client runs: rotated by hand, or read again from its file
//! when the file changes (a key mounted from a secret store that rotates
//! it).

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::Dpop;
use crate::credentials::{CredentialSource, FileStamp, Holds};
use crate::error::{CredentialFailure, Error};
use crate::jose::{Algorithm, KeyErrorKind, SigningKey};
use crate::proof::{KeyReload, ProofKey, ProofKeys};

/// The DPoP key of a token endpoint and its caches, which may change while
/// they run. See "Rotation" in the [module docs](super).
///
/// Give it to [`TokenEndpoint::dpop_keys`](crate::TokenEndpoint::dpop_keys)
/// ([`TokenEndpoint::dpop`](crate::TokenEndpoint::dpop) makes one of a
/// single key). A new key — [`DpopKeys::rotate`],
/// [`TokenCache::rotate_dpop_key`](crate::TokenCache::rotate_dpop_key), or
/// the file of [`DpopKeys::from_file`] rewritten — is proved from the next
/// token request on, and each cache fetches a token bound to it at its
/// next request (in the background); until that token is cached, requests
/// go on with the old token and the old key, so none fails. The nonces
/// servers gave go on with the new key: a nonce is the server's, not the
/// key's.
///
/// Cheap to clone: clones share the key. `Debug` shows the key's
/// thumbprint and the file's path only.
///
/// ```
/// use tower_oauth2::dpop::{Dpop, DpopKeys};
///
/// let keys = DpopKeys::new(Dpop::generate()?);
/// let before = keys.current().thumbprint().to_owned();
/// keys.rotate(Dpop::generate()?);
/// assert_ne!(keys.current().thumbprint(), before);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct DpopKeys {
    keys: ProofKeys,
}

impl DpopKeys {
    /// `dpop`, until [`DpopKeys::rotate`] gives another.
    pub fn new(dpop: Dpop) -> Self {
        DpopKeys {
            keys: ProofKeys::fixed(ProofKey::new(dpop)),
        }
    }

    /// The key in the file at `path` (a private key in PEM — PKCS#8, SEC1,
    /// PKCS#1 — or a private JWK: P-256 signs ES256, Ed25519 EdDSA, RSA
    /// RS256 with feature `jwt-rsa`; a JWK's `alg` chooses), read now and
    /// again whenever the file changes: it is looked at (one `stat`) before
    /// every token request, and by resource requests at most once a
    /// second, so a rewritten file's key is proved from the next token
    /// request on, and tokens bound to it replace the old key's within a
    /// second of requests.
    ///
    /// A file that is missing, empty, unreadable or holds no usable key is
    /// an error of kind [`crate::ErrorKind::Credential`] naming the path
    /// and what is wrong, never the content. Read now, it is returned; read
    /// again later, it is logged at WARN once per change of the file and
    /// the key in use stays ([`DpopKeys::reload`] returns it).
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let file = KeyFile::new(path.into());
        let dpop = file.read(None)?;
        let reload: Box<dyn KeyReload> = Box::new(file);
        Ok(DpopKeys {
            keys: ProofKeys::with_reload(ProofKey::new(dpop), Some(reload)),
        })
    }

    /// The key proved now.
    pub fn current(&self) -> Dpop {
        let key = self.keys.current();
        // Every key of a `DpopKeys` is a `Dpop`.
        let dpop = key.prover().as_any().downcast_ref::<Dpop>().cloned();
        dpop.unwrap_or_else(|| unreachable!("a DpopKeys holds Dpop keys only"))
    }

    /// Proves `dpop` from the next token request on, with the nonces the
    /// key before it learned. Caches built on these keys fetch a token
    /// bound to it at their next request (see the type's docs).
    pub fn rotate(&self, dpop: Dpop) {
        let dpop = dpop.sharing_nonces_of(&self.current());
        self.keys.rotate(ProofKey::new(dpop));
    }

    /// Reads the file now, whatever its metadata says: `Ok(true)` if it
    /// holds a new key (proved from now on), `Ok(false)` if the same key or
    /// for keys with no file, and the error (naming the path, never the
    /// content) if it holds no usable key, the key in use staying.
    pub fn reload(&self) -> Result<bool, Error> {
        self.keys.reload()
    }

    /// The file the key is read from, if any.
    pub fn path(&self) -> Option<&Path> {
        let file = self.keys.user()?.downcast_ref::<KeyFile>()?;
        Some(&file.path)
    }

    pub(crate) fn proof_keys(&self) -> &ProofKeys {
        &self.keys
    }

    pub(crate) fn from_proof_keys(keys: ProofKeys) -> Self {
        DpopKeys { keys }
    }
}

impl fmt::Debug for DpopKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKeys")
            .field("thumbprint", &self.current().thumbprint())
            .field("path", &self.path())
            .finish()
    }
}

impl Dpop {
    /// DPoP with the key in the file at `path`, read once (see
    /// [`DpopKeys::from_file`] for the forms, the errors, and a key read
    /// again when the file changes).
    pub fn from_key_file(path: impl Into<PathBuf>) -> Result<Dpop, Error> {
        KeyFile::new(path.into()).read(None)
    }
}

/// A key file and what was last seen in it.
struct KeyFile {
    path: PathBuf,
    seen: Mutex<Seen>,
}

/// The file's metadata when last read, and whether that read gave a key.
#[derive(Default)]
struct Seen {
    stamp: Option<FileStamp>,
    /// SHA-256 of the text that gave the key in use: a file rewritten
    /// with the same key (a `touch`, a secret store's refresh) is no new key.
    digest: Option<[u8; 32]>,
}

impl KeyFile {
    fn new(path: PathBuf) -> Self {
        KeyFile {
            path,
            seen: Mutex::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key in the file now, with `current`'s nonces if given.
    fn read(&self, current: Option<&Dpop>) -> Result<Dpop, Error> {
        let stamp = FileStamp::of(&self.path);
        let source = CredentialSource::file(self.path.clone());
        let text = source.read_now(Holds::Secret)?;
        let digest: [u8; 32] = Sha256::digest(text.expose_secret().as_bytes()).into();
        let key = parse_key(text.expose_secret()).map_err(|kind| self.not_a_key(kind))?;
        let dpop = Dpop::from_key(key).map_err(|e| self.not_a_key(e.kind()))?;
        let mut seen = self.seen();
        seen.stamp = stamp;
        seen.digest = Some(digest);
        Ok(match current {
            Some(current) => dpop.sharing_nonces_of(current),
            None => dpop,
        })
    }

    fn not_a_key(&self, kind: KeyErrorKind) -> Error {
        Error::credential(
            CredentialFailure::NotAKey,
            format!(
                "the file {}: holds no usable DPoP private key (PEM or JWK of an ES256, \
                 EdDSA or RSA key; {kind:?})",
                self.path.display()
            ),
        )
    }
}

impl KeyReload for KeyFile {
    fn reload(&self, current: &ProofKey, always: bool) -> Result<Option<ProofKey>, Error> {
        let stamp = FileStamp::of(&self.path);
        if !always {
            let mut seen = self.seen();
            // (A file gone stays gone: `None` both times, reported once.)
            if seen.stamp == stamp {
                return Ok(None);
            }
            // A failure is reported once per change of the file.
            seen.stamp = stamp;
        }
        let current = current.prover().as_any().downcast_ref::<Dpop>();
        let before = self.seen().digest;
        let dpop = self.read(current)?;
        let same = current.is_some_and(|c| c.thumbprint() == dpop.thumbprint());
        if same || self.seen().digest == before && before.is_some() {
            return Ok(None);
        }
        tracing::info!(
            path = %self.path.display(),
            thumbprint = dpop.thumbprint(),
            "read a new DPoP key from its file"
        );
        Ok(Some(ProofKey::new(dpop)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The private key in `text`: a JWK (a JSON object), or PEM, whose
/// algorithm is the first of [`super::alg::SIGNED`] its key type fits.
fn parse_key(text: &str) -> Result<SigningKey, KeyErrorKind> {
    let text = text.trim();
    if text.starts_with('{') {
        return SigningKey::from_jwk(text).map_err(|e| e.kind());
    }
    let mut first = None;
    for alg in [
        Algorithm::ES256,
        Algorithm::EdDSA,
        #[cfg(feature = "jwt-rsa")]
        Algorithm::RS256,
    ] {
        match SigningKey::from_pem(alg, text) {
            Ok(key) => return Ok(key),
            Err(e) if e.kind() == KeyErrorKind::AlgorithmMismatch => {
                first.get_or_insert(e.kind());
            }
            // Not PEM, or PEM of no private key: no other algorithm reads it.
            Err(e) => return Err(e.kind()),
        }
    }
    Err(first.unwrap_or(KeyErrorKind::Unparseable))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256: &str = include_str!("../testdata/p256-sec1.pem");
    const ED25519: &str = include_str!("../testdata/ed25519.pem");
    const ED25519_JWK: &str = include_str!("../testdata/ed25519.jwk.json");

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tower-oauth2-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn pem_and_jwk_keys_are_read_with_their_algorithm_and_garbage_is_not() {
        assert_eq!(parse_key(P256).unwrap().algorithm(), Algorithm::ES256);
        assert_eq!(parse_key(ED25519).unwrap().algorithm(), Algorithm::EdDSA);
        assert!(parse_key(ED25519_JWK).is_ok());
        assert_eq!(parse_key("CANARY").unwrap_err(), KeyErrorKind::Unparseable);
        assert!(parse_key("{\"kty\":\"EC\"}").is_err());
    }

    #[test]
    fn a_file_is_read_again_only_when_it_holds_another_key() {
        let path = temp_file("rotating.pem", P256);
        let keys = DpopKeys::from_file(&path).unwrap();
        let first = keys.current();
        let api: http::Uri = "https://api.example.com/x".parse().unwrap();
        let mut answer = http::HeaderMap::new();
        answer.insert("dpop-nonce", http::HeaderValue::from_static("n-1"));
        assert!(first.update_nonce(&api, &answer));
        // Unchanged, or the same key written again: no new key.
        assert!(!keys.reload().unwrap());
        std::fs::write(&path, format!("{P256}\n")).unwrap();
        assert!(!keys.reload().unwrap());
        assert_eq!(keys.current().thumbprint(), first.thumbprint());
        // Another key: read, with the nonces learned before.
        std::fs::write(&path, ED25519).unwrap();
        assert!(keys.reload().unwrap());
        let second = keys.current();
        assert_ne!(second.thumbprint(), first.thumbprint());
        assert_eq!(second.nonce(&api).as_deref(), Some("n-1"));
        // A broken file: named, the key stays.
        std::fs::write(&path, "CANARY").unwrap();
        let e = keys.reload().unwrap_err();
        assert_eq!(e.credential_failure(), Some(CredentialFailure::NotAKey));
        assert!(e.to_string().contains("rotating.pem") && !e.to_string().contains("CANARY"));
        assert_eq!(keys.current().thumbprint(), second.thumbprint());
        // Looked at through the seam: reported once per change of the file.
        let proof_keys = keys.proof_keys();
        let current = proof_keys.current();
        let file = proof_keys
            .user()
            .unwrap()
            .downcast_ref::<KeyFile>()
            .unwrap();
        assert!(file.reload(&current, false).is_err());
        assert!(file.reload(&current, false).unwrap().is_none());
        std::fs::write(&path, P256).unwrap();
        let third = file.reload(&current, false).unwrap().unwrap();
        assert_eq!(third.prover().thumbprint(), first.thumbprint());
        // A file gone: reported once, not at every look.
        std::fs::remove_file(&path).unwrap();
        let e = file.reload(&current, false).unwrap_err();
        assert_eq!(e.credential_failure(), Some(CredentialFailure::Missing));
        assert!(file.reload(&current, false).unwrap().is_none());
    }
}
