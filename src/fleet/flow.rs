//! The fleet-wide fetch: read Redis; else take the lease, fetch, publish,
//! release; or wait for the lease holder's token. Any Redis trouble ends in
//! this process's own fetch.

use std::future::Future;
use std::time::{Duration, Instant};

use super::value::{self, Entry, TokenHash};
use super::{bump, Inner, Judge};
use crate::error::Error;
use crate::token::Token;

/// What a read of the token key found.
enum Found {
    /// A token this process may use instead of fetching.
    Usable(Token),
    /// The token this process is replacing (stale, expired or refused).
    Replacing,
    /// Nothing usable (absent, bad data, expired, another configuration).
    Nothing { locked: bool },
}

impl Inner {
    /// A token for a cache whose current one needs replacing. `dropped`:
    /// the cache no longer holds it (a 401 invalidated it). `own` is this
    /// process's fetch (its single flight's), run at most once.
    pub(crate) async fn fetch<F>(
        &self,
        judge: &Judge,
        dropped: bool,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let replacing = *self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let found = match self.find(judge, replacing, true).await {
            Ok(found) => found,
            Err(()) => return self.alone(own).await,
        };
        match found {
            Found::Usable(token) => return Ok(self.hand(token, true)),
            Found::Replacing if dropped => self.invalidate(replacing).await,
            Found::Replacing | Found::Nothing { .. } => {}
        }
        let owner = owner_id();
        // A dead holder's lease runs out within `lease`; past that, fetch here.
        let deadline = Instant::now() + self.lease + self.conn.deadline() + self.poll_interval;
        loop {
            match self.conn.lease(&self.lock_key, &owner, self.lease).await {
                Err(_) => return self.alone(own).await,
                Ok(true) => return self.lead(judge, replacing, &owner, own).await,
                Ok(false) => bump(&self.stats.lease_waits),
            }
            match self.wait(judge, replacing, deadline).await {
                Ok(Some(token)) => return Ok(self.hand(token, true)),
                Ok(None) => continue,
                Err(()) => return self.alone(own).await,
            }
        }
    }

    /// Reads the token key. `Err` when Redis does not answer (logged). A
    /// bad value is logged and counted when `note_bad` (the first look).
    async fn find(
        &self,
        judge: &Judge,
        replacing: Option<TokenHash>,
        note_bad: bool,
    ) -> Result<Found, ()> {
        let (value, lock) = self
            .conn
            .read(&self.token_key, &self.lock_key)
            .await
            .map_err(drop)?;
        let locked = lock.is_some();
        let Some(value) = value else {
            return Ok(Found::Nothing { locked });
        };
        let entry = match value::decode(
            &value,
            self.fingerprint,
            &self.token_key,
            self.sealer.as_ref(),
        ) {
            Ok(entry) => entry,
            Err(why) => {
                if !note_bad {
                    return Ok(Found::Nothing { locked });
                }
                bump(&self.stats.bad_values);
                tracing::warn!(key = %self.token_key, reason = why, "ignoring the value in Redis; it will be overwritten");
                return Ok(Found::Nothing { locked });
            }
        };
        Ok(match entry {
            Entry { hash, .. } if Some(hash) == replacing => Found::Replacing,
            Entry { token, .. } if judge.remaining(&token).is_some() => Found::Usable(token),
            Entry { .. } => Found::Nothing { locked },
        })
    }

    /// The 401 rule: the shared token goes only if Redis still holds the
    /// very token this process saw refused.
    async fn invalidate(&self, hash: Option<TokenHash>) {
        let Some(hash) = hash else { return };
        if let Ok(true) = self.conn.invalidate(&self.token_key, &hash.hex()).await {
            bump(&self.stats.invalidations);
            tracing::debug!(key = %self.token_key, "the refused token was removed from Redis");
        }
    }

    /// Holds the lease: fetches, publishes, releases.
    /// Looks once more first: the previous holder may have published and
    /// released between this process's read and its lease.
    async fn lead<F>(
        &self,
        judge: &Judge,
        replacing: Option<TokenHash>,
        owner: &str,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        if let Ok(Found::Usable(token)) = self.find(judge, replacing, false).await {
            let _ = self.conn.release(&self.lock_key, owner).await;
            return Ok(self.hand(token, true));
        }
        bump(&self.stats.leases);
        let result = own.await;
        if let Ok(token) = &result {
            self.publish(judge, token, owner).await;
        }
        let _ = self.conn.release(&self.lock_key, owner).await;
        result.map(|token| self.hand(token, false))
    }

    async fn publish(&self, judge: &Judge, token: &Token, owner: &str) {
        // A token the cache will refuse is not shared either.
        let Some(remaining) = judge.remaining(token) else {
            return;
        };
        let ttl = remaining.saturating_add(TTL_PAST_EXPIRY);
        match value::encode(
            token,
            self.fingerprint,
            &self.token_key,
            self.sealer.as_ref(),
        ) {
            Ok(v) => {
                let keys = (self.token_key.as_str(), self.lock_key.as_str());
                match self.conn.publish(keys, owner, v, ttl).await {
                    Ok(true) => bump(&self.stats.published),
                    Ok(false) => {
                        bump(&self.stats.late_publishes);
                        tracing::warn!(
                            key = %self.token_key,
                            "the lease ran out before the token came; it is used here but not shared"
                        );
                    }
                    Err(_) => {}
                }
            }
            Err(why) => tracing::warn!(reason = %why, "the token was not shared"),
        }
    }

    /// Polls until the lease holder's token is there (`Some`), the lock is
    /// gone without one (`None`: take the lease), or the deadline passes or
    /// Redis fails (`Err`: fetch alone).
    async fn wait(
        &self,
        judge: &Judge,
        replacing: Option<TokenHash>,
        deadline: Instant,
    ) -> Result<Option<Token>, ()> {
        loop {
            if Instant::now() >= deadline {
                tracing::warn!(key = %self.token_key, "waited too long for the fleet's token fetch; fetching here");
                return Err(());
            }
            tokio::time::sleep(self.poll_interval).await;
            match self.find(judge, replacing, false).await? {
                Found::Usable(token) => return Ok(Some(token)),
                Found::Replacing | Found::Nothing { locked: true } => {}
                Found::Nothing { locked: false } => return Ok(None),
            }
        }
    }

    /// This process's own fetch, Redis being no help.
    async fn alone<F>(&self, own: F) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        bump(&self.stats.fallbacks);
        own.await.map(|token| self.hand(token, false))
    }

    /// Notes `token` as the one this process now uses (the next fetch
    /// replaces it).
    fn hand(&self, token: Token, shared: bool) -> Token {
        if shared {
            bump(&self.stats.shared_hits);
        }
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = Some(TokenHash::of(&token));
        token
    }
}

/// How long a published token outlives its expiry in Redis.
const TTL_PAST_EXPIRY: Duration = Duration::from_secs(1);

/// A random lease owner id (128 bits, hex).
fn owner_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and the process still tell owners apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
