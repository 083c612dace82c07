//! Certificates and private keys read from PEM, checked the way rustls will
//! use them, with problems described in words that quote none of the input
//! (the PEM parser's own messages may hold a line of a key). Shared by
//! `tls::ClientIdentity` (feature `rustls`) and the fleet tier's TLS
//! settings (feature `redis`).

use std::borrow::Cow;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;

/// What is wrong with a certificate chain or its key.
#[derive(Debug)]
pub(crate) enum Problem {
    /// No certificate, or one that cannot be read.
    Certificate(Cow<'static, str>),
    /// No private key, or PEM that cannot be read.
    Key(&'static str),
    /// A key `ring` does not sign with.
    UnsupportedKey,
    /// The key is not the first certificate's.
    KeyMismatch,
}

impl Problem {
    /// The problem in words (never any of the PEM).
    pub(crate) fn detail(&self) -> Cow<'static, str> {
        match self {
            Problem::Certificate(detail) => detail.clone(),
            Problem::Key(detail) => Cow::Borrowed(detail),
            Problem::UnsupportedKey => Cow::Borrowed(
                "the private key is not an RSA, ECDSA (P-256, P-384) or Ed25519 key \
                 in PKCS#8, PKCS#1 or SEC1 form",
            ),
            Problem::KeyMismatch => {
                Cow::Borrowed("the private key is not the key of the first certificate")
            }
        }
    }
}

/// The `CERTIFICATE` blocks of `pem`, in order (blocks of other kinds are
/// skipped); at least one.
pub(crate) fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::Certificate(Cow::Borrowed(pem_problem(&e))))?;
    if chain.is_empty() {
        return Err(Problem::Certificate(Cow::Borrowed(
            "no CERTIFICATE block in the certificate PEM",
        )));
    }
    Ok(chain)
}

/// The first private key in `pem` (`PRIVATE KEY`, `RSA PRIVATE KEY` or
/// `EC PRIVATE KEY`).
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Problem> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            Problem::Key("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block in the key PEM")
        }
        e => Problem::Key(pem_problem(&e)),
    })
}

/// `key` loaded by `ring` and checked against the first certificate of
/// `chain` (the client's own). `ring`'s key provider zeroizes the DER once
/// it has read it.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, Problem> {
    if chain.is_empty() {
        return Err(Problem::Certificate(Cow::Borrowed("no certificate given")));
    }
    let key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| Problem::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Problem::KeyMismatch),
        Err(e) => Err(Problem::Certificate(Cow::Owned(format!(
            "the first certificate cannot be read ({e})"
        )))),
    }
}

/// What is wrong with some PEM, in words that quote none of it.
fn pem_problem(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        _ => "the PEM cannot be read",
    }
}
