//! The one clock the crate's timing decisions read: when a token was
//! issued, goes stale and expires, when a backoff ends, how old a flight
//! is, when a keyed cache's idle entry goes. ([`coarse`] is the hot path's
//! cheap reading of the same clock, with deadlines converted from it.)
//!
//! # A clock that runs through suspend
//!
//! A token's lifetime runs on the authorization server's clock, which does
//! not stop when this machine sleeps. `CLOCK_MONOTONIC` (what `std`'s
//! `Instant` and Tokio's clock read on Linux) does stop while the machine
//! is suspended: a laptop or a VM that sleeps for an hour past a token's
//! expiry would wake up believing the token had its hour still to live,
//! and send it. So on Linux and Android this clock is `CLOCK_BOOTTIME`,
//! the monotonic clock that also counts the time suspended (through
//! rustix, already used for the coarse clock). Elsewhere it is the
//! monotonic clock `std` gives (on macOS that stops during sleep too:
//! a token sent after a wake-up is then refused with a 401, which the
//! layer answers with a new token).
//!
//! # A clock tests can drive
//!
//! Readings follow Tokio's clock too: `tokio::time::pause()` freezes this
//! clock, `tokio::time::advance(d)` (or the paused runtime's auto-advance)
//! moves it by `d`, so a test waits for expiry, a refresh or a backoff on
//! paused time instead of sleeping. Precisely: a reading is Tokio's now
//! (outside a paused runtime, `std`'s monotonic now) plus the time the
//! machine has spent suspended (`CLOCK_BOOTTIME − CLOCK_MONOTONIC`, which
//! only a suspend changes: kept, and taken again when it grew by more than
//! a millisecond, so a paused clock reads exactly the same until advanced). A token
//! cached while the clock is paused keeps no hot-path deadline (the coarse
//! clock does not follow Tokio's), so every lookup of it reads this clock;
//! see [`coarse`]. A test driving time therefore pauses before the cache
//! stores its first token (`#[tokio::test(start_paused = true)]`).
//!
//! The conversion from a `std::time::Instant` ([`Instant::from_std`]) takes
//! the distance from `std`'s now to it, so a reading taken before a
//! suspend and converted after it counts the suspend as if it had not
//! happened: readings that matter (a token's `issued_at`) are taken on this
//! clock directly.

use std::sync::OnceLock;
use std::time::Duration;

pub(crate) mod coarse;

/// A reading of the clock (nanoseconds; signed, so a token restored from
/// long ago is still before now).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Instant(i64);

impl Instant {
    /// Now.
    pub(crate) fn now() -> Instant {
        let tokio = signed_nanos(tokio::time::Instant::now().into_std(), start());
        Instant(
            tokio
                .saturating_add(imp::suspended())
                .saturating_add(suspend::simulated()),
        )
    }

    /// The instant on this clock that `at` (on `std`'s monotonic clock) is.
    pub(crate) fn from_std(at: std::time::Instant) -> Instant {
        let std_now = std::time::Instant::now();
        let now = Instant::now();
        now.saturating_sub_signed(signed_nanos(std_now, at))
    }

    /// `self + d`, or `None` if that cannot be represented.
    pub(crate) fn checked_add(self, d: Duration) -> Option<Instant> {
        let d = i64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(d).map(Instant)
    }

    /// `self − d`, or `None` if that cannot be represented.
    pub(crate) fn checked_sub(self, d: Duration) -> Option<Instant> {
        let d = i64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(d).map(Instant)
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub(crate) fn saturating_duration_since(self, earlier: Instant) -> Duration {
        let nanos = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }

    /// How long ago this was (zero for an instant still ahead).
    pub(crate) fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }

    fn saturating_sub_signed(self, nanos: i64) -> Instant {
        Instant(self.0.saturating_sub(nanos))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of the clock (some 292 years).
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant(i64::MAX))
    }
}

impl std::ops::Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the start of the clock.
    fn sub(self, d: Duration) -> Instant {
        self.checked_sub(d).unwrap_or(Instant(i64::MIN))
    }
}

/// `a − b` in nanoseconds, saturating.
fn signed_nanos(a: std::time::Instant, b: std::time::Instant) -> i64 {
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match a.checked_duration_since(b) {
        Some(d) => nanos(d),
        None => -nanos(b.saturating_duration_since(a)),
    }
}

/// Whether Tokio's clock is paused here (a test): two readings in a row
/// are equal only then (the monotonic clock counts nanoseconds; a clock
/// too coarse to tell counts as paused, which costs only the fast path).
pub(crate) fn tokio_paused() -> bool {
    tokio::time::Instant::now() == tokio::time::Instant::now()
}

/// The clock's zero: its first reading in this process.
fn start() -> std::time::Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::sync::atomic::{AtomicI64, Ordering};

    use rustix::time::{clock_gettime, ClockId, Timespec};

    fn nanos(t: Timespec) -> i64 {
        t.tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec)
    }

    /// How long the machine has been suspended since it booted:
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC`, which only a suspend changes.
    /// Kept as first measured, and measured again when it grew by more than
    /// a millisecond (a suspend), so that it never moves with the time
    /// between two reads. `CLOCK_MONOTONIC` is read first, so a measure
    /// errs high, never low: expiry comes early, never late.
    pub(super) fn suspended() -> i64 {
        static SUSPENDED: AtomicI64 = AtomicI64::new(i64::MIN);
        let monotonic = nanos(clock_gettime(ClockId::Monotonic));
        let measured = nanos(clock_gettime(ClockId::Boottime)).saturating_sub(monotonic);
        let kept = SUSPENDED.load(Ordering::Relaxed);
        if measured > kept.saturating_add(1_000_000) {
            return SUSPENDED
                .fetch_max(measured, Ordering::Relaxed)
                .max(measured);
        }
        kept
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    /// Unknown here: the monotonic clock alone.
    pub(super) fn suspended() -> i64 {
        0
    }
}

/// A suspend the unit tests simulate: from [`suspend::simulate`] on, this
/// thread's `CLOCK_BOOTTIME` and `CLOCK_REALTIME` readings are that much
/// later and its `CLOCK_MONOTONIC` readings are not, as after the machine
/// slept. (One thread's: tests run side by side.)
pub(crate) mod suspend {
    #[cfg(test)]
    thread_local! {
        static SUSPENDED: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
    }

    /// The time this thread's test has simulated being suspended, in
    /// nanoseconds (always 0 outside unit tests).
    #[inline(always)]
    pub(crate) fn simulated() -> i64 {
        #[cfg(test)]
        return SUSPENDED.with(std::cell::Cell::get);
        #[cfg(not(test))]
        0
    }

    /// The machine "sleeps" for `d`: this thread's clocks jump as on
    /// waking up.
    #[cfg(test)]
    pub(crate) fn simulate(d: std::time::Duration) {
        let d = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        SUSPENDED.with(|s| s.set(s.get().saturating_add(d)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_std_and_converts_its_instants() {
        let before = Instant::now();
        let std_at = std::time::Instant::now() + Duration::from_secs(10);
        let at = Instant::from_std(std_at);
        let after = Instant::now();
        let ahead = at.saturating_duration_since(after);
        assert!(ahead <= Duration::from_secs(10), "{ahead:?}");
        assert!(ahead > Duration::from_secs(9), "{ahead:?}");
        assert!(after >= before);
        assert_eq!(before.checked_add(Duration::MAX), None);
        assert_eq!(
            before.saturating_duration_since(after),
            Duration::ZERO,
            "an earlier instant is zero, not a panic"
        );
        assert_eq!((before + Duration::MAX).0, i64::MAX);
    }

    // A suspend moves this clock forward (as `CLOCK_BOOTTIME` after a
    // wake-up) but not `std`'s `Instant` (`CLOCK_MONOTONIC`): an instant
    // converted before the suspend is that much further in the past.
    #[test]
    fn a_suspend_moves_the_clock_and_not_the_monotonic_one() {
        let std_before = std::time::Instant::now();
        let before = Instant::now();
        suspend::simulate(Duration::from_secs(3600));
        let after = Instant::now();
        assert!(after.saturating_duration_since(before) >= Duration::from_secs(3600));
        assert!(std_before.elapsed() < Duration::from_secs(3600));
        let converted = Instant::from_std(std_before);
        assert!(converted.elapsed() < Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_tokios_paused_clock() {
        assert!(tokio_paused());
        let before = Instant::now();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        assert!(Instant::now().saturating_duration_since(before) < Duration::from_millis(1));
        tokio::time::advance(Duration::from_secs(3600)).await;
        let moved = Instant::now().saturating_duration_since(before);
        assert!(moved >= Duration::from_secs(3600), "{moved:?}");
        assert!(moved < Duration::from_secs(3601), "{moved:?}");
    }

    #[test]
    fn a_running_clock_is_not_taken_for_a_paused_one() {
        assert!(!tokio_paused());
    }
}
