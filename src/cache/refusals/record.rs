//! The record of 401s as a pure state machine: one state per resource
//! server ([`RefusalState`], random values passed in), and the list of
//! them ([`Records`]), bounded. `TokenCache`'s side is in `mod.rs`.

use std::time::Duration;

use super::Resource;
use crate::clock::Instant;
use crate::tier::StepStarted;

/// How many resource servers' records are kept at most: past it, the
/// oldest with no step running is forgotten (it then costs at most one
/// more token request), so a client of many APIs keeps a bounded record.
const MAX_RESOURCES: usize = 64;

/// Guarded by `Refusals::state`.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// One state per resource server, none of them the default (no
    /// record); `None` for a fleet step joined before any 401 here (no
    /// resource to put it on), until a resource refuses the token.
    pub(super) list: Vec<(Option<Resource>, RefusalState)>,
    /// The resource whose 401 last invalidated a token: a fleet step the
    /// fetch after it finds is that resource's.
    last_refetch: Option<Resource>,
}

impl Records {
    fn position(&self, key: Option<&Resource>) -> Option<usize> {
        self.list.iter().position(|(k, _)| k.as_ref() == key)
    }

    fn get(&self, key: Option<&Resource>) -> Option<&RefusalState> {
        self.position(key).map(|i| &self.list[i].1)
    }

    /// The state for `key`, made if there is none (numbering its steps
    /// after a fleet step joined with no resource).
    fn entry(&mut self, key: Option<&Resource>) -> &mut RefusalState {
        let i = match self.position(key) {
            Some(i) => i,
            None => {
                let steps = self.get(None).map_or(0, |unplaced| unplaced.steps);
                let state = RefusalState {
                    steps,
                    ..RefusalState::default()
                };
                self.list.push((key.cloned(), state));
                self.list.len() - 1
            }
        };
        &mut self.list[i].1
    }

    /// Drops the states that hold nothing, and the oldest ones past
    /// `MAX_RESOURCES` (those with no step running first).
    fn prune(&mut self, now: Instant) {
        self.list
            .retain(|(_, state)| *state != RefusalState::default());
        while self.list.len() > MAX_RESOURCES {
            let running = |s: &RefusalState| s.until.is_some_and(|until| now < until);
            let i = (self.list.iter())
                .position(|(_, s)| !running(s))
                .unwrap_or(0);
            self.list.remove(i);
        }
    }

    /// The decision on a 401 from `from` for generation `sent` (see
    /// [`RefusalState::on_refusal`]). A fleet step joined with no resource
    /// becomes the step of the first resource to refuse the token: its
    /// 401s pass through while the step runs, and its answer ends it.
    pub(super) fn on_refusal(
        &mut self,
        from: &Resource,
        sent: u64,
        current: Option<u64>,
        now: Instant,
        step_delay: impl FnOnce(u32) -> Duration,
    ) -> RefusalDecision {
        if let Some(i) = self.position(None) {
            let (_, unplaced) = self.list.remove(i);
            (self.entry(Some(from))).join(unplaced.steps, unplaced.until);
        }
        let decision = (self.entry(Some(from))).on_refusal(sent, current, now, step_delay);
        if decision == RefusalDecision::Refetch {
            self.last_refetch = Some(from.clone());
        }
        self.prune(now);
        decision
    }

    /// An answer other than 401 from `from` for the current token: ends
    /// that resource's record (and one joined with no resource). The steps
    /// that ran in it; `None` if there was no record.
    pub(super) fn settle(&mut self, from: &Resource) -> Option<u32> {
        let unplaced = self.position(None).map(|i| self.list.remove(i));
        let own = self.position(Some(from)).map(|i| self.list.remove(i).1);
        match (own, unplaced) {
            (Some(state), _) => Some(state.steps),
            // A step joined with no resource is not known to be this
            // resource's: the fleet's record is left to run out.
            (None, Some(_)) => Some(0),
            (None, None) => None,
        }
    }

    /// Joins the fleet's step `number` (`until`: while it runs) in the
    /// record of the resource whose 401 led to the last refetch, or in the
    /// one of its own. Whether a step now runs here that did not.
    pub(super) fn join(&mut self, number: u32, until: Option<Instant>, now: Instant) -> bool {
        let key = self.last_refetch.clone();
        let joined = self.entry(key.as_ref()).join(number, until);
        self.prune(now);
        joined
    }
}

/// One resource server's record; the default is "nothing to settle".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RefusalState {
    /// The newest generation a 401 invalidated: newer tokens were fetched
    /// because of a 401.
    refused: Option<u64>,
    /// Backoff steps taken since the last answer other than 401.
    steps: u32,
    /// Until when 401s pass through; `None` when no step is running.
    pub(super) until: Option<Instant>,
}

/// What a 401 that a new token may fix leads to, as
/// [`TokenCache::refused`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalDecision {
    /// The token sent was current: it is now invalidated, and a new one is
    /// to be fetched.
    Refetch,
    /// The token sent is no longer current: the newer one (or the fetch of
    /// one) answers it; nothing was invalidated.
    Replaced,
    /// New tokens are refused too: nothing was invalidated, and nothing is
    /// to be fetched; the 401 passes through. `Some` for the 401 that
    /// started a backoff step.
    BackedOff(Option<StepStarted>),
}

impl RefusalState {
    /// The decision on a 401 for generation `sent` at `now`, `current` being
    /// the generation cached (`None`: none), and the next state.
    /// `step_delay(n)` is asked for the delay of step `n` when one starts.
    fn on_refusal(
        &mut self,
        sent: u64,
        current: Option<u64>,
        now: Instant,
        step_delay: impl FnOnce(u32) -> Duration,
    ) -> RefusalDecision {
        if self.until.is_some_and(|until| now < until) {
            return RefusalDecision::BackedOff(None);
        }
        if current != Some(sent) {
            return RefusalDecision::Replaced;
        }
        // A step that has passed lets this 401 get one new token.
        let step_passed = self.until.take().is_some();
        if !step_passed && self.refused.is_some_and(|refused| sent > refused) {
            self.steps = self.steps.saturating_add(1);
            let delay = step_delay(self.steps);
            self.until = Some(later(now, delay));
            let number = self.steps;
            return RefusalDecision::BackedOff(Some(StepStarted { number, delay }));
        }
        self.refused = Some(sent);
        RefusalDecision::Refetch
    }

    /// Joins the fleet's backoff step `number`: the next step here is
    /// numbered after it, and, with `until`, the 401s pass through until
    /// then (or later, if a step of this process's runs longer). Whether a
    /// step now runs here that did not.
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
pub(super) fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::Backoff;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// The default of `AuthPolicy::unauthorized_backoff`.
    fn backoff() -> Backoff {
        Backoff::new(secs(1.0), secs(300.0))
    }

    /// The delays of `backoff`'s steps with the jitter `unit_random`.
    fn delay(backoff: &Backoff, unit_random: f64) -> impl FnOnce(u32) -> Duration + '_ {
        move |step| backoff.delay(step, unit_random, None, None)
    }

    fn step(number: u32, delay: f64) -> RefusalDecision {
        RefusalDecision::BackedOff(Some(StepStarted {
            number,
            delay: secs(delay),
        }))
    }

    #[test]
    fn a_token_fetched_after_a_401_and_refused_starts_a_backoff() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        // Generation 1 refused: get a new one.
        assert_eq!(
            s.on_refusal(1, Some(1), t0, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        // Another 401 for generation 1, now invalidated: nothing to do.
        assert_eq!(
            s.on_refusal(1, None, t0, delay(&b, 0.0)),
            RefusalDecision::Replaced
        );
        // Generation 2, fetched because of it, refused too: 0.5 s (1 s,
        // jittered with 0.0) of 401s passing through.
        assert_eq!(s.on_refusal(2, Some(2), t0, delay(&b, 0.0)), step(1, 0.5));
        let during = t0 + secs(0.4);
        for sent in [1, 2] {
            let decision = s.on_refusal(sent, Some(2), during, delay(&b, 0.0));
            assert_eq!(decision, RefusalDecision::BackedOff(None));
        }
        // After the step, a 401 for an older token does not use it up...
        let after = t0 + secs(0.5);
        assert_eq!(
            s.on_refusal(1, Some(2), after, delay(&b, 0.0)),
            RefusalDecision::Replaced
        );
        // ...the next one for the current token gets one new token,
        assert_eq!(
            s.on_refusal(2, Some(2), after, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        // and when that one is refused too, the next step is twice as long.
        assert_eq!(
            s.on_refusal(3, Some(3), after, delay(&b, 0.5)),
            step(2, 1.5)
        );
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
            if s.on_refusal(current, Some(current), now, delay(&b, random))
                == RefusalDecision::Refetch
            {
                fetches += 1;
                current += 1;
                // The resend, with the new token: refused too.
                s.on_refusal(current, Some(current), now, delay(&b, random));
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
        s.on_refusal(1, Some(1), t0, delay(&b, 0.0));
        s.on_refusal(2, Some(2), t0, delay(&b, 0.0));
        assert_ne!(s, RefusalState::default());
        // What `TokenCache::answered` does for the current token.
        s = RefusalState::default();
        // So a 401 for it gets a new token at once, and the steps restart.
        assert_eq!(
            s.on_refusal(2, Some(2), t0, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        assert_eq!(s.on_refusal(3, Some(3), t0, delay(&b, 0.0)), step(1, 0.5));
    }

    #[test]
    fn joining_the_fleets_step_passes_401s_through_then_numbers_the_next_step_after_it() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        // A process that just started takes the token the fleet's step 3
        // runs for, 4 s more: its 401s pass through, nothing fetched.
        assert!(s.join(3, Some(t0 + secs(4.0))));
        assert_eq!(
            s.on_refusal(1, Some(1), t0, delay(&b, 0.0)),
            RefusalDecision::BackedOff(None)
        );
        // After the step: one new token, whose refusal starts step 4.
        let after = t0 + secs(4.0);
        assert_eq!(
            s.on_refusal(1, Some(1), after, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        assert_eq!(
            s.on_refusal(2, Some(2), after, delay(&b, 0.0)),
            step(4, 4.0)
        );
    }

    #[test]
    fn a_refetch_that_finds_the_fleets_step_running_joins_it() {
        let (t0, b) = (Instant::now(), backoff());
        let mut s = RefusalState::default();
        assert_eq!(
            s.on_refusal(1, Some(1), t0, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        // The fetch took the token Redis holds back (generation 2), in the
        // fleet's step 1 for 0.3 s more: its resend's 401 passes through.
        assert!(s.join(1, Some(t0 + secs(0.3))));
        assert_eq!(
            s.on_refusal(2, Some(2), t0, delay(&b, 0.0)),
            RefusalDecision::BackedOff(None)
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
        s.on_refusal(1, Some(1), t0, delay(&forever, 0.0));
        let decision = s.on_refusal(2, Some(2), t0, delay(&forever, 0.0));
        assert!(
            matches!(decision, RefusalDecision::BackedOff(Some(_))),
            "{decision:?}"
        );
        assert!(s.until.is_some_and(|until| until > t0));
    }

    fn at(origin: &str) -> Resource {
        Resource::of(&origin.parse().unwrap())
    }

    #[test]
    fn another_resources_answers_do_not_end_a_resources_backoff() {
        let (t0, b) = (Instant::now(), backoff());
        let (x, y) = (at("http://127.0.0.1:1"), at("http://127.0.0.1:2"));
        let mut r = Records::default();
        assert_eq!(
            r.on_refusal(&x, 1, Some(1), t0, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        assert_eq!(
            r.on_refusal(&x, 2, Some(2), t0, delay(&b, 0.0)),
            step(1, 0.5)
        );
        // Y takes generation 2: X's record stays.
        assert_eq!(r.settle(&y), None);
        let during = t0 + secs(0.4);
        let decision = r.on_refusal(&x, 2, Some(2), during, delay(&b, 0.0));
        assert_eq!(decision, RefusalDecision::BackedOff(None));
        // X's answer ends X's record, with the step that ran in it.
        assert_eq!(r.settle(&x), Some(1));
        assert!(r.list.is_empty());
        // Y's own refusals have their own record: the token X refused
        // before is new to Y.
        assert_eq!(
            r.on_refusal(&x, 2, Some(2), during, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        assert_eq!(
            r.on_refusal(&y, 3, Some(3), during, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        assert_eq!(
            r.on_refusal(&x, 4, Some(4), during, delay(&b, 0.0)),
            step(1, 0.5)
        );
    }

    #[test]
    fn a_fleet_step_is_joined_by_the_resource_that_led_to_the_refetch() {
        let (t0, b) = (Instant::now(), backoff());
        let (x, y) = (at("http://127.0.0.1:1"), at("http://127.0.0.1:2"));
        let mut r = Records::default();
        // A process that has just started takes the fleet's step 2. An
        // answer for the token before any 401 ends it here (the fleet's
        // record is left to run out: it is not known to be this
        // resource's).
        assert!(r.join(2, Some(t0 + secs(1.0)), t0));
        assert_eq!(r.settle(&y), Some(0));
        assert!(r.list.is_empty());
        // Joined again: the first resource to refuse the token takes the
        // step; its 401s pass through while it runs, and its answer ends
        // the fleet's step too.
        assert!(r.join(2, Some(t0 + secs(1.0)), t0));
        let decision = r.on_refusal(&x, 1, Some(1), t0, delay(&b, 0.0));
        assert_eq!(decision, RefusalDecision::BackedOff(None));
        assert_eq!(r.settle(&y), None);
        assert_eq!(r.settle(&x), Some(2));
        assert_eq!(
            r.on_refusal(&x, 1, Some(1), t0, delay(&b, 0.0)),
            RefusalDecision::Refetch
        );
        // The refetch after X's 401 finds the fleet's step: X's.
        assert!(r.join(3, Some(t0 + secs(1.0)), t0));
        let decision = r.on_refusal(&x, 2, Some(2), t0, delay(&b, 0.0));
        assert_eq!(decision, RefusalDecision::BackedOff(None));
        assert_eq!(r.settle(&y), None);
        assert_eq!(r.settle(&x), Some(3));
    }

    #[test]
    fn the_record_is_bounded_by_resource() {
        let (t0, b) = (Instant::now(), backoff());
        let mut r = Records::default();
        for port in 0..(MAX_RESOURCES as u16 + 10) {
            let from = at(&format!("http://127.0.0.1:{port}"));
            r.on_refusal(&from, 1, Some(1), t0, delay(&b, 0.0));
        }
        assert_eq!(r.list.len(), MAX_RESOURCES);
    }
}
