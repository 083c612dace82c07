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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::Instrument;

use super::cached::Cached;
use super::fetch::BoxFuture;
use super::policy::unit_random;
use super::stats::bump;
use super::TokenCache;
use crate::error::Error;

// For `TokenCache::revoke`: the flight slot, held while tokens are revoked.
mod grounded;

/// A flight's answer, `None` until it lands.
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

/// A fetch in progress, as its waiters see it.
#[derive(Clone)]
struct Flight {
    /// Where the fetch's task answers.
    rx: watch::Receiver<Outcome>,
    /// The runtime the task runs on: the clock of a caller that has none.
    runtime: Handle,
    /// Whether a caller gave up on it already (logged at WARN once).
    given_up: Arc<AtomicBool>,
}

/// Guarded by the cache's lock.
pub(super) struct FlightState {
    /// The fetch in progress, if any: the only record that one is running.
    flight: Option<Flight>,
    /// Failed fetches in a row.
    failures: u32,
    /// Until when callers with no valid token fail at once with `last_error`.
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    /// How long a caller waits for a flight (configuration, read here by
    /// every caller that joins one).
    wait_timeout: Duration,
}

impl FlightState {
    pub(super) fn new(wait_timeout: Duration) -> Self {
        FlightState {
            flight: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            wait_timeout,
        }
    }

    /// The last failure, while its backoff has not passed.
    fn backing_off(&self, now: Instant) -> Option<&Error> {
        match (self.retry_at, &self.last_error) {
            (Some(at), Some(last)) if now < at => Some(last),
            _ => None,
        }
    }

    /// Records that a fetch is now running on `runtime`; its task answers
    /// on the sender.
    fn take_off(&mut self, runtime: Handle) -> (watch::Sender<Outcome>, Flight) {
        let (tx, rx) = watch::channel(None);
        let flight = Flight {
            rx,
            runtime,
            given_up: Arc::new(AtomicBool::new(false)),
        };
        self.flight = Some(flight.clone());
        (tx, flight)
    }
}

/// Ends a flight however its task ends: with the fetch's result, or, if
/// the task is dropped (a panic, or its runtime shutting down), without.
struct FlightGuard {
    cache: TokenCache,
    tx: Option<watch::Sender<Outcome>>,
    /// Whether the task was ever polled, so a fetch may have been sent.
    started: bool,
}

impl FlightGuard {
    fn land(&mut self, result: Result<Arc<Cached>, Error>) {
        if let Some(tx) = self.tx.take() {
            self.cache.settle(&tx, result);
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            if self.started {
                self.cache.settle(&tx, Err(Error::fetch_aborted()));
            } else {
                self.cache.abandon(&tx);
            }
        }
    }
}

impl TokenCache {
    fn flight_state(&self) -> MutexGuard<'_, FlightState> {
        self.shared.flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a fetch for a stale token, unless one is running, a recent
    /// failure is backing off, or another caller holds the lock (it is
    /// deciding the same thing).
    #[cold]
    pub(super) fn start_background_refresh(&self) {
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let tx = {
            let mut state = match self.shared.flight.try_lock() {
                Ok(state) => state,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if state.flight.is_some() || state.backing_off(Instant::now()).is_some() {
                return;
            }
            state.take_off(runtime.clone()).0
        };
        self.spawn_flight(&runtime, tx, true);
    }

    /// Waits for a usable token: joins the fetch in progress or starts one,
    /// unless a recent failure is still backing off. Waits at most the
    /// cache's wait timeout.
    pub(crate) fn wait_for_token(&self) -> BoxFuture<Result<Arc<Cached>, Error>> {
        let this = self.clone();
        Box::pin(async move { this.wait_inner().await })
    }

    async fn wait_inner(&self) -> Result<Arc<Cached>, Error> {
        let (flight, wait) = match self.join_flight()? {
            Joined::Cached(cached) => return Ok(cached),
            Joined::Flight(flight, wait) => (flight, wait),
        };
        self.shared.counters.waited();
        let Flight {
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
            Ok(Ok(landed)) => landed.clone(),
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

    /// The flight to wait for, started if none is running; or a token
    /// another caller stored since this one looked.
    fn join_flight(&self) -> Result<Joined, Error> {
        let runtime = Handle::try_current().ok();
        let (tx, flight, runtime, wait) = {
            let mut state = self.flight_state();
            let now = Instant::now();
            if let Some(c) = self.shared.current.load_full() {
                if c.is_valid_at(now) {
                    return Ok(Joined::Cached(c));
                }
            }
            if let Some(flight) = &state.flight {
                return Ok(Joined::Flight(flight.clone(), state.wait_timeout));
            }
            if let Some(last) = state.backing_off(now) {
                bump(&self.shared.counters.fail_fast);
                return Err(Error::no_token(last.clone()));
            }
            let Some(runtime) = runtime else {
                return Err(Error::no_runtime());
            };
            let (tx, flight) = state.take_off(runtime.clone());
            (tx, flight, runtime, state.wait_timeout)
        };
        self.spawn_flight(&runtime, tx, false);
        Ok(Joined::Flight(flight, wait))
    }

    /// Runs the flight that answers on `tx` as a task on `runtime`. Called
    /// without the lock: on a runtime that is shutting down, `spawn` drops
    /// the task at once, and the guard's drop ends the flight.
    fn spawn_flight(&self, runtime: &Handle, tx: watch::Sender<Outcome>, background: bool) {
        let mut guard = FlightGuard {
            cache: self.clone(),
            tx: Some(tx),
            started: false,
        };
        let span = tracing::debug_span!("oauth2.fetch", background);
        runtime.spawn(
            async move {
                guard.started = true;
                if background {
                    bump(&guard.cache.shared.counters.background_refreshes);
                }
                let result = guard.cache.fetch_and_store().await;
                guard.land(result);
            }
            .instrument(span),
        );
    }

    async fn fetch_and_store(&self) -> Result<Arc<Cached>, Error> {
        let shared = &self.shared;
        // No token cached: it was invalidated (a 401), or there never was one.
        let dropped = shared.current.load().is_none();
        let fetched = shared.fetcher.fetch(&shared.counters, dropped).await?;
        let admitted = shared.admit(fetched.token);
        #[cfg(feature = "metrics")]
        shared.counters.token_admitted(&admitted, &shared.policy);
        let cached = Arc::new(admitted?);
        // Before the token is stored: a 401 for it must find the step.
        #[cfg(feature = "redis")]
        if let Some(step) = fetched.fleet_step {
            self.join_fleet_step(step);
        }
        shared.set_current(Some(cached.clone()));
        Ok(cached)
    }

    /// Records a fetch's outcome (success, or failure with backoff), ends the
    /// flight, and wakes its waiters, after the lock is released.
    fn settle(&self, tx: &watch::Sender<Outcome>, result: Result<Arc<Cached>, Error>) {
        {
            let mut state = self.flight_state();
            state.flight = None;
            match &result {
                Ok(c) => {
                    state.failures = 0;
                    state.retry_at = None;
                    state.last_error = None;
                    tracing::debug!(generation = c.generation, "token cached");
                }
                Err(e) => self.back_off(&mut state, e),
            }
        }
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
        tracing::warn!(error = %e, failures = state.failures, backoff = ?delay, "token fetch failed");
    }

    /// Ends a flight whose task never ran (its runtime shut down first): no
    /// token request was sent, so no failure is counted and no backoff set;
    /// its waiters learn that there is no runtime to fetch on.
    fn abandon(&self, tx: &watch::Sender<Outcome>) {
        self.flight_state().flight = None;
        tracing::debug!("token fetch not started: its Tokio runtime is shutting down");
        let _ = tx.send(Some(Err(Error::no_runtime())));
    }
}

/// What a caller with no usable token found.
enum Joined {
    /// A token stored since it looked.
    Cached(Arc<Cached>),
    /// A flight to wait for, and for how long.
    Flight(Flight, Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

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
