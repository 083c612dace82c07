//! When a cached token goes stale and expires ([`RefreshPolicy`]), and how
//! long to wait after a failed fetch ([`Backoff`]). Pure arithmetic: the
//! random values are passed in, so the tests are deterministic.

use std::time::Duration;

use crate::clock::Instant;

/// When to refresh (the rule is in the [`cache`](crate::cache) module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    refresh_before: Duration,
    max_fraction: f64,
    jitter: f64,
    lifetime_when_unknown: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_before: Duration::from_secs(300),
            max_fraction: 0.25,
            jitter: 0.25,
            lifetime_when_unknown: Duration::from_secs(3600),
        }
    }
}

impl RefreshPolicy {
    /// The most time before expiry at which a refresh starts (default 5 min).
    pub fn refresh_before(mut self, lead: Duration) -> Self {
        self.refresh_before = lead;
        self
    }

    /// The largest fraction of a token's lifetime the refresh lead may be
    /// before jitter (default 0.25), clamped to `0.0..=0.5`.
    pub fn max_fraction(mut self, fraction: f64) -> Self {
        self.max_fraction = fraction_or_default(fraction);
        self
    }

    /// Random extra lead, as a fraction of the lead (default 0.25, clamped to
    /// `0.0..=0.5`), so a fleet started together does not refresh together.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = fraction_or_default(jitter);
        self
    }

    /// The lifetime assumed when the server sends no `expires_in` (default
    /// 1 hour, the common server default). If the token dies sooner, the
    /// resource server's 401 triggers a refetch.
    pub fn lifetime_when_unknown(mut self, lifetime: Duration) -> Self {
        self.lifetime_when_unknown = lifetime;
        self
    }

    /// The lifetime of a token that came with `expires_in` (or none).
    pub(super) fn lifetime(&self, expires_in: Option<Duration>) -> Duration {
        expires_in.unwrap_or(self.lifetime_when_unknown)
    }

    /// `(stale_at, expires_at)` for a token issued at `issued` with lifetime
    /// `lifetime`; `None` means "never" (the instant cannot be represented).
    pub(super) fn schedule(
        &self,
        issued: Instant,
        lifetime: Duration,
        unit_random: f64,
    ) -> (Option<Instant>, Option<Instant>) {
        // In f64 seconds, then back: no `Duration` overflow for absurd
        // lifetimes. `max_fraction` ≤ 0.5 and `jitter` ≤ 0.5, so a token is
        // fresh for at least a quarter of its lifetime.
        let base = self
            .refresh_before
            .as_secs_f64()
            .min(lifetime.as_secs_f64() * self.max_fraction);
        let lead = Duration::try_from_secs_f64(base * (1.0 + self.jitter * unit_random))
            .unwrap_or(Duration::MAX);
        // At least 1 s (a whole-second server clock can take that much off
        // the lifetime), but at most a tenth of a very short lifetime.
        let margin = Duration::from_secs(10)
            .min((lifetime / 20).max(Duration::from_secs(1).min(lifetime / 10)));
        let expires_at = issued.checked_add(lifetime.saturating_sub(margin));
        let stale_at = issued.checked_add(lifetime.saturating_sub(lead));
        let stale_at = match (stale_at, expires_at) {
            (Some(s), Some(e)) => Some(s.min(e)),
            (s, _) => s,
        };
        (stale_at, expires_at)
    }
}

/// A policy fraction clamped to `0.0..=0.5`; NaN or infinite means the
/// default, 0.25.
fn fraction_or_default(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 0.5)
    } else {
        0.25
    }
}

/// How long to wait after a failed fetch before the next one
/// ([`TokenCacheBuilder::backoff`](super::TokenCacheBuilder::backoff)), or
/// before the next new token for a resource server that refuses new tokens
/// too ([`AuthPolicy::unauthorized_backoff`](crate::layer::AuthPolicy::unauthorized_backoff)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// `initial` after the first failure, doubling per failure up to `max`,
    /// each multiplied by a random factor in `[0.5, 1)` (defaults: 1 s, 30 s).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The wait after `failures` failures in a row. `valid_for` is how long
    /// the cached token stays usable: the wait is cut to half of that (but
    /// not below 50 ms) so a short-lived token gets several tries before it
    /// expires. A server's `Retry-After` is honoured over both, up to
    /// `max(max, 5 min)`.
    pub(super) fn delay(
        &self,
        failures: u32,
        unit_random: f64,
        retry_after: Option<Duration>,
        valid_for: Option<Duration>,
    ) -> Duration {
        const FLOOR: Duration = Duration::from_millis(50);
        let exp = self
            .initial
            .saturating_mul(
                1u32.checked_shl(failures.saturating_sub(1).min(31))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max);
        let mut jittered = exp.mul_f64(0.5 + 0.5 * unit_random);
        if let Some(valid) = valid_for {
            jittered = jittered.min((valid / 2).max(FLOOR));
        }
        match retry_after {
            Some(r) => jittered.max(r.min(self.max.max(Duration::from_secs(300)))),
            None => jittered,
        }
    }
}

/// A uniform random number in `[0, 1)`, for jitter.
pub(super) fn unit_random() -> f64 {
    // Jitter only; a failing OS source falls back to the clock's low bits.
    let bits = getrandom::u32().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    });
    f64::from(bits) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn schedule_works_for_short_and_long_tokens() {
        let p = RefreshPolicy::default();
        let t0 = Instant::now();
        // (lifetime, stale at without jitter, stale at with full jitter, expires at)
        let cases = [
            (secs(86_400), 86_100.0, 86_025.0, 86_390.0),
            (secs(3_600), 3_300.0, 3_225.0, 3_590.0),
            (secs(60), 45.0, 41.25, 57.0),
            (secs(20), 15.0, 13.75, 19.0),
            (secs(10), 7.5, 6.875, 9.0),
            (secs(5), 3.75, 3.4375, 4.5),
            (secs(1), 0.75, 0.6875, 0.9),
        ];
        for (lifetime, stale0, stale1, exp) in cases {
            let (s0, e) = p.schedule(t0, lifetime, 0.0);
            let (s1, _) = p.schedule(t0, lifetime, 1.0);
            let at = |x: Option<Instant>| x.unwrap().saturating_duration_since(t0).as_secs_f64();
            assert!((at(s0) - stale0).abs() < 1e-6, "{lifetime:?}: {}", at(s0));
            assert!((at(s1) - stale1).abs() < 1e-6, "{lifetime:?}: {}", at(s1));
            assert!((at(e) - exp).abs() < 1e-6, "{lifetime:?}: {}", at(e));
            assert!(s1 <= s0 && s0 <= e);
        }
        // Saturation: never panics, never "expires" when unrepresentable.
        let (s, e) = p.schedule(t0, Duration::from_secs(u64::MAX), 1.0);
        assert!(e.is_none());
        let _ = s;
        // A lead longer than the margin allows still goes stale no later than expiry.
        let p = RefreshPolicy::default().max_fraction(0.0);
        let (s, e) = p.schedule(t0, secs(100), 0.5);
        assert!(s <= e);
    }

    #[test]
    fn no_token_is_sent_in_its_last_second() {
        // oidc-provider (and any server that keeps `exp` in whole seconds)
        // refuses a token issued at x.99 s with `expires_in` N from x + N s,
        // N - 1 s after the request was sent: the client must be done with
        // it by then, whatever the jitter. Shorter tokens give up a tenth.
        let p = RefreshPolicy::default();
        let t0 = Instant::now();
        let cases = [2, 5, 9, 10, 19, 20, 21, 60, 3_600, 86_400].map(secs);
        for lifetime in cases {
            let last = secs(1).min(lifetime / 10);
            for jitter in [0.0, 0.5, 1.0] {
                let (s, e) = p.schedule(t0, lifetime, jitter);
                let e = e.unwrap();
                assert!(e <= t0 + lifetime - last, "{lifetime:?}");
                assert!(s.unwrap() < e, "{lifetime:?} goes stale before it expires");
            }
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let b = Backoff::new(secs(1), secs(30));
        assert_eq!(b.delay(1, 0.0, None, None), Duration::from_millis(500));
        assert_eq!(b.delay(1, 0.999_999, None, None).as_millis(), 999);
        assert_eq!(b.delay(2, 0.0, None, None), secs(1));
        assert_eq!(b.delay(3, 0.0, None, None), secs(2));
        assert_eq!(b.delay(10, 0.0, None, None), secs(15));
        assert_eq!(b.delay(u32::MAX, 0.0, None, None), secs(15));
        assert_eq!(b.delay(1, 0.0, Some(secs(20)), None), secs(20));
        // A hostile Retry-After is capped at max(backoff max, 5 min).
        assert_eq!(b.delay(1, 0.0, Some(secs(86_400)), None), secs(300));
        // A token valid for 250 ms more: retry within 125 ms, never below 50 ms.
        let ms = Duration::from_millis;
        assert_eq!(b.delay(1, 0.0, None, Some(ms(250))), ms(125));
        assert_eq!(b.delay(5, 0.0, None, Some(ms(250))), ms(125));
        assert_eq!(b.delay(5, 0.0, None, Some(ms(30))), ms(50));
        // A long-lived token leaves the exponential backoff alone.
        assert_eq!(b.delay(3, 0.0, None, Some(secs(3600))), secs(2));
        // The server's Retry-After still wins.
        assert_eq!(b.delay(1, 0.0, Some(secs(2)), Some(ms(250))), secs(2));
    }
}
