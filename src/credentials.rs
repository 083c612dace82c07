//! Client credentials read when a token request is made: a client secret
//! or a client assertion from a file that rotates (a Kubernetes secret, a
//! projected service-account token, a SPIFFE JWT-SVID written by a helper)
//! or from an async callback (a sidecar, the SPIFFE workload API).
//!
//! A [`CredentialSource`] is read again for every token request, and for
//! every revocation request, so a rotated secret or assertion is used from
//! the next request on, with no restart. When the token endpoint (or the
//! revocation endpoint) refuses a request with `invalid_client` (RFC 6749
//! §5.2, RFC 7009 §2.1), the credential is read
//! once more and the request sent once more, never more often: the refusal
//! may have raced a rotation.
//!
//! - [`crate::ClientAuth::client_assertion`] sends `client_assertion_type`
//!   `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` (RFC 7521
//!   §4.2, RFC 7523 §2.2), seen by the server as `private_key_jwt`.
//! - [`crate::ClientAuth::spiffe_jwt`] sends a JWT-SVID with
//!   `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`
//!   (draft-ietf-oauth-spiffe-client-auth).
//! - `ClientAuth::private_key_jwt_from` (feature `jwt`) signs each
//!   assertion with a private key read from a PEM file.
//! - [`crate::ClientAuth::client_secret_basic_from`] and
//!   [`crate::ClientAuth::client_secret_post_from`] send a client secret.
//!
//! # What is checked
//!
//! A secret's trailing line breaks (`\n`, `\r\n`, which a Kubernetes secret
//! made from a file often ends with) are cut off: RFC 6749 Appendix A.2
//! allows a client secret visible ASCII and spaces only, so a line break
//! is never part of one. Spaces are kept. An empty secret is refused.
//! An assertion is trimmed of surrounding white space and must be a JWT in
//! compact form (three base64url parts, the second a JSON object). Its
//! `exp` is read without verifying the signature: an assertion already
//! expired is read again at once (the writer may have just replaced it), and
//! if it is still expired the request is not sent.
//!
//! Each failure is an [`ErrorKind::Credential`](crate::ErrorKind::Credential)
//! error whose [`Error::credential_failure`](crate::Error::credential_failure)
//! says which ([`CredentialFailure`]); its message names the file (or "the
//! callback"), never what it holds. These errors are retryable: the writer of
//! the file may fix it.
//!
//! # Rotating a file
//!
//! Replace the file at once: write the new content beside it and rename it
//! over the old one, as the kubelet (an atomic symlink swap) and vault
//! agents do. A file truncated then written may be read half-written, and
//! that request fails. Keep the old credential valid at the server until
//! the new one is in the file: a request that read the old one just before
//! the rename and is refused is sent once more with the new one.
//!
//! # File reads
//!
//! A file is read with `std::fs` on the task that sends the token request,
//! at most [`MAX_CREDENTIAL_BYTES`] of it. It must be a regular file (a
//! symbolic link to one is followed, as the kubelet's are): a FIFO, a
//! device such as `/dev/zero`, a socket or a directory is refused at once
//! ([`CredentialFailure::Unreadable`]), since opening a FIFO with no
//! writer would wait for one forever. Credential files are small and
//! live on local or in-memory file systems (a Kubernetes `secret` or
//! `projected` volume is a tmpfs), so the read takes microseconds and does
//! not hold up the runtime; do not point a source at a network file system.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::credentials::CredentialSource;
//! use tower_oauth2::{ClientAuth, TokenRequest, TokenUrl};
//!
//! # let dir = std::env::temp_dir().join(format!("tower-oauth2-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("client-secret");
//! // A Kubernetes secret mounted as a file, with its trailing newline.
//! std::fs::write(&path, "s3cret\n")?;
//! let client = ClientAuth::client_secret_post_from("svc-orders", CredentialSource::file(&path));
//! assert_eq!(client.method_name(), "client_secret_post");
//!
//! let url = TokenUrl::new("https://as.example.com/token")?;
//! let request = TokenRequest::client_credentials().build(&client, &url)?;
//! # use http_body_util::BodyExt;
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # let body = rt.block_on(request.into_body().collect())?.to_bytes();
//! assert_eq!(body, "grant_type=client_credentials&client_id=svc-orders&client_secret=s3cret");
//!
//! // The secret is rotated: the next request sends the new one.
//! std::fs::write(&path, "n3w-s3cret\n")?;
//! let request = TokenRequest::client_credentials().build(&client, &url)?;
//! # let body = rt.block_on(request.into_body().collect())?.to_bytes();
//! assert!(body.ends_with(b"client_secret=n3w-s3cret"));
//!
//! // The Debug output names the file, never the secret.
//! assert!(!format!("{client:?}").contains("s3cret"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{BoxError, CredentialFailure, Error};
use crate::secret::SecretString;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `client_assertion_type` of a SPIFFE JWT-SVID
/// (draft-ietf-oauth-spiffe-client-auth).
pub const JWT_SPIFFE_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// The most read of a credential file: 64 KiB, far above any secret or
/// assertion, so a source pointed at the wrong file fails instead of
/// reading it all.
pub const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// What a [`CredentialSource::callback`] returns.
pub type CredentialFuture = Pin<Box<dyn Future<Output = Result<SecretString, BoxError>> + Send>>;

type Callback = Arc<dyn Fn() -> CredentialFuture + Send + Sync>;

/// Where a client secret or client assertion is read from, for every
/// token request. See the [module docs](self).
#[derive(Clone)]
pub struct CredentialSource(Source);

#[derive(Clone)]
enum Source {
    File(Arc<Path>),
    Callback(Callback),
    /// A value already read, for the one request it is read for.
    Value(SecretString),
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Callback(_) => f.write_str("Callback"),
            Source::Value(_) => f.write_str("Value([redacted])"),
        }
    }
}

/// Which credential a source holds: how it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holds {
    Secret,
    Assertion,
}

impl CredentialSource {
    /// The file at `path`, read for every request (see the
    /// [module docs](self) for the checks and the trailing newline).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        CredentialSource(Source::File(Arc::from(path.into())))
    }

    /// The value `callback`'s future gives, asked for every request. An
    /// error it returns fails the request with
    /// [`CredentialFailure::Callback`]; its message is not kept (it might
    /// quote the credential), only that the callback failed. So does a
    /// future that gives no value within the request's timeout
    /// ([`crate::TokenEndpoint::timeout`]): a callback that never answers
    /// does not hold the cache's token fetch forever.
    ///
    /// ```
    /// use tower_oauth2::credentials::CredentialSource;
    /// use tower_oauth2::{ClientAuth, SecretString};
    ///
    /// let source = CredentialSource::callback(|| async {
    ///     // Ask the SPIFFE workload API, a sidecar…
    ///     Ok(SecretString::from("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9zdmMifQ.c2ln"))
    /// });
    /// let client = ClientAuth::spiffe_jwt("spiffe://example.org/svc", source);
    /// assert_eq!(client.method_name(), "spiffe_jwt");
    /// ```
    pub fn callback<F, Fut>(callback: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SecretString, BoxError>> + Send + 'static,
    {
        CredentialSource(Source::Callback(Arc::new(move || {
            Box::pin(callback()) as CredentialFuture
        })))
    }

    /// The file this source reads, if it reads one.
    pub fn path(&self) -> Option<&Path> {
        match &self.0 {
            Source::File(path) => Some(path),
            Source::Callback(_) | Source::Value(_) => None,
        }
    }

    /// A source already read, holding `value`.
    pub(crate) fn value(value: SecretString) -> Self {
        CredentialSource(Source::Value(value))
    }

    /// The value of a source already read.
    pub(crate) fn read_value(&self) -> Option<&SecretString> {
        match &self.0 {
            Source::Value(v) => Some(v),
            Source::File(_) | Source::Callback(_) => None,
        }
    }

    /// Whether the source is read anew for each request (a file or a
    /// callback), so an `invalid_client` may be worth one more try.
    pub(crate) fn rereads(&self) -> bool {
        !matches!(self.0, Source::Value(_))
    }

    /// Reads the credential, checked as `holds` says; an expired
    /// assertion is read once more. A callback gets `within` for each
    /// call (the request's timeout): one that never answers (its sidecar
    /// or workload API down) fails the request as a token endpoint that
    /// never answers does, instead of holding the cache's fetch forever.
    pub(crate) async fn read(&self, holds: Holds, within: Duration) -> Result<SecretString, Error> {
        match self.read_checked(holds, within).await {
            Err(e) if e.credential_failure() == Some(CredentialFailure::Expired) => {
                tracing::debug!(source = ?self, "the client assertion has expired; reading it again");
                self.read_checked(holds, within).await
            }
            other => other,
        }
    }

    /// [`CredentialSource::read`] without awaiting: a callback cannot be
    /// read this way.
    pub(crate) fn read_now(&self, holds: Holds) -> Result<SecretString, Error> {
        match self.read_checked_now(holds) {
            Err(e) if e.credential_failure() == Some(CredentialFailure::Expired) => {
                self.read_checked_now(holds)
            }
            other => other,
        }
    }

    async fn read_checked(&self, holds: Holds, within: Duration) -> Result<SecretString, Error> {
        match &self.0 {
            Source::Callback(callback) => match tokio::time::timeout(within, callback()).await {
                Ok(Ok(value)) => check(value.expose_secret(), holds, &self.place()),
                Ok(Err(_)) => Err(self.failure(CredentialFailure::Callback, "returned an error")),
                Err(_) => Err(self.failure(
                    CredentialFailure::Callback,
                    &format!("gave no value within {within:?}"),
                )),
            },
            Source::File(_) | Source::Value(_) => self.read_checked_now(holds),
        }
    }

    fn read_checked_now(&self, holds: Holds) -> Result<SecretString, Error> {
        match &self.0 {
            Source::Value(v) => Ok(v.clone()),
            Source::Callback(_) => Err(Error::invalid_request(
                "a client credential from a callback is read by TokenEndpoint::request, \
                 which can await it; TokenRequest::build cannot",
            )),
            Source::File(path) => {
                let text = read_file(path).map_err(|(failure, why)| self.failure(failure, &why))?;
                check(&text, holds, &self.place())
            }
        }
    }

    /// Where the credential comes from, for messages: never its content.
    fn place(&self) -> String {
        match &self.0 {
            Source::File(path) => format!("the file {}", path.display()),
            Source::Callback(_) => "the callback".to_owned(),
            Source::Value(_) => "the value given".to_owned(),
        }
    }

    /// The error for a file that holds no usable `algorithm` key.
    #[cfg(feature = "jwt")]
    pub(crate) fn not_a_key(
        &self,
        algorithm: crate::jose::Algorithm,
        kind: crate::jose::KeyErrorKind,
    ) -> Error {
        let why = format!("holds no usable {algorithm} private key in PEM ({kind:?})");
        self.failure(CredentialFailure::NotAKey, &why)
    }

    /// The error for a `client_secret_jwt` secret too short to be an HS256
    /// key (RFC 7518 §3.2: at least 32 bytes).
    #[cfg(feature = "jwt")]
    pub(crate) fn short_hmac_secret(&self) -> Error {
        self.failure(
            CredentialFailure::NotAKey,
            "holds a secret shorter than the 32 bytes an HS256 key needs (RFC 7518 §3.2)",
        )
    }

    fn failure(&self, failure: CredentialFailure, why: &str) -> Error {
        Error::credential(failure, format!("{}: {why}", self.place()))
    }
}

/// The file's text, at most [`MAX_CREDENTIAL_BYTES`]; the failure and why
/// (an I/O error's words, which never quote the file).
fn read_file(path: &Path) -> Result<String, (CredentialFailure, String)> {
    let bytes = read_regular_file(path, MAX_CREDENTIAL_BYTES).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (CredentialFailure::Missing, "does not exist".to_owned()),
        std::io::ErrorKind::FileTooLarge => (CredentialFailure::Unreadable, e.to_string()),
        _ => (
            CredentialFailure::Unreadable,
            format!("cannot be read ({e})"),
        ),
    })?;
    String::from_utf8(bytes).map_err(|_| {
        (
            CredentialFailure::Unreadable,
            "is not UTF-8 text".to_owned(),
        )
    })
}

/// The content of the regular file at `path` (a symbolic link to one is
/// followed), at most `max` bytes, read without ever blocking on what is
/// not a regular file: on Linux, `open(2)` of a FIFO with no writer waits
/// for one forever, and a device such as `/dev/zero` never ends. The
/// file is opened non-blocking (a regular file ignores that) and refused
/// unless it is a regular file, then read up to the bound. Errors are
/// `std::io` errors whose words never quote the file.
pub(crate) fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    #[cfg(not(unix))]
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_a_regular_file());
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_a_regular_file());
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("is larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// What tells one version of a file from the next without reading it:
/// its length, modification time, and on Unix its device and inode (a file
/// replaced by a rename, as Kubernetes mounts and `mv` do). `None` from
/// [`FileStamp::of`] when the file cannot be looked at.
#[cfg_attr(not(any(feature = "dpop", feature = "rustls")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: (u64, u64),
}

#[cfg_attr(not(any(feature = "dpop", feature = "rustls")), allow(dead_code))]
impl FileStamp {
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let inode = (0, 0);
        Some(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

fn not_a_regular_file() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "not a regular file (a directory, a FIFO, a socket or a device)",
    )
}

/// `secret` without the line breaks (`\n`, `\r`) at its end: RFC 6749
/// Appendix A.2 allows a client secret visible ASCII and spaces only, so
/// they are never part of it, and a Kubernetes secret made from a file or
/// with `echo` ends with one (mounted, or in an environment variable).
pub(crate) fn without_line_breaks(secret: &str) -> &str {
    secret.trim_end_matches(['\n', '\r'])
}

/// A secret without its trailing line breaks, or an assertion trimmed and
/// checked; `place` names where it came from.
fn check(text: &str, holds: Holds, place: &str) -> Result<SecretString, Error> {
    let fail = |failure, why: &str| Error::credential(failure, format!("{place}: {why}"));
    let value = match holds {
        Holds::Secret => without_line_breaks(text),
        Holds::Assertion => text.trim(),
    };
    if value.is_empty() {
        return Err(fail(CredentialFailure::Empty, "is empty"));
    }
    if holds == Holds::Assertion {
        let exp = jwt_expiry(value).ok_or_else(|| {
            fail(
                CredentialFailure::NotAJwt,
                "is not a JWT in compact form (three base64url parts, a JSON payload)",
            )
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp.is_some_and(|exp| exp <= now) {
            return Err(fail(
                CredentialFailure::Expired,
                "holds a client assertion that has expired (its `exp` has passed)",
            ));
        }
    }
    Ok(SecretString::from(value))
}

/// For a JWT in compact form (RFC 7519 §3.1), its `exp` if it has one as
/// a number; `None` if it is not such a JWT. The signature is not checked:
/// the server does that.
fn jwt_expiry(jwt: &str) -> Option<Option<u64>> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let is_b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || ![header, payload, signature].iter().all(|p| is_b64url(p))
    {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).ok()?;
    Some(claims.get("exp").and_then(|exp| {
        exp.as_u64()
            .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJFUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn assertions_must_be_unexpired_compact_jwts() {
        let fresh = jwt(r#"{"sub":"svc","exp":99999999999}"#);
        let place = "the file /x";
        assert_eq!(
            check(&format!("{fresh}\n"), Holds::Assertion, place)
                .unwrap()
                .expose_secret(),
            fresh
        );
        assert!(check(&jwt(r#"{"sub":"svc"}"#), Holds::Assertion, place).is_ok());
        let failure = |text: &str| {
            let e = check(text, Holds::Assertion, place).unwrap_err();
            assert!(e.to_string().contains("/x"), "{e}");
            assert!(
                text.trim().is_empty() || !e.to_string().contains(text.trim()),
                "{e}"
            );
            assert!(!format!("{e:?}").contains("CANARY"), "{e:?}");
            e.credential_failure().unwrap()
        };
        assert_eq!(failure(" \n"), CredentialFailure::Empty);
        assert_eq!(failure("CANARY-not-a-jwt"), CredentialFailure::NotAJwt);
        assert_eq!(failure("a.b"), CredentialFailure::NotAJwt);
        assert_eq!(failure("a.b.c.d"), CredentialFailure::NotAJwt);
        assert_eq!(failure("CANARY.e30.c2ln+"), CredentialFailure::NotAJwt);
        assert_eq!(failure(&jwt("[1]")), CredentialFailure::NotAJwt);
        assert_eq!(
            failure(&jwt(r#"{"sub":"CANARY","exp":1000}"#)),
            CredentialFailure::Expired
        );
    }

    #[test]
    fn secrets_lose_their_trailing_line_breaks_only() {
        let read = |t: &str| check(t, Holds::Secret, "x").map(|s| s.expose_secret().to_owned());
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n\n").unwrap(), "s3cret");
        assert_eq!(read("s3\ncret\n").unwrap(), "s3\ncret");
        assert_eq!(read(" s3 cret ").unwrap(), " s3 cret ");
        assert_eq!(
            read("\n").unwrap_err().credential_failure(),
            Some(CredentialFailure::Empty)
        );
    }

    #[test]
    fn a_missing_file_is_named_and_a_callback_cannot_be_read_now() {
        let path = std::env::temp_dir().join("tower-oauth2-no-such-credential-file");
        let e = CredentialSource::file(&path)
            .read_now(Holds::Secret)
            .unwrap_err();
        assert_eq!(e.credential_failure(), Some(CredentialFailure::Missing));
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        let callback = CredentialSource::callback(|| async { Ok(SecretString::from("x")) });
        assert!(callback.read_now(Holds::Secret).is_err());
        assert_eq!(format!("{callback:?}"), "Callback");
    }
}
