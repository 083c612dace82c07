//! Proof of possession: how a request shows, beside its access token, that
//! it holds the key the token is bound to. The seam DPoP (RFC 9449, the
//! `dpop` module, feature `dpop`) plugs into, so that the token endpoint,
//! the cache and every transport ask one value and none of them names DPoP.
//!
//! A [`ProofKey`] is chosen once, on the token endpoint (DPoP's
//! `TokenEndpoint::dpop`); the cache built on it takes it along, and every
//! transport's `AuthPolicy` (the tower layer, the keyed layer, the reqwest
//! middleware) reads it from the cache when it is built. Without one, a
//! request carries the `Authorization` header alone and nothing here is
//! asked: the bearer path is the same code whether a proof scheme is built
//! in or not.
//!
//! What an implementation must do:
//! - [`Prover::prove_resource_request`]: put a fresh proof for one resource
//!   request in its headers when the token (the `Authorization` value the
//!   cache holds) is bound to the key, and take any proof out when it is
//!   not (a server that issued a bearer token);
//! - [`Prover::prove_token_request`]: the same for one token request;
//! - remember what each proof needs to judge its answer ([`SentProof`]):
//!   the server's nonce, per server, and whether a proof made now would
//!   carry another nonce than the one sent.

// The only implementation is DPoP's; without it nothing makes a key.
#![cfg_attr(not(feature = "dpop"), allow(dead_code))]

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::error::Error;

/// Makes the proofs of one key; see the [module docs](self).
pub(crate) trait Prover: Send + Sync + 'static {
    /// The key's RFC 7638 thumbprint: it joins a cache's fingerprint, so a
    /// token bound to another key (or to none) is never used.
    fn thumbprint(&self) -> &str;

    /// Puts in `headers` the proof a `method` request to `uri` (absolute)
    /// needs with `token`, the `Authorization` value it carries: a fresh
    /// one when the token is bound to this key, none (any taken out) when
    /// it is not. Returns what the answer is judged against.
    fn prove_resource_request(
        &self,
        method: &Method,
        uri: &Uri,
        token: &HeaderValue,
        headers: &mut HeaderMap,
    ) -> Result<Option<SentProof>, Error>;

    /// Puts in `headers` a fresh proof for a token request to `uri`.
    fn prove_token_request(&self, uri: &Uri, headers: &mut HeaderMap) -> Result<SentProof, Error>;

    /// The implementation itself, for the accessors that give it back by
    /// its own type (`TokenEndpoint::dpop_key`).
    fn as_any(&self) -> &dyn Any;
}

/// A proof that went out, kept until its answer.
pub(crate) trait ProofAnswered: Send + Sync {
    /// Remembers the server's nonce in the answer's `headers`, if any, for
    /// the server the proof went to. Returns whether a proof made now for
    /// that server would carry a nonce, and not the one this proof carried:
    /// whether a refusal asking for a nonce is worth one resend.
    fn learn_nonce(&self, headers: &HeaderMap) -> bool;
}

/// The key every proof of a token endpoint, its cache and their transports
/// is made with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ProofKey(Arc<dyn Prover>);

impl ProofKey {
    pub(crate) fn new(prover: impl Prover) -> Self {
        ProofKey(Arc::new(prover))
    }

    pub(crate) fn prover(&self) -> &dyn Prover {
        &*self.0
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("thumbprint", &self.0.thumbprint())
            .finish()
    }
}

/// What the answer to a request sent with a proof is judged against (the
/// server it went to, the nonce it carried).
pub(crate) struct SentProof(Box<dyn ProofAnswered>);

impl SentProof {
    pub(crate) fn new(sent: impl ProofAnswered + 'static) -> Self {
        SentProof(Box::new(sent))
    }

    /// See [`ProofAnswered::learn_nonce`].
    pub(crate) fn learn_nonce(&self, headers: &HeaderMap) -> bool {
        self.0.learn_nonce(headers)
    }
}

impl fmt::Debug for SentProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SentProof")
    }
}
