//! The cache's epoch ([`Epoch`]): a sequence number, kept seqlock-style,
//! that tells a service handle whether its copy of the token
//! ([`super::TokenCopy`]) is still of the cached token (ARCHITECTURE.md,
//! invariant 11).
//!
//! Every change of the cached token (a fetch storing its token, an
//! invalidation, a revocation) runs inside [`Epoch::change`]: under the
//! writers' lock the epoch is made odd, the token changed, the epoch made
//! even. A copy is made only when the epoch read before the token is even,
//! and answers only while the epoch still reads that value. So from the
//! moment a change can be seen (by `lookup`, or by a 401 that compares
//! generations) the epoch already differs from every copy's: a copy never
//! answers a token `lookup` would not, however long a writer is paused
//! between its steps. (A bump only *after* the change would leave a window
//! in which `lookup` says "wait", or gives the new token, while every copy
//! still answers the old one.) The hot path is still one relaxed load
//! compared with the copy's value (which is even, so equality says both).
//!
//! Writers take a lock so that two changes never overlap (with two writers
//! at once the epoch would be even while one of them is mid-change). They
//! are rare: a fetch landing, a 401, a revocation.
//!
//! The protocol is model-checked with loom (the `loom` tests below: this
//! type, and the `ArcSwap` modelled with the orderings arc-swap documents,
//! acquire loads and release-acquire swaps). `cfg(loom)` is set for this
//! crate only (dependencies such as tokio have `cfg(loom)` code of their
//! own), so the tests are built with `cargo rustc`: `.ci/loom` does it.

#[cfg(all(test, loom))]
use loom::sync::{
    atomic::{fence, AtomicU64, Ordering},
    Mutex,
};
#[cfg(not(all(test, loom)))]
use std::sync::{
    atomic::{fence, AtomicU64, Ordering},
    Mutex,
};

/// The cached token's sequence number: odd while it changes.
pub(super) struct Epoch {
    value: AtomicU64,
    /// Held by a writer for its whole change.
    writers: Mutex<()>,
}

impl Epoch {
    pub(super) fn new() -> Self {
        Epoch {
            value: AtomicU64::new(0),
            writers: Mutex::new(()),
        }
    }

    /// Runs `change`, a change of the cached token, with the epoch odd
    /// around it.
    pub(super) fn change<R>(&self, change: impl FnOnce() -> R) -> R {
        let _writer = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        // Odd before the token changes. The fence orders this before the
        // change's store: a thread that sees the new token (or no longer
        // sees the old one) reads this epoch or a later one afterwards.
        self.value.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        let changed = change();
        #[cfg(test)]
        pause::paused_writer();
        // Even after. Release: a copy made at this value (`for_copy`,
        // Acquire) loads this change's token or a newer one.
        self.value.fetch_add(1, Ordering::Release);
        changed
    }

    /// The epoch to record in a new copy, read before the token is loaded;
    /// `None` while a change is under way (no copy is made then).
    pub(super) fn for_copy(&self) -> Option<u64> {
        let epoch = self.value.load(Ordering::Acquire);
        (epoch % 2 == 0).then_some(epoch)
    }

    /// Whether a copy made at `epoch` (from [`Epoch::for_copy`]) is still
    /// of the cached token.
    #[inline(always)]
    pub(super) fn unchanged(&self, epoch: u64) -> bool {
        // Relaxed: nothing written by a writer is read through this load.
        // A thread that has seen a change (through an acquire load of the
        // token) reads the odd epoch or a later one here (coherence);
        // one that has not may get either token, as with `lookup`.
        self.value.load(Ordering::Relaxed) == epoch
    }
}

/// A test hook: the next writer on this thread pauses between its change
/// and its end (the epoch made even again), to run a closure there.
#[cfg(test)]
pub(super) mod pause {
    use std::cell::RefCell;

    thread_local! {
        static PAUSED_WRITER: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
    }

    /// Pauses the next writer on this thread (a store, an invalidation)
    /// after it has changed the cached token, to run `f` there.
    pub(in crate::cache) fn pause_next_writer(f: impl FnOnce() + 'static) {
        PAUSED_WRITER.with(|w| *w.borrow_mut() = Some(Box::new(f)));
    }

    pub(super) fn paused_writer() {
        if let Some(f) = PAUSED_WRITER.with(|w| w.borrow_mut().take()) {
            f();
        }
    }
}

/// The epoch protocol under every interleaving loom finds: writers
/// (`set_current`, `invalidate`) and readers (a copy's `ready`, `refill`,
/// `lookup`) as the cache runs them, with `current` (an `ArcSwapOption`)
/// modelled as the generation it holds (0: none), loaded with Acquire and
/// swapped with AcqRel, the orderings arc-swap documents (it uses SeqCst).
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    use super::Epoch;

    struct Cache {
        current: AtomicU64,
        epoch: Epoch,
    }

    /// A copy: the generation and the epoch it was made at.
    #[derive(Clone, Copy)]
    struct Copy {
        generation: u64,
        epoch: u64,
    }

    impl Cache {
        fn with(generation: u64) -> Arc<Cache> {
            let cache = Arc::new(Cache {
                current: AtomicU64::new(0),
                epoch: Epoch::new(),
            });
            cache.set_current(generation);
            cache
        }

        /// `Shared::set_current`.
        fn set_current(&self, generation: u64) {
            self.epoch
                .change(|| self.current.swap(generation, Ordering::AcqRel));
        }

        /// `TokenCache::invalidate`.
        fn invalidate(&self, generation: u64) {
            if self.lookup() != generation {
                return;
            }
            let _swapped = self.epoch.change(|| {
                self.current
                    .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            });
        }

        /// `TokenCache::lookup`: the cached generation (0: wait).
        fn lookup(&self) -> u64 {
            self.current.load(Ordering::Acquire)
        }

        /// `TokenCopy::refill`: a new copy, if the token is not changing.
        fn refill(&self) -> Option<Copy> {
            let epoch = self.epoch.for_copy()?;
            let generation = self.lookup();
            (generation != 0).then_some(Copy { generation, epoch })
        }

        /// `TokenCopy::ready`.
        fn ready(&self, copy: Copy) -> Option<u64> {
            self.epoch.unchanged(copy.epoch).then_some(copy.generation)
        }
    }

    // The case: a refresh stores generation 2 while a 401 for
    // generation 1 finds it replaced (nothing to invalidate); from then on
    // the handle that sent 1 must not send 1 again from its copy.
    #[test]
    fn loom_a_copy_never_answers_a_token_replaced_before_a_401_saw_it() {
        loom::model(|| {
            let cache = Cache::with(1);
            let copy = cache.refill().unwrap();
            let writer = {
                let cache = cache.clone();
                thread::spawn(move || cache.set_current(2))
            };
            // The handle's 401 for generation 1.
            cache.invalidate(1);
            let seen = cache.lookup();
            if seen != 1 {
                assert_eq!(cache.ready(copy), None, "lookup saw {seen}");
            }
            writer.join().unwrap();
            assert_eq!(cache.ready(copy), None);
        });
    }

    // An invalidation then a refresh (one writer after the other, as a 401
    // and the fetch it causes) racing a handle that makes a copy and uses
    // it: whenever the copy answers, it answers the token a `lookup` on
    // the handle's thread just saw, never one that handle has already seen
    // replaced.
    #[test]
    fn loom_a_copy_never_answers_what_lookup_no_longer_would() {
        loom::model(|| {
            let cache = Cache::with(1);
            let writer = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.invalidate(1);
                    cache.set_current(2);
                })
            };
            // The handle: a copy, then a lookup, then the copy again.
            if let Some(copy) = cache.refill() {
                let seen = cache.lookup();
                if let Some(answer) = cache.ready(copy) {
                    assert_eq!(
                        answer, seen,
                        "the copy answered a token lookup no longer gives"
                    );
                }
            }
            writer.join().unwrap();
            // Every change done: a copy made now is of the cached token.
            let copy = cache.refill().unwrap();
            assert_eq!(cache.ready(copy), Some(2));
        });
    }
}
