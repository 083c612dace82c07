//! A service handle's own copy of the cached token ([`TokenCopy`]).
//!
//! [`TokenCache::lookup`] loads the `ArcSwap` (arc-swap's debt-slot
//! protocol, shared by every thread) and clones the one header every
//! thread clones (a reference count they all write). A handle of the layer that
//! sends many requests (one service polled and called in a loop, a service
//! per connection or per worker) keeps a copy instead: the header in bytes
//! of its own, the token's generation and fast-path deadline
//! (`fresh_until`), and the cache's epoch read before the copy was made.
//! While the epoch is unchanged (nothing stored, invalidated or revoked
//! since) and the coarse clock is before the deadline, the copy is the
//! answer: one relaxed load, one coarse clock read, one clone of a header
//! no other handle shares. Otherwise the handle asks the cache as before.
//!
//! The copy never outlives what [`TokenCache::lookup`] would answer: its
//! deadline is the cached token's own `fresh_until` (so a token is never
//! sent past `expires_at` through a copy either: ARCHITECTURE.md,
//! invariant 11), and every change of the cached token makes the epoch odd
//! before the change and even after (`epoch.rs`), while a copy records the
//! epoch read before it loads the token, and only an even one: from the
//! moment a change can be seen, no copy made before it answers.
//!
//! A handle makes its copy at its second lookup that finds a fresh token,
//! so a clone used for one request (`svc.clone().oneshot(req)`) never pays
//! for one; and a clone starts with none (sharing its parent's bytes would
//! share their count again). Nor is a clone lent its parent's copy for its
//! first request: the parent of per-request clones (an axum state, a
//! client) is seldom called itself, so has none, and checking a lent copy
//! costs what the lookup does (BENCHMARKS.md §2).

use http::HeaderValue;
use std::fmt;

use super::cached::sensitive_header;
use super::{Cached, Lookup, TokenCache};
use crate::clock::coarse::{self, Ticks};

/// One service handle's copy of the cached token. A clone starts empty.
#[derive(Default)]
pub(crate) struct TokenCopy {
    copy: Option<CopiedToken>,
    /// This handle has looked a token up before.
    looked_up: bool,
    /// This handle has made a copy before.
    copied: bool,
}

struct CopiedToken {
    /// The cached header's bytes, copied: its reference count is this
    /// handle's alone.
    header: HeaderValue,
    generation: u64,
    fresh_until: Ticks,
    epoch: u64,
}

impl CopiedToken {
    fn of(cached: &Cached, epoch: u64) -> Option<CopiedToken> {
        Some(CopiedToken {
            header: sensitive_header(&[cached.header.as_bytes()])?,
            generation: cached.generation,
            fresh_until: cached.fresh_until,
            epoch,
        })
    }
}

impl Clone for TokenCopy {
    fn clone(&self) -> Self {
        TokenCopy::default()
    }
}

// By hand: the header holds the token, which is not shown.
impl fmt::Debug for TokenCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCopy")
            .field("generation", &self.copy.as_ref().map(|h| h.generation))
            .finish_non_exhaustive()
    }
}

impl TokenCopy {
    /// The copy's header and generation, if it is of `cache`'s current
    /// token and that token is still on its fast path.
    #[inline(always)]
    pub(crate) fn ready(&self, cache: &TokenCache) -> Option<Lookup> {
        let copy = self.copy.as_ref()?;
        // One relaxed load (`Epoch::unchanged`).
        if cache.shared.epoch.unchanged(copy.epoch) && coarse::now().before(copy.fresh_until) {
            return Some(Lookup::Ready(copy.header.clone(), copy.generation));
        }
        None
    }

    /// Whether this is the handle's first lookup (which makes no copy: a
    /// clone used for one request never pays for one).
    #[inline(always)]
    pub(crate) fn first_lookup(&mut self) -> bool {
        !std::mem::replace(&mut self.looked_up, true)
    }

    /// The cached token when [`TokenCopy::ready`] had none, for a handle
    /// that looked up before: makes a new copy when the cached token is on
    /// its fast path. The `bool` says that this was the handle's first.
    pub(crate) fn refill(&mut self, cache: &TokenCache) -> (Lookup, bool) {
        // The epoch before the token: a change after this read makes the
        // epoch odd before the token changes, so the copy goes out of use.
        // None while a change is under way: no copy then.
        let epoch = cache.shared.epoch.for_copy();
        let guard = cache.shared.current.load();
        self.copy = None;
        let Some(cached) = guard.as_ref() else {
            return (Lookup::Wait, false);
        };
        let now = coarse::now();
        if let (Some(epoch), true) = (epoch, now.before(cached.fresh_until)) {
            if let Some(copy) = CopiedToken::of(cached, epoch) {
                let lookup = Lookup::Ready(copy.header.clone(), copy.generation);
                let first = !self.copied;
                self.copy = Some(copy);
                self.copied = true;
                return (lookup, first);
            }
        }
        (cache.lookup_cached(cached, now), false)
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Instant;
    use std::sync::Arc;

    use super::*;
    use crate::token::{IssuedAt, Token};

    /// Caches a bearer token `access_token` living an hour, as a fetch does.
    fn store(cache: &TokenCache, access_token: &str) -> u64 {
        let issued = IssuedAt::now();
        let json = format!(
            r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":3600}}"#
        );
        let token = Token::from_json(json.as_bytes(), issued).unwrap();
        let cached = (cache
            .shared
            .admit(token, &cache.shared.fetcher.identity().now()))
        .unwrap();
        let generation = cached.generation;
        cache.shared.set_current(Some(Arc::new(cached)));
        generation
    }

    fn header(lookup: Option<Lookup>) -> Option<(HeaderValue, u64)> {
        match lookup? {
            Lookup::Ready(h, g) => Some((h, g)),
            Lookup::Wait => None,
        }
    }

    #[test]
    fn a_copy_is_made_at_the_second_lookup_and_kept_while_the_token_is() {
        let cache = crate::layer::testing::cache();
        let generation = store(&cache, "one");
        let mut copy = TokenCopy::default();
        assert!(copy.first_lookup());
        assert!(header(copy.ready(&cache)).is_none());
        assert!(!copy.first_lookup());
        let (lookup, first) = copy.refill(&cache);
        assert!(first);
        assert_eq!(header(Some(lookup)).unwrap().1, generation);
        for _ in 0..3 {
            let (h, g) = header(copy.ready(&cache)).unwrap();
            assert_eq!((h.to_str().unwrap(), g), ("Bearer one", generation));
            assert!(h.is_sensitive());
        }
        // Its own bytes, not the cache's.
        let (h, _) = header(copy.ready(&cache)).unwrap();
        let (c, _) = header(Some(cache.lookup())).unwrap();
        assert_ne!(h.as_bytes().as_ptr(), c.as_bytes().as_ptr());
        assert_eq!(
            format!("{copy:?}"),
            format!("TokenCopy {{ generation: Some({generation}), .. }}")
        );
        // A clone starts with none, and makes none at its first lookup.
        let mut clone = copy.clone();
        assert!(header(clone.ready(&cache)).is_none());
        assert!(clone.first_lookup());
        assert_eq!(cache.stats().token_fetches, 0);
    }

    #[test]
    fn a_copy_goes_out_of_use_when_the_token_is_invalidated_or_replaced() {
        let cache = crate::layer::testing::cache();
        let one = store(&cache, "one");
        let mut copy = TokenCopy::default();
        copy.first_lookup();
        let _ = copy.refill(&cache);
        assert!(header(copy.ready(&cache)).is_some());
        cache.invalidate(one);
        assert!(header(copy.ready(&cache)).is_none());
        assert!(matches!(copy.refill(&cache), (Lookup::Wait, false)));
        let two = store(&cache, "two");
        let (lookup, first) = copy.refill(&cache);
        assert!(!first, "the handle's second copy");
        assert_eq!(header(Some(lookup)).unwrap().1, two);
        let three = store(&cache, "three");
        assert!(header(copy.ready(&cache)).is_none());
        let _ = copy.refill(&cache);
        let (h, g) = header(copy.ready(&cache)).unwrap();
        assert_eq!((h.to_str().unwrap(), g), ("Bearer three", three));
    }

    /// What the copy answers, and what `lookup` answers, as generations
    /// (`None`: no token, wait).
    fn answers(copy: &TokenCopy, cache: &TokenCache) -> (Option<u64>, Option<u64>) {
        let lookup = match cache.lookup() {
            Lookup::Ready(_, g) => Some(g),
            Lookup::Wait => None,
        };
        (header(copy.ready(cache)).map(|(_, g)| g), lookup)
    }

    // ARCHITECTURE.md, invariant 11, whatever the scheduler does: a writer
    // paused right after it changed the cached token (before it finishes)
    // leaves no handle answering the token it replaced.
    #[test]
    fn a_copy_never_answers_a_token_a_paused_writer_replaced() {
        use std::cell::RefCell;
        use std::rc::Rc;

        let cache = crate::layer::testing::cache();
        let one = store(&cache, "one");
        let copy = Rc::new(RefCell::new(TokenCopy::default()));
        copy.borrow_mut().first_lookup();
        let _ = copy.borrow_mut().refill(&cache);
        assert_eq!(answers(&copy.borrow(), &cache), (Some(one), Some(one)));
        let seen = Rc::new(RefCell::new(Vec::new()));

        // A refresh paused after it stored generation two: a 401 for
        // generation one then finds it replaced (nothing to invalidate),
        // and the copy must not answer one either.
        let (c, k, s) = (copy.clone(), cache.clone(), seen.clone());
        super::super::epoch::pause::pause_next_writer(move || {
            k.invalidate(one);
            s.borrow_mut().push(answers(&c.borrow(), &k));
        });
        let two = store(&cache, "two");
        assert_eq!(seen.borrow_mut().pop(), Some((None, Some(two))));

        // An invalidation paused after its compare-and-swap: `lookup` says
        // wait, and so does the copy of the token it dropped.
        let _ = copy.borrow_mut().refill(&cache);
        assert_eq!(answers(&copy.borrow(), &cache), (Some(two), Some(two)));
        let (c, k, s) = (copy.clone(), cache.clone(), seen.clone());
        super::super::epoch::pause::pause_next_writer(move || {
            s.borrow_mut().push(answers(&c.borrow(), &k));
        });
        cache.invalidate(two);
        assert_eq!(seen.borrow_mut().pop(), Some((None, None)));
        assert_eq!(answers(&copy.borrow(), &cache), (None, None));
    }

    // ARCHITECTURE.md, invariants 1 and 11, through a copy: its deadline
    // is the cached token's `fresh_until`, so from `expires_at` on every
    // lookup waits, copy or not. No runtime: no timer could flip a state.
    #[test]
    fn a_copy_is_never_used_past_expires_at_with_no_runtime() {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let (cache, expires_at) = super::super::tests::cache_with_a_short_token();
        let mut copy = TokenCopy::default();
        copy.first_lookup();
        let (lookup, first) = copy.refill(&cache);
        assert!(first);
        assert!(matches!(lookup, Lookup::Ready(h, _) if h == "Bearer short"));
        assert!(matches!(copy.ready(&cache), Some(Lookup::Ready(h, _)) if h == "Bearer short"));
        std::thread::sleep(expires_at.saturating_duration_since(Instant::now()) / 2);
        while Instant::now() < expires_at {
            std::hint::spin_loop();
        }
        for _ in 0..10_000 {
            assert!(copy.ready(&cache).is_none());
            assert!(matches!(copy.refill(&cache), (Lookup::Wait, false)));
        }
        assert_eq!(cache.stats().token_fetches, 0);
    }
}
