//! DPoP (RFC 9449): sender-constrained access tokens.
//!
//! A [`Dpop`] owns a key pair (ES256, EdDSA/Ed25519, or RS256/PS256 with
//! `jwt-rsa`: generated at start with [`Dpop::generate`] or
//! [`Dpop::generate_with`], of the algorithm the server offers with
//! [`ProviderMetadata::dpop`](crate::discovery::ProviderMetadata::dpop),
//! or yours with [`Dpop::from_key`]), the latest
//! `DPoP-Nonce` each server sent (per origin, a token endpoint's apart
//! from a resource's; at most 256, the one used least recently forgotten
//! first), and the proofs: a JWS signed with the
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
//! resource) is sent once more when a nonce other than the one its proof
//! carried is known (its own `DPoP-Nonce`, or one a concurrent answer
//! brought); that is not a 401 token refetch, is not counted as one, and
//! happens whether or not the 401 retry is on, whenever the request's body
//! could be kept. A `use_dpop_nonce` is never a refusal of the token: one
//! met again by the resend is returned as it came, nothing invalidated.
//!
//! The key can be rotated while the client runs ([`DpopKeys`]: by hand, or
//! a key file read again when it changes): a new key gets its own bound
//! token, and no request fails meanwhile; see "Rotation" below.
//!
//! Each proof costs one signature: by RustCrypto's pure-Rust crates, or by
//! `ring` with feature `jwt-ring` (ten times faster for ES256, and already
//! built with `rustls`); see "Which library signs" below.
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
#![doc = include_str!("../docs/dpop.md")]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::jose::{Algorithm, KeyError, KeyErrorKind, SigningKey};

mod alg;
mod keys;
mod possession;

pub(crate) use alg::check_offered;
pub use alg::choose_algorithm;
pub use keys::DpopKeys;

/// The request header that carries a proof.
pub const DPOP: &str = "dpop";
/// The response header that carries a server's nonce.
pub const DPOP_NONCE: &str = "dpop-nonce";

/// At most this many origins' nonces are remembered; past it, the origin
/// used least recently is forgotten (a nonce forgotten costs one
/// `use_dpop_nonce` round trip, nothing more), never the others.
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
    /// Shared with the keys rotated in after this one ([`DpopKeys`]): a
    /// server's nonce is the server's, not the key's (RFC 9449 §8, §9).
    nonces: Arc<Mutex<Nonces>>,
    /// The `ath` of the access token this key proved last. This key's
    /// alone (a key rotated in starts empty).
    ath: ArcSwapOption<Ath>,
}

/// An access token and its `ath` (RFC 9449 §4.2: base64url of its
/// SHA-256). A cached token goes out with many proofs in a row, and a JWT
/// access token of a kilobyte is 17 blocks to hash per proof; the memo is
/// looked up by the token itself, so no other token ever gets its `ath`.
struct Ath {
    token: Box<str>,
    ath: String,
}

/// The latest nonce per server: per origin (`scheme://host[:port]`,
/// normalized as [`Origin::of`] does), the authorization server's apart
/// from a resource's, at most [`MAX_ORIGINS`] of them.
#[derive(Default)]
struct Nonces {
    map: HashMap<NonceKey, Remembered>,
    /// Counts uses, to find the origin used least recently.
    uses: u64,
}

struct Remembered {
    /// An `Arc`: a proof and the step waiting for its answer share it.
    nonce: Arc<str>,
    last_used: u64,
}

impl Nonces {
    /// The nonce of `origin`, if any, marked used.
    fn get(&mut self, origin: &NonceKey) -> Option<Arc<str>> {
        self.uses += 1;
        let uses = self.uses;
        let remembered = self.map.get_mut(origin)?;
        remembered.last_used = uses;
        Some(remembered.nonce.clone())
    }

    /// Remembers `nonce` for `origin`; whether it changed. Past the bound,
    /// one origin goes: the one used least recently.
    fn set(&mut self, origin: &NonceKey, nonce: &str) -> bool {
        self.uses += 1;
        let uses = self.uses;
        if let Some(remembered) = self.map.get_mut(origin) {
            remembered.last_used = uses;
            if &*remembered.nonce == nonce {
                return false;
            }
            remembered.nonce = Arc::from(nonce);
            return true;
        }
        if self.map.len() >= MAX_ORIGINS {
            // A scan of at most MAX_ORIGINS entries, only when a new origin
            // comes to a full map.
            let oldest = (self.map.iter())
                .min_by_key(|(_, r)| r.last_used)
                .map(|(o, _)| o.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        let remembered = Remembered {
            nonce: Arc::from(nonce),
            last_used: uses,
        };
        self.map.insert(origin.clone(), remembered);
        true
    }
}

/// Whose nonce: RFC 9449 keeps the authorization server's (§8, for token
/// requests) apart from a resource server's (§9), and one origin may serve
/// both, each rotating its nonce its own way. Kept under one key, each
/// answer of one would replace the other's nonce, and every token request
/// would meet a `use_dpop_nonce` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Server {
    /// A token endpoint: proofs with no access token.
    Authorization,
    /// A resource: proofs with an access token (`ath`).
    Resource,
}

/// What a nonce is remembered under: the server and its origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NonceKey {
    server: Server,
    origin: Origin,
}

impl NonceKey {
    /// The key of a proof to `uri`: a resource's when it goes with an
    /// access token, the authorization server's otherwise.
    fn of(uri: &Uri, with_access_token: bool) -> Result<NonceKey, Error> {
        let server = if with_access_token {
            Server::Resource
        } else {
            Server::Authorization
        };
        Ok(NonceKey {
            server,
            origin: Origin::of(uri)?,
        })
    }
}

/// Where a proof went and the nonce it carried: what the answer is
/// compared with, once the request itself is gone.
#[derive(Clone, Debug)]
pub(crate) struct ProofTarget {
    key: NonceKey,
    nonce: Option<Arc<str>>,
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
        Dpop::generate_with(Algorithm::ES256)
    }

    /// A new key for `alg` (see [`Dpop::from_key`] for the algorithms;
    /// [`choose_algorithm`] picks one from a server's list), from the
    /// operating system's random source. An RSA key (RS256, PS256, feature
    /// `jwt-rsa`) takes a fraction of a second to make in a release build.
    pub fn generate_with(alg: Algorithm) -> Result<Self, KeyError> {
        Dpop::from_key(SigningKey::generate(alg)?)
    }

    /// DPoP with `key`: ES256 (P-256), EdDSA or Ed25519 (Ed25519), RS256 or
    /// PS256 (RSA, 2048 bits or more; feature `jwt-rsa`). The proofs' `alg`
    /// is the key's [`SigningKey::algorithm`]. Processes that share tokens
    /// (a [`TokenStore`](crate::store::TokenStore), Redis) must share the
    /// key too: a DPoP-bound token is only usable with it.
    ///
    /// With feature `jwt-ring` the key is handed to `ring` here, once.
    pub fn from_key(key: SigningKey) -> Result<Self, KeyError> {
        let alg = key.algorithm();
        if !alg::SIGNED.contains(&alg) {
            return Err(KeyError::new(
                KeyErrorKind::AlgorithmMismatch,
                format!("DPoP proofs are not signed with {alg}"),
            ));
        }
        key.prepare();
        let jwk = key.bare_public_jwk();
        let header = Header {
            typ: "dpop+jwt",
            alg: alg.as_str(),
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
                nonces: Arc::default(),
                ath: ArcSwapOption::empty(),
            }),
        })
    }

    /// The algorithm the proofs are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.algorithm()
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

    /// A proof for a `method` request to `uri` (an absolute URI): with
    /// `access_token`, a resource request's (`ath`, and the nonce that
    /// origin's resource server gave); without, a token request's (the
    /// nonce that origin's authorization server gave). `htu` is `uri`
    /// normalized (scheme and host lowercase, no userinfo, no default port)
    /// without query and fragment (RFC 9449 §4.2, §4.3).
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        Ok(self.proof_at_origin(method, uri, access_token)?.0)
    }

    /// [`Dpop::proof`], and where it went with which nonce: what its
    /// answer is learned for ([`Dpop::learn_nonce`]).
    pub(crate) fn proof_at_origin(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<(HeaderValue, ProofTarget), Error> {
        let (origin, htu) = target(uri)?;
        let server = if access_token.is_some() {
            Server::Resource
        } else {
            Server::Authorization
        };
        let key = NonceKey { server, origin };
        let nonce = self.nonces().get(&key);
        let ath = access_token.map(|t| self.ath(t));
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
            ath: ath.as_ref().map(|a| a.ath.as_str()),
        };
        // Sized once: the names, `jti`, `iat` and `ath` take under 160 bytes.
        let nonce_len = nonce.as_ref().map_or(0, |n| n.len());
        let mut json = Vec::with_capacity(160 + method.as_str().len() + htu.len() + nonce_len);
        serde_json::to_writer(&mut json, &claims)
            .map_err(|e| Error::invalid_request(format!("cannot encode a DPoP proof ({e})")))?;
        let mut jws = String::with_capacity(self.inner.header.len() + 2 * json.len() + 90);
        jws.push_str(&self.inner.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(json, &mut jws);
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
        Ok((proof, ProofTarget { key, nonce }))
    }

    /// The nonce the resource server at `uri`'s origin gave, if any: what
    /// [`Dpop::proof`] with an access token puts in.
    pub fn nonce(&self, uri: &Uri) -> Option<String> {
        let key = NonceKey::of(uri, true).ok()?;
        self.nonces().get(&key).map(|n| n.to_string())
    }

    /// Remembers the `DPoP-Nonce` of an answer from the resource server at
    /// `uri`'s origin, if it carries a well-formed one; returns whether the
    /// origin's nonce changed. (The token endpoint's nonces are kept apart,
    /// by [`crate::TokenEndpoint`] itself.)
    pub fn update_nonce(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let Ok(key) = NonceKey::of(uri, true) else {
            return false;
        };
        well_formed_nonce(headers).is_some_and(|nonce| self.nonces().set(&key, nonce))
    }

    /// Remembers the `DPoP-Nonce` of the answer to a proof sent to
    /// `sent`, if it carries a well-formed one. Returns whether a proof
    /// made now for that origin carries a nonce, and not the one `sent`
    /// carried: whether a `use_dpop_nonce` is worth one resend. Compared
    /// with the nonce the proof carried, not with the one remembered
    /// before the answer: when a server rotates its nonce, every request in
    /// flight is challenged with the same new one, and the first answer
    /// remembers it for all of them.
    pub(crate) fn learn_nonce(&self, sent: &ProofTarget, headers: &HeaderMap) -> bool {
        let mut nonces = self.nonces();
        if let Some(nonce) = well_formed_nonce(headers) {
            nonces.set(&sent.key, nonce);
        }
        let now = nonces.get(&sent.key);
        now.is_some() && now != sent.nonce
    }

    /// This key with the nonces `other` learned (and will learn): a key
    /// rotated in meets no `use_dpop_nonce` a server's nonce already
    /// answered.
    fn sharing_nonces_of(&self, other: &Dpop) -> Dpop {
        let inner = &self.inner;
        Dpop {
            inner: Arc::new(Inner {
                key: inner.key.clone(),
                header: inner.header.clone(),
                thumbprint: inner.thumbprint.clone(),
                nonces: other.inner.nonces.clone(),
                ath: ArcSwapOption::empty(),
            }),
        }
    }

    /// `access_token`'s `ath`: the memo's when it is of this very token,
    /// else hashed and remembered in its place.
    fn ath(&self, access_token: &str) -> Arc<Ath> {
        if let Some(memo) = self.inner.ath.load_full() {
            if *memo.token == *access_token {
                return memo;
            }
        }
        let memo = Arc::new(Ath {
            token: access_token.into(),
            ath: URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes())),
        });
        self.inner.ath.store(Some(memo.clone()));
        memo
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, Nonces> {
        self.inner.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `DPoP-Nonce` of an answer, if it is well-formed (RFC 9449 §8.1:
/// `nonce = 1*NQCHAR`, visible ASCII but `"` and `\`).
fn well_formed_nonce(headers: &HeaderMap) -> Option<&str> {
    let nonce = headers.get(DPOP_NONCE)?.to_str().ok()?;
    let well_formed = !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    well_formed.then_some(nonce)
}

/// An origin a server's nonce is remembered for, normalized as RFC 3986
/// §6.2.2 and §6.2.3 say (and RFC 9449 §4.3 compares `htu` after):
/// `scheme://host[:port]`, scheme and host lowercase, no userinfo, no
/// default port (80 for `http`, 443 for `https`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin(Box<str>);

impl Origin {
    /// `uri`'s origin; an error for a path-only URI.
    pub(crate) fn of(uri: &Uri) -> Result<Origin, Error> {
        let mut origin = String::new();
        write_origin(uri, &mut origin)?;
        Ok(Origin(origin.into_boxed_str()))
    }
}

/// Appends `uri`'s origin, normalized as [`Origin`] says, to `out`; an
/// error for a path-only URI.
fn write_origin(uri: &Uri, out: &mut String) -> Result<(), Error> {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(Error::invalid_destination(
            "a DPoP proof needs the request's absolute URI (scheme and host); \
             a path-only URI names no `htu`: name the connection's origin with \
             Destinations::origin_form_to",
        ));
    };
    let start = out.len();
    out.push_str(scheme);
    out.push_str("://");
    // `host()` leaves the userinfo out, and keeps an IPv6 address's
    // brackets.
    out.push_str(authority.host());
    out[start..].make_ascii_lowercase();
    let default_port = match &out[start..start + scheme.len()] {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    match authority.port_u16() {
        Some(port) if Some(port) != default_port => {
            use std::fmt::Write as _;
            // Writing to a `String` cannot fail.
            let _ = write!(out, ":{port}");
        }
        _ => {}
    }
    Ok(())
}

/// `uri`'s origin (the nonces' key) and its `htu`: the normalized origin
/// and the path, without query and fragment (RFC 9449 §4.2, §4.3).
fn target(uri: &Uri) -> Result<(Origin, String), Error> {
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let mut htu = String::with_capacity("https://".len() + authority + path.len());
    write_origin(uri, &mut htu)?;
    let origin = Origin(htu.as_str().into());
    htu.push_str(path);
    Ok((origin, htu))
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("alg", &self.algorithm())
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
