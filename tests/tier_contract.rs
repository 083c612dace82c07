//! The shared tier's contract (`tower_oauth2::tier`), run the same way
//! against two implementations: an in-process one written here with the
//! public trait only (`MemoryTier`), and Redis (`fleet::RedisTier`,
//! feature `redis`, against a real `redis-server`). The scenarios go
//! through caches (and the layer for the 401 step), and through the trait
//! itself for what a cache cannot show (lease ownership, compare-and-delete).

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::client::{get, http_client};
use support::token_server::TestServer;
use tower::{Layer, ServiceExt};
use tower_oauth2::cache::{Backoff, TokenCacheBuilder};
use tower_oauth2::store::ConfigFingerprint;
use tower_oauth2::tier::{
    Lease, SharedTier, StepStarted, TierEvent, TierFuture, TierRead, TierStep, TokenHash,
    Unavailable,
};
use tower_oauth2::token::TokenType;
use tower_oauth2::{OAuth2Layer, Token, TokenCache};

/// A shared tier in this process's memory: every rule of the contract,
/// with expiry on the monotonic clock. Clones share the state.
#[derive(Clone, Default)]
struct MemoryTier {
    keys: Arc<Mutex<HashMap<ConfigFingerprint, Slot>>>,
    shared_hits: Arc<AtomicU64>,
}

#[derive(Default)]
struct Slot {
    token: Option<(Token, Instant)>,
    lease: Option<(String, Instant)>,
    /// The record of 401s: the refused token, the step number, how long
    /// the number is kept after the step, and when the record goes.
    step: Option<(TokenHash, u32, Duration, Instant)>,
}

impl Slot {
    /// Drops what has run out at `now`.
    fn expire(&mut self, now: Instant) {
        if self.token.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.token = None;
        }
        if self.lease.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.lease = None;
        }
        if self.step.as_ref().is_some_and(|(.., until)| *until <= now) {
            self.step = None;
        }
    }

    fn holds(&self, owner: &str) -> bool {
        self.lease.as_ref().is_some_and(|(o, _)| o == owner)
    }

    /// The step as read at `now`: running while more than `keep` is left.
    fn step_at(&self, now: Instant) -> Option<TierStep> {
        let (refused, number, keep, until) = self.step?;
        let left = until.saturating_duration_since(now);
        Some(TierStep {
            refused,
            number,
            remaining: left.checked_sub(keep).filter(|d| !d.is_zero()),
        })
    }
}

impl MemoryTier {
    /// Runs `f` on `key`'s slot, what has run out dropped first.
    fn with<T>(&self, key: &ConfigFingerprint, f: impl FnOnce(&mut Slot, Instant) -> T) -> T {
        let mut keys = self.keys.lock().unwrap();
        let slot = keys.entry(*key).or_default();
        let now = Instant::now();
        slot.expire(now);
        f(slot, now)
    }

    fn ready<'a, T: Send + 'a>(value: T) -> TierFuture<'a, Result<T, Unavailable>> {
        Box::pin(std::future::ready(Ok(value)))
    }
}

impl SharedTier for MemoryTier {
    fn lease_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn read<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        with_step: bool,
    ) -> TierFuture<'a, Result<TierRead, Unavailable>> {
        Self::ready(self.with(key, |slot, now| TierRead {
            token: slot.token.as_ref().map(|(t, _)| t.clone()),
            locked: slot.lease.is_some(),
            step: if with_step { slot.step_at(now) } else { None },
        }))
    }

    fn take_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<Lease, Unavailable>> {
        Self::ready(self.with(key, |slot, now| {
            if slot.lease.is_some() {
                return Lease::HeldByAnother;
            }
            slot.lease = Some((owner.to_owned(), now + ttl));
            Lease::Taken
        }))
    }

    fn renew_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, now| {
            let held = slot.holds(owner);
            if held {
                slot.lease = Some((owner.to_owned(), now + ttl));
            }
            held
        }))
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, _| {
            let held = slot.holds(owner);
            if held {
                slot.lease = None;
            }
            held
        }))
    }

    fn publish<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        owner: &'a str,
        token: &'a Token,
        ttl: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, now| {
            let held = slot.holds(owner);
            if held {
                slot.token = Some((token.clone(), now + ttl));
            }
            held
        }))
    }

    fn remove<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        token: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, _| {
            let same = (slot.token.as_ref()).is_some_and(|(t, _)| TokenHash::of(t) == *token);
            if same {
                slot.token = None;
            }
            same
        }))
    }

    fn start_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        refused: &'a TokenHash,
        step: StepStarted,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, now| {
            let further = slot
                .step_at(now)
                .is_some_and(|s| s.remaining.is_some() && s.number >= step.number);
            if !further {
                let until = now + step.delay + step.keep();
                slot.step = Some((*refused, step.number, step.keep(), until));
            }
            !further
        }))
    }

    fn end_step<'a>(
        &'a self,
        key: &'a ConfigFingerprint,
        accepted: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        Self::ready(self.with(key, |slot, _| {
            let same = slot.step.is_some_and(|(hash, ..)| hash == *accepted);
            if same {
                slot.step = None;
            }
            same
        }))
    }

    fn note(&self, event: TierEvent) {
        if event == TierEvent::SharedHit {
            self.shared_hits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A tier to run the contract against, and its name for the messages.
/// Clones share the state (Redis: the server; memory: the map).
trait Contract: SharedTier + Clone {
    fn name(&self) -> &'static str;
}

impl Contract for MemoryTier {
    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(feature = "redis")]
use crate::redis_server;

#[cfg(feature = "redis")]
mod redis {
    //! The Redis tier, against a `redis-server` of its own per test.

    use std::time::Duration;

    use tower_oauth2::fleet::RedisTier;

    pub(super) use super::redis_server;

    impl super::Contract for RedisTier {
        fn name(&self) -> &'static str {
            "redis"
        }
    }

    /// A Redis tier on `redis`, with the memory tier's settings (and 2 s
    /// for each call: a loaded machine must not turn a slow answer into a
    /// fallback).
    pub(super) fn tier(redis: &redis_server::RedisServer) -> RedisTier {
        RedisTier::standalone(&redis.url())
            .expect("a Redis URL")
            .namespace("contract")
            .expect("a namespace")
            .lease(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(10))
    }
}

/// Runs `scenario` against the in-process tier, then against Redis
/// (when built with feature `redis` and a `redis-server` is installed).
macro_rules! against_both {
    ($scenario:ident) => {{
        $scenario(MemoryTier::default()).await;
        #[cfg(feature = "redis")]
        if redis::redis_server::available() {
            let server = redis::redis_server::RedisServer::start();
            $scenario(redis::tier(&server)).await;
        }
    }};
}

fn builder(server: &TestServer, tier: &impl Contract) -> TokenCacheBuilder {
    server.client_credentials().shared_tier(tier.clone())
}

fn cache(server: &TestServer, tier: &impl Contract) -> TokenCache {
    builder(server, tier).build()
}

async fn header(cache: &TokenCache) -> (String, u64) {
    let (h, generation) = cache
        .bearer_header_with_generation()
        .await
        .expect("a token");
    (h.to_str().expect("ASCII").to_owned(), generation)
}

/// Waits (10 s at most) until `done` says yes about what the tier holds
/// for `key` (a cache writes some things in a task of its own).
async fn until_tier(
    tier: &impl Contract,
    key: &ConfigFingerprint,
    what: &str,
    done: impl Fn(&TierRead) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = tier.read(key, true).await.expect("the tier answers");
        if done(&read) {
            return;
        }
        assert!(Instant::now() < deadline, "{}: {what}", tier.name());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn token(access: &str) -> Token {
    Token::new(access, TokenType::Bearer)
}

fn access(read: &TierRead) -> Option<String> {
    let token = read.token.as_ref()?;
    Some(token.access_token().expose_secret().to_owned())
}

#[tokio::test]
async fn two_caches_sharing_a_tier_send_one_token_request() {
    async fn scenario(tier: impl Contract) {
        let server = TestServer::start().await;
        let (a, b) = (cache(&server, &tier), cache(&server, &tier));
        assert_eq!(header(&a).await.0, "Bearer at-1", "{}", tier.name());
        assert_eq!(header(&b).await.0, "Bearer at-1", "{}", tier.name());
        assert_eq!(server.token_requests(), 1, "{}", tier.name());
    }
    against_both!(scenario);
}

#[tokio::test]
async fn a_refused_token_leaves_the_tier_and_is_not_adopted_again() {
    async fn scenario(tier: impl Contract) {
        let server = TestServer::start().await;
        let key = *builder(&server, &tier).fingerprint();
        let a = cache(&server, &tier);
        let (first, generation) = header(&a).await;
        assert_eq!(first, "Bearer at-1");
        // A resource server refused at-1: it leaves the tier (in a task of
        // the cache's own), so a cache built later never takes it up.
        a.invalidate(generation);
        until_tier(&tier, &key, "at-1 removed", |r| r.token.is_none()).await;
        let c = cache(&server, &tier);
        assert_eq!(header(&c).await.0, "Bearer at-2", "{}", tier.name());
        // The refusing cache takes the fleet's new token: no request.
        assert_eq!(header(&a).await.0, "Bearer at-2", "{}", tier.name());
        assert_eq!(server.token_requests(), 2, "{}", tier.name());
    }
    against_both!(scenario);
}

#[tokio::test]
async fn a_lease_holders_fetch_is_joined() {
    async fn scenario(tier: impl Contract) {
        let server = TestServer::start().await;
        // Long enough that the second cache finds the lease held.
        server.set_latency(Duration::from_millis(300));
        let (a, b) = (cache(&server, &tier), cache(&server, &tier));
        let (x, y) = tokio::join!(header(&a), header(&b));
        assert_eq!((x.0.as_str(), y.0.as_str()), ("Bearer at-1", "Bearer at-1"));
        assert_eq!(server.token_requests(), 1, "{}", tier.name());
    }
    against_both!(scenario);
}

#[tokio::test]
async fn a_lease_whose_holder_died_is_taken_over_after_its_ttl() {
    async fn scenario(tier: impl Contract) {
        let server = TestServer::start().await;
        let key = *builder(&server, &tier).fingerprint();
        // A holder that took the lease and died: nobody renews it.
        let ttl = Duration::from_millis(300);
        let taken = tier.take_lease(&key, "dead-holder", ttl).await;
        assert_eq!(taken, Ok(Lease::Taken), "{}", tier.name());
        let a = cache(&server, &tier);
        assert_eq!(header(&a).await.0, "Bearer at-1", "{}", tier.name());
        assert_eq!(server.token_requests(), 1, "{}", tier.name());
        // The token is the fleet's; the dead holder, were it to come back,
        // publishes nothing over it.
        let late = tier.publish(&key, "dead-holder", &token("late"), ttl).await;
        assert_eq!(late, Ok(false), "{}", tier.name());
        let read = tier.read(&key, false).await.expect("the tier answers");
        assert_eq!(access(&read).as_deref(), Some("at-1"), "{}", tier.name());
    }
    against_both!(scenario);
}

#[tokio::test]
async fn publish_then_read_round_trips_under_the_lease_only() {
    async fn scenario(tier: impl Contract) {
        let name = tier.name();
        let server = TestServer::start().await;
        let key = *builder(&server, &tier).fingerprint();
        let other = ConfigFingerprint::from_hex(&"ab".repeat(32)).expect("64 hex digits");
        let ttl = Duration::from_secs(60);
        let t = token("at-shared");
        assert_eq!(tier.publish(&key, "me", &t, ttl).await, Ok(false), "{name}");
        assert_eq!(tier.take_lease(&key, "me", ttl).await, Ok(Lease::Taken));
        assert_eq!(
            tier.take_lease(&key, "you", ttl).await,
            Ok(Lease::HeldByAnother),
            "{name}"
        );
        assert_eq!(tier.renew_lease(&key, "you", ttl).await, Ok(false));
        assert_eq!(tier.renew_lease(&key, "me", ttl).await, Ok(true));
        assert_eq!(tier.publish(&key, "me", &t, ttl).await, Ok(true), "{name}");
        let read = tier.read(&key, true).await.expect("the tier answers");
        assert_eq!(access(&read).as_deref(), Some("at-shared"), "{name}");
        assert!(read.locked && read.step.is_none(), "{name}");
        // Another key holds nothing of it.
        let elsewhere = tier.read(&other, true).await.expect("the tier answers");
        assert!(elsewhere.token.is_none() && !elsewhere.locked, "{name}");
        assert_eq!(tier.release_lease(&key, "you").await, Ok(false));
        assert_eq!(tier.release_lease(&key, "me").await, Ok(true));
        assert_eq!(tier.release_lease(&key, "me").await, Ok(false));
        // Compare-and-delete: another token's hash deletes nothing.
        let newer = TokenHash::of(&token("at-newer"));
        assert_eq!(tier.remove(&key, &newer).await, Ok(false), "{name}");
        assert_eq!(tier.remove(&key, &TokenHash::of(&t)).await, Ok(true));
        let read = tier.read(&key, false).await.expect("the tier answers");
        assert!(read.token.is_none() && !read.locked, "{name}");
    }
    against_both!(scenario);
}

#[tokio::test]
async fn a_step_is_written_once_read_back_and_ended_by_its_token_only() {
    async fn scenario(tier: impl Contract) {
        let name = tier.name();
        let server = TestServer::start().await;
        let key = *builder(&server, &tier).fingerprint();
        let refused = TokenHash::of(&token("at-2"));
        let step = |number| StepStarted {
            number,
            delay: Duration::from_secs(30),
        };
        assert_eq!(tier.start_step(&key, &refused, step(2)).await, Ok(true));
        // A step at least as far along runs: left alone.
        for number in [1, 2] {
            let again = tier.start_step(&key, &refused, step(number)).await;
            assert_eq!(again, Ok(false), "{name}: step {number}");
        }
        let read = tier.read(&key, true).await.expect("the tier answers");
        let found = read.step.expect("the record");
        assert_eq!((found.refused, found.number), (refused, 2), "{name}");
        let left = found.remaining.expect("the step runs");
        assert!(left <= Duration::from_secs(30) && left > Duration::ZERO);
        // Only when asked for.
        let polled = tier.read(&key, false).await.expect("the tier answers");
        assert!(polled.step.is_none(), "{name}");
        let other = TokenHash::of(&token("at-3"));
        assert_eq!(tier.end_step(&key, &other).await, Ok(false), "{name}");
        assert_eq!(tier.end_step(&key, &refused).await, Ok(true), "{name}");
        let read = tier.read(&key, true).await.expect("the tier answers");
        assert!(read.step.is_none(), "{name}");
    }
    against_both!(scenario);
}

/// A resource that refuses every token, seen by two caches sharing a tier:
/// the first backs off once a token fetched after a 401 is refused too,
/// and writes its step to the tier; the second, built later, takes that
/// very token from the tier, joins the step, and its 401s pass through:
/// two token requests for both, as for one.
#[tokio::test]
async fn the_401_step_is_the_fleets() {
    async fn scenario(tier: impl Contract) {
        let name = tier.name();
        let server = TestServer::start().await;
        server.set_reject_all(true);
        let key = *builder(&server, &tier).fingerprint();
        let hour = Duration::from_secs(3600);
        let send = |cache: TokenCache| {
            let svc = OAuth2Layer::new(cache)
                .unauthorized_backoff(Backoff::new(hour, hour))
                .layer(http_client());
            let url = server.url("/api");
            async move { svc.oneshot(get(&url)).await.expect("an answer").status() }
        };
        let a = cache(&server, &tier);
        // at-1 refused, at-2 fetched and refused too: the step starts.
        assert_eq!(send(a.clone()).await, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(send(a.clone()).await, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(server.token_requests(), 2, "{name}");
        let at_2 = TokenHash::of(&token("at-2"));
        until_tier(&tier, &key, "the step written", |r| {
            r.step
                .is_some_and(|s| s.refused == at_2 && s.remaining.is_some())
        })
        .await;
        let b = cache(&server, &tier);
        for _ in 0..3 {
            assert_eq!(send(b.clone()).await, StatusCode::UNAUTHORIZED, "{name}");
        }
        assert_eq!(server.token_requests(), 2, "{name}: the step is shared");
        assert_eq!(b.stats().token_fetches, 0, "{name}");
    }
    against_both!(scenario);
}

/// A cache that holds the token the fleet's step runs for, and gets a 401
/// for it: its refetch neither deletes that token from the tier nor
/// fetches one; it takes the very token back and joins the step, so its
/// resend's 401 passes through.
#[tokio::test]
async fn a_refetch_after_a_401_during_the_fleets_step_takes_the_refused_token_back() {
    async fn scenario(tier: impl Contract) {
        let name = tier.name();
        let server = TestServer::start().await;
        server.set_reject_all(true);
        let key = *builder(&server, &tier).fingerprint();
        let a = cache(&server, &tier);
        assert_eq!(header(&a).await.0, "Bearer at-1", "{name}");
        // Another process started the fleet's step for at-1, for an hour.
        let hour = Duration::from_secs(3600);
        let at_1 = TokenHash::of(&token("at-1"));
        let step = StepStarted {
            number: 1,
            delay: hour,
        };
        assert_eq!(tier.start_step(&key, &at_1, step).await, Ok(true));
        let svc = OAuth2Layer::new(a.clone())
            .unauthorized_backoff(Backoff::new(hour, hour))
            .layer(http_client());
        let status = svc
            .oneshot(get(&server.url("/api")))
            .await
            .expect("an answer");
        assert_eq!(status.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(server.token_requests(), 1, "{name}: at-1 taken back");
        let read = tier.read(&key, true).await.expect("the tier answers");
        assert_eq!(
            access(&read).as_deref(),
            Some("at-1"),
            "{name}: not deleted"
        );
        assert_eq!(header(&a).await.0, "Bearer at-1", "{name}");
    }
    against_both!(scenario);
}

#[tokio::test]
async fn the_in_process_tier_is_told_of_tokens_taken_from_it() {
    let server = TestServer::start().await;
    let tier = MemoryTier::default();
    let (a, b) = (cache(&server, &tier), cache(&server, &tier));
    header(&a).await;
    header(&b).await;
    assert_eq!(tier.shared_hits.load(Ordering::Relaxed), 1);
}

/// A tier that fails every call (`Unavailable`), or never answers (a tier
/// that breaks its deadline): the cache fetches its own tokens, and no
/// request fails or hangs.
#[derive(Clone, Copy)]
struct BrokenTier {
    hangs: bool,
}

impl BrokenTier {
    fn answer<'a, T: Send + 'a>(&self) -> TierFuture<'a, Result<T, Unavailable>> {
        if self.hangs {
            Box::pin(std::future::pending())
        } else {
            Box::pin(std::future::ready(Err(Unavailable)))
        }
    }
}

impl SharedTier for BrokenTier {
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(20)
    }

    fn read<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: bool,
    ) -> TierFuture<'a, Result<TierRead, Unavailable>> {
        self.answer()
    }

    fn take_lease<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a str,
        _: Duration,
    ) -> TierFuture<'a, Result<Lease, Unavailable>> {
        self.answer()
    }

    fn renew_lease<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a str,
        _: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }

    fn release_lease<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a str,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }

    fn publish<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a str,
        _: &'a Token,
        _: Duration,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }

    fn remove<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }

    fn start_step<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a TokenHash,
        _: StepStarted,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }

    fn end_step<'a>(
        &'a self,
        _: &'a ConfigFingerprint,
        _: &'a TokenHash,
    ) -> TierFuture<'a, Result<bool, Unavailable>> {
        self.answer()
    }
}

#[tokio::test]
async fn a_tier_that_fails_or_never_answers_leaves_the_cache_fetching_its_own_tokens() {
    for hangs in [false, true] {
        let server = TestServer::start().await;
        let cache = server
            .client_credentials()
            .shared_tier(BrokenTier { hangs })
            .build();
        let (first, generation) = header(&cache).await;
        assert_eq!(first, "Bearer at-1", "hangs: {hangs}");
        cache.invalidate(generation);
        assert_eq!(header(&cache).await.0, "Bearer at-2", "hangs: {hangs}");
        assert_eq!(server.token_requests(), 2, "hangs: {hangs}");
        assert_eq!(cache.stats().fetch_failures, 0, "hangs: {hangs}");
    }
}
