//! The hot path's clock: the coarse monotonic clock where there is one
//! (Linux, Android: `CLOCK_MONOTONIC_COARSE`, the time of the last tick,
//! read from the vDSO in a few nanoseconds, against ~25 for `Instant::now`),
//! and a deadline on it that ends a token's fast path early enough that the
//! coarse clock's lag cannot matter.
//!
//! The fast path only says "certainly before `stale_at` and `expires_at`";
//! everything after its deadline goes to the exact check on `Instant`, as
//! before. So a token is never sent past `expires_at` as long as the coarse
//! clock lags the precise one by less than [`GUARD`] plus its resolution.
//! The kernel updates it every tick (its resolution, 1–4 ms); the guard
//! covers ticks delayed by a busy or descheduled CPU. With the default
//! refresh policy the fast path ends minutes before expiry anyway (at
//! `stale_at`); only a token whose refresh failed, or a policy with no
//! refresh lead, comes near `expires_at` on it.
//!
//! `std`'s `Instant` is `CLOCK_MONOTONIC` on these systems (see its docs),
//! the clock the coarse one is a coarse copy of; a deadline is converted by
//! reading `CLOCK_MONOTONIC` *before* `Instant::now`, so the conversion errs
//! early, never late. Elsewhere there is no fast path: every lookup reads
//! `Instant` (the behaviour before this clock existed).

use std::time::{Duration, Instant};

/// How much earlier than the precise deadline the fast path ends, on top of
/// the coarse clock's resolution.
pub(super) const GUARD: Duration = Duration::from_millis(50);

/// A reading of the coarse monotonic clock, in nanoseconds; always 0 where
/// there is none (so no fast-path deadline is ever ahead of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticks(u64);

impl Ticks {
    /// The end of every fast path where there is no coarse clock.
    pub(super) const NEVER: Ticks = Ticks(0);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};

    use super::{Ticks, GUARD};

    fn nanos(t: Timespec) -> u64 {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    /// The coarse clock's resolution (a tick), asked once.
    fn resolution() -> u64 {
        static RESOLUTION: OnceLock<u64> = OnceLock::new();
        *RESOLUTION.get_or_init(|| nanos(clock_getres(ClockId::MonotonicCoarse)))
    }

    #[inline]
    pub(super) fn now() -> Ticks {
        // Per request, so without `nanos`' checks: a monotonic reading is
        // never negative, and its nanoseconds overflow a `u64` after 584
        // years of uptime.
        let t = clock_gettime(ClockId::MonotonicCoarse);
        let (secs, nanos) = (t.tv_sec as u64, t.tv_nsec as u64);
        Ticks(secs.wrapping_mul(1_000_000_000).wrapping_add(nanos))
    }

    pub(super) fn deadline(at: Instant) -> Ticks {
        // `CLOCK_MONOTONIC` first: `Instant::now` (the same clock) is read
        // later, so `at` converted this way lands no later than `at`.
        let monotonic = nanos(clock_gettime(ClockId::Monotonic));
        let left = at.saturating_duration_since(Instant::now());
        let early = GUARD.saturating_add(Duration::from_nanos(resolution()));
        let left = u64::try_from(left.saturating_sub(early).as_nanos()).unwrap_or(u64::MAX);
        if left == 0 {
            return Ticks::NEVER;
        }
        Ticks(monotonic.saturating_add(left))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::time::Instant;

    use super::Ticks;

    #[inline]
    pub(super) fn now() -> Ticks {
        Ticks(0)
    }

    pub(super) fn deadline(_at: Instant) -> Ticks {
        Ticks::NEVER
    }
}

/// The coarse clock now.
#[inline]
pub(super) fn now() -> Ticks {
    imp::now()
}

/// The end of the fast path for a token that must go to the exact check
/// from `at` on: a `Ticks` that the coarse clock reaches [`GUARD`] plus its
/// resolution before the precise clock reaches `at`, or [`Ticks::NEVER`]
/// (where there is no coarse clock, or `at` is that close already). `None`
/// (no such instant) has no end.
pub(super) fn deadline(at: Option<Instant>) -> Ticks {
    match at {
        Some(at) => imp::deadline(at),
        None => Ticks(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_inside_the_guard_has_passed_already() {
        let soon = Instant::now() + GUARD / 2;
        assert_eq!(deadline(Some(soon)), Ticks::NEVER);
        assert!(now() >= deadline(Some(Instant::now())));
        assert_eq!(deadline(None), Ticks(u64::MAX));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_far_deadline_is_ahead_of_the_coarse_clock() {
        let wait = Duration::from_secs(3600);
        let before = now();
        let d = deadline(Some(Instant::now() + wait));
        assert!(d > before);
    }
}
