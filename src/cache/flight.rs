//! Single flight: at most one fetch runs per cache, as its own Tokio task,
//! and every caller that needs a token joins it. [`FlightState`] is the one
//! record of whether a fetch is running, and of the backoff after a failed
//! one.
//!
//! The cache's lock is never held while spawning the task nor while waking
//! its waiters: Tokio drops a task's future inside `spawn` when the runtime
//! is shutting down, and that drop ends the flight, which takes the lock.

use std::sync::{Arc, MutexGuard, TryLockError};
use std::time::Instant;

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

/// Guarded by the cache's lock.
pub(super) struct FlightState {
    /// The fetch in progress, if any: the only record that one is running.
    flight: Option<watch::Receiver<Outcome>>,
    /// Failed fetches in a row.
    failures: u32,
    /// Until when callers with no valid token fail at once with `last_error`.
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

impl FlightState {
    pub(super) fn new() -> Self {
        FlightState {
            flight: None,
            failures: 0,
            retry_at: None,
            last_error: None,
        }
    }

    /// The last failure, while its backoff has not passed.
    fn backing_off(&self, now: Instant) -> Option<&Error> {
        match (self.retry_at, &self.last_error) {
            (Some(at), Some(last)) if now < at => Some(last),
            _ => None,
        }
    }

    /// Records that a fetch is now running; its task answers on the sender.
    fn take_off(&mut self) -> (watch::Sender<Outcome>, watch::Receiver<Outcome>) {
        let (tx, rx) = watch::channel(None);
        self.flight = Some(rx.clone());
        (tx, rx)
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
            state.take_off().0
        };
        self.spawn_flight(&runtime, tx, true);
    }

    /// Waits for a usable token: joins the fetch in progress or starts one,
    /// unless a recent failure is still backing off.
    pub(crate) fn wait_for_token(&self) -> BoxFuture<Result<Arc<Cached>, Error>> {
        let this = self.clone();
        Box::pin(async move { this.wait_inner().await })
    }

    async fn wait_inner(&self) -> Result<Arc<Cached>, Error> {
        let mut rx = match self.join_flight()? {
            Joined::Cached(cached) => return Ok(cached),
            Joined::Flight(rx) => rx,
        };
        bump(&self.shared.counters.waits);
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::fetch_aborted())?;
        outcome
            .clone()
            .unwrap_or_else(|| Err(Error::fetch_aborted()))
    }

    /// The flight to wait for, started if none is running; or a token
    /// another caller stored since this one looked.
    fn join_flight(&self) -> Result<Joined, Error> {
        let runtime = Handle::try_current().ok();
        let (tx, rx, runtime) = {
            let mut state = self.flight_state();
            let now = Instant::now();
            if let Some(c) = self.shared.current.load_full() {
                if c.is_valid_at(now) {
                    return Ok(Joined::Cached(c));
                }
            }
            if let Some(rx) = &state.flight {
                return Ok(Joined::Flight(rx.clone()));
            }
            if let Some(last) = state.backing_off(now) {
                bump(&self.shared.counters.fail_fast);
                return Err(Error::no_token(last.clone()));
            }
            let Some(runtime) = runtime else {
                return Err(Error::no_runtime());
            };
            let (tx, rx) = state.take_off();
            (tx, rx, runtime)
        };
        self.spawn_flight(&runtime, tx, false);
        Ok(Joined::Flight(rx))
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
        let token = shared.fetcher.fetch(&shared.counters).await?;
        let cached = Arc::new(shared.admit(token)?);
        shared.current.store(Some(cached.clone()));
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
    /// A flight to wait for.
    Flight(watch::Receiver<Outcome>),
}
