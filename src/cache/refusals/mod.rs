//! The resource servers' 401s for the cached tokens, and the backoff once
//! new tokens are refused too (ARCHITECTURE.md, invariant 6).
//!
//! A 401 that a new token may fix invalidates the token that was sent, so
//! the next caller fetches a new one. But when the token sent was itself
//! fetched after a 401 (its generation is newer than the last one a 401
//! invalidated) and no answer other than 401 came for the current token
//! since, new tokens evidently do not help (a wrong audience, a proxy that
//! refuses everything): further refetches back off, by default 1 s doubling
//! to 5 min, jittered, and the 401s pass through meanwhile. The first 401
//! after a backoff step gets one new token again; that token's 401 starts
//! the next, longer step. Any answer other than 401 for the current token
//! ends it all. Background refresh before expiry is not affected.
//!
//! The record is kept per resource server (its origin, [`Resource`]): a
//! token one API refuses and another accepts is refused by the first,
//! whatever the second answers, so the second's answers end only its own
//! record. Without that, each 200 from the second would end the first's
//! backoff, and every 401 from the first would cost a token request.
//!
//! Every answer pays one relaxed load of `unsettled`, written only by 401s
//! and by the answers that end their records; the answer's origin is only
//! looked at when that flag is set, or on a 401.
//!
//! With the fleet's shared tier (`crate::tier`) the steps are shared,
//! in a record per token, not per resource: a step started here for a
//! resource is written to the tier; a fetch that finds
//! the fleet's step running joins it ([`RefusalState::join`]) in the record
//! of the resource whose 401 led to the last refetch here, or, with none
//! (a process that has just started), in a record of its own that the
//! first resource to refuse the token takes over (an answer other than 401
//! before that ends it here only); and an answer that ends a resource's
//! record in which a step ran ends the fleet's too. Those writes are
//! spawned: a 401 never waits for the tier.

use crate::clock::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::fetch::FleetStep;
use super::policy::{unit_random, Backoff};
use super::TokenCache;
use crate::tier::StepStarted;

// One concept a file: `resource` (which resource server answered),
// `record` (the per-resource state machine and its bounded list). This
// file: the cache's side (an answer, a 401, a fleet step joined) and the
// writes to the fleet's record.
mod record;
mod resource;

pub(crate) use record::RefusalDecision;
use record::{later, Records};
pub(crate) use resource::Resource;

/// The record of 401s, one per cache, kept per resource server.
#[derive(Default)]
pub(super) struct Refusals {
    /// Whether `state` holds any record: read by every answer, so that one
    /// with nothing to settle takes no lock.
    unsettled: AtomicBool,
    state: Mutex<Records>,
}

/// What a process writes to the fleet's record of 401s.
enum FleetWrite {
    /// A backoff step started here.
    Step(StepStarted),
    /// An answer other than 401 for the token: the backoff ends.
    End,
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, Records> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `unsettled` true exactly while `state` holds a record.
    fn note(&self, state: &Records) {
        let unsettled = !state.list.is_empty();
        if self.unsettled.load(Ordering::Relaxed) != unsettled {
            self.unsettled.store(unsettled, Ordering::Relaxed);
        }
    }
}

impl TokenCache {
    /// An answer other than 401, from the resource server `from` names,
    /// for the request sent with generation `sent`: if that is the current
    /// token, that resource's record of 401s ends. One relaxed load while
    /// there is no record; `from` is only called when there is one.
    #[inline]
    pub(crate) fn answered(&self, sent: u64, from: impl FnOnce() -> Resource) {
        if self.shared.refusals.unsettled.load(Ordering::Relaxed) {
            self.settle_refusals(sent, &from());
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_refusals(&self, sent: u64, from: &Resource) {
        let refusals = &self.shared.refusals;
        let steps = {
            let mut state = refusals.lock();
            if self.current_generation() != Some(sent) {
                return;
            }
            let Some(steps) = state.settle(from) else {
                return;
            };
            refusals.note(&state);
            steps
        };
        tracing::debug!(
            generation = sent,
            "the token was taken: a 401 gets a new token again"
        );
        // A step ran here (or was joined): the fleet's ends too.
        if steps > 0 {
            self.spawn_fleet_write(sent, FleetWrite::End);
        }
    }

    /// A 401 that a new token may fix, from the resource server `from`, for
    /// the request sent with generation `sent`: invalidates that token and
    /// says to get a new one, unless new tokens were refused by that
    /// resource too (then `backoff` sets how long its 401s pass through).
    /// Counts a 401 passed through.
    pub(crate) fn refused(&self, sent: u64, from: &Resource, backoff: &Backoff) -> RefusalDecision {
        let refusals = &self.shared.refusals;
        let decision = {
            let mut state = refusals.lock();
            let current = self.current_generation();
            let now = Instant::now();
            let step_delay = |step| backoff.delay(step, unit_random(), None, None);
            let decision = state.on_refusal(from, sent, current, now, step_delay);
            refusals.note(&state);
            // Under the lock, so that no other 401 sees `sent` current.
            if decision == RefusalDecision::Refetch {
                self.invalidate(sent);
            }
            decision
        };
        if let RefusalDecision::BackedOff(step) = decision {
            self.shared.counters.backed_off();
            // A step starts: the resource refused this token (it stays in
            // use while new ones are refused too), so the store must not
            // restore it after a restart (in the background).
            if step.is_some() {
                if let Some(c) = self.shared.current.load().as_ref() {
                    if c.generation == sent {
                        let fingerprint = self.shared.fingerprint_of(c.generation);
                        self.shared.fetcher.refused(&c.token, fingerprint);
                    }
                }
            }
            if let Some(step) = step {
                self.spawn_fleet_write(sent, FleetWrite::Step(step));
            }
        }
        decision
    }

    /// Joins the fleet's backoff step that a fetch found in the shared
    /// tier, before its token is cached.
    pub(super) fn join_fleet_step(&self, step: FleetStep) {
        let refusals = &self.shared.refusals;
        let joined = {
            let mut state = refusals.lock();
            let now = Instant::now();
            let until = step.remaining.map(|left| later(now, left));
            let joined = state.join(step.number, until, now);
            refusals.note(&state);
            joined
        };
        if joined {
            tracing::warn!(
                step = step.number,
                backoff = ?step.remaining,
                "the fleet found that new tokens are refused too: this process's 401s are \
                 returned as they come, with no new token, until the fleet's backoff step has passed"
            );
        }
    }

    /// Writes a step started here to the shared tier, or ends the fleet's
    /// step, for the token of generation `sent` (if still cached), in a
    /// task of its own: best-effort, and only on a runtime.
    fn spawn_fleet_write(&self, sent: u64, write: FleetWrite) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cached = self.shared.current.load_full();
        let Some(cached) = cached.filter(|c| c.generation == sent) else {
            return;
        };
        if !self.shared.fetcher.has_tier() {
            return;
        }
        let cache = self.clone();
        runtime.spawn(async move {
            let fingerprint = cache.shared.fingerprint_of(cached.generation);
            let Some(tier) = cache.shared.fetcher.tier(fingerprint) else {
                return;
            };
            match write {
                FleetWrite::Step(step) => tier.share_step(&cached.token, step).await,
                FleetWrite::End => tier.end_steps(&cached.token).await,
            }
        });
    }

    /// For `TokenCache::status`: the latest end of a 401 backoff step
    /// running at `now`, over every resource server's record.
    pub(super) fn unauthorized_backoff_until(&self, now: Instant) -> Option<Instant> {
        let state = self.shared.refusals.lock();
        let running = state.list.iter().filter_map(|(_, s)| s.until);
        running.filter(|until| now < *until).max()
    }

    /// Counts a 401 that asks for other credentials than a token.
    pub(crate) fn count_other_scheme(&self) {
        self.shared.counters.other_scheme();
    }

    fn current_generation(&self) -> Option<u64> {
        self.shared.current.load().as_ref().map(|c| c.generation)
    }
}
