//! The shared tier: a store a fleet of caches shares tokens through,
//! behind the cache's fetch, as a [`TokenStore`](crate::store::TokenStore)
//! is for persistence. The Redis tier (`fleet::RedisTier`, feature `redis`)
//! implements it; so can any store with a compare-and-set and expiring keys.
//!
//! The cache asks the tier only on its slow path (the cached token is
//! stale, expired or refused with a 401); the hot path never does. The
//! cache runs the protocol, the tier keeps the state:
//!
//! 1. **Read** ([`SharedTier::read`]): is there a usable token (not the one
//!    being replaced)? Then it is taken, and no token is requested.
//! 2. **Lease** ([`SharedTier::take_lease`]): else one cache of the fleet
//!    holds the lease and fetches; while its fetch runs it renews the lease
//!    every third of it ([`SharedTier::renew_lease`], a watchdog), for at
//!    most four times the cache's default lease. The others poll
//!    ([`SharedTier::poll_interval`]) until the token is there, or the lease
//!    is gone without one (its holder failed, or died and its lease ran
//!    out): then they take it.
//! 3. **Publish** ([`SharedTier::publish`]) the fetched token, only while
//!    the lease is still the holder's, and **release** the lease
//!    ([`SharedTier::release_lease`]).
//! 4. **401s.** A token a resource server refused is removed by
//!    compare-and-delete ([`SharedTier::remove`]) unless the fleet's
//!    backoff step runs for it; revoking a token removes it the same way.
//!    The backoff of refetches-on-401 (ARCHITECTURE.md, invariant 6) is
//!    the fleet's: a step a cache starts is written beside the token
//!    ([`SharedTier::start_step`]), read back with it ([`TierRead::step`]),
//!    and ended by an answer other than 401 for that token
//!    ([`SharedTier::end_step`]).
//!
//! What an implementation must guarantee is on the trait: [`SharedTier`]'s
//! contract.
//!
//! # Example
//!
//! A tier is given to the cache's builder
//! ([`TokenCacheBuilder::shared_tier`](crate::cache::TokenCacheBuilder::shared_tier)):
//!
//! ```
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use tower_oauth2::tier::SharedTier;
//! use tower_oauth2::{ClientAuth, TokenCache, TokenEndpoint, TokenRequest, TokenUrl};
//!
//! fn cache_sharing(tier: impl SharedTier) -> Result<TokenCache, Box<dyn std::error::Error>> {
//! # let http = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! # });
//!     let endpoint = TokenEndpoint::new(
//!         http,
//!         TokenUrl::new("https://as.example.com/token")?,
//!         ClientAuth::client_secret_basic("svc", "secret"),
//!     );
//!     Ok(TokenCache::builder(endpoint, TokenRequest::client_credentials())
//!         .shared_tier(tier)
//!         .build())
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::ConfigFingerprint;
use crate::token::Token;

/// What a [`SharedTier`] call returns: a boxed future, so the trait stays
/// object-safe (a cache holds its tier as `Arc<dyn SharedTier>`).
pub type TierFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store a fleet of caches shares tokens, a lease and a record of 401s
/// through (see the [module docs](self) for the protocol the cache runs).
///
/// Every method but the settings is asked on the cache's slow path only.
/// `key` names one configuration (and subject): an implementation keeps the
/// state of each key apart.
///
/// # Contract
///
/// An implementation must guarantee, for each key (a
/// [`ConfigFingerprint`]: one configuration and subject; keys never share
/// anything):
///
/// - **Tokens.** [`read`](SharedTier::read) returns the token last
///   published under the key (until its TTL runs out), or none. A token
///   published under one key is never read under another. The tier need not
///   check it: the cache checks every token it reads (expiry, type, header
///   bytes) as its own.
/// - **Lease ownership.** [`take_lease`](SharedTier::take_lease) succeeds
///   for at most one owner at a time (set-if-absent), and the lease ends by
///   itself after its TTL unless its owner renews it. Only the owner renews
///   or releases it, or publishes under it (compare-owner-and-set, atomic):
///   a holder whose lease ran out, or was taken over, publishes nothing, so
///   a late token never overwrites the one a later holder published.
/// - **Compare-and-delete.** [`remove`](SharedTier::remove) and
///   [`end_step`](SharedTier::end_step) delete only if the key still holds
///   that very token (or a step for it), atomically: a newer token is never
///   deleted because an older one was refused.
/// - **TTLs.** A published token is kept for the TTL given (a second past
///   the token's expiry, a day at most); a step's record lives for the
///   step's delay plus the time its number is kept (at least a minute), and
///   reads back how long the step still runs. A step is written only if no
///   step at least as far along still runs.
/// - **Errors.** Any call may fail with [`Unavailable`] (the tier logs why,
///   once per outage, never with a secret): the cache then fetches its own
///   token (its own single flight) and keeps its own 401 record, as without
///   a tier. A call must not hang: each has a deadline
///   ([`call_timeout`](SharedTier::call_timeout)); the cache gives up on a
///   call after twice that (plus 100 ms), as if it had failed. Trouble in
///   the tier never fails a request that could succeed without it.
/// - **Secrets.** A token is a secret: never in key names, logs or errors.
///   A record of 401s names a token by its [`TokenHash`] only.
///
/// What the cache guarantees in turn: it reads before it leases, publishes
/// only under a lease it took, releases it after, compares tokens only by
/// their hash, never holds a step back longer than 5 minutes whatever a
/// record says (a record is data anyone with write access to the store may
/// have written), and never lets a step it read hold it back twice.
pub trait SharedTier: Send + Sync + 'static {
    /// How long a lease lasts unless renewed; `None`: the cache's default
    /// (the token endpoint's timeout, plus the store's timeout, plus 5 s).
    fn lease_ttl(&self) -> Option<Duration> {
        None
    }

    /// How often a cache waiting for another's fetch reads the tier again.
    fn poll_interval(&self) -> Duration;

    /// The longest one call may take (its deadline): a cache waits for a
    /// lease holder at most the lease's renewals, plus a lease, plus this.
    fn call_timeout(&self) -> Duration;

    /// The token published under `key`, whether its lease is held, and,
    /// when `with_step`, the fleet's record of 401s. Values the tier cannot
    /// use (garbage, another configuration's) read as absent; a tier logs
    /// and counts them only when `with_step` (the first read of a fetch),
    /// not at every poll.
    fn read<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        with_step: bool,
    ) -> TierFuture<'a, Result<TierRead, Unavailable>>;

    /// Takes the lease for `owner` for `ttl`, if nobody holds it
    /// (set-if-absent with a TTL).
    fn take_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<Lease, Unavailable>>;

    /// Extends the lease to `ttl` from now if `owner` still holds it:
    /// whether it did.
    fn renew_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Ends the lease if `owner` still holds it: whether it did.
    fn release_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Stores `token` under `key` for `ttl`, replacing what was there, only
    /// while `owner` holds the lease (atomically): whether it did. A tier
    /// counts and logs a token not published.
    fn publish<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        token: &'a Token,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Deletes the token under `key` if it is still the one `token` is
    /// the hash of (compare-and-delete, atomic): whether it did.
    fn remove<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        token: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Records that backoff step `step` started because `refused` was
    /// refused, unless a step at least as far along runs (then nothing is
    /// written): whether it was written. The record lives
    /// `step.delay + step.keep()`, and reads back as running while more
    /// than `step.keep()` of that is left.
    fn start_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        refused: &'a TokenHash,
        step: StepStarted,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Deletes the record of 401s if it is for `accepted`
    /// (compare-and-delete, atomic): whether it did.
    fn end_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        accepted: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>>;

    /// Something the cache did with the tier, for the tier's counters. The
    /// default ignores it.
    fn note(&self, event: TierEvent) {
        let _ = event;
    }
}

/// What [`SharedTier::read`] found.
#[derive(Debug, Clone, Default)]
pub struct TierRead {
    /// The token published under the key, if any.
    pub token: Option<Token>,
    /// Whether somebody holds the lease.
    pub locked: bool,
    /// The fleet's record of 401s, if asked for and there is one.
    pub step: Option<TierStep>,
}

/// The fleet's record of 401s, as read: the backoff step a cache started
/// because a token it fetched after a 401 was refused too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStep {
    /// The token whose refusal started the step.
    pub refused: TokenHash,
    /// The step's number (1 for the first since an answer other than
    /// 401): a cache's next step is numbered after it.
    pub number: u32,
    /// How long the step still runs; `None` once only its number is kept.
    pub remaining: Option<Duration>,
}

/// A backoff step a cache started, for [`SharedTier::start_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStarted {
    /// The step's number.
    pub number: u32,
    /// How long the refused token's 401s pass through.
    pub delay: Duration,
}

impl StepStarted {
    /// How long the step's number is kept after the step: its delay, at
    /// least a minute.
    pub fn keep(&self) -> Duration {
        self.delay.max(Duration::from_secs(60))
    }
}

/// What [`SharedTier::take_lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease now: it fetches for the fleet.
    Taken,
    /// Another owner holds it: the caller waits for its token.
    HeldByAnother,
    /// The lease cannot be used (the store holds something no cache
    /// writes there; the tier logged it): the caller fetches alone, at
    /// once.
    Unusable,
}

/// The tier did not answer in time, or failed (it logged why): the cache
/// fetches its own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the shared tier is unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// What a cache did with the tier, told to [`SharedTier::note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TierEvent {
    /// A token was taken from the tier instead of fetched.
    SharedHit,
    /// The lease was taken: this cache fetches for the fleet.
    Leased,
    /// The lease was held by another; this cache waits for its token.
    LeaseWait,
    /// This cache fetched alone (the tier failed, was late, its lease was
    /// unusable, or the wait for another's fetch ran out).
    Fallback,
    /// A fetch found the fleet's backoff step running for the token it took
    /// and joined it.
    StepJoined,
}

/// SHA-256 of an access token: how the tier names a token (a record of
/// 401s, compare-and-delete) without holding it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`'s access token.
    pub fn of(token: &Token) -> Self {
        TokenHash(Sha256::digest(token.access_token().expose_secret().as_bytes()).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash in 64 hex digits, or `None`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        ConfigFingerprint::from_hex(hex).map(|fp| TokenHash(*fp.as_bytes()))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash of a secret: only its first bytes, enough to tell two apart.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenType;

    #[test]
    fn a_token_hash_is_the_sha256_of_the_access_token_and_prints_only_its_start() {
        let hash = TokenHash::of(&Token::new("at-1", TokenType::Bearer));
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(TokenHash::from_hex(&hex), Some(hash));
        assert_eq!(format!("{hash:?}"), format!("TokenHash({}…)", &hex[..8]));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }

    #[test]
    fn a_steps_number_is_kept_at_least_a_minute_and_as_long_as_the_step() {
        let s = Duration::from_secs;
        let kept = |delay| StepStarted { number: 1, delay }.keep();
        assert_eq!(kept(s(1)), s(60));
        assert_eq!(kept(s(300)), s(300));
    }
}
