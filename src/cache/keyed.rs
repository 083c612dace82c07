//! One value per key, made on first use, bounded: the map behind
//! [`crate::layer::KeyedOAuth2Layer`] (one token cache per API).
//!
//! The read (the hot path) takes no lock: one `ArcSwap` load of the whole
//! map, one hash lookup, and a relaxed load (a store only the first time a
//! key is used in a sweep period) to mark the entry used. A new key is
//! inserted copy-on-write under a mutex that only writers take; the value
//! is made *before* that mutex is taken (user code never runs under it).
//!
//! Idle entries are found with epochs, not a clock read per request: every
//! sweep (at each insert, and [`KeyMap::evict_idle`]) starts a new epoch and
//! notes when; an entry remembers the last epoch it was used in. An entry
//! not used since an epoch that started at least `idle` ago has been idle
//! that long, and is dropped. So an entry is never evicted early, and at
//! the latest by the first sweep one idle period after its last use.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::Instant;

/// How many keys a map holds at most by default.
pub(crate) const DEFAULT_MAX_KEYS: usize = 64;
/// How long an entry may go unused before a sweep drops it, by default.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How many epochs one idle period spans at most: a new epoch starts only
/// when the last one is older than `idle / EPOCHS_PER_IDLE`, which bounds
/// the epochs kept.
const EPOCHS_PER_IDLE: u32 = 8;

/// `Slot::seen` of an entry dropped from the map: above every epoch, so a
/// use racing the removal (`fetch_max`) leaves it there.
const REMOVED: u64 = u64::MAX;

pub(crate) struct KeyMap<K, V> {
    map: ArcSwap<HashMap<K, Arc<Slot<V>>>>,
    epoch: AtomicU64,
    writer: Mutex<Writer>,
}

struct Slot<V> {
    value: V,
    /// The last epoch the entry was used in; [`REMOVED`] once the entry is
    /// dropped from the map.
    seen: AtomicU64,
    /// Insertion order: among entries last used in the same epoch, the
    /// oldest goes first when the map is full.
    seq: u64,
}

struct Writer {
    max_keys: usize,
    idle: Duration,
    /// Each epoch kept and when it started, oldest first (never empty).
    epochs: VecDeque<(u64, Instant)>,
    next_seq: u64,
}

impl<V> Slot<V> {
    /// Notes a use in `epoch`; `false` if the entry was dropped from the
    /// map. A store only the first time in an epoch.
    #[inline(always)]
    fn mark_used(&self, epoch: u64) -> bool {
        let seen = self.seen.load(Ordering::Relaxed);
        if seen == epoch {
            return true;
        }
        // `fetch_max`: neither a removal nor a newer epoch is overwritten.
        seen != REMOVED && self.seen.fetch_max(epoch, Ordering::Relaxed) != REMOVED
    }

    /// Marks the entry dropped: an [`Entry`] held elsewhere goes out of
    /// use ([`KeyMap::in_use`]).
    fn remove(&self) {
        self.seen.store(REMOVED, Ordering::Relaxed);
    }
}

/// One entry of a [`KeyMap`], held outside it (a service handle remembers
/// the entry of the last key it served): [`KeyMap::in_use`] says whether
/// the map still holds it.
pub(crate) struct Entry<V>(Arc<Slot<V>>);

impl<V> Entry<V> {
    pub(crate) fn value(&self) -> &V {
        &self.0.value
    }
}

impl<K, V> KeyMap<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    pub(crate) fn new() -> Self {
        KeyMap {
            map: ArcSwap::from_pointee(HashMap::new()),
            epoch: AtomicU64::new(0),
            writer: Mutex::new(Writer {
                max_keys: DEFAULT_MAX_KEYS,
                idle: DEFAULT_IDLE_TIMEOUT,
                epochs: VecDeque::from([(0, Instant::now())]),
                next_seq: 0,
            }),
        }
    }

    /// Sets the bounds: at most `max_keys` entries (at least 1), and entries
    /// unused for `idle` dropped at the next sweep.
    pub(crate) fn set_bounds(&self, max_keys: Option<usize>, idle: Option<Duration>) {
        let mut writer = self.lock();
        if let Some(max) = max_keys {
            writer.max_keys = max.max(1);
        }
        if let Some(idle) = idle {
            writer.idle = idle;
        }
    }

    /// The value for `key`: the one in the map (the hot path), else the one
    /// `make` gives, inserted; `None` when `make` gives none (nothing is
    /// inserted then).
    #[inline]
    pub(crate) fn get_or_make(&self, key: &K, make: impl FnOnce(&K) -> Option<V>) -> Option<V> {
        let map = self.map.load();
        if let Some(slot) = map.get(key) {
            slot.mark_used(self.epoch.load(Ordering::Relaxed));
            return Some(slot.value.clone());
        }
        drop(map);
        Some(self.insert(key, make(key)?).value.clone())
    }

    /// [`KeyMap::get_or_make`], as an [`Entry`] to hold.
    #[inline]
    pub(crate) fn entry_or_make(
        &self,
        key: &K,
        make: impl FnOnce(&K) -> Option<V>,
    ) -> Option<Entry<V>> {
        let map = self.map.load();
        if let Some(slot) = map.get(key) {
            slot.mark_used(self.epoch.load(Ordering::Relaxed));
            return Some(Entry(Arc::clone(slot)));
        }
        drop(map);
        Some(Entry(self.insert(key, make(key)?)))
    }

    /// Whether the map still holds `entry` (it is neither evicted nor
    /// replaced by a new entry for its key); if so, notes a use of it, as
    /// [`KeyMap::get_or_make`] does. No map load, no hash.
    #[inline(always)]
    pub(crate) fn in_use(&self, entry: &Entry<V>) -> bool {
        entry.0.mark_used(self.epoch.load(Ordering::Relaxed))
    }

    /// The value for `key` if the map holds one; does not count as a use.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.map.load().get(key).map(|slot| slot.value.clone())
    }

    /// The keys held now.
    pub(crate) fn keys(&self) -> Vec<K> {
        self.map.load().keys().cloned().collect()
    }

    #[cold]
    fn insert(&self, key: &K, value: V) -> Arc<Slot<V>> {
        let mut writer = self.lock();
        let current = self.map.load_full();
        if let Some(slot) = current.get(key) {
            // Another caller inserted it meanwhile: one value per key.
            return Arc::clone(slot);
        }
        let mut next = (*current).clone();
        let epoch = self.sweep(&mut writer, &mut next);
        while next.len() >= writer.max_keys {
            evict_least_recently_used(&mut next);
        }
        let seq = writer.next_seq;
        writer.next_seq += 1;
        let slot = Arc::new(Slot {
            value,
            seen: AtomicU64::new(epoch),
            seq,
        });
        next.insert(key.clone(), Arc::clone(&slot));
        self.map.store(Arc::new(next));
        slot
    }

    /// Drops the entries idle for the idle period; returns how many.
    pub(crate) fn evict_idle(&self) -> usize {
        let mut writer = self.lock();
        let current = self.map.load_full();
        let mut next = (*current).clone();
        self.sweep(&mut writer, &mut next);
        let evicted = current.len() - next.len();
        if evicted > 0 {
            self.map.store(Arc::new(next));
        }
        evicted
    }

    /// Drops from `map` the entries idle for the idle period, and starts a
    /// new epoch if the last one is old enough; returns the current epoch.
    fn sweep(&self, writer: &mut Writer, map: &mut HashMap<K, Arc<Slot<V>>>) -> u64 {
        let now = Instant::now();
        let idle_since = now.checked_sub(writer.idle);
        // The newest epoch that started at least `idle` ago: an entry last
        // used before it has been idle at least that long.
        let boundary = idle_since.and_then(|at| {
            writer
                .epochs
                .iter()
                .rev()
                .find(|(_, started)| *started <= at)
                .map(|(epoch, _)| *epoch)
        });
        if let Some(boundary) = boundary {
            map.retain(|_, slot| {
                let keep = slot.seen.load(Ordering::Relaxed) >= boundary;
                if !keep {
                    slot.remove();
                }
                keep
            });
            writer.epochs.retain(|(epoch, _)| *epoch >= boundary);
        }
        let current = self.epoch.load(Ordering::Relaxed);
        let last_start = writer.epochs.back().map_or(now, |(_, started)| *started);
        if now.saturating_duration_since(last_start) < writer.idle / EPOCHS_PER_IDLE {
            return current;
        }
        let next = current + 1;
        writer.epochs.push_back((next, now));
        self.epoch.store(next, Ordering::Relaxed);
        next
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // The writer's state stays consistent across a panic (each update is
        // one assignment), so a poisoned lock is used as it is.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Drops the entry last used longest ago (the oldest among equals).
fn evict_least_recently_used<K: Eq + Hash + Clone, V>(map: &mut HashMap<K, Arc<Slot<V>>>) {
    let oldest = map
        .iter()
        .min_by_key(|(_, slot)| (slot.seen.load(Ordering::Relaxed), slot.seq))
        .map(|(key, _)| key.clone());
    if let Some(slot) = oldest.and_then(|key| map.remove(&key)) {
        slot.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(max_keys: usize, idle: Duration) -> KeyMap<&'static str, u32> {
        let map = KeyMap::new();
        map.set_bounds(Some(max_keys), Some(idle));
        map
    }

    fn sorted(map: &KeyMap<&'static str, u32>) -> Vec<&'static str> {
        let mut keys = map.keys();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_value_is_made_once_per_key_and_unmapped_keys_insert_nothing() {
        let map = map(8, DEFAULT_IDLE_TIMEOUT);
        let mut made = 0;
        for _ in 0..3 {
            let value = map.get_or_make(&"a", |_| {
                made += 1;
                Some(1)
            });
            assert_eq!(value, Some(1));
        }
        assert_eq!(made, 1);
        assert_eq!(map.get_or_make(&"none", |_| None), None);
        assert_eq!(sorted(&map), ["a"]);
        assert_eq!(map.get(&"none"), None);
    }

    #[test]
    fn a_full_map_drops_the_oldest_entry_of_those_used_longest_ago() {
        let map = map(2, DEFAULT_IDLE_TIMEOUT);
        map.get_or_make(&"a", |_| Some(1));
        map.get_or_make(&"b", |_| Some(2));
        map.get_or_make(&"c", |_| Some(3));
        assert_eq!(sorted(&map), ["b", "c"]);
        assert_eq!(map.get_or_make(&"a", |_| Some(4)), Some(4));
        assert_eq!(sorted(&map), ["a", "c"]);
    }

    #[test]
    fn entries_unused_since_the_sweep_an_idle_period_ago_are_dropped() {
        // With no idle period every sweep starts an epoch, and an entry not
        // used since the previous sweep is idle.
        let map = map(8, Duration::ZERO);
        map.get_or_make(&"a", |_| Some(1));
        map.get_or_make(&"b", |_| Some(2));
        map.get_or_make(&"a", |_| None);
        assert_eq!(map.evict_idle(), 0);
        map.get_or_make(&"a", |_| None);
        assert_eq!(map.evict_idle(), 1);
        assert_eq!(sorted(&map), ["a"]);
        assert_eq!(map.evict_idle(), 1);
        assert_eq!(sorted(&map), Vec::<&str>::new());
    }

    #[test]
    fn an_entry_held_outside_the_map_is_in_use_until_the_map_drops_it() {
        let map = map(1, DEFAULT_IDLE_TIMEOUT);
        let a = map.entry_or_make(&"a", |_| Some(1)).unwrap();
        assert_eq!(*a.value(), 1);
        assert!(map.in_use(&a));
        let again = map.entry_or_make(&"a", |_| Some(2)).unwrap();
        assert!(Arc::ptr_eq(&a.0, &again.0));
        // "b" drops "a" (max keys 1); "a" made again is a new entry.
        map.entry_or_make(&"b", |_| Some(3));
        assert!(!map.in_use(&a));
        let new = map.entry_or_make(&"a", |_| Some(4)).unwrap();
        assert_eq!(*new.value(), 4);
        assert!(!map.in_use(&a) && map.in_use(&new));
        // A use racing the removal does not bring it back (`fetch_max`).
        a.0.mark_used(map.epoch.load(Ordering::Relaxed) + 1);
        assert!(!map.in_use(&a));
    }

    #[test]
    fn an_entry_dropped_as_idle_is_out_of_use_and_a_use_through_it_counts() {
        let map = map(8, Duration::ZERO);
        let a = map.entry_or_make(&"a", |_| Some(1)).unwrap();
        let b = map.entry_or_make(&"b", |_| Some(2)).unwrap();
        assert!(map.in_use(&a));
        assert_eq!(map.evict_idle(), 0);
        // Used through the entry alone: "a" is kept, "b" is dropped.
        assert!(map.in_use(&a));
        assert_eq!(map.evict_idle(), 1);
        assert_eq!(sorted(&map), ["a"]);
        assert!(!map.in_use(&b));
        assert!(map.in_use(&a));
    }

    // BENCHMARKS.md, "Memory per key": what a key keeps inline, besides
    // what its fields point to. Each byte here is paid once per key (10 KB
    // per byte at 10,000 keys); these bounds, a little above the sizes with
    // every feature on, make growing one a decision.
    #[test]
    fn what_a_key_keeps_inline_stays_within_its_bounds() {
        use std::mem::size_of;
        let sizes = [
            ("cache::Shared", size_of::<super::super::Shared>(), 832),
            ("cache::Cached", size_of::<super::super::Cached>(), 288),
            ("token::Token", size_of::<crate::token::Token>(), 176),
            (
                "request::TokenRequest",
                size_of::<crate::TokenRequest>(),
                112,
            ),
            ("Slot<AuthPolicy>", size_of::<Slot<crate::AuthPolicy>>(), 24),
        ];
        for (name, size, bound) in sizes {
            println!("{name}: {size} bytes");
            assert!(size <= bound, "{name}: {size} bytes, above {bound}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_dropped_once_idle_for_the_idle_period_never_before() {
        let minute = Duration::from_secs(60);
        let map = map(8, minute);
        map.get_or_make(&"a", |_| Some(1));
        map.get_or_make(&"b", |_| Some(2));
        tokio::time::advance(minute / 2).await;
        // Nothing is a minute old yet; this sweep starts an epoch.
        assert_eq!(map.evict_idle(), 0);
        map.get_or_make(&"a", |_| None);
        tokio::time::advance(minute).await;
        // "b" was last used before that epoch, a minute ago: dropped.
        assert_eq!(map.evict_idle(), 1);
        assert_eq!(sorted(&map), ["a"]);
        tokio::time::advance(minute).await;
        assert_eq!(map.evict_idle(), 1);
        assert!(map.keys().is_empty());
    }
}
