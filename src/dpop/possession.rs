//! DPoP as the crate's proof of possession (`crate::proof`): what the token
//! endpoint, the cache and every transport ask of a [`Dpop`] key, and the
//! accessors that give it back by its own type.

use std::any::Any;

use http::{HeaderMap, HeaderValue, Method, Uri};

use super::{Dpop, DpopKeys, ProofTarget, DPOP};
use crate::error::Error;
use crate::proof::{ProofAnswered, Prover, SentProof};
use crate::{TokenCache, TokenEndpoint};

impl Prover for Dpop {
    fn thumbprint(&self) -> &str {
        Dpop::thumbprint(self)
    }

    /// A proof with `ath` when `token` is a `DPoP` token; a server that
    /// issued a bearer token instead gets the token alone, and no nonce is
    /// learned from its answers.
    fn prove_resource_request(
        &self,
        method: &Method,
        uri: &Uri,
        token: &HeaderValue,
        headers: &mut HeaderMap,
    ) -> Result<Option<SentProof>, Error> {
        let Some(access_token) = dpop_token(token) else {
            headers.remove(DPOP);
            return Ok(None);
        };
        let (proof, target) = self.proof_at_origin(method, uri, Some(access_token))?;
        headers.insert(DPOP, proof);
        Ok(Some(self.sent(target)))
    }

    fn prove_token_request(&self, uri: &Uri, headers: &mut HeaderMap) -> Result<SentProof, Error> {
        let (proof, target) = self.proof_at_origin(&Method::POST, uri, None)?;
        headers.insert(DPOP, proof);
        Ok(self.sent(target))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Dpop {
    fn sent(&self, target: ProofTarget) -> SentProof {
        SentProof::new(Sent {
            dpop: self.clone(),
            target,
        })
    }
}

/// A proof that went out: the key whose nonces its answer updates, and
/// where it went with which nonce.
struct Sent {
    dpop: Dpop,
    target: ProofTarget,
}

impl ProofAnswered for Sent {
    fn learn_nonce(&self, headers: &HeaderMap) -> bool {
        self.dpop.learn_nonce(&self.target, headers)
    }
}

/// The access token of a `DPoP <token>` header value.
fn dpop_token(header: &HeaderValue) -> Option<&str> {
    let bytes = header.as_bytes();
    let scheme = bytes.get(..5)?;
    if !scheme.eq_ignore_ascii_case(b"DPoP ") {
        return None;
    }
    std::str::from_utf8(&bytes[5..]).ok()
}

impl<S> TokenEndpoint<S> {
    /// Sends a DPoP proof (RFC 9449) made with `dpop` on every token
    /// request, and retries once with the server's nonce when it answers
    /// `use_dpop_nonce`. The token comes back with `token_type` `DPoP`
    /// (bound to the key) or `Bearer` (a server that does not bind it). A
    /// [`TokenCache`] built on this endpoint accepts `DPoP` tokens, names
    /// the key in its fingerprint, and the layer and the reqwest middleware
    /// send them with a proof per request. See [`crate::dpop`].
    /// ([`TokenEndpoint::dpop_keys`] with [`DpopKeys::new`]: the key can
    /// be rotated, with [`TokenCache::rotate_dpop_key`].)
    pub fn dpop(self, dpop: Dpop) -> Self {
        self.dpop_keys(DpopKeys::new(dpop))
    }

    /// [`TokenEndpoint::dpop`] with the key `keys` holds now, whichever it
    /// is when each token request is sent: a key rotated in, or read from
    /// its file again, gets its own bound tokens with no failed request
    /// (see [`DpopKeys`]).
    pub fn dpop_keys(mut self, keys: DpopKeys) -> Self {
        self.proof_key = Some(keys.proof_keys().clone());
        self
    }

    /// The DPoP key proved now, if DPoP is on.
    pub fn dpop_key(&self) -> Option<Dpop> {
        let keys = DpopKeys::from_proof_keys(self.proof_key()?.clone());
        Some(keys.current())
    }
}

impl TokenCache {
    /// The DPoP key proved now, when the token endpoint sends proofs
    /// ([`TokenEndpoint::dpop`]). A `DPoP` token's header
    /// ([`TokenCache::bearer_header_with_generation`] gives `DPoP <token>`
    /// then) must go with a proof ([`Dpop::proof`]) of the key it is bound
    /// to, which after a rotation may be the one before:
    /// [`TokenCache::dpop_bound_to`] its generation gives it.
    pub fn dpop(&self) -> Option<Dpop> {
        Some(self.dpop_keys()?.current())
    }

    /// The DPoP key the token of `generation` (as
    /// [`TokenCache::bearer_header_with_generation`] gives it) is bound
    /// to, if the cache still knows it (the latest 16 tokens').
    pub fn dpop_bound_to(&self, generation: u64) -> Option<Dpop> {
        let key = self.bound_key(generation)?;
        key.prover().as_any().downcast_ref::<Dpop>().cloned()
    }

    /// The DPoP keys of the token endpoint, if it sends proofs.
    pub fn dpop_keys(&self) -> Option<DpopKeys> {
        Some(DpopKeys::from_proof_keys(self.proof_key()?.clone()))
    }

    /// Proves `dpop` from the next token request on (every cache sharing
    /// the endpoint's [`DpopKeys`] does), and starts this cache's fetch of
    /// a token bound to it now, in the background: requests go on with the
    /// old token and the old key until it is cached, so none fails (see
    /// [`DpopKeys`]). Does nothing for a cache without DPoP.
    pub fn rotate_dpop_key(&self, dpop: Dpop) {
        let Some(keys) = self.dpop_keys() else {
            tracing::warn!("rotate_dpop_key on a cache without DPoP; nothing to rotate");
            return;
        };
        keys.rotate(dpop);
        self.key_rotated();
    }
}
