//! A bounded set-associative cache with per-set locks.

use std::sync::Mutex;

use crate::{CacheKey, GenStamp, Generations};

/// Replacement policy inside a set, chosen at construction. Every policy is
/// deterministic (Random is a seeded xorshift per set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Evict the least recently used way.
    Lru,
    /// Evict the way filled longest ago.
    Fifo,
    /// Evict a pseudo-random way (seeded).
    Random(u64),
}

#[derive(Debug, Clone, Copy)]
struct Slot<K, V> {
    key: K,
    value: V,
    domain: u16,
    space: Option<u32>,
    stamp: GenStamp,
    /// LRU: last use tick; FIFO: fill tick.
    tick: u64,
}

#[derive(Debug)]
struct Set<K, V> {
    slots: Vec<Option<Slot<K, V>>>,
    tick: u64,
    rng: u64,
    /// Counters of this set, updated under its lock (so the hot path
    /// touches no shared cache line).
    stats: CacheStats,
}

/// Hit/miss/fill/eviction counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheStats {
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed (including stale generations).
    pub misses: u64,
    /// Entries filled.
    pub fills: u64,
    /// Valid entries evicted by the replacement policy.
    pub evictions: u64,
}

/// A cache of `sets × ways` entries. See the crate docs for the cost model.
#[derive(Debug)]
pub struct TaggedCache<K, V> {
    sets: Box<[Mutex<Set<K, V>>]>,
    policy: Policy,
    gens: Generations,
}

impl<K: CacheKey, V: Copy> TaggedCache<K, V> {
    /// A cache of `sets` (rounded up to a power of two) × `ways` entries.
    /// All memory is allocated here; nothing is allocated afterwards.
    pub fn new(sets: usize, ways: usize, policy: Policy) -> Self {
        let n = sets.max(1).next_power_of_two();
        let ways = ways.max(1);
        let seed = match policy {
            Policy::Random(s) => s | 1,
            _ => 1,
        };
        Self {
            sets: (0..n)
                .map(|i| {
                    Mutex::new(Set {
                        slots: vec![None; ways],
                        tick: 0,
                        rng: seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                        stats: CacheStats::default(),
                    })
                })
                .collect(),
            policy,
            gens: Generations::new(4096),
        }
    }

    /// The counters summed over every set.
    pub fn stats(&self) -> CacheStats {
        (0..self.sets.len()).fold(CacheStats::default(), |a, i| {
            let s = self.lock(i).stats;
            CacheStats {
                hits: a.hits + s.hits,
                misses: a.misses + s.misses,
                fills: a.fills + s.fills,
                evictions: a.evictions + s.evictions,
            }
        })
    }

    /// Total capacity in entries.
    pub fn capacity(&self) -> usize {
        self.sets.len() * self.ways()
    }

    fn ways(&self) -> usize {
        self.lock(0).slots.len()
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Set<K, V>> {
        // A panic while holding a set lock cannot leave a set inconsistent
        // (slots are replaced whole), so a poisoned lock is still usable.
        self.sets[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_index(&self, key: &K) -> usize {
        (key.set_hash() as usize) & (self.sets.len() - 1)
    }

    /// The value cached for `key`, if present and not invalidated.
    pub fn lookup(&self, key: &K) -> Option<V> {
        let mut set = self.lock(self.set_index(key));
        set.tick += 1;
        let tick = set.tick;
        let lru = self.policy == Policy::Lru;
        let mut found = None;
        for slot in set.slots.iter_mut().flatten() {
            if slot.key == *key {
                if self.gens.valid(slot.stamp, slot.domain, slot.space) {
                    if lru {
                        slot.tick = tick;
                    }
                    found = Some(slot.value);
                }
                break;
            }
        }
        match found {
            Some(_) => set.stats.hits += 1,
            None => set.stats.misses += 1,
        }
        found
    }

    /// Caches `value` for `key`, tagged with `domain` and `space`. Replaces
    /// an entry with the same key, else an empty or stale way, else the
    /// policy's victim.
    pub fn fill(&self, key: K, domain: u16, space: Option<u32>, value: V) {
        let stamp = self.gens.stamp(domain, space);
        let mut set = self.lock(self.set_index(&key));
        set.tick += 1;
        let slot = Slot { key, value, domain, space, stamp, tick: set.tick };
        let gens = &self.gens;
        let free = set.slots.iter().position(|s| match s {
            None => true,
            Some(s) => s.key == key || !gens.valid(s.stamp, s.domain, s.space),
        });
        let way = match free {
            Some(w) => w,
            None => {
                set.stats.evictions += 1;
                match self.policy {
                    Policy::Lru | Policy::Fifo => set
                        .slots
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.as_ref().map_or(0, |s| s.tick))
                        .map_or(0, |(i, _)| i),
                    Policy::Random(_) => {
                        let mut x = set.rng;
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        set.rng = x;
                        (x % set.slots.len() as u64) as usize
                    }
                }
            }
        };
        set.slots[way] = Some(slot);
        set.stats.fills += 1;
    }

    /// Invalidates everything (constant time).
    pub fn invalidate_all(&self) {
        self.gens.bump_global();
    }

    /// Invalidates every entry tagged `domain` (constant time).
    pub fn invalidate_domain(&self, domain: u16) {
        self.gens.bump_domain(domain);
    }

    /// Invalidates every entry tagged (`domain`, `space`) (constant time).
    pub fn invalidate_space(&self, domain: u16, space: u32) {
        self.gens.bump_space(domain, space);
    }

    /// Removes the entries of the set `probe` hashes to for which `pred`
    /// (key, value, domain tag) holds; cost: one set. Returns how many were
    /// removed.
    pub fn invalidate_in_set(&self, probe: &K, mut pred: impl FnMut(&K, &V, u16) -> bool) -> usize {
        let mut set = self.lock(self.set_index(probe));
        let mut n = 0;
        for s in set.slots.iter_mut() {
            if s.as_ref().is_some_and(|x| pred(&x.key, &x.value, x.domain)) {
                *s = None;
                n += 1;
            }
        }
        n
    }

    /// Removes every entry for which `pred` holds; cost: the whole cache.
    pub fn invalidate_where(&self, mut pred: impl FnMut(&K, &V, u16) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.sets.len() {
            let mut set = self.lock(i);
            for s in set.slots.iter_mut() {
                if s.as_ref().is_some_and(|x| pred(&x.key, &x.value, x.domain)) {
                    *s = None;
                    n += 1;
                }
            }
        }
        n
    }

    /// Calls `f` (key, value, domain tag) for every valid entry, set by set
    /// (an audit or a report; cost: the whole cache).
    pub fn for_each_valid(&self, mut f: impl FnMut(&K, &V, u16)) {
        for i in 0..self.sets.len() {
            let set = self.lock(i);
            for s in set.slots.iter().flatten() {
                if self.gens.valid(s.stamp, s.domain, s.space) {
                    f(&s.key, &s.value, s.domain);
                }
            }
        }
    }

    /// Number of sets.
    pub fn set_count(&self) -> usize {
        self.sets.len()
    }

    /// Number of valid entries (a full scan; for tests and reports).
    pub fn len(&self) -> usize {
        (0..self.sets.len())
            .map(|i| {
                self.lock(i).slots.iter().flatten().filter(|s| self.gens.valid(s.stamp, s.domain, s.space)).count()
            })
            .sum()
    }

    /// Whether no valid entry is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct K(u64);
    impl CacheKey for K {
        fn set_hash(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn filled_entry_hits_until_its_domain_is_invalidated() {
        let c: TaggedCache<K, u32> = TaggedCache::new(4, 2, Policy::Lru);
        c.fill(K(1), 3, None, 10);
        assert_eq!(c.lookup(&K(1)), Some(10));
        c.invalidate_domain(3);
        assert_eq!(c.lookup(&K(1)), None);
    }

    #[test]
    fn lru_evicts_least_recently_used_way() {
        let c: TaggedCache<K, u32> = TaggedCache::new(1, 2, Policy::Lru);
        c.fill(K(1), 0, None, 1);
        c.fill(K(2), 0, None, 2);
        c.lookup(&K(1));
        c.fill(K(3), 0, None, 3);
        assert_eq!((c.lookup(&K(1)), c.lookup(&K(2)), c.lookup(&K(3))), (Some(1), None, Some(3)));
        assert_eq!(c.stats().evictions, 1);
    }

    #[test]
    fn fifo_evicts_oldest_fill_even_if_recently_used() {
        let c: TaggedCache<K, u32> = TaggedCache::new(1, 2, Policy::Fifo);
        c.fill(K(1), 0, None, 1);
        c.fill(K(2), 0, None, 2);
        c.lookup(&K(1));
        c.fill(K(3), 0, None, 3);
        assert_eq!((c.lookup(&K(1)), c.lookup(&K(2))), (None, Some(2)));
    }

    #[test]
    fn capacity_never_grows() {
        let c: TaggedCache<K, u32> = TaggedCache::new(8, 4, Policy::Random(7));
        for i in 0..1000 {
            c.fill(K(i), 0, None, i as u32);
        }
        assert_eq!(c.capacity(), 32);
        assert!(c.len() <= 32);
    }

    #[test]
    fn stale_way_is_reused_before_evicting() {
        let c: TaggedCache<K, u32> = TaggedCache::new(1, 2, Policy::Lru);
        c.fill(K(1), 5, None, 1);
        c.fill(K(2), 6, None, 2);
        c.invalidate_domain(5);
        c.fill(K(3), 0, None, 3);
        assert_eq!(c.lookup(&K(2)), Some(2));
        assert_eq!(c.stats().evictions, 0);
    }
}
