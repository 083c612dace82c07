//! The hot path's reading of the clock: the coarse clocks where there are
//! some (Linux, Android: `CLOCK_MONOTONIC_COARSE` and
//! `CLOCK_REALTIME_COARSE`, the time of the last tick, read from the vDSO
//! in a few nanoseconds, against ~25 for a precise clock), and a deadline
//! on them that ends a token's fast path early enough that the coarse
//! clocks' lag cannot matter.
//!
//! The fast path only says "certainly before `stale_at` and `expires_at`";
//! everything after its deadline goes to the exact check on the crate's
//! clock ([`super::Instant`], `CLOCK_BOOTTIME`). So a token is never sent
//! past `expires_at` as long as the coarse clocks lag the precise ones by
//! less than [`GUARD`] plus their resolution. The kernel updates them every
//! tick (their resolution, 1–4 ms); the guard covers ticks delayed by a
//! busy or descheduled CPU. With the default refresh policy the fast path
//! ends minutes before expiry anyway (at `stale_at`); only a token whose
//! refresh failed, or a policy with no refresh lead, comes near
//! `expires_at` on it.
//!
//! There is no coarse `CLOCK_BOOTTIME`, so the deadline is on two clocks
//! and the fast path holds only while both are before it: the monotonic
//! one does not count a suspend but never jumps; the real-time one counts
//! a suspend (the kernel moves it forward on waking up) but jumps when the
//! system time is set. A suspend moves the real-time clock past the
//! deadline, a clock set back leaves the monotonic one to end it, a clock
//! set forward ends it early: whatever happens, the token goes to the
//! exact check before its deadline on `CLOCK_BOOTTIME` has passed (short
//! of a suspend and a clock set back by as much at once).
//!
//! A deadline is converted by reading `CLOCK_MONOTONIC` and
//! `CLOCK_REALTIME` *before* the crate's clock, so the conversion errs
//! early, never late. A token cached while Tokio's clock is paused (a test
//! driving time) gets no deadline: the coarse clocks do not follow Tokio's,
//! so its every lookup reads the crate's clock, which does. Elsewhere
//! there is no fast path: every lookup reads the crate's clock.

use std::time::Duration;

use super::Instant;

/// How much earlier than the precise deadline the fast path ends, on top of
/// the coarse clocks' resolution.
pub(crate) const GUARD: Duration = Duration::from_millis(50);

/// A reading of the coarse clocks, or a deadline on them, in nanoseconds;
/// always 0 where there are none (so no fast-path deadline is ever ahead
/// of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticks {
    monotonic: u64,
    real: u64,
}

impl Ticks {
    /// The end of every fast path where there is no coarse clock.
    pub(crate) const NEVER: Ticks = Ticks {
        monotonic: 0,
        real: 0,
    };

    /// No end.
    const UNBOUNDED: Ticks = Ticks {
        monotonic: u64::MAX,
        real: u64::MAX,
    };

    /// Whether this reading is before `deadline` on both clocks.
    #[inline(always)]
    pub(crate) fn before(self, deadline: Ticks) -> bool {
        (self.monotonic < deadline.monotonic) & (self.real < deadline.real)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};

    use super::{Instant, Ticks, GUARD};
    use crate::clock::suspend;

    fn nanos(t: Timespec) -> u64 {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    /// The coarse clocks' resolution (a tick), asked once.
    fn resolution() -> u64 {
        static RESOLUTION: OnceLock<u64> = OnceLock::new();
        *RESOLUTION.get_or_init(|| {
            let res = |clock| nanos(clock_getres(clock));
            res(ClockId::MonotonicCoarse).max(res(ClockId::RealtimeCoarse))
        })
    }

    /// A reading without `nanos`' checks, per request: neither clock is
    /// before 1970, and their nanoseconds overflow a `u64` after 584 years.
    #[inline(always)]
    fn raw(t: Timespec) -> u64 {
        (t.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec as u64)
    }

    #[inline]
    pub(super) fn now() -> Ticks {
        let monotonic = raw(clock_gettime(ClockId::MonotonicCoarse));
        let real = raw(clock_gettime(ClockId::RealtimeCoarse));
        Ticks {
            monotonic,
            real: real.wrapping_add(suspend::simulated() as u64),
        }
    }

    pub(super) fn deadline(at: Instant) -> Ticks {
        if crate::clock::tokio_paused() {
            return Ticks::NEVER;
        }
        // The precise clocks first: the crate's clock is read later, so
        // `at` converted this way lands no later than `at`.
        let monotonic = nanos(clock_gettime(ClockId::Monotonic));
        let real = nanos(clock_gettime(ClockId::Realtime))
            .saturating_add(suspend::simulated().unsigned_abs());
        let left = at.saturating_duration_since(Instant::now());
        let early = GUARD.saturating_add(Duration::from_nanos(resolution()));
        let left = u64::try_from(left.saturating_sub(early).as_nanos()).unwrap_or(u64::MAX);
        if left == 0 {
            return Ticks::NEVER;
        }
        Ticks {
            monotonic: monotonic.saturating_add(left),
            real: real.saturating_add(left),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::{Instant, Ticks};

    #[inline]
    pub(super) fn now() -> Ticks {
        Ticks::NEVER
    }

    pub(super) fn deadline(_at: Instant) -> Ticks {
        Ticks::NEVER
    }
}

/// The coarse clocks now.
#[inline]
pub(crate) fn now() -> Ticks {
    imp::now()
}

/// The end of the fast path for a token that must go to the exact check
/// from `at` on: a `Ticks` that the coarse clocks reach [`GUARD`] plus
/// their resolution before the crate's clock reaches `at`, or
/// [`Ticks::NEVER`] (where there is no coarse clock, while Tokio's clock is
/// paused, or when `at` is that close already). `None` (no such instant)
/// has no end.
pub(crate) fn deadline(at: Option<Instant>) -> Ticks {
    match at {
        Some(at) => imp::deadline(at),
        None => Ticks::UNBOUNDED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_inside_the_guard_has_passed_already() {
        let soon = Instant::now() + GUARD / 2;
        assert_eq!(deadline(Some(soon)), Ticks::NEVER);
        assert!(!now().before(deadline(Some(Instant::now()))));
        assert_eq!(deadline(None), Ticks::UNBOUNDED);
        assert!(now().before(deadline(None)));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_far_deadline_is_ahead_of_the_coarse_clocks() {
        let wait = Duration::from_secs(3600);
        let d = deadline(Some(Instant::now() + wait));
        assert!(now().before(d));
    }

    // A suspend moves the real-time clock past a deadline the monotonic
    // one has not reached: the fast path ends.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_suspend_past_the_deadline_ends_the_fast_path() {
        let d = deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert!(now().before(d));
        crate::clock::suspend::simulate(Duration::from_secs(61));
        assert!(!now().before(d));
    }

    // Tokio's paused clock is not the coarse clocks': no fast path then.
    #[tokio::test(start_paused = true)]
    async fn no_fast_path_while_tokios_clock_is_paused() {
        let d = deadline(Some(Instant::now() + Duration::from_secs(3600)));
        assert_eq!(d, Ticks::NEVER);
    }
}
