//! The fleet-wide fetch: read Redis; else take the lease, fetch, publish,
//! release; or wait for the lease holder's token. Any Redis trouble ends in
//! this process's own fetch. The first look reads the fleet's record of
//! 401s too (`refusals`): while its backoff step runs, a refetch after a
//! 401 takes the token Redis holds instead.

use std::future::Future;
use std::time::{Duration, Instant};

use super::refusals::{FleetStep, Record};
use super::value::{self, Entry, TokenHash};
use super::{bump, Inner, Judge};
use crate::error::Error;
use crate::token::Token;

/// What a read of the token key found.
enum Found {
    /// A token this process may use instead of fetching.
    Usable(Token),
    /// The token this process is replacing (stale, expired or refused);
    /// `Some` while the cache would still send it.
    Replacing(Option<Token>),
    /// Nothing usable (absent, bad data, expired, another configuration).
    Nothing { locked: bool },
}

/// What the first look at Redis leads to.
enum Plan {
    /// Take the token Redis holds. `held`: it is the one this process saw
    /// refused, taken because the fleet's backoff step runs.
    Take { token: Token, held: bool },
    /// Fetch through the lease; `invalidate`: first delete the refused
    /// token from Redis (if it is still there).
    Fetch { invalidate: bool },
}

/// The decision on the first look: `dropped`, the cache dropped its token
/// after a 401; `step_runs`, the fleet's backoff step runs. While it runs
/// a refetch after a 401 neither invalidates nor fetches, as in one
/// process (ARCHITECTURE.md, invariant 6).
fn plan(found: Found, step_runs: bool, dropped: bool) -> Plan {
    match found {
        Found::Usable(token) => Plan::Take { token, held: false },
        Found::Replacing(Some(token)) if dropped && step_runs => Plan::Take { token, held: true },
        Found::Replacing(_) => Plan::Fetch {
            invalidate: dropped,
        },
        Found::Nothing { .. } => Plan::Fetch { invalidate: false },
    }
}

impl Inner {
    /// A token for a cache whose current one needs replacing, and what the
    /// fleet's record of 401s says about it. `dropped`: the cache no longer
    /// holds it (a 401 invalidated it). `own` is this process's fetch (its
    /// single flight's), run at most once.
    pub(crate) async fn fetch<F>(
        &self,
        judge: &Judge,
        dropped: bool,
        own: F,
    ) -> Result<(Token, Option<FleetStep>), Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let replacing = *self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let Ok((found, record)) = self.look(judge, replacing).await else {
            return self.alone(own).await.map(|token| (token, None));
        };
        let step_runs = record.is_some_and(|r| r.remaining.is_some());
        match plan(found, step_runs, dropped) {
            Plan::Take { token, held } => {
                let learned = record.map(|r| r.learned(&TokenHash::of(&token), held));
                if learned.is_some_and(|step| step.remaining.is_some()) {
                    bump(&self.stats.steps_joined);
                }
                return Ok((self.hand(token, true), learned));
            }
            Plan::Fetch { invalidate: true } => self.invalidate(replacing).await,
            Plan::Fetch { invalidate: false } => {}
        }
        let token = self.fetch_shared(judge, replacing, own).await?;
        Ok((token, record.map(|r| r.number())))
    }

    /// Takes the lease and fetches, or waits for the holder's token.
    async fn fetch_shared<F>(
        &self,
        judge: &Judge,
        replacing: Option<TokenHash>,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
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

    /// The first look: the token key, the lock, and the fleet's record of
    /// 401s. `Err` when Redis does not answer (logged). Bad values are
    /// logged and counted.
    async fn look(
        &self,
        judge: &Judge,
        replacing: Option<TokenHash>,
    ) -> Result<(Found, Option<Record>), ()> {
        let keys = (&*self.token_key, &*self.lock_key, &*self.refused_key);
        let (value, lock, record, pttl) = self.conn.look(keys).await.map_err(drop)?;
        let found = self.judge_value(judge, value, lock.is_some(), replacing, true);
        let record = record.and_then(|v| {
            let record = Record::decode(&v, pttl);
            if record.is_none() {
                bump(&self.stats.bad_values);
                tracing::warn!(key = %self.refused_key, "ignoring the value in Redis; it will be overwritten");
            }
            record
        });
        Ok((found, record))
    }

    /// Reads the token key again (while waiting, or holding the lease).
    /// `Err` when Redis does not answer (logged).
    async fn find(&self, judge: &Judge, replacing: Option<TokenHash>) -> Result<Found, ()> {
        let (value, lock) = self
            .conn
            .read(&self.token_key, &self.lock_key)
            .await
            .map_err(drop)?;
        Ok(self.judge_value(judge, value, lock.is_some(), replacing, false))
    }

    /// What the token key's `value` is to this process. A bad value is
    /// logged and counted when `note_bad` (the first look).
    fn judge_value(
        &self,
        judge: &Judge,
        value: Option<Vec<u8>>,
        locked: bool,
        replacing: Option<TokenHash>,
        note_bad: bool,
    ) -> Found {
        let Some(value) = value else {
            return Found::Nothing { locked };
        };
        let entry = match value::decode(
            &value,
            self.fingerprint,
            &self.token_key,
            self.sealer.as_ref(),
        ) {
            Ok(entry) => entry,
            Err(why) => {
                if note_bad {
                    bump(&self.stats.bad_values);
                    tracing::warn!(key = %self.token_key, reason = why, "ignoring the value in Redis; it will be overwritten");
                }
                return Found::Nothing { locked };
            }
        };
        let usable = judge.remaining(&entry.token).is_some();
        match entry {
            Entry { hash, token } if Some(hash) == replacing => {
                Found::Replacing(usable.then_some(token))
            }
            Entry { token, .. } if usable => Found::Usable(token),
            Entry { .. } => Found::Nothing { locked },
        }
    }

    /// The 401 rule: the shared token goes only if Redis still holds the
    /// very token this process saw refused.
    async fn invalidate(&self, hash: Option<TokenHash>) {
        let Some(hash) = hash else { return };
        if let Ok(true) = self.conn.delete_if_hash(&self.token_key, &hash.hex()).await {
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
        if let Ok(Found::Usable(token)) = self.find(judge, replacing).await {
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
            match self.find(judge, replacing).await? {
                Found::Usable(token) => return Ok(Some(token)),
                Found::Replacing(_) | Found::Nothing { locked: true } => {}
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

    /// Notes `token` as the one the next fetch replaces, with no token
    /// handed yet: a cache built again whose store says a resource server
    /// refused it (`TokenStore::refuse`).
    pub(crate) fn replacing(&self, token: &Token) {
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = Some(TokenHash::of(token));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenType;

    fn token(s: &str) -> Token {
        Token::new(s, TokenType::Bearer)
    }

    /// The plan, as (the token taken and why, or whether the shared token
    /// is deleted before a fetch).
    fn decided(found: Found, step_runs: bool, dropped: bool) -> Result<(String, bool), bool> {
        match plan(found, step_runs, dropped) {
            Plan::Take { token, held } => Ok((token.access_token().expose_secret().into(), held)),
            Plan::Fetch { invalidate } => Err(invalidate),
        }
    }

    #[test]
    fn while_the_fleets_step_runs_a_refetch_after_a_401_takes_the_refused_token_back() {
        let refused = || Found::Replacing(Some(token("at-2")));
        // The step runs: no deletion, no token request; the step is why.
        assert_eq!(decided(refused(), true, true), Ok(("at-2".into(), true)));
        // No step: the refused token goes, and one is fetched.
        assert_eq!(decided(refused(), false, true), Err(true));
        // A stale (not refused) token is replaced whatever the step.
        assert_eq!(decided(refused(), true, false), Err(false));
        // A refused token the cache would no longer send is not taken back.
        assert_eq!(decided(Found::Replacing(None), true, true), Err(true));
    }

    #[test]
    fn a_newer_token_is_taken_and_nothing_is_fetched_with_or_without_a_step() {
        for (step_runs, dropped) in [(false, false), (false, true), (true, false), (true, true)] {
            let found = Found::Usable(token("at-3"));
            assert_eq!(
                decided(found, step_runs, dropped),
                Ok(("at-3".into(), false)),
                "{step_runs} {dropped}"
            );
            let nothing = Found::Nothing { locked: step_runs };
            assert_eq!(decided(nothing, step_runs, dropped), Err(false));
        }
    }
}
