//! DPoP (RFC 9449): sender-constrained access tokens.
//!
//! A [`Dpop`] owns a key pair (ES256: generated at start with
//! [`Dpop::generate`], or yours with [`Dpop::from_key`]), the latest
//! `DPoP-Nonce` each origin sent, and the proofs: a JWS signed with the
//! private key, whose header carries the public key (`typ` `dpop+jwt`,
//! `alg`, `jwk`) and whose claims bind it to one request (`jti` unique,
//! `htm`, `htu` without query and fragment, `iat`, the origin's `nonce` if
//! it gave one, and on resource requests `ath`, the access token's hash).
//!
//! Give it to the token endpoint ([`crate::TokenEndpoint::dpop`]): every
//! token request then carries a proof, a `DPoP` token is accepted, the
//! cache built on that endpoint names the key's thumbprint in its
//! [fingerprint](crate::store::ConfigFingerprint), and the layer and the
//! reqwest middleware send `Authorization: DPoP <token>` with a fresh proof
//! per request. A `use_dpop_nonce` refusal (400 from the token endpoint,
//! 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"` from a
//! resource) with a `DPoP-Nonce` header is sent once more with that nonce;
//! that is not a 401 token refetch, and is not counted as one.
//!
//! # Example
//!
//! ```
//! use http::{Method, Uri};
//! use tower_oauth2::dpop::Dpop;
//!
//! let dpop = Dpop::generate()?;
//! let uri: Uri = "https://api.example.com/orders?page=2".parse()?;
//! let proof = dpop.proof(&Method::GET, &uri, Some("at-1"))?;
//! assert_eq!(proof.to_str()?.split('.').count(), 3);
//! assert_eq!(dpop.thumbprint().len(), 43);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc = include_str!("docs/dpop.md")]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::jose::{Algorithm, KeyError, KeyErrorKind, SigningKey};

/// The request header that carries a proof.
pub const DPOP: &str = "dpop";
/// The response header that carries a server's nonce.
pub const DPOP_NONCE: &str = "dpop-nonce";

/// At most this many origins' nonces are remembered; past it, the oldest
/// entries are dropped (a nonce forgotten costs one `use_dpop_nonce` round
/// trip, nothing more).
const MAX_ORIGINS: usize = 256;

/// A DPoP key, its proofs, and the nonces servers gave it. See the
/// [module docs](self).
///
/// Cheap to clone: clones share the key and the nonces. `Debug` shows the
/// key's thumbprint only.
#[derive(Clone)]
pub struct Dpop {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    /// base64url of the JOSE header, the same for every proof.
    header: String,
    thumbprint: String,
    /// The latest nonce per origin (`scheme://authority`).
    nonces: Mutex<HashMap<String, String>>,
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    jwk: &'a Value,
}

#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
}

impl Dpop {
    /// A new ES256 (P-256) key, from the operating system's random source.
    /// It lives as long as the process: tokens bound to it cannot be shared
    /// with other processes (use [`Dpop::from_key`] with one key for that).
    pub fn generate() -> Result<Self, KeyError> {
        Dpop::from_key(SigningKey::generate_es256()?)
    }

    /// DPoP with `key`, which must be an ES256 (P-256) key
    /// ([`KeyErrorKind::AlgorithmMismatch`] otherwise). Processes that share
    /// tokens (a [`TokenStore`](crate::store::TokenStore), Redis) must
    /// share the key too: a DPoP-bound token is only usable with it.
    pub fn from_key(key: SigningKey) -> Result<Self, KeyError> {
        if key.algorithm() != Algorithm::ES256 {
            return Err(KeyError::new(
                KeyErrorKind::AlgorithmMismatch,
                format!(
                    "DPoP proofs are signed with ES256 here, not {}",
                    key.algorithm()
                ),
            ));
        }
        let jwk = key.bare_public_jwk();
        let header = Header {
            typ: "dpop+jwt",
            alg: Algorithm::ES256.as_str(),
            jwk: &jwk,
        };
        // A struct of strings always serializes.
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let thumbprint = key.jwk_thumbprint();
        Ok(Dpop {
            inner: Arc::new(Inner {
                key,
                header,
                thumbprint,
                nonces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The RFC 7638 thumbprint of the public key: what a DPoP-bound
    /// token's `cnf.jkt` holds, and what `dpop_jkt` names in an
    /// authorization request.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK (its required members only), as proofs
    /// carry it.
    pub fn public_jwk(&self) -> Value {
        self.inner.key.bare_public_jwk()
    }

    /// A proof for a `method` request to `uri` (an absolute URI), with the
    /// nonce remembered for `uri`'s origin if any, and with `ath` when it
    /// is sent with `access_token`.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        Ok(self.proof_at_origin(method, uri, access_token)?.0)
    }

    /// [`Dpop::proof`], and the origin it was made for: where the answer's
    /// nonce goes ([`Dpop::update_origin_nonce`]).
    pub(crate) fn proof_at_origin(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<(HeaderValue, Origin), Error> {
        let (origin, htu) = target(uri)?;
        let nonce = self.nonces().get(origin.as_str()).cloned();
        let ath = access_token.map(|t| URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(Error::random_source)?;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            jti: &URL_SAFE_NO_PAD.encode(jti),
            htm: method.as_str(),
            htu: &htu,
            iat,
            nonce: nonce.as_deref(),
            ath: ath.as_deref(),
        };
        let claims = serde_json::to_vec(&claims)
            .map_err(|e| Error::invalid_request(format!("cannot encode a DPoP proof ({e})")))?;
        let mut jws = String::with_capacity(self.inner.header.len() + 2 * claims.len() + 90);
        jws.push_str(&self.inner.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = self
            .inner
            .key
            .sign(jws.as_bytes())
            .map_err(|e| Error::invalid_request(format!("cannot sign the DPoP proof ({e})")))?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        // base64url and dots only: always a valid header value. Marked
        // sensitive: a proof is a credential for this request.
        let mut proof = HeaderValue::try_from(jws)
            .map_err(|_| Error::invalid_request("the DPoP proof is not a header value"))?;
        proof.set_sensitive(true);
        Ok((proof, origin))
    }

    /// The nonce remembered for `uri`'s origin, if any.
    pub fn nonce(&self, uri: &Uri) -> Option<String> {
        let origin = Origin::of(uri).ok()?;
        self.nonces().get(origin.as_str()).cloned()
    }

    /// Remembers the `DPoP-Nonce` of an answer from `uri`'s origin, if it
    /// carries a well-formed one; returns whether the origin's nonce changed.
    pub fn update_nonce(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        Origin::of(uri).is_ok_and(|origin| self.update_origin_nonce(&origin, headers))
    }

    /// [`Dpop::update_nonce`] for an answer from `origin`.
    pub(crate) fn update_origin_nonce(&self, origin: &Origin, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // RFC 9449 §8.1: nonce = 1*NQCHAR (visible ASCII but `"` and `\`).
        let well_formed = !nonce.is_empty()
            && nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !well_formed {
            return false;
        }
        let mut nonces = self.nonces();
        let origin = origin.as_str();
        if nonces.get(origin).map(String::as_str) == Some(nonce) {
            return false;
        }
        if nonces.len() >= MAX_ORIGINS && !nonces.contains_key(origin) {
            nonces.clear();
        }
        nonces.insert(origin.to_owned(), nonce.to_owned());
        true
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An origin a server's nonce is remembered for: `scheme://authority`,
/// lowercased. What a request's answer needs to update the nonce when the
/// request itself is gone (sent, its URI with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin(Box<str>);

impl Origin {
    /// `uri`'s origin; an error for a path-only URI.
    pub(crate) fn of(uri: &Uri) -> Result<Origin, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(Error::invalid_request(
                "a DPoP proof needs the request's absolute URI (scheme and host); \
                 a path-only URI names no `htu`: name the connection's origin with \
                 Destinations::origin_form_to",
            ));
        };
        let origin = format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.as_str().to_ascii_lowercase()
        );
        Ok(Origin(origin.into_boxed_str()))
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// `uri`'s origin (the nonces' key) and its `htu`: scheme, authority and
/// path, without query and fragment (RFC 9449 §4.2).
fn target(uri: &Uri) -> Result<(Origin, String), Error> {
    let origin = Origin::of(uri)?;
    let htu = format!("{}{}", origin.as_str(), uri.path());
    Ok((origin, htu))
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("alg", &Algorithm::ES256)
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
