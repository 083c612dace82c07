//! What names a cache's tokens when they are bound to a proof key that may
//! be rotated (DPoP, `crate::proof`): the configuration's fingerprint with
//! the key's thumbprint, computed for the key each fetch proves
//! ([`Identity::for_token_request`]), and a shared-tier binding per such
//! fingerprint ([`TierBindings`]).
//!
//! A token fetched with key A is saved in the store and published in the
//! shared tier under A's fingerprint, and a fetch with key B reads and
//! leases under B's: a process holding key B never reads a token bound to
//! key A, whatever the processes sharing a store or a tier hold, and a
//! fleet that rotated its key shares the new key's token (one token
//! request for the fleet). A token's own later writes (a 401's removal, a
//! revocation, a step of the fleet's backoff, a store's refusal mark) go
//! under the fingerprint it was fetched under (its generation's key, from
//! the cache's `KeyHistory`). Without a key, there is one fingerprint, the one the
//! cache was built with, as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shared::{TierBinding, TokenCheck};
use crate::proof::{ProofKey, ProofKeys};
use crate::store::ConfigFingerprint;
use crate::tier::SharedTier;

/// The key a token is bound to (none for a bearer cache) and the
/// fingerprint it is stored and shared under.
#[derive(Clone, Debug)]
pub(in crate::cache) struct Bound {
    pub(in crate::cache) key: Option<ProofKey>,
    pub(in crate::cache) fingerprint: ConfigFingerprint,
}

/// How a cache names its tokens: the configuration's fingerprint (client,
/// grant, subject), and the keys they are bound to.
pub(in crate::cache) struct Identity {
    /// The fingerprint without a key.
    base: ConfigFingerprint,
    keys: Option<ProofKeys>,
}

impl Identity {
    pub(in crate::cache) fn new(base: ConfigFingerprint, keys: Option<ProofKeys>) -> Self {
        Identity { base, keys }
    }

    /// The key a token request proves now (its file looked at first), and
    /// the fingerprint of tokens bound to it.
    pub(in crate::cache) fn for_token_request(&self) -> Bound {
        self.bound(self.keys.as_ref().map(ProofKeys::for_token_request))
    }

    /// The key as last read, and its fingerprint.
    #[cfg(test)]
    pub(in crate::cache) fn now(&self) -> Bound {
        self.bound(self.keys.as_ref().map(ProofKeys::current))
    }

    /// The fingerprint of tokens bound to `key` (none: the keyless one).
    pub(in crate::cache) fn fingerprint_of(&self, key: Option<ProofKey>) -> ConfigFingerprint {
        self.bound(key).fingerprint
    }

    fn bound(&self, key: Option<ProofKey>) -> Bound {
        let fingerprint = match &key {
            Some(key) => self.base.with_dpop_key(key.prover().thumbprint()),
            None => self.base,
        };
        Bound { key, fingerprint }
    }
}

/// How many fingerprints' bindings are kept: the key now, and the few
/// before it whose tokens may still be cached (a 401 removes such a token
/// from the tier under its own fingerprint).
const BINDINGS_KEPT: usize = 4;

/// One cache's bindings to a shared tier, one per fingerprint its tokens
/// were fetched under (one, for a cache with no key or a key never
/// rotated).
pub(in crate::cache) struct TierBindings {
    tier: Arc<dyn SharedTier>,
    check: TokenCheck,
    default_lease: Duration,
    /// Newest last.
    bound: Mutex<Vec<Arc<TierBinding>>>,
}

impl TierBindings {
    pub(in crate::cache) fn new(
        tier: Arc<dyn SharedTier>,
        check: TokenCheck,
        default_lease: Duration,
    ) -> Self {
        TierBindings {
            tier,
            check,
            default_lease,
            bound: Mutex::new(Vec::new()),
        }
    }

    /// The binding of tokens named `fingerprint`, made on first use.
    pub(in crate::cache) fn for_key(&self, fingerprint: ConfigFingerprint) -> Arc<TierBinding> {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = bound.iter().position(|b| b.key() == fingerprint) {
            let binding = bound.remove(at);
            bound.push(binding.clone());
            return binding;
        }
        let binding = Arc::new(TierBinding::new(
            self.tier.clone(),
            fingerprint,
            self.check.clone(),
            self.default_lease,
        ));
        bound.push(binding.clone());
        if bound.len() > BINDINGS_KEPT {
            bound.remove(0);
        }
        binding
    }

    /// The lease a cache takes (the same under every fingerprint).
    pub(in crate::cache) fn lease(&self) -> Duration {
        self.tier.lease_ttl().unwrap_or(self.default_lease)
    }
}
