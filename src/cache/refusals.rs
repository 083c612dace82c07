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
//! Every answer pays one relaxed load of `unsettled`, written only by 401s
//! and by the one answer that ends their record.
//!
//! With the fleet's Redis tier (feature `redis`) the steps are shared
//! (`fleet/refusals.rs`): a step started here is written to Redis, a fetch
//! that finds the fleet's step running joins it ([`RefusalState::join`]),
//! and an answer that ends this record ends the fleet's too. Those writes
//! are spawned: a 401 never waits for Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::policy::{unit_random, Backoff};
use super::TokenCache;

/// The record of 401s, one per cache.
#[derive(Default)]
pub(super) struct Refusals {
    /// Whether `state` holds anything: read by every answer, so that one
    /// with nothing to settle takes no lock.
    unsettled: AtomicBool,
    state: Mutex<RefusalState>,
}

/// Guarded by `Refusals::state`; the default is "nothing to settle".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RefusalState {
    /// The newest generation a 401 invalidated: newer tokens were fetched
    /// because of a 401.
    refused: Option<u64>,
    /// Backoff steps taken since the last answer other than 401.
    steps: u32,
    /// Until when 401s pass through; `None` when no step is running.
    until: Option<Instant>,
}

/// What a 401 that a new token may fix leads to, as
/// [`TokenCache::refused`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The token sent was current: it is now invalidated, and a new one is
    /// to be fetched.
    Refetch,
    /// The token sent is no longer current: the newer one (or the fetch of
    /// one) answers it; nothing was invalidated.
    Replaced,
    /// New tokens are refused too: nothing was invalidated, and nothing is
    /// to be fetched; the 401 passes through. `Some` for the 401 that
    /// started a backoff step.
    BackedOff(Option<Step>),
}

/// What a process writes to the fleet's record of 401s.
#[cfg(feature = "redis")]
enum FleetWrite {
    /// A backoff step started here.
    Step(Step),
    /// An answer other than 401 for the token: the backoff ends.
    End,
}

/// A backoff step that a 401 started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// 1 for the first step since the last answer other than 401.
    pub(crate) number: u32,
    /// How long 401s pass through.
    pub(crate) delay: Duration,
}

impl RefusalState {
    /// The verdict on a 401 for generation `sent` at `now`, `current` being
    /// the generation cached (`None`: none), and the next state.
    /// `unit_random` is asked for the jitter when a step starts.
    fn on_refusal(
        &mut self,
        sent: u64,
        current: Option<u64>,
        now: Instant,
        backoff: &Backoff,
        unit_random: impl FnOnce() -> f64,
    ) -> Verdict {
        if self.until.is_some_and(|until| now < until) {
            return Verdict::BackedOff(None);
        }
        if current != Some(sent) {
            return Verdict::Replaced;
        }
        // A step that has passed lets this 401 get one new token.
        let step_passed = self.until.take().is_some();
        if !step_passed && self.refused.is_some_and(|refused| sent > refused) {
            self.steps = self.steps.saturating_add(1);
            let delay = backoff.delay(self.steps, unit_random(), None, None);
            self.until = Some(later(now, delay));
            let number = self.steps;
            return Verdict::BackedOff(Some(Step { number, delay }));
        }
        self.refused = Some(sent);
        Verdict::Refetch
    }

    /// Joins the fleet's backoff step `number`: the next step here is
    /// numbered after it, and, with `until`, the 401s pass through until
    /// then (or later, if a step of this process's runs longer). Whether a
    /// step now runs here that did not.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn join(&mut self, number: u32, until: Option<Instant>) -> bool {
        self.steps = self.steps.max(number);
        match until {
            Some(until) if self.until.is_none_or(|mine| mine < until) => {
                self.until.replace(until).is_none()
            }
            _ => false,
        }
    }
}

/// `now + delay`, or a day from now if that cannot be represented.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, RefusalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `unsettled` true exactly while `state` holds something.
    fn note(&self, state: &RefusalState) {
        let unsettled = *state != RefusalState::default();
        if self.unsettled.load(Ordering::Relaxed) != unsettled {
            self.unsettled.store(unsettled, Ordering::Relaxed);
        }
    }
}

impl TokenCache {
    /// An answer other than 401 for the request sent with generation
    /// `sent`: if that is the current token, the record of 401s ends. One
    /// relaxed load while there is none.
    #[inline]
    pub(crate) fn answered(&self, sent: u64) {
        if self.shared.refusals.unsettled.load(Ordering::Relaxed) {
            self.settle_refusals(sent);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_refusals(&self, sent: u64) {
        let refusals = &self.shared.refusals;
        let steps = {
            let mut state = refusals.lock();
            if self.current_generation() != Some(sent) || *state == RefusalState::default() {
                return;
            }
            let steps = state.steps;
            *state = RefusalState::default();
            refusals.note(&state);
            steps
        };
        tracing::debug!(
            generation = sent,
            "the token was taken: a 401 gets a new token again"
        );
        // A step ran here (or was joined): the fleet's ends too.
        #[cfg(feature = "redis")]
        if steps > 0 {
            self.spawn_fleet_write(sent, FleetWrite::End);
        }
        #[cfg(not(feature = "redis"))]
        let _ = steps;
    }

    /// A 401 that a new token may fix, for the request sent with
    /// generation `sent`: invalidates that token and says to get a new one,
    /// unless new tokens were refused too (then `backoff` sets how long
    /// 401s pass through). Counts a 401 passed through.
    pub(crate) fn refused(&self, sent: u64, backoff: &Backoff) -> Verdict {
        let refusals = &self.shared.refusals;
        let verdict = {
            let mut state = refusals.lock();
            let current = self.current_generation();
            let verdict = state.on_refusal(sent, current, Instant::now(), backoff, unit_random);
            refusals.note(&state);
            // Under the lock, so that no other 401 sees `sent` current.
            if verdict == Verdict::Refetch {
                self.invalidate(sent);
            }
            verdict
        };
        if let Verdict::BackedOff(step) = verdict {
            self.shared.counters.backed_off();
            #[cfg(feature = "redis")]
            if let Some(step) = step {
                self.spawn_fleet_write(sent, FleetWrite::Step(step));
            }
            #[cfg(not(feature = "redis"))]
            let _ = step;
        }
        verdict
    }

    /// Joins the fleet's backoff step that a fetch found (`fleet/refusals.rs`),
    /// before its token is cached.
    #[cfg(feature = "redis")]
    pub(super) fn join_fleet_step(&self, step: crate::fleet::FleetStep) {
        let refusals = &self.shared.refusals;
        let joined = {
            let mut state = refusals.lock();
            let until = step.remaining.map(|left| later(Instant::now(), left));
            let joined = state.join(step.number, until);
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

    /// Writes a step started here to Redis, or ends the fleet's step, for
    /// the token of generation `sent` (if still cached), in a task of its
    /// own: best-effort, and only on a runtime.
    #[cfg(feature = "redis")]
    fn spawn_fleet_write(&self, sent: u64, write: FleetWrite) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cached = self.shared.current.load_full();
        let Some(cached) = cached.filter(|c| c.generation == sent) else {
            return;
        };
        if self.shared.fetcher.fleet().is_none() {
            return;
        }
        let cache = self.clone();
        runtime.spawn(async move {
            let Some(fleet) = cache.shared.fetcher.fleet() else {
                return;
            };
            match write {
                FleetWrite::Step(step) => {
                    fleet
                        .share_step(&cached.token, step.number, step.delay)
                        .await;
                }
                FleetWrite::End => fleet.end_steps(&cached.token).await,
            }
        });
    }

    /// Counts a 401 that asks for other credentials than a token.
    pub(crate) fn count_other_scheme(&self) {
        self.shared.counters.other_scheme();
    }

    fn current_generation(&self) -> Option<u64> {
        self.shared.current.load().as_ref().map(|c| c.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// The default of `AuthPolicy::unauthorized_backoff`.
    fn backoff() -> Backoff {
        Backoff::new(secs(1.0), secs(300.0))
    }

    fn step(number: u32, delay: f64) -> Verdict {
        Verdict::BackedOff(Some(Step {
            number,
            delay: secs(delay),
        }))
    }

    #[test]
    fn a_token_fetched_after_a_401_and_refused_starts_a_backoff() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        // Generation 1 refused: get a new one.
        assert_eq!(s.on_refusal(1, Some(1), t0, &b, || 0.0), Verdict::Refetch);
        // Another 401 for generation 1, now invalidated: nothing to do.
        assert_eq!(s.on_refusal(1, None, t0, &b, || 0.0), Verdict::Replaced);
        // Generation 2, fetched because of it, refused too: 0.5 s (1 s,
        // jittered with 0.0) of 401s passing through.
        assert_eq!(s.on_refusal(2, Some(2), t0, &b, || 0.0), step(1, 0.5));
        let during = t0 + secs(0.4);
        for sent in [1, 2] {
            let verdict = s.on_refusal(sent, Some(2), during, &b, || 0.0);
            assert_eq!(verdict, Verdict::BackedOff(None));
        }
        // After the step, a 401 for an older token does not use it up...
        let after = t0 + secs(0.5);
        assert_eq!(
            s.on_refusal(1, Some(2), after, &b, || 0.0),
            Verdict::Replaced
        );
        // ...the next one for the current token gets one new token,
        assert_eq!(
            s.on_refusal(2, Some(2), after, &b, || 0.0),
            Verdict::Refetch
        );
        // and when that one is refused too, the next step is twice as long.
        assert_eq!(s.on_refusal(3, Some(3), after, &b, || 0.5), step(2, 1.5));
        assert_eq!(
            s,
            RefusalState {
                refused: Some(2),
                steps: 2,
                until: Some(after + secs(1.5)),
            }
        );
    }

    #[test]
    fn steps_double_from_one_second_to_five_minutes_jittered() {
        let b = backoff();
        let delays: Vec<f64> = (1..=11)
            .map(|n| b.delay(n, 0.0, None, None).as_secs_f64())
            .collect();
        assert_eq!(
            delays,
            [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 150.0, 150.0]
        );
        // The longest: just under 256 s for the 9th, 300 s from the 10th.
        for (n, want) in [(9, 255.872), (10, 299.85), (u32::MAX, 299.85)] {
            let got = b.delay(n, 0.999, None, None).as_secs_f64();
            assert!((got - want).abs() < 1e-6, "step {n}: {got}");
        }
    }

    /// Token requests (counting the first) for a resource that refuses
    /// every token, answering a request every 10 ms for `run`, with jitter
    /// `random`; a refused token is resent once, as the layer does.
    fn token_requests_when_every_token_is_refused(run: Duration, random: f64) -> u32 {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        let (mut fetches, mut current) = (1, 1);
        let mut at = Duration::ZERO;
        while at < run {
            let now = t0 + at;
            if s.on_refusal(current, Some(current), now, &b, || random) == Verdict::Refetch {
                fetches += 1;
                current += 1;
                // The resend, with the new token: refused too.
                s.on_refusal(current, Some(current), now, &b, || random);
            }
            at += Duration::from_millis(10);
        }
        fetches
    }

    #[test]
    fn always_refused_costs_about_log2_of_the_seconds_plus_two_token_requests() {
        // The shortest steps (jitter 0.0: 0.5 s, 1 s, 2 s, …) end at 0.5,
        // 1.5, 3.5, 7.5 … s: after t seconds, 2 + log2(2t + 1) token
        // requests at most, until the steps reach their cap (150 s here,
        // from 255.5 s on); then one a step.
        let shortest = [(1.0, 3), (10.0, 6), (60.0, 8), (250.0, 10), (600.0, 13)];
        for (run, want) in shortest {
            let got = token_requests_when_every_token_is_refused(secs(run), 0.0);
            assert_eq!(got, want, "{run} s");
            if run < 255.5 {
                assert!(f64::from(got) <= 2.0 + (2.0 * run + 1.0).log2(), "{run} s");
            }
        }
        // The longest (1 s, 2 s, 4 s, … then 5 min): 2 + log2(t + 1) until
        // 511 s, then one per 5 minutes.
        let longest = [(1.0, 2), (10.0, 5), (60.0, 7), (600.0, 11), (3600.0, 21)];
        for (run, want) in longest {
            let got = token_requests_when_every_token_is_refused(secs(run), 0.999_999);
            assert_eq!(got, want, "{run} s");
        }
    }

    #[test]
    fn an_answer_for_the_current_token_ends_the_record() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        s.on_refusal(1, Some(1), t0, &b, || 0.0);
        s.on_refusal(2, Some(2), t0, &b, || 0.0);
        assert_ne!(s, RefusalState::default());
        // What `TokenCache::answered` does for the current token.
        s = RefusalState::default();
        // So a 401 for it gets a new token at once, and the steps restart.
        assert_eq!(s.on_refusal(2, Some(2), t0, &b, || 0.0), Verdict::Refetch);
        assert_eq!(s.on_refusal(3, Some(3), t0, &b, || 0.0), step(1, 0.5));
    }

    #[test]
    fn joining_the_fleets_step_passes_401s_through_then_numbers_the_next_step_after_it() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        // A process that just started takes the token the fleet's step 3
        // runs for, 4 s more: its 401s pass through, nothing fetched.
        assert!(s.join(3, Some(t0 + secs(4.0))));
        assert_eq!(
            s.on_refusal(1, Some(1), t0, &b, || 0.0),
            Verdict::BackedOff(None)
        );
        // After the step: one new token, whose refusal starts step 4.
        let after = t0 + secs(4.0);
        assert_eq!(
            s.on_refusal(1, Some(1), after, &b, || 0.0),
            Verdict::Refetch
        );
        assert_eq!(s.on_refusal(2, Some(2), after, &b, || 0.0), step(4, 4.0));
    }

    #[test]
    fn a_refetch_that_finds_the_fleets_step_running_joins_it() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        assert_eq!(s.on_refusal(1, Some(1), t0, &b, || 0.0), Verdict::Refetch);
        // The fetch took the token Redis holds back (generation 2), in the
        // fleet's step 1 for 0.3 s more: its resend's 401 passes through.
        assert!(s.join(1, Some(t0 + secs(0.3))));
        assert_eq!(
            s.on_refusal(2, Some(2), t0, &b, || 0.0),
            Verdict::BackedOff(None)
        );
        assert_eq!(
            s,
            RefusalState {
                refused: Some(1),
                steps: 1,
                until: Some(t0 + secs(0.3)),
            }
        );
    }

    #[test]
    fn joining_keeps_the_longer_step_and_the_higher_number() {
        let t0 = Instant::now();
        let mut s = RefusalState {
            refused: Some(4),
            steps: 5,
            until: Some(t0 + secs(10.0)),
        };
        // A shorter, earlier step of the fleet changes nothing.
        assert!(!s.join(2, Some(t0 + secs(1.0))));
        // A longer one runs until its end; no step started here by it.
        assert!(!s.join(6, Some(t0 + secs(20.0))));
        assert_eq!((s.steps, s.until), (6, Some(t0 + secs(20.0))));
        // A step that is over: its number only.
        let mut fresh = RefusalState::default();
        assert!(!fresh.join(7, None));
        assert_eq!(
            fresh,
            RefusalState {
                refused: None,
                steps: 7,
                until: None
            }
        );
    }

    #[test]
    fn an_absurd_backoff_saturates() {
        let t0 = Instant::now();
        let forever = Backoff::new(Duration::MAX, Duration::MAX);
        let mut s = RefusalState::default();
        s.on_refusal(1, Some(1), t0, &forever, || 0.0);
        let verdict = s.on_refusal(2, Some(2), t0, &forever, || 0.0);
        assert!(
            matches!(verdict, Verdict::BackedOff(Some(_))),
            "{verdict:?}"
        );
        assert!(s.until.is_some_and(|until| until > t0));
    }
}
