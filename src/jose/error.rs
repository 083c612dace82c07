//! [`KeyError`]: why a signing key cannot be used.

use std::borrow::Cow;
use std::fmt;

/// What is wrong with a signing key ([`KeyError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The text or bytes are not a key in any of the accepted forms
    /// (PKCS#8, PKCS#1, SEC1, PEM of those, a private JWK).
    Unparseable,
    /// A well-formed key this crate does not sign with: another curve
    /// (P-384, Ed448), an encrypted PKCS#8 file, a public key only, or an
    /// RSA key without the `jwt-rsa` feature.
    Unsupported,
    /// The key's type does not fit the algorithm (an RSA key for ES256, a
    /// P-256 key for RS256, a JWK whose `alg` names another algorithm).
    AlgorithmMismatch,
    /// The key is shorter than its algorithm requires (RFC 7518): an HMAC
    /// secret under 256 bits for HS256 (§3.2), an RSA modulus under 2048
    /// bits (§3.3).
    TooShort,
    /// The server does not take signatures of the key's algorithm: its
    /// `dpop_signing_alg_values_supported` lists none this crate signs DPoP
    /// proofs with, or not the algorithm of the key given.
    NotOffered,
}

/// A key that cannot be used for signing. Its message names the reason and
/// never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    kind: KeyErrorKind,
    detail: Cow<'static, str>,
}

impl KeyError {
    pub(crate) fn new(kind: KeyErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        KeyError {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn unparseable(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(KeyErrorKind::Unparseable, detail)
    }

    pub(crate) fn unsupported(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(KeyErrorKind::Unsupported, detail)
    }

    /// What is wrong.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unusable signing key: {}", self.detail)
    }
}

impl std::error::Error for KeyError {}
