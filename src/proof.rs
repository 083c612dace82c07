//! Proof of possession: how a request shows, beside its access token, that
//! it holds the key the token is bound to. The seam DPoP (RFC 9449, the
//! `dpop` module, feature `dpop`) plugs into, so that the token endpoint,
//! the cache and every transport ask one value and none of them names DPoP.
//!
//! A [`ProofKeys`] (the key now, which may change: DPoP's `DpopKeys`) is
//! chosen once, on the token endpoint (DPoP's `TokenEndpoint::dpop` or
//! `dpop_keys`); the cache built on it takes it along, and every
//! transport's `AuthPolicy` (the tower layer, the keyed layer, the reqwest
//! middleware) reads it from the cache when it is built. Without one, a
//! request carries the `Authorization` header alone and nothing here is
//! asked: the bearer path is the same code whether a proof scheme is built
//! in or not.
//!
//! # Rotation
//!
//! A token is bound to the key its token request proved (RFC 9449 §6: its
//! `cnf.jkt`), so it must go out with proofs of that key and no other. The
//! key of each token request is taken from the [`ProofKeys`] once, when the
//! fetch starts; the fetch names the token with the fingerprint of that
//! key (store, shared tier) and the cache records which key each
//! generation of its tokens is bound to ([`KeyHistory`]). A request is
//! proved with the key of the generation it carries, never with "the key
//! now": during a rotation, requests go on with the old token and the old
//! key until the token fetched with the new key is cached, and none fails.
//! A request that finds its token bound to a key other than the current
//! one starts one background refresh (at most one runs), so a new key
//! gets its token at the next request, not at the old token's expiry.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};

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

    /// Whether `other` is the same key (the same thumbprint, RFC 7638: a
    /// token bound to one is bound to the other).
    pub(crate) fn same_key(&self, other: &ProofKey) -> bool {
        self.0.thumbprint() == other.0.thumbprint()
    }
}

/// Where a new key comes from besides [`ProofKeys::rotate`]: a key file
/// read again when it changes (DPoP's `DpopKeys::from_file`).
pub(crate) trait KeyReload: Send + Sync + 'static {
    /// The key the source holds now, if it is not `current`; `Ok(None)`
    /// when it is, or (unless `always`) when the source did not change
    /// since it was last looked at. An error (a file missing, empty, not a
    /// key) names the file, never its content, and is given once per
    /// change of the file unless `always`; the current key stays in use.
    fn reload(&self, current: &ProofKey, always: bool) -> Result<Option<ProofKey>, Error>;

    /// What [`ProofKeys::user`] gives back, by its own type.
    fn as_any(&self) -> &dyn Any;
}

/// How often a resource request looks at a key file (a token request
/// always does): a look is one `stat`, a fraction of a proof's signature,
/// but not worth paying on every request.
pub(crate) const KEY_FILE_LOOK_EVERY: Duration = Duration::from_secs(1);

/// The key every proof of a token endpoint, its cache and their transports
/// is made with now, which may change: rotated by hand
/// ([`ProofKeys::rotate`]) or read again from its file. Cheap to clone:
/// clones share the key.
#[derive(Clone)]
pub(crate) struct ProofKeys(Arc<KeySource>);

struct KeySource {
    current: ArcSwap<ProofKey>,
    reload: Option<Box<dyn KeyReload>>,
    /// When the file was last looked at, in milliseconds since [`base`].
    looked_at: AtomicU64,
}

/// The origin of [`KeySource::looked_at`].
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl ProofKeys {
    /// Always `key` (until [`ProofKeys::rotate`]).
    pub(crate) fn fixed(key: ProofKey) -> Self {
        Self::with_reload(key, None)
    }

    /// `key`, then what `reload` finds.
    pub(crate) fn with_reload(key: ProofKey, reload: Option<Box<dyn KeyReload>>) -> Self {
        ProofKeys(Arc::new(KeySource {
            current: ArcSwap::from_pointee(key),
            reload,
            looked_at: AtomicU64::new(0),
        }))
    }

    /// The key now, as it was last read (no file is looked at).
    pub(crate) fn current(&self) -> ProofKey {
        ProofKey::clone(&self.0.current.load())
    }

    /// The key a token request proves: its file looked at first, so a key
    /// written there is used from the next token request on.
    pub(crate) fn for_token_request(&self) -> ProofKey {
        self.look(true);
        self.current()
    }

    /// Whether `key` is the key now, its file looked at if it was not
    /// within [`KEY_FILE_LOOK_EVERY`]: a resource request's question.
    pub(crate) fn is_current(&self, key: &ProofKey) -> bool {
        self.look(false);
        self.0.current.load().same_key(key)
    }

    /// Makes `key` the key of the next token requests.
    pub(crate) fn rotate(&self, key: ProofKey) {
        tracing::info!(thumbprint = key.prover().thumbprint(), "proof key rotated");
        self.0.current.store(Arc::new(key));
    }

    /// Reads the file now: whether the key changed, or why the file holds
    /// no usable key (the current key staying in use).
    pub(crate) fn reload(&self) -> Result<bool, Error> {
        self.reload_if(true)
    }

    /// [`ProofKeys::reload`]; unless `always`, only if the file changed.
    fn reload_if(&self, always: bool) -> Result<bool, Error> {
        let Some(reload) = &self.0.reload else {
            return Ok(false);
        };
        match reload.reload(&self.current(), always)? {
            Some(key) => {
                self.rotate(key);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The source a key is read again from, by its own type.
    pub(crate) fn user(&self) -> Option<&dyn Any> {
        self.0.reload.as_ref().map(|r| r.as_any())
    }

    /// Looks at the file, if any: `always`, or when not within
    /// [`KEY_FILE_LOOK_EVERY`]. A failure is logged (the file's path and
    /// what is wrong, never its content) and the key stays.
    fn look(&self, always: bool) {
        if self.0.reload.is_none() {
            return;
        }
        let now = u64::try_from(base().elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.0.looked_at.load(Ordering::Relaxed);
        let every = KEY_FILE_LOOK_EVERY.as_millis() as u64;
        if !always && last != 0 && now.saturating_sub(last) < every {
            return;
        }
        // One caller looks; the others go on with the key now.
        if (self.0.looked_at)
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
            && !always
        {
            return;
        }
        if let Err(e) = self.reload_if(false) {
            tracing::warn!(error = %e, "the proof key file holds no usable key; the key in use stays");
        }
    }
}

impl fmt::Debug for ProofKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKeys")
            .field("current", &*self.0.current.load())
            .field("reloads", &self.0.reload.is_some())
            .finish()
    }
}

/// The most tokens a cache remembers the key of ([`KeyHistory`]): a
/// request still carrying a token this many generations old (cached and
/// replaced that often while it was being sent) fails with a typed error
/// rather than go out with a proof of a key it may not be bound to.
const TOKENS_REMEMBERED: usize = 16;

/// Which key each of one cache's latest tokens (by generation) is bound
/// to. Read without a lock by every proved request; written when a token
/// is cached (by the flight, or a store's restore).
/// Empty (no allocation) in a cache with no key.
#[derive(Default)]
pub(crate) struct KeyHistory(ArcSwapOption<Vec<(u64, ProofKey)>>);

impl KeyHistory {
    /// Token `generation` is bound to `key`. The oldest generation is
    /// forgotten past [`TOKENS_REMEMBERED`].
    pub(crate) fn bind(&self, generation: u64, key: &ProofKey) {
        self.0.rcu(|tokens| {
            let mut tokens = tokens.as_deref().cloned().unwrap_or_default();
            let at = tokens.partition_point(|(g, _)| *g < generation);
            tokens.insert(at, (generation, key.clone()));
            if tokens.len() > TOKENS_REMEMBERED {
                tokens.remove(0);
            }
            Some(Arc::new(tokens))
        });
    }

    /// The key token `generation` is bound to, if it is remembered.
    pub(crate) fn key_of(&self, generation: u64) -> Option<ProofKey> {
        let tokens = self.0.load();
        // The token sent is nearly always the newest.
        (tokens.as_deref()?.iter().rev())
            .find(|(g, _)| *g == generation)
            .map(|(_, key)| key.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    impl Prover for Named {
        fn thumbprint(&self) -> &str {
            self.0
        }

        fn prove_resource_request(
            &self,
            _: &Method,
            _: &Uri,
            _: &HeaderValue,
            _: &mut HeaderMap,
        ) -> Result<Option<SentProof>, Error> {
            Ok(None)
        }

        fn prove_token_request(&self, _: &Uri, _: &mut HeaderMap) -> Result<SentProof, Error> {
            Err(Error::invalid_request("not in this test"))
        }

        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn thumbprint(key: Option<ProofKey>) -> Option<&'static str> {
        let key = key?;
        let named = key.prover().as_any().downcast_ref::<Named>()?;
        Some(named.0)
    }

    #[test]
    fn each_generation_keeps_its_key_in_any_order_and_the_oldest_is_forgotten() {
        let (a, b) = (ProofKey::new(Named("a")), ProofKey::new(Named("b")));
        let history = KeyHistory::default();
        // Two fetches settling out of order (a flight taken over).
        history.bind(2, &b);
        history.bind(1, &a);
        history.bind(3, &a);
        assert_eq!(thumbprint(history.key_of(1)), Some("a"));
        assert_eq!(thumbprint(history.key_of(2)), Some("b"));
        assert_eq!(thumbprint(history.key_of(3)), Some("a"));
        assert_eq!(thumbprint(history.key_of(4)), None);
        for generation in 4..=(3 + TOKENS_REMEMBERED as u64) {
            history.bind(generation, &b);
        }
        assert_eq!(thumbprint(history.key_of(3)), None);
        assert_eq!(thumbprint(history.key_of(4)), Some("b"));
    }

    #[test]
    fn a_rotated_key_is_the_current_one_and_the_old_is_not() {
        let (a, b) = (ProofKey::new(Named("a")), ProofKey::new(Named("b")));
        let keys = ProofKeys::fixed(a.clone());
        assert!(keys.is_current(&a));
        keys.rotate(b.clone());
        assert!(!keys.is_current(&a) && keys.is_current(&b));
        assert_eq!(thumbprint(Some(keys.for_token_request())), Some("b"));
        assert!(!keys.reload().unwrap());
        assert!(format!("{keys:?}").contains("\"b\""));
    }
}
