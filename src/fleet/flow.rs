//! The fleet-wide fetch: read Redis; else take the lease, fetch, publish,
//! release; or wait for the lease holder's token. Any Redis trouble ends in
//! this process's own fetch. The first read takes in the fleet's record of
//! 401s too (`refusals`): while its backoff step runs for the refused
//! token, a refetch after a 401 takes the token Redis holds instead.
//!
//! The lease holder renews its lease while its fetch runs (a watchdog,
//! every third of the lease), so a fetch longer than the lease (a DPoP
//! nonce resend, a refresh token refused then the grant) still has one
//! process fetching, and a dead holder's lock still ends within a lease.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::conn::Lease;
use super::refusals::{self, FleetStep, Record};
use super::value::{self, Entry, TokenHash};
use super::{bump, Inner, TokenCheck};
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

/// Redis did not answer a read (the connection logged why): this process
/// fetches alone.
struct NoAnswer;

/// How a wait for the lease holder's token ended.
enum Waited {
    /// The holder's token is there.
    Token(Token),
    /// The lock is gone without a token: take the lease.
    LockFree,
    /// The deadline passed, or Redis failed: fetch alone.
    GaveUp,
}

/// What the first read of Redis leads to.
enum Plan {
    /// Take the token Redis holds (perhaps the one this process saw
    /// refused, taken back because the fleet's backoff step for it runs).
    Take { token: Token },
    /// Fetch through the lease; `invalidate`: first delete the refused
    /// token from Redis (if it is still there).
    Fetch { invalidate: bool },
}

/// The decision on the first read: `dropped`, the cache dropped its token
/// after a 401; `step_runs`, the fleet's backoff step runs for that very
/// token. While it runs a refetch after a 401 neither invalidates nor
/// fetches, as in one process (ARCHITECTURE.md, invariant 6).
fn plan(found: Found, step_runs: bool, dropped: bool) -> Plan {
    match found {
        Found::Usable(token) => Plan::Take { token },
        Found::Replacing(Some(token)) if dropped && step_runs => Plan::Take { token },
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
        check: &TokenCheck,
        dropped: bool,
        own: F,
    ) -> Result<(Token, Option<FleetStep>), Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let replacing = *self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let Ok((found, record)) = self.first_read(check, replacing).await else {
            return self.alone(own).await.map(|token| (token, None));
        };
        let step_runs = record.is_some_and(|r| r.runs_for(replacing));
        match plan(found, step_runs, dropped) {
            Plan::Take { token } => {
                let learned = record.map(|r| r.learned(&TokenHash::of(&token)));
                if learned.is_some_and(|step| step.remaining.is_some()) {
                    bump(&self.stats.steps_joined);
                }
                return Ok((self.hand(token, true), learned));
            }
            Plan::Fetch { invalidate: true } => self.invalidate(replacing).await,
            Plan::Fetch { invalidate: false } => {}
        }
        let token = self.fetch_shared(check, replacing, own).await?;
        Ok((token, record.map(|r| r.number())))
    }

    /// Takes the lease and fetches, or waits for the holder's token.
    async fn fetch_shared<F>(
        &self,
        check: &TokenCheck,
        replacing: Option<TokenHash>,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let owner = owner_id();
        // A live holder renews its lease for `hold_limit` at most, and a
        // dead one's runs out within `lease`; past that, fetch here.
        let deadline = after(
            self.hold_limit
                .saturating_add(self.lease)
                .saturating_add(self.conn.deadline())
                .saturating_add(self.poll_interval),
        );
        loop {
            match self.conn.lease(&self.lock_key, &owner, self.lease).await {
                Err(_) => {
                    // The `SET` may still land (a slow Redis): this owner
                    // would then hold the lock for nobody's fetch.
                    self.release_later(owner);
                    return self.alone(own).await;
                }
                Ok(Lease::Taken) => {
                    self.lock_trouble.store(false, Ordering::Relaxed);
                    return self.lead(check, replacing, &owner, own).await;
                }
                Ok(Lease::HeldByAnother) => bump(&self.stats.lease_waits),
                Ok(odd @ (Lease::WrongType | Lease::NoTtl | Lease::LongTtl)) => {
                    self.odd_lock(odd);
                    return self.alone(own).await;
                }
            }
            match self.wait(check, replacing, deadline).await {
                Waited::Token(token) => return Ok(self.hand(token, true)),
                Waited::LockFree => continue,
                Waited::GaveUp => return self.alone(own).await,
            }
        }
    }

    /// The first read: the token key, the lock, and the fleet's record of
    /// 401s. Bad values are logged and counted.
    async fn first_read(
        &self,
        check: &TokenCheck,
        replacing: Option<TokenHash>,
    ) -> Result<(Found, Option<Record>), NoAnswer> {
        let keys = (&*self.token_key, &*self.lock_key, &*self.refused_key);
        let (value, lock, record, pttl) = self.conn.first_read(keys).await.map_err(|_| NoAnswer)?;
        let found = self.classify_value(check, value, lock.is_some(), replacing, true);
        let record = record.and_then(|v| {
            let record = Record::decode(&v, pttl, &self.refused_key, self.sealer.as_ref());
            if record.is_none() {
                bump(&self.stats.bad_values);
                tracing::warn!(key = %self.refused_key, "ignoring the value in Redis; it will be overwritten");
            }
            let mut seen = self.step_seen.lock().unwrap_or_else(|p| p.into_inner());
            record.map(|r| refusals::bounded(&mut seen, r, Instant::now()))
        });
        Ok((found, record))
    }

    /// Reads the token key again (while waiting, or holding the lease).
    async fn find(
        &self,
        check: &TokenCheck,
        replacing: Option<TokenHash>,
    ) -> Result<Found, NoAnswer> {
        let (value, lock) = self
            .conn
            .read(&self.token_key, &self.lock_key)
            .await
            .map_err(|_| NoAnswer)?;
        Ok(self.classify_value(check, value, lock.is_some(), replacing, false))
    }

    /// What the token key's `value` is to this process. A bad value is
    /// logged and counted when `note_bad` (the first read).
    fn classify_value(
        &self,
        check: &TokenCheck,
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
        let usable = check.remaining(&entry.token).is_some();
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
        check: &TokenCheck,
        replacing: Option<TokenHash>,
        owner: &str,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        if let Ok(Found::Usable(token)) = self.find(check, replacing).await {
            let _ = self.conn.release(&self.lock_key, owner).await;
            return Ok(self.hand(token, true));
        }
        bump(&self.stats.leases);
        let result = while_renewing(own, self.renew_lease(owner)).await;
        if let Ok(token) = &result {
            self.publish(check, token, owner).await;
        }
        let _ = self.conn.release(&self.lock_key, owner).await;
        result.map(|token| self.hand(token, false))
    }

    async fn publish(&self, check: &TokenCheck, token: &Token, owner: &str) {
        // A token the cache will refuse is not shared either.
        let Some(remaining) = check.remaining(token) else {
            return;
        };
        let ttl = value_ttl(remaining);
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

    /// Polls until the lease holder's token is there, the lock is gone
    /// without one, or the deadline passes or Redis fails.
    async fn wait(
        &self,
        check: &TokenCheck,
        replacing: Option<TokenHash>,
        deadline: Instant,
    ) -> Waited {
        loop {
            if Instant::now() >= deadline {
                tracing::warn!(key = %self.token_key, "waited too long for the fleet's token fetch; fetching here");
                return Waited::GaveUp;
            }
            tokio::time::sleep(self.poll_interval).await;
            match self.find(check, replacing).await {
                Ok(Found::Usable(token)) => return Waited::Token(token),
                Ok(Found::Replacing(_) | Found::Nothing { locked: true }) => {}
                Ok(Found::Nothing { locked: false }) => return Waited::LockFree,
                Err(NoAnswer) => return Waited::GaveUp,
            }
        }
    }

    /// Keeps the lease while the fetch runs: renews it every third of the
    /// lease, for `hold_limit` at most (past it, the lock runs out within
    /// a lease, as a dead holder's). Never ends by itself; it stops when
    /// the lock is no longer this owner's.
    async fn renew_lease(&self, owner: &str) -> Infallible {
        let until = after(self.hold_limit);
        let every = (self.lease / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            if Instant::now() >= until {
                break;
            }
            match self.conn.renew(&self.lock_key, owner, self.lease).await {
                Ok(true) | Err(_) => {}
                Ok(false) => {
                    tracing::debug!(key = %self.lock_key, "the lease was lost during the fetch");
                    break;
                }
            }
        }
        std::future::pending().await
    }

    /// Releases `owner`'s lock after a lease call that got no answer: the
    /// `SET` may land later, and the fleet would wait out the whole lease
    /// for nobody's fetch. Best-effort, spawned, retried with growing
    /// pauses until it is released or a lease has passed (the lock is gone
    /// by then anyway).
    fn release_later(&self, owner: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (conn, key, lease) = (self.conn.clone(), self.lock_key.clone(), self.lease);
        let mut pause = self.poll_interval.max(Duration::from_millis(10));
        runtime.spawn(async move {
            let until = after(lease);
            // Until `true`: a `false` may come before the late `SET` lands
            // (on another connection, after a reconnect).
            while !matches!(conn.release(&key, &owner).await, Ok(true)) {
                if Instant::now() + pause >= until {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RELEASE_PAUSE_MAX);
            }
            tracing::debug!(key = %key, "released a lock taken by a lease call that timed out");
        });
    }

    /// A lock key this crate did not write: Redis trouble, logged at WARN
    /// once (until a lease is taken again), and this process fetches alone.
    fn odd_lock(&self, odd: Lease) {
        bump(&self.stats.odd_locks);
        let what = match odd {
            Lease::WrongType => "holds another type than a string (left as it is)",
            Lease::LongTtl => "has more than this process's lease to live (left as it is)",
            _ => "had no TTL (it now ends after the lease)",
        };
        if self.lock_trouble.swap(true, Ordering::Relaxed) {
            tracing::debug!(key = %self.lock_key, "the lease lock {what}; fetching here");
        } else {
            tracing::warn!(
                key = %self.lock_key,
                "the lease lock in Redis {what}: this crate, with this lease, never writes \
                 such a lock; fetching here, without the lease"
            );
        }
    }

    /// After a token is revoked (`TokenCache::revoke`): Redis no longer
    /// holds it, so no process takes it up again; a process that still
    /// sends it gets a 401, finds it gone, and gets the fleet's next token.
    /// Best-effort, within the Redis deadline.
    pub(crate) async fn revoked(&self, token: &Token) {
        let hash = TokenHash::of(token).hex();
        if let Ok(true) = self.conn.delete_if_hash(&self.token_key, &hash).await {
            bump(&self.stats.invalidations);
            tracing::debug!(key = %self.token_key, "the revoked token was removed from Redis");
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

    /// A resource server refused `token` (a 401 invalidated it): it leaves
    /// Redis now by compare-and-delete, so that no cache built later takes
    /// it up before this one's next fetch would have removed it.
    pub(crate) async fn refused(&self, check: &TokenCheck, token: &Token) {
        let hash = TokenHash::of(token);
        let Ok((_, record)) = self.first_read(check, Some(hash)).await else {
            return;
        };
        // A running step for this very token keeps it on purpose: new
        // tokens are refused too (invariant 12).
        if !record.is_some_and(|r| r.runs_for(Some(hash))) {
            self.invalidate(Some(hash)).await;
        }
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

/// The longest a token stays in Redis: one with no known expiry, or a
/// huge `expires_in`, is not kept forever (a process that needs a token a
/// day later fetches one for the fleet).
const MAX_VALUE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest pause between two tries of a late release.
const RELEASE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The Redis TTL of a token the cache may send for `remaining` more
/// (`Duration::MAX` when its expiry is unknown or beyond any clock): a
/// little past its expiry, at most [`MAX_VALUE_TTL`].
fn value_ttl(remaining: Duration) -> Duration {
    remaining.saturating_add(TTL_PAST_EXPIRY).min(MAX_VALUE_TTL)
}

/// `d` from now, or some 34 years if that is past what an `Instant` holds
/// (a lease of `Duration::MAX`).
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(1 << 30))
}

/// Runs `fetch` to its end while polling `watchdog` beside it (which never
/// ends): the watchdog runs only while the fetch is polled, so a holder
/// whose runtime stops renews nothing.
async fn while_renewing<F: Future>(
    fetch: F,
    watchdog: impl Future<Output = Infallible>,
) -> F::Output {
    let mut fetch = pin!(fetch);
    let mut watchdog = pin!(watchdog);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fetch.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        match watchdog.as_mut().poll(cx) {
            Poll::Ready(never) => match never {},
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

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

    /// The plan, as (the token taken, or whether the shared token is
    /// deleted before a fetch).
    fn decided(found: Found, step_runs: bool, dropped: bool) -> Result<String, bool> {
        match plan(found, step_runs, dropped) {
            Plan::Take { token } => Ok(token.access_token().expose_secret().into()),
            Plan::Fetch { invalidate } => Err(invalidate),
        }
    }

    #[test]
    fn while_the_fleets_step_runs_a_refetch_after_a_401_takes_the_refused_token_back() {
        let refused = || Found::Replacing(Some(token("at-2")));
        // The step (for at-2) runs: no deletion, no token request.
        assert_eq!(decided(refused(), true, true), Ok("at-2".into()));
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
                Ok("at-3".into()),
                "{step_runs} {dropped}"
            );
            let nothing = Found::Nothing { locked: step_runs };
            assert_eq!(decided(nothing, step_runs, dropped), Err(false));
        }
    }

    #[test]
    fn a_token_stays_in_redis_a_second_past_its_expiry_and_a_day_at_most() {
        let s = Duration::from_secs;
        assert_eq!(value_ttl(Duration::ZERO), s(1));
        assert_eq!(value_ttl(s(3600)), s(3601));
        assert_eq!(value_ttl(s(86_399)), s(86_400));
        // No known expiry (absent `expires_in` the cache keeps as it is),
        // or one beyond any clock (`1e30`, `u64::MAX` seconds).
        assert_eq!(value_ttl(s(86_400)), s(86_400));
        assert_eq!(value_ttl(s(u64::MAX)), s(86_400));
        assert_eq!(value_ttl(Duration::MAX), s(86_400));
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_runs_beside_the_fetch_and_stops_with_it() {
        use std::sync::atomic::AtomicU32;
        async fn tick(ticks: &AtomicU32) -> Infallible {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
        let ticks = AtomicU32::new(0);
        let watchdog = tick(&ticks);
        let fetch = async {
            tokio::time::sleep(Duration::from_millis(350)).await;
            "token"
        };
        assert_eq!(while_renewing(fetch, watchdog).await, "token");
        assert_eq!(ticks.load(Ordering::Relaxed), 3);
    }
}
