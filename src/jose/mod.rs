//! Signing JWTs (JWS compact serialization, RFC 7515) for client
//! authentication and the JWT-bearer grant (RFC 7523).
//!
//! A [`SigningKey`] holds a private key read from PEM, DER or a JWK, its
//! [`Algorithm`] and an optional key id. [`crate::ClientAuth::private_key_jwt`]
//! signs a fresh client assertion with it for every token request, and
//! [`crate::TokenRequest::jwt_bearer_signed`] a fresh grant assertion.
//! [`SigningKey::public_jwk`] is the public key to register with the
//! authorization server; [`SigningKey::jwk_thumbprint`] is its RFC 7638
//! thumbprint.
//!
//! Signatures are made by RustCrypto's pure-Rust crates: `p256` (ES256,
//! deterministic nonces, RFC 6979), `ed25519-dalek` (EdDSA), `hmac` and
//! `sha2` (HS256), and, with the `jwt-rsa` feature only, `rsa` (RS256,
//! PS256, with blinding). No OpenSSL. With the `jwt-ring` feature `ring`
//! signs ES256 (random nonces hedged with the key and the message), RS256
//! and PS256 (with blinding) instead, with the keys RustCrypto read: about
//! ten times faster for ES256, which DPoP pays per request. Ed25519 stays
//! with `ed25519-dalek`, faster than `ring`'s.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::jose::{Algorithm, SigningKey};
//!
//! // A JWK from the client's key store (this one is an RFC 8037 example).
//! let key = SigningKey::from_jwk(
//!     r#"{"kty":"OKP","crv":"Ed25519","kid":"k1",
//!         "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
//!         "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
//! )?;
//! assert_eq!(key.algorithm(), Algorithm::EdDSA);
//! assert_eq!(key.key_id(), Some("k1"));
//! // What to register with the server: the public key only.
//! assert_eq!(
//!     key.public_jwk().to_string(),
//!     r#"{"alg":"EdDSA","crv":"Ed25519","kid":"k1","kty":"OKP","use":"sig","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
//! );
//! assert_eq!(key.jwk_thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
//! # Ok::<(), tower_oauth2::jose::KeyError>(())
//! ```
#![doc = include_str!("../docs/jose.md")]

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;

use crate::error::Error;
use crate::secret::SecretString;

mod error;
mod jwk;
mod key;
#[cfg(feature = "jwt-ring")]
mod ring_signer;

pub use error::{KeyError, KeyErrorKind};
pub use key::SigningKey;

/// A JWS signing algorithm (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256, keyed with the client secret (`client_secret_jwt`).
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (feature `jwt-rsa`).
    RS256,
    /// RSASSA-PSS with SHA-256 and a 32-byte salt (feature `jwt-rsa`).
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// EdDSA with an Ed25519 key, as RFC 8037 names it.
    EdDSA,
    /// Ed25519 as RFC 9864 names it (the same signature as [`Algorithm::EdDSA`]).
    Ed25519,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::Ed25519 => "Ed25519",
        }
    }

    /// The algorithm named `alg`, if this crate signs with it.
    pub fn from_name(alg: &str) -> Option<Self> {
        [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::Ed25519,
        ]
        .into_iter()
        .find(|a| a.as_str() == alg)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 7518 §3.2: an HS256 key must be at least 256 bits.
pub(crate) fn check_hmac_secret(secret: &SecretString) -> Result<(), KeyError> {
    if secret.len() < 32 {
        return Err(KeyError::new(
            KeyErrorKind::TooShort,
            format!(
                "a {}-byte client secret; HS256 needs 32 bytes or more (RFC 7518 §3.2)",
                secret.len()
            ),
        ));
    }
    Ok(())
}

/// What signs a JWT: a private key, or the client secret for HS256.
#[derive(Clone, Copy)]
pub(crate) enum Signer<'a> {
    Key(&'a SigningKey),
    Secret(&'a SecretString),
}

/// The JOSE header: `alg`, then `kid` when the key has one.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

impl<'a> Signer<'a> {
    fn header(self) -> Header<'a> {
        match self {
            Signer::Key(key) => Header {
                alg: key.algorithm().as_str(),
                kid: key.key_id(),
            },
            Signer::Secret(_) => Header {
                alg: Algorithm::HS256.as_str(),
                kid: None,
            },
        }
    }

    pub(crate) fn sign(self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let failed =
            |e: &dyn fmt::Display| Error::invalid_request(format!("cannot sign the JWT ({e})"));
        match self {
            Signer::Key(key) => key.sign(input).map_err(|e| failed(&e)),
            Signer::Secret(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                    .map_err(|e| failed(&e))?;
                mac.update(input);
                Ok(mac.finalize().into_bytes().to_vec())
            }
        }
    }

    /// The JWS compact serialization of `claims` (RFC 7515 §7.1):
    /// `base64url(header) "." base64url(claims) "." base64url(signature)`.
    pub(crate) fn sign_jwt(self, claims: &impl Serialize) -> Result<String, Error> {
        let mut jwt = format!(
            "{}.{}",
            base64url_json(&self.header())?,
            base64url_json(claims)?
        );
        let signature = self.sign(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(jwt)
    }
}

fn base64url_json(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|e| Error::invalid_request(format!("cannot encode the JWT ({e})")))
}

#[cfg(test)]
mod tests;
