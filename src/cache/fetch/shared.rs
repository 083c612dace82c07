//! The fetch through a [`SharedTier`] (`crate::tier`): read the tier;
//! else take the lease, fetch, publish, release; or wait for the lease
//! holder's token. Any trouble with the tier ends in this process's own
//! fetch. The first read takes in the fleet's record of 401s too: while its
//! backoff step runs for the refused token, a refetch after a 401 takes the
//! token the tier holds instead (ARCHITECTURE.md, invariants 6 and 12).
//!
//! The lease holder renews its lease while its fetch runs (a watchdog,
//! every third of the lease), so a fetch longer than the lease (a DPoP
//! nonce resend, a refresh token refused then the grant) still has one
//! process fetching, and a dead holder's lease still ends within a lease.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::store::ConfigFingerprint;
use crate::tier::{
    Lease, SharedTier, StepStarted, TierEvent, TierFuture, TierStep, TokenHash, Unavailable,
};
use crate::token::Token;

/// How a cache checks a token: how long it may still be sent, or `None`
/// if the cache would refuse it (expired, not a bearer token, bytes not
/// allowed in a header).
pub(in crate::cache) type TokenCheck = Arc<dyn Fn(&Token) -> Option<Duration> + Send + Sync>;

/// A step of the fleet's backoff, as a fetch found it, for the process's
/// own record (`TokenCache::join_fleet_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::cache) struct FleetStep {
    /// The fleet's step number: the process's next step is numbered after it.
    pub(in crate::cache) number: u32,
    /// How long the step still runs, if this process joins it (its 401s
    /// pass through meanwhile); `None` if it is over or not this process's.
    pub(in crate::cache) remaining: Option<Duration>,
}

/// The longest a step read from the tier runs for this process: the
/// default maximum of `AuthPolicy::unauthorized_backoff`. A record cannot
/// hold a process's 401s back longer, whatever it says.
const MAX_STEP: Duration = Duration::from_secs(300);

/// The most token requests one fetch sends (a refresh token refused, then
/// the grant, each with a DPoP nonce resend): the lease holder renews its
/// lease for that many default leases at most.
const FETCH_EXCHANGES: u32 = 4;

/// How long a published token outlives its expiry in the tier.
const TTL_PAST_EXPIRY: Duration = Duration::from_secs(1);

/// The longest a token stays in the tier: one with no known expiry, or a
/// huge `expires_in`, is not kept forever (a process that needs a token a
/// day later fetches one for the fleet).
const MAX_VALUE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Slack on a tier call's deadline beyond twice the tier's own.
const CALL_SLACK: Duration = Duration::from_millis(100);

/// The longest pause between two tries of a late release.
const RELEASE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// One cache's use of a shared tier: its key, its lease, and what it last
/// took from the tier.
pub(in crate::cache) struct TierBinding {
    tier: Arc<dyn SharedTier>,
    key: ConfigFingerprint,
    check: TokenCheck,
    lease: Duration,
    /// How long a holder renews its lease at most.
    hold_limit: Duration,
    /// The hash of the token this process uses now: the one the next fetch
    /// replaces.
    handed: Mutex<Option<TokenHash>>,
    /// The end of the last running step of the fleet's read here
    /// ([`bounded`]).
    step_seen: Mutex<Option<SeenStep>>,
}

/// What a read of the tier found.
enum Found {
    /// A token this process may use instead of fetching.
    Usable(Token),
    /// The token this process is replacing (stale, expired or refused);
    /// `Some` while the cache would still send it.
    Replacing(Option<Token>),
    /// Nothing usable (absent, expired, unusable).
    Nothing { locked: bool },
}

/// The tier did not answer a read: this process fetches alone.
struct NoAnswer;

/// How a wait for the lease holder's token ended.
enum Waited {
    /// The holder's token is there.
    Token(Token),
    /// The lease is gone without a token: take it.
    LockFree,
    /// The deadline passed, or the tier failed: fetch alone.
    GaveUp,
}

/// What the first read of the tier leads to.
enum Plan {
    /// Take the token the tier holds (perhaps the one this process saw
    /// refused, taken back because the fleet's backoff step for it runs).
    Take { token: Token },
    /// Fetch through the lease; `invalidate`: first delete the refused
    /// token from the tier (if it is still there).
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

impl TierBinding {
    /// `tier` for the cache whose tokens `key` names, checked by `check`;
    /// `default_lease` unless the tier sets one.
    pub(in crate::cache) fn new(
        tier: Arc<dyn SharedTier>,
        key: ConfigFingerprint,
        check: TokenCheck,
        default_lease: Duration,
    ) -> Self {
        let lease = tier.lease_ttl().unwrap_or(default_lease);
        TierBinding {
            tier,
            key,
            check,
            lease,
            hold_limit: default_lease.saturating_mul(FETCH_EXCHANGES).max(lease),
            handed: Mutex::new(None),
            step_seen: Mutex::new(None),
        }
    }

    /// The fingerprint this binding reads and writes under.
    pub(in crate::cache) fn key(&self) -> ConfigFingerprint {
        self.key
    }

    /// A token for a cache whose current one needs replacing, and what the
    /// fleet's record of 401s says about it. `dropped`: the cache no longer
    /// holds it (a 401 invalidated it). `own` is this process's fetch (its
    /// single flight's), run at most once.
    pub(in crate::cache) async fn fetch<F>(
        &self,
        dropped: bool,
        own: F,
    ) -> Result<(Token, Option<FleetStep>), Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let replacing = *self.handed.lock().unwrap_or_else(|p| p.into_inner());
        let Ok((found, step)) = self.first_read(replacing).await else {
            return self.alone(own).await.map(|token| (token, None));
        };
        let step_runs = step.is_some_and(|s| runs_for(&s, replacing));
        match plan(found, step_runs, dropped) {
            Plan::Take { token } => {
                let learned = step.map(|s| learned(&s, &TokenHash::of(&token)));
                if learned.is_some_and(|step| step.remaining.is_some()) {
                    self.tier.note(TierEvent::StepJoined);
                }
                return Ok((self.hand(token, true), learned));
            }
            Plan::Fetch { invalidate: true } => self.remove(replacing).await,
            Plan::Fetch { invalidate: false } => {}
        }
        let token = self.fetch_shared(replacing, own).await?;
        Ok((token, step.map(|s| number(&s))))
    }

    /// Takes the lease and fetches, or waits for the holder's token.
    async fn fetch_shared<F>(&self, replacing: Option<TokenHash>, own: F) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        let owner = owner_id();
        // A live holder renews its lease for `hold_limit` at most, and a
        // dead one's runs out within `lease`; past that, fetch here.
        let deadline = after(
            self.hold_limit
                .saturating_add(self.lease)
                .saturating_add(self.tier.call_timeout())
                .saturating_add(self.tier.poll_interval()),
        );
        loop {
            match self
                .call(self.tier.take_lease(&self.key, &owner, self.lease))
                .await
            {
                Err(_) => {
                    // The lease may still be taken (a slow store): this
                    // owner would then hold it for nobody's fetch.
                    self.release_later(owner);
                    return self.alone(own).await;
                }
                Ok(Lease::Taken) => return self.lead(replacing, &owner, own).await,
                Ok(Lease::HeldByAnother) => self.tier.note(TierEvent::LeaseWait),
                Ok(Lease::Unusable) => return self.alone(own).await,
            }
            match self.wait(replacing, deadline).await {
                Waited::Token(token) => return Ok(self.hand(token, true)),
                Waited::LockFree => continue,
                Waited::GaveUp => return self.alone(own).await,
            }
        }
    }

    /// The first read: the token, the lease, and the fleet's record of 401s.
    async fn first_read(
        &self,
        replacing: Option<TokenHash>,
    ) -> Result<(Found, Option<TierStep>), NoAnswer> {
        let read = (self.call(self.tier.read(&self.key, true)).await).map_err(|_| NoAnswer)?;
        let found = self.classify(read.token, read.locked, replacing);
        let step = read.step.map(|step| {
            let mut seen = self.step_seen.lock().unwrap_or_else(|p| p.into_inner());
            bounded(&mut seen, step, Instant::now())
        });
        Ok((found, step))
    }

    /// Reads the token again (while waiting, or holding the lease).
    async fn find(&self, replacing: Option<TokenHash>) -> Result<Found, NoAnswer> {
        let read = (self.call(self.tier.read(&self.key, false)).await).map_err(|_| NoAnswer)?;
        Ok(self.classify(read.token, read.locked, replacing))
    }

    /// What the tier's `token` is to this process.
    fn classify(&self, token: Option<Token>, locked: bool, replacing: Option<TokenHash>) -> Found {
        let Some(token) = token else {
            return Found::Nothing { locked };
        };
        let usable = (self.check)(&token).is_some();
        if Some(TokenHash::of(&token)) == replacing {
            Found::Replacing(usable.then_some(token))
        } else if usable {
            Found::Usable(token)
        } else {
            Found::Nothing { locked }
        }
    }

    /// The 401 rule: the shared token goes only if the tier still holds
    /// the very token this process saw refused.
    async fn remove(&self, hash: Option<TokenHash>) {
        let Some(hash) = hash else { return };
        if let Ok(true) = self.call(self.tier.remove(&self.key, &hash)).await {
            tracing::debug!("the refused token was removed from the shared tier");
        }
    }

    /// Holds the lease: fetches, publishes, releases.
    /// Looks once more first: the previous holder may have published and
    /// released between this process's read and its lease.
    async fn lead<F>(
        &self,
        replacing: Option<TokenHash>,
        owner: &str,
        own: F,
    ) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        if let Ok(Found::Usable(token)) = self.find(replacing).await {
            let _ = self.call(self.tier.release_lease(&self.key, owner)).await;
            return Ok(self.hand(token, true));
        }
        self.tier.note(TierEvent::Leased);
        let result = while_renewing(own, self.renew_lease(owner)).await;
        if let Ok(token) = &result {
            // A token the cache will refuse is not shared either.
            if let Some(remaining) = (self.check)(token) {
                let ttl = value_ttl(remaining);
                let _ = self
                    .call(self.tier.publish(&self.key, owner, token, ttl))
                    .await;
            }
        }
        let _ = self.call(self.tier.release_lease(&self.key, owner)).await;
        result.map(|token| self.hand(token, false))
    }

    /// Polls until the lease holder's token is there, the lease is gone
    /// without one, or the deadline passes or the tier fails.
    async fn wait(&self, replacing: Option<TokenHash>, deadline: Instant) -> Waited {
        loop {
            if Instant::now() >= deadline {
                tracing::warn!("waited too long for the fleet's token fetch; fetching here");
                return Waited::GaveUp;
            }
            tokio::time::sleep(self.tier.poll_interval()).await;
            match self.find(replacing).await {
                Ok(Found::Usable(token)) => return Waited::Token(token),
                Ok(Found::Replacing(_) | Found::Nothing { locked: true }) => {}
                Ok(Found::Nothing { locked: false }) => return Waited::LockFree,
                Err(NoAnswer) => return Waited::GaveUp,
            }
        }
    }

    /// Keeps the lease while the fetch runs: renews it every third of the
    /// lease, for `hold_limit` at most (past it, the lease runs out within
    /// a lease, as a dead holder's). Never ends by itself; it stops when
    /// the lease is no longer this owner's.
    async fn renew_lease(&self, owner: &str) -> Infallible {
        let until = after(self.hold_limit);
        let every = (self.lease / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            if Instant::now() >= until {
                break;
            }
            match self
                .call(self.tier.renew_lease(&self.key, owner, self.lease))
                .await
            {
                Ok(true) | Err(_) => {}
                Ok(false) => {
                    tracing::debug!("the lease was lost during the fetch");
                    break;
                }
            }
        }
        std::future::pending().await
    }

    /// Releases `owner`'s lease after a lease call that got no answer: it
    /// may land later, and the fleet would wait out the whole lease for
    /// nobody's fetch. Best-effort, spawned, retried with growing pauses
    /// until it is released or a lease has passed (it is gone by then
    /// anyway).
    fn release_later(&self, owner: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tier, key, lease) = (self.tier.clone(), self.key, self.lease);
        let deadline = self.call_deadline();
        let mut pause = self.tier.poll_interval().max(Duration::from_millis(10));
        runtime.spawn(async move {
            let until = after(lease);
            // Until `true`: a `false` may come before the late lease lands
            // (on another connection, after a reconnect).
            while !matches!(
                within(deadline, tier.release_lease(&key, &owner)).await,
                Ok(true)
            ) {
                if Instant::now() + pause >= until {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RELEASE_PAUSE_MAX);
            }
            tracing::debug!("released a lease taken by a lease call that timed out");
        });
    }

    /// After a token is revoked (`TokenCache::revoke`): the tier no longer
    /// holds it, so no process takes it up again; a process that still
    /// sends it gets a 401, finds it gone, and gets the fleet's next token.
    /// Best-effort, within the tier's deadline.
    pub(in crate::cache) async fn revoked(&self, token: &Token) {
        if let Ok(true) = self
            .call(self.tier.remove(&self.key, &TokenHash::of(token)))
            .await
        {
            tracing::debug!("the revoked token was removed from the shared tier");
        }
    }

    /// This process's own fetch, the tier being no help.
    async fn alone<F>(&self, own: F) -> Result<Token, Error>
    where
        F: Future<Output = Result<Token, Error>>,
    {
        self.tier.note(TierEvent::Fallback);
        own.await.map(|token| self.hand(token, false))
    }

    /// A resource server refused `token` (a 401 invalidated it): it leaves
    /// the tier now by compare-and-delete, so that no cache built later
    /// takes it up before this one's next fetch would have removed it.
    pub(in crate::cache) async fn refused(&self, token: &Token) {
        let hash = TokenHash::of(token);
        let Ok((_, step)) = self.first_read(Some(hash)).await else {
            return;
        };
        // A running step for this very token keeps it on purpose: new
        // tokens are refused too (invariant 12).
        if !step.is_some_and(|s| runs_for(&s, Some(hash))) {
            self.remove(Some(hash)).await;
        }
    }

    /// Notes `token` as the one the next fetch replaces, with no token
    /// handed yet: a cache built again whose store says a resource server
    /// refused it (`TokenStore::refuse`).
    pub(in crate::cache) fn replacing(&self, token: &Token) {
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = Some(TokenHash::of(token));
    }

    /// Records that this process started backoff step `step` because
    /// `refused` was refused. Best-effort.
    pub(in crate::cache) async fn share_step(&self, refused: &Token, step: StepStarted) {
        let refused = TokenHash::of(refused);
        let _ = self
            .call(self.tier.start_step(&self.key, &refused, step))
            .await;
    }

    /// Ends the fleet's backoff if it is for `accepted` (a resource server
    /// answered this process other than 401 for it). Best-effort.
    pub(in crate::cache) async fn end_steps(&self, accepted: &Token) {
        let accepted = TokenHash::of(accepted);
        let _ = self.call(self.tier.end_step(&self.key, &accepted)).await;
    }

    /// The longest this cache lets one tier call run: the tier's own
    /// deadline twice over. A tier keeps its deadline (the contract); this
    /// one holds if it does not, so a fetch never hangs on the tier
    /// (ARCHITECTURE.md, invariant 10).
    fn call_deadline(&self) -> Duration {
        self.tier
            .call_timeout()
            .saturating_mul(2)
            .saturating_add(CALL_SLACK)
    }

    /// `call` within [`Self::call_deadline`].
    async fn call<T>(
        &self,
        call: TierFuture<'_, Result<T, Unavailable>>,
    ) -> Result<T, Unavailable> {
        within(self.call_deadline(), call).await
    }

    /// Notes `token` as the one this process now uses (the next fetch
    /// replaces it).
    fn hand(&self, token: Token, shared: bool) -> Token {
        if shared {
            self.tier.note(TierEvent::SharedHit);
        }
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = Some(TokenHash::of(&token));
        token
    }
}

/// The end of the last running step a process read from the tier: the
/// token it is for, its number, and when it ends by this process's clock.
type SeenStep = (TokenHash, u32, Instant);

/// `step` as read at `now`, held to [`MAX_STEP`] and to the end this
/// process first saw for that step (`seen`, updated): a record whose
/// remaining time does not fall (rewritten, or forged with an hour to
/// live) cannot hold a process back again each time it looks, only once.
/// A step with another token or number is a new step.
fn bounded(seen: &mut Option<SeenStep>, mut step: TierStep, now: Instant) -> TierStep {
    let Some(left) = step.remaining.map(|left| left.min(MAX_STEP)) else {
        return step;
    };
    step.remaining = Some(left);
    match *seen {
        Some((hash, number, end)) if hash == step.refused && number == step.number => {
            step.remaining = end
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
                .map(|d| d.min(left));
        }
        _ => *seen = Some((step.refused, step.number, now + left)),
    }
    step
}

/// What a process learns from `step` when it takes the token `taken`:
/// always the step number; the step itself (its remaining time) if it
/// runs and it is for `taken`. A step for another token is never joined:
/// a record naming a token nobody sent must not hold back a refetch.
fn learned(step: &TierStep, taken: &TokenHash) -> FleetStep {
    FleetStep {
        number: step.number,
        remaining: step.remaining.filter(|_| step.refused == *taken),
    }
}

/// Whether `step` runs for the token `refused`.
fn runs_for(step: &TierStep, refused: Option<TokenHash>) -> bool {
    step.remaining.is_some() && Some(step.refused) == refused
}

/// The number alone, for a token this process fetched or took from
/// another's fetch: nobody has refused it yet.
fn number(step: &TierStep) -> FleetStep {
    FleetStep {
        number: step.number,
        remaining: None,
    }
}

/// The tier's TTL of a token the cache may send for `remaining` more
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

/// `call`'s answer, or [`Unavailable`] once `deadline` has passed.
async fn within<T>(
    deadline: Duration,
    call: TierFuture<'_, Result<T, Unavailable>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(deadline, call).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(
                ?deadline,
                "the shared tier did not answer in time; fetching here"
            );
            Err(Unavailable)
        }
    }
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
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::token::TokenType;

    fn token(s: &str) -> Token {
        Token::new(s, TokenType::Bearer)
    }

    fn hash(byte: u8) -> TokenHash {
        let hex: String = std::iter::repeat_n(format!("{byte:02x}"), 32).collect();
        TokenHash::from_hex(&hex).unwrap()
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
    fn a_token_stays_in_the_tier_a_second_past_its_expiry_and_a_day_at_most() {
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

    fn step(refused: TokenHash, number: u32, left: Option<u64>) -> TierStep {
        TierStep {
            refused,
            number,
            remaining: left.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_step_ends_when_it_first_seemed_to_whatever_the_record_says_later() {
        let (s, t0) = (Duration::from_secs, Instant::now());
        let mut seen = None;
        // A forged record keeps saying an hour: held to 5 min, once.
        assert_eq!(
            bounded(&mut seen, step(hash(1), 1, Some(3600)), t0).remaining,
            Some(s(300))
        );
        let later = bounded(&mut seen, step(hash(1), 1, Some(3600)), t0 + s(100));
        assert_eq!(later.remaining, Some(s(200)));
        for after in [300, 301, 3000] {
            let over = bounded(&mut seen, step(hash(1), 1, Some(300)), t0 + s(after));
            assert_eq!(over.remaining, None, "{after}");
        }
        // A record that says less than it first did is taken at its word.
        let mut seen = None;
        bounded(&mut seen, step(hash(1), 1, Some(60)), t0);
        assert_eq!(
            bounded(&mut seen, step(hash(1), 1, Some(10)), t0 + s(1)).remaining,
            Some(s(10))
        );
        // The next step, or a step for another token, is a step of its own.
        for (h, n) in [(hash(1), 2), (hash(2), 1)] {
            let next = bounded(&mut seen, step(h, n, Some(120)), t0 + s(100));
            assert_eq!(next.remaining, Some(s(120)));
        }
        // A record whose step is over changes nothing.
        let before = seen;
        assert_eq!(
            bounded(&mut seen, step(hash(3), 9, None), t0).remaining,
            None
        );
        assert_eq!(seen, before);
    }

    #[test]
    fn a_process_joins_a_running_step_only_for_the_token_it_is_for() {
        let (refused, newer) = (hash(1), hash(2));
        let running = step(refused, 2, Some(4));
        let left = Some(Duration::from_secs(4));
        let joined = FleetStep {
            number: 2,
            remaining: left,
        };
        let numbered = FleetStep {
            number: 2,
            remaining: None,
        };
        // The token the step is for: joined, however it was taken.
        assert_eq!(learned(&running, &refused), joined);
        assert!(runs_for(&running, Some(refused)));
        // Another token: its number only, and a refetch after a 401 for
        // that other token is not held back.
        assert_eq!(learned(&running, &newer), numbered);
        assert!(!runs_for(&running, Some(newer)));
        assert!(!runs_for(&running, None));
        assert_eq!(number(&running), numbered);
        // A step that is over: its number only.
        let over = step(refused, 2, None);
        assert_eq!(learned(&over, &refused), numbered);
        assert!(!runs_for(&over, Some(refused)));
    }
}
