//! [`SharedTier`] in Redis: what each call of the cache's fetch
//! (`cache/fetch/shared.rs`: read, lease, publish, release, wait) is in
//! Redis commands and Lua scripts (`conn`), and how values are read back
//! (`value`, `refusals`). Any Redis trouble is [`Unavailable`]: the cache
//! then fetches its own token.

use std::time::Duration;

use super::conn::Lease as LockFound;
use super::refusals;
use super::value::{self, TokenHash};
use super::{bump, RedisTier};
use crate::store::ConfigFingerprint;
use crate::tier::{
    Lease, SharedTier, StepStarted, TierEvent, TierFuture, TierRead, TierStep, Unavailable,
};
use crate::token::Token;

/// The Redis keys of one configuration: `tower-oauth2:<namespace>:{<fingerprint>}:…`,
/// the fingerprint in a hash tag, so a token, its lock and its record of
/// 401s share a Redis Cluster slot.
pub(super) struct Keys {
    pub(super) token: String,
    pub(super) lock: String,
    pub(super) refused: String,
}

impl RedisTier {
    pub(super) fn keys(&self, fingerprint: &ConfigFingerprint) -> Keys {
        let tag = format!("tower-oauth2:{}:{{{fingerprint}}}", self.namespace);
        Keys {
            token: format!("{tag}:token"),
            lock: format!("{tag}:lock"),
            refused: format!("{tag}:refused"),
        }
    }

    /// The token in `value` read from `keys.token`, if usable. A bad value
    /// is logged and counted when `note_bad` (the first read of a fetch).
    fn token_in(
        &self,
        fingerprint: &ConfigFingerprint,
        keys: &Keys,
        value: Option<Vec<u8>>,
        note_bad: bool,
    ) -> Option<Token> {
        let value = value?;
        match value::decode(&value, *fingerprint, &keys.token, self.sealer.as_ref()) {
            Ok(token) => Some(token),
            Err(why) => {
                if note_bad {
                    bump(&self.stats.bad_values);
                    tracing::warn!(key = %keys.token, reason = why, "ignoring the value in Redis; it will be overwritten");
                }
                None
            }
        }
    }

    async fn read_keys(
        &self,
        fingerprint: &ConfigFingerprint,
        with_step: bool,
    ) -> Result<TierRead, Unavailable> {
        let keys = self.keys(fingerprint);
        if !with_step {
            let (value, lock) =
                (self.conn.read(&keys.token, &keys.lock).await).map_err(|_| Unavailable)?;
            return Ok(TierRead {
                token: self.token_in(fingerprint, &keys, value, false),
                locked: lock.is_some(),
                step: None,
            });
        }
        let names = (&*keys.token, &*keys.lock, &*keys.refused);
        let (value, lock, record, pttl) =
            self.conn.first_read(names).await.map_err(|_| Unavailable)?;
        let step = record.and_then(|v| self.step_in(&keys, &v, pttl));
        Ok(TierRead {
            token: self.token_in(fingerprint, &keys, value, true),
            locked: lock.is_some(),
            step,
        })
    }

    /// The record of 401s in `value`, if this crate wrote it; another is
    /// logged and counted.
    fn step_in(&self, keys: &Keys, value: &[u8], pttl: i64) -> Option<TierStep> {
        let step = refusals::decode(value, pttl, &keys.refused, self.sealer.as_ref());
        if step.is_none() {
            bump(&self.stats.bad_values);
            tracing::warn!(key = %keys.refused, "ignoring the value in Redis; it will be overwritten");
        }
        step
    }

    async fn lease_for(
        &self,
        fingerprint: &ConfigFingerprint,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, Unavailable> {
        let lock = self.keys(fingerprint).lock;
        let found = (self.conn.lease(&lock, owner, ttl).await).map_err(|_| Unavailable)?;
        Ok(match found {
            LockFound::Taken => {
                self.lock_trouble(fingerprint, false);
                Lease::Taken
            }
            LockFound::HeldByAnother => Lease::HeldByAnother,
            odd => {
                self.odd_lock(fingerprint, &lock, odd);
                Lease::Unusable
            }
        })
    }

    /// Whether a lock this crate did not write was logged for
    /// `fingerprint` already; `now`: whether it is now.
    fn lock_trouble(&self, fingerprint: &ConfigFingerprint, now: bool) -> bool {
        let mut logged = self.lock_trouble.lock().unwrap_or_else(|p| p.into_inner());
        if now {
            !logged.insert(*fingerprint)
        } else {
            logged.remove(fingerprint)
        }
    }

    /// A lock key this crate did not write: Redis trouble, logged at WARN
    /// once (until a lease is taken again), and this process fetches alone.
    fn odd_lock(&self, fingerprint: &ConfigFingerprint, lock: &str, odd: LockFound) {
        bump(&self.stats.odd_locks);
        let what = match odd {
            LockFound::WrongType => "holds another type than a string (left as it is)",
            LockFound::LongTtl => "has more than this process's lease to live (left as it is)",
            _ => "had no TTL (it now ends after the lease)",
        };
        if self.lock_trouble(fingerprint, true) {
            tracing::debug!(key = %lock, "the lease lock {what}; fetching here");
        } else {
            tracing::warn!(
                key = %lock,
                "the lease lock in Redis {what}: this crate, with this lease, never writes \
                 such a lock; fetching here, without the lease"
            );
        }
    }

    async fn publish_token(
        &self,
        fingerprint: &ConfigFingerprint,
        owner: &str,
        token: &Token,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let keys = self.keys(fingerprint);
        let sealer = self.sealer.as_ref();
        let value = match value::encode(token, *fingerprint, &keys.token, sealer) {
            Ok(value) => value,
            Err(why) => {
                tracing::warn!(reason = %why, "the token was not shared");
                return Ok(false);
            }
        };
        let names = (keys.token.as_str(), keys.lock.as_str());
        let published =
            (self.conn.publish(names, owner, value, ttl).await).map_err(|_| Unavailable)?;
        if published {
            bump(&self.stats.published);
        } else {
            bump(&self.stats.late_publishes);
            tracing::warn!(
                key = %keys.token,
                "the lease ran out before the token came; it is used here but not shared"
            );
        }
        Ok(published)
    }

    /// Compare-and-delete of the token key: the 401 rule, and revocation.
    async fn delete_token(
        &self,
        fingerprint: &ConfigFingerprint,
        token: &TokenHash,
    ) -> Result<bool, Unavailable> {
        let key = self.keys(fingerprint).token;
        let deleted =
            (self.conn.delete_if_hash(&key, &token.to_hex()).await).map_err(|_| Unavailable)?;
        if deleted {
            bump(&self.stats.invalidations);
            tracing::debug!(key = %key, "the token was removed from Redis");
        }
        Ok(deleted)
    }
}

impl SharedTier for RedisTier {
    fn lease_ttl(&self) -> Option<Duration> {
        self.lease
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn call_timeout(&self) -> Duration {
        self.conn.deadline()
    }

    fn read<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        with_step: bool,
    ) -> TierFuture<'a, Result<TierRead, Unavailable>> {
        Box::pin(self.read_keys(key, with_step))
    }

    fn take_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<Lease, Unavailable>> {
        Box::pin(self.lease_for(key, owner, ttl))
    }

    fn renew_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(async move {
            let lock = self.keys(key).lock;
            self.conn
                .renew(&lock, owner, ttl)
                .await
                .map_err(|_| Unavailable)
        })
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(async move {
            let lock = self.keys(key).lock;
            self.conn
                .release(&lock, owner)
                .await
                .map_err(|_| Unavailable)
        })
    }

    fn publish<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        token: &'a Token,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(self.publish_token(key, owner, token, ttl))
    }

    fn remove<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        token: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(self.delete_token(key, token))
    }

    fn start_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        refused: &'a TokenHash,
        step: StepStarted,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(self.write_step(key, refused, step))
    }

    fn end_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        accepted: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Box::pin(self.delete_step(key, accepted))
    }

    fn note(&self, event: TierEvent) {
        let counter = match event {
            TierEvent::SharedHit => &self.stats.shared_hits,
            TierEvent::Leased => &self.stats.leases,
            TierEvent::LeaseWait => &self.stats.lease_waits,
            TierEvent::Fallback => &self.stats.fallbacks,
            TierEvent::StepJoined => &self.stats.steps_joined,
        };
        bump(counter);
    }
}
