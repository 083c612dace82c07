//! Single flight: at most one fetch runs per cache, as its own Tokio task,
//! and every caller that needs a token joins it. [`FlightState`] is the one
//! record of whether a fetch is running, and of the backoff after a failed
//! one.
//!
//! The cache's lock is never held while spawning the task nor while waking
//! its waiters: Tokio drops a task's future inside `spawn` when the runtime
//! is shutting down, and that drop ends the flight, which takes the lock.
//!
//! A caller waits for a flight at most the cache's wait timeout
//! (ARCHITECTURE.md, invariant 10), then gets
//! [`ErrorKind::WaitTimeout`](crate::ErrorKind::WaitTimeout) and leaves; the
//! flight goes on for the others. The fetch bounds its own steps (the
//! endpoint's timeout for each exchange); the wait timeout is what bounds a
//! caller when something it cannot see holds the fetch up: a store or
//! callback that hangs, or a runtime that no longer runs the fetch task.
//! The caller's timer runs on its own runtime, not the fetch's, which may
//! be the stuck one.
//!
//! A flight that makes no progress does not hold the cache (ARCHITECTURE.md,
//! invariants 2 and 10): a caller on a live runtime takes it over, and
//! starts the fetch again on its own runtime, when the flight
//!
//! - has not started (its task was never polled) and was spawned on a
//!   current-thread runtime other than the caller's: such a runtime runs
//!   its tasks only inside `block_on`, and a sync helper's `block_on` that
//!   got a stale token has returned before the refresh it started ran; or
//! - has run longer than a fetch can take on a runtime that runs it
//!   (`fetch_limit`: the default wait timeout, the token exchanges and the
//!   store's steps with their own timeouts, plus a margin).
//!
//! Taking over keeps one flight per cache: the flight gets a new id and
//! the old one's waiters wait for the new one. A taken-over task that runs
//! later checks its id at its first poll, under the lock, and sends no
//! token request; one that had started is left to end, and its result is
//! neither cached nor answered (it could overwrite a newer token).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard, TryLockError};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;
use tracing::Instrument;

use super::cached::Cached;
use super::fetch::BoxFuture;
use super::policy::unit_random;
use super::stats::bump;
use super::TokenCache;
use crate::clock::Instant;
use crate::error::Error;

// For `TokenCache::revoke`: the flight slot, held while tokens are revoked.
mod paused;

/// A flight's answer, `None` until it ends.
type Outcome = Option<Result<Arc<Cached>, Error>>;

/// Time a caller waits by default beyond the token exchanges, the store's
/// save and the refresh-token callback: scheduling slack.
const WAIT_MARGIN: Duration = Duration::from_secs(20);

/// The default wait timeout: a fetch may send two token requests (a
/// refresh token refused with `invalid_grant`, then the configured grant),
/// each within `exchange_timeout`, then save to the store and call the
/// refresh-token callback, each within `store_timeout`; plus
/// [`WAIT_MARGIN`]. 90 s with the defaults (30 s, 5 s).
pub(super) fn default_wait_timeout(
    exchange_timeout: Duration,
    store_timeout: Duration,
) -> Duration {
    exchange_timeout
        .saturating_mul(2)
        .saturating_add(store_timeout.saturating_mul(2))
        .saturating_add(WAIT_MARGIN)
}

/// The fetch in progress (or the slot `revoke` holds), as the cache's lock
/// records it.
struct Flight {
    /// Which flight this is: one taken over is replaced by one with a new
    /// id, and what its task does afterwards is ignored.
    id: u64,
    /// Where the flight answers its waiters; passed on when it is taken
    /// over, so they wait for the flight that took over.
    tx: watch::Sender<Outcome>,
    /// The runtime the task runs on: the clock of a caller that has none.
    runtime: Handle,
    /// When it began.
    since: Instant,
    /// Whether its task has been polled (so a token request may be out).
    started: bool,
    /// Whether a caller gave up on it already (logged at WARN once).
    given_up: Arc<AtomicBool>,
}

impl Flight {
    /// What a waiter holds.
    fn wait(&self) -> Wait {
        Wait {
            rx: self.tx.subscribe(),
            runtime: self.runtime.clone(),
            given_up: self.given_up.clone(),
        }
    }

    /// Whether a caller on `caller`'s runtime takes this flight over at
    /// `now` (see the module docs).
    fn stalled(&self, caller: &Handle, now: Instant, fetch_limit: Duration) -> bool {
        stalled(
            self.started,
            self.runtime.runtime_flavor() == RuntimeFlavor::CurrentThread
                && self.runtime.id() != caller.id(),
            now.saturating_duration_since(self.since),
            fetch_limit,
        )
    }
}

/// The takeover rule: a flight that never started on a current-thread
/// runtime the caller is not on (nothing runs it until that runtime is
/// driven again), or one older than a fetch can be.
fn stalled(started: bool, on_another_current_thread: bool, age: Duration, limit: Duration) -> bool {
    (!started && on_another_current_thread) || age >= limit
}

/// A fetch in progress, as its waiters see it.
struct Wait {
    rx: watch::Receiver<Outcome>,
    runtime: Handle,
    given_up: Arc<AtomicBool>,
}

/// Guarded by the cache's lock.
pub(super) struct FlightState {
    /// The fetch in progress, if any: the only record that one is running.
    flight: Option<Flight>,
    /// The id of the last flight that began.
    last_id: u64,
    /// Failed fetches in a row.
    failures: u32,
    /// Until when callers with no valid token fail at once with `last_error`.
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    /// The last failed fetch, kept after a success (`TokenCache::status`).
    last_failure: Option<super::status::LastError>,
    /// How long a caller waits for a flight (configuration, read here by
    /// every caller that joins one).
    wait_timeout: Duration,
    /// How long a flight may run before a caller takes it over: the
    /// default wait timeout (what a fetch takes at worst on a runtime that
    /// runs it, plus a margin), whatever `wait_timeout` is set to, so a
    /// short wait never starts a second fetch beside a slow one.
    fetch_limit: Duration,
}

impl FlightState {
    pub(super) fn new(wait_timeout: Duration, fetch_limit: Duration) -> Self {
        FlightState {
            flight: None,
            last_id: 0,
            failures: 0,
            retry_at: None,
            last_error: None,
            last_failure: None,
            wait_timeout,
            fetch_limit,
        }
    }

    /// For `TokenCache::status`: whether a fetch runs, failures in a row,
    /// the end of the backoff while it runs, and the last failure.
    pub(super) fn status(&self, now: Instant) -> super::status::FlightStatus {
        super::status::FlightStatus {
            fetching: self.flight.is_some(),
            failures: self.failures,
            retry_at: self.backing_off(now).and(self.retry_at),
            last_failure: self.last_failure.clone(),
        }
    }

    /// The last failure, while its backoff has not passed.
    fn backing_off(&self, now: Instant) -> Option<&Error> {
        match (self.retry_at, &self.last_error) {
            (Some(at), Some(last)) if now < at => Some(last),
            _ => None,
        }
    }

    /// The flight in progress, unless a caller on `caller`'s runtime is
    /// to take it over ([`FlightState::begin`]).
    fn running(&self, caller: Option<&Handle>, now: Instant) -> Option<&Flight> {
        let flight = self.flight.as_ref()?;
        match caller {
            Some(caller) if flight.stalled(caller, now, self.fetch_limit) => None,
            _ => Some(flight),
        }
    }

    /// Records that a fetch is now running on `runtime` (`started`: with no
    /// task to start, the slot `revoke` holds), taking over the flight in
    /// progress if there is one: its waiters wait for this one. Returns
    /// its id, and what a waiter holds.
    fn begin(&mut self, runtime: Handle, started: bool) -> (u64, Wait) {
        self.last_id = self.last_id.wrapping_add(1);
        let (tx, given_up) = match self.flight.take() {
            Some(taken_over) => {
                tracing::warn!(
                    started = taken_over.started,
                    age = ?taken_over.since.elapsed(),
                    "took over a token fetch that made no progress (a Tokio runtime that \
                     does not run it: a current-thread runtime outside `block_on`?)"
                );
                (taken_over.tx, taken_over.given_up)
            }
            None => (watch::channel(None).0, Arc::new(AtomicBool::new(false))),
        };
        let flight = Flight {
            id: self.last_id,
            tx,
            runtime,
            since: Instant::now(),
            started,
            given_up,
        };
        let wait = flight.wait();
        self.flight = Some(flight);
        (self.last_id, wait)
    }

    /// Ends flight `id`, if it is still the one in progress: its sender,
    /// to answer its waiters. `None` for a flight taken over.
    fn end(&mut self, id: u64) -> Option<watch::Sender<Outcome>> {
        if self.flight.as_ref().is_some_and(|f| f.id == id) {
            return self.flight.take().map(|f| f.tx);
        }
        tracing::debug!("a token fetch that was taken over ended; its result is dropped");
        None
    }
}

/// Ends a flight however its task ends: with the fetch's result, or, if
/// the task is dropped (a panic, or its runtime shutting down), without.
struct FlightGuard {
    cache: TokenCache,
    id: u64,
    /// Whether the task was ever polled, so a fetch may have been sent.
    started: bool,
    /// Whether it has ended (with a result, or found itself taken over).
    ended: bool,
}

impl FlightGuard {
    /// The flight was taken over before its task ran: nothing to end.
    fn taken_over(&mut self) {
        self.ended = true;
    }

    fn end(&mut self, result: Result<Arc<Cached>, Error>) {
        self.ended = true;
        self.cache.settle(self.id, result);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if self.started {
            self.cache.settle(self.id, Err(Error::fetch_aborted()));
        } else {
            self.cache.abandon(self.id);
        }
    }
}

impl TokenCache {
    pub(super) fn flight_state(&self) -> MutexGuard<'_, FlightState> {
        self.shared.flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a fetch for a stale token, unless one is running (and not
    /// stalled), a recent failure is backing off, or another caller holds
    /// the lock (it is deciding the same thing).
    #[cold]
    pub(super) fn start_background_refresh(&self) {
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let id = {
            let mut state = match self.shared.flight.try_lock() {
                Ok(state) => state,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            let now = Instant::now();
            if state.running(Some(&runtime), now).is_some() || state.backing_off(now).is_some() {
                return;
            }
            state.begin(runtime.clone(), false).0
        };
        self.spawn_flight(&runtime, id, true);
    }

    /// Waits for a usable token: joins the fetch in progress or starts one,
    /// unless a recent failure is still backing off. Waits at most the
    /// cache's wait timeout.
    pub(crate) fn wait_for_token(&self) -> BoxFuture<Result<Arc<Cached>, Error>> {
        let this = self.clone();
        Box::pin(async move { this.wait_inner().await })
    }

    async fn wait_inner(&self) -> Result<Arc<Cached>, Error> {
        self.wait_flight(false).await
    }

    /// Waits for a fetch started now, or the one in progress, whatever
    /// the cached token and the backoff (`TokenCache::refresh_now`).
    pub(super) async fn wait_for_refresh(&self) -> Result<Arc<Cached>, Error> {
        self.wait_flight(true).await
    }

    /// `forced`: join or start a flight even with a valid token cached or
    /// during a backoff.
    async fn wait_flight(&self, forced: bool) -> Result<Arc<Cached>, Error> {
        let (flight, wait) = match self.join_flight(forced)? {
            Joined::Cached(cached) => return Ok(cached),
            Joined::Flight(flight, wait) => (flight, wait),
        };
        self.shared.counters.waited();
        let Wait {
            mut rx,
            runtime,
            given_up,
        } = flight;
        let deadline = {
            // The caller's own clock; the flight's runtime's only for a
            // caller polled outside any runtime.
            let _clock = Handle::try_current().is_err().then(|| runtime.enter());
            tokio::time::timeout(wait, rx.wait_for(Option::is_some))
        };
        let outcome = match deadline.await {
            Ok(Ok(outcome)) => outcome.clone(),
            Ok(Err(_closed)) => None,
            Err(_elapsed) => return Err(self.give_up(wait, &given_up)),
        };
        outcome.unwrap_or_else(|| Err(Error::fetch_aborted()))
    }

    /// A caller's wait for a flight ran out: counted, logged (at WARN for
    /// the flight's first), and answered with a typed error. The flight
    /// itself goes on.
    #[cold]
    fn give_up(&self, wait: Duration, given_up: &AtomicBool) -> Error {
        bump(&self.shared.counters.wait_timeouts);
        if given_up.swap(true, Ordering::Relaxed) {
            tracing::debug!(wait = ?wait, "gave up waiting for the token fetch");
        } else {
            tracing::warn!(
                wait = ?wait,
                "gave up waiting for the token fetch; it goes on (a slow token endpoint, \
                 token store or on_refresh_token callback, or a runtime that does not run it)"
            );
        }
        Error::wait_timeout(wait)
    }

    /// The flight to wait for, started if none is running (or the one
    /// running is stalled); or a token another caller stored since this
    /// one looked.
    fn join_flight(&self, forced: bool) -> Result<Joined, Error> {
        let runtime = Handle::try_current().ok();
        let (id, flight, runtime, wait) = {
            let mut state = self.flight_state();
            let now = Instant::now();
            if let Some(c) = self.shared.current.load_full() {
                if c.is_valid_at(now) && !forced {
                    return Ok(Joined::Cached(c));
                }
            }
            if let Some(flight) = state.running(runtime.as_ref(), now) {
                return Ok(Joined::Flight(flight.wait(), state.wait_timeout));
            }
            if let Some(last) = state.backing_off(now).filter(|_| !forced) {
                bump(&self.shared.counters.fail_fast);
                return Err(Error::no_token(last.clone()));
            }
            let Some(runtime) = runtime else {
                return Err(Error::no_runtime());
            };
            let (id, flight) = state.begin(runtime.clone(), false);
            (id, flight, runtime, state.wait_timeout)
        };
        self.spawn_flight(&runtime, id, false);
        Ok(Joined::Flight(flight, wait))
    }

    /// Runs flight `id` as a task on `runtime`. Called without the lock:
    /// on a runtime that is shutting down, `spawn` drops the task at once,
    /// and the guard's drop ends the flight.
    fn spawn_flight(&self, runtime: &Handle, id: u64, background: bool) {
        let mut guard = FlightGuard {
            cache: self.clone(),
            id,
            started: false,
            ended: false,
        };
        let span = tracing::debug_span!("oauth2.fetch", background);
        runtime.spawn(
            async move {
                if !guard.cache.start(guard.id) {
                    // Taken over before it ran: the flight that took over
                    // fetches; this one sends nothing.
                    guard.taken_over();
                    return;
                }
                guard.started = true;
                if background {
                    bump(&guard.cache.shared.counters.background_refreshes);
                }
                let result = guard.cache.fetch_admitted().await;
                guard.end(result);
            }
            .instrument(span),
        );
    }

    /// Marks flight `id` started, if it is still the one in progress.
    fn start(&self, id: u64) -> bool {
        let mut state = self.flight_state();
        match state.flight.as_mut() {
            Some(flight) if flight.id == id => {
                flight.started = true;
                true
            }
            _ => false,
        }
    }

    /// One fetch, its token admitted (stored by [`TokenCache::settle`]).
    async fn fetch_admitted(&self) -> Result<Arc<Cached>, Error> {
        let shared = &self.shared;
        // No token cached: it was invalidated (a 401), or there never was one.
        let dropped = shared.current.load().is_none();
        let fetched = shared.fetcher.fetch(&shared.counters, dropped).await?;
        let admitted = shared.admit(fetched.token, &fetched.bound);
        #[cfg(feature = "metrics")]
        shared.counters.token_admitted(&admitted, &shared.policy);
        let cached = Arc::new(admitted?);
        // Before the token is stored: a 401 for it must find the step.
        if let Some(step) = fetched.fleet_step {
            self.join_fleet_step(step);
        }
        Ok(cached)
    }

    /// Records flight `id`'s outcome (its token cached, or a failure with
    /// backoff), ends the flight, and wakes its waiters, after the lock is
    /// released. A flight taken over records nothing: its token is stored
    /// under the lock only while it is still the flight in progress, so a
    /// late one never replaces a newer token.
    fn settle(&self, id: u64, result: Result<Arc<Cached>, Error>) {
        let tx = {
            let mut state = self.flight_state();
            let Some(tx) = state.end(id) else {
                return;
            };
            match &result {
                Ok(c) => {
                    self.shared.set_current(Some(c.clone()));
                    state.failures = 0;
                    state.retry_at = None;
                    state.last_error = None;
                    tracing::debug!(generation = c.generation, "token cached");
                }
                Err(e) => self.back_off(&mut state, e),
            }
            tx
        };
        let _ = tx.send(Some(result));
    }

    /// Counts a failed fetch and sets when the next may start: exponential
    /// backoff, but while the cached token is still valid, at most half the
    /// time it has left.
    fn back_off(&self, state: &mut FlightState, e: &Error) {
        bump(&self.shared.counters.fetch_failures);
        state.failures = state.failures.saturating_add(1);
        let now = Instant::now();
        let valid_for = self
            .shared
            .current
            .load()
            .as_ref()
            .and_then(|c| c.expires_at)
            .map(|e| e.saturating_duration_since(now))
            .filter(|d| !d.is_zero());
        let delay =
            self.shared
                .backoff
                .delay(state.failures, unit_random(), e.retry_after(), valid_for);
        state.retry_at = Some(now.checked_add(delay).unwrap_or(now));
        state.last_error = Some(e.clone());
        state.last_failure = Some(super::status::LastError::of(e));
        tracing::warn!(error = %e, failures = state.failures, backoff = ?delay, "token fetch failed");
    }

    /// Ends flight `id`, whose task never ran (its runtime shut down
    /// first): no token request was sent, so no failure is counted and no
    /// backoff set; its waiters learn that there is no runtime to fetch on.
    fn abandon(&self, id: u64) {
        let Some(tx) = self.flight_state().end(id) else {
            return;
        };
        tracing::debug!("token fetch not started: its Tokio runtime is shutting down");
        let _ = tx.send(Some(Err(Error::no_runtime())));
    }
}

/// What a caller with no usable token found.
enum Joined {
    /// A token stored since it looked.
    Cached(Arc<Cached>),
    /// A flight to wait for, and for how long.
    Flight(Wait, Duration),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{IssuedAt, Token};

    /// `access_token` admitted by `cache`, as a fetch stores it.
    fn admitted(cache: &TokenCache, access_token: &str) -> Arc<Cached> {
        let issued = IssuedAt::now();
        let json = format!(
            r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":3600}}"#
        );
        let token = Token::from_json(json.as_bytes(), issued).unwrap();
        Arc::new(
            cache
                .shared
                .admit(token, &cache.shared.fetcher.identity().now())
                .unwrap(),
        )
    }

    fn cached(cache: &TokenCache) -> Option<String> {
        let current = cache.shared.current.load_full()?;
        Some(current.header.to_str().unwrap().to_owned())
    }

    // ARCHITECTURE.md, invariant 2: a flight taken over ends however it
    // ends without a trace: its token is not cached (it could replace a
    // newer one), its waiters are the new flight's, and a task that has
    // not run yet sends nothing.
    #[test]
    fn a_taken_over_flight_neither_starts_nor_caches_nor_answers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cache = crate::layer::testing::cache();
        let (stalled, waiter) = cache.flight_state().begin(rt.handle().clone(), false);
        // Taken over (as a caller on another runtime does with a flight that
        // never started): the same waiters, a new id.
        let (current, _) = cache.flight_state().begin(rt.handle().clone(), false);
        assert_ne!(stalled, current);
        assert!(!cache.start(stalled), "a taken-over task must not fetch");
        cache.settle(stalled, Ok(admitted(&cache, "late")));
        cache.settle(stalled, Err(Error::fetch_aborted()));
        cache.abandon(stalled);
        assert_eq!(cached(&cache), None);
        assert!(
            waiter.rx.borrow().is_none(),
            "answered by a taken-over flight"
        );
        let state = cache.flight_state();
        assert_eq!(state.flight.as_ref().map(|f| f.id), Some(current));
        assert_eq!(state.failures, 0);
        drop(state);

        assert!(cache.start(current));
        cache.settle(current, Ok(admitted(&cache, "new")));
        assert_eq!(cached(&cache).as_deref(), Some("Bearer new"));
        let answer = waiter.rx.borrow();
        let header = answer
            .as_ref()
            .map(|r| r.as_ref().map(|c| c.header.clone()));
        assert!(matches!(header, Some(Ok(h)) if h == "Bearer new"));
        assert!(cache.flight_state().flight.is_none());
    }

    #[test]
    fn a_flight_is_taken_over_when_nothing_runs_it_or_it_outlived_any_fetch() {
        let s = Duration::from_secs;
        let limit = s(90);
        // Never polled, on a current-thread runtime the caller is not on:
        // nothing runs it until that runtime is driven again.
        assert!(stalled(false, true, s(0), limit));
        // Never polled yet on the caller's runtime (or a multi-thread one):
        // it runs as soon as the runtime gets to it.
        assert!(!stalled(false, false, s(89), limit));
        // Started: only once older than any fetch on a live runtime.
        assert!(!stalled(true, true, s(89), limit));
        assert!(stalled(true, false, limit, limit));
        assert!(stalled(false, false, limit, limit));
    }

    #[test]
    fn the_default_wait_covers_two_exchanges_a_save_and_a_callback() {
        let s = Duration::from_secs;
        assert_eq!(default_wait_timeout(s(30), s(5)), s(90));
        // A slower store (or callback) lengthens the wait with it.
        assert_eq!(default_wait_timeout(s(30), s(20)), s(120));
        assert_eq!(default_wait_timeout(s(1), s(0)), s(22));
        assert_eq!(
            default_wait_timeout(Duration::MAX, s(5)),
            Duration::MAX,
            "saturates, never panics"
        );
    }
}
