//! Generation tags: constant-time invalidation of everything, of a domain,
//! or of one (domain, space) pair.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::mix;

/// Generation counters. Bumping one invalidates every entry whose snapshot
/// ([`GenStamp`]) recorded the old value. Space generations live in a fixed
/// number of hash buckets: a bump may also invalidate unrelated spaces that
/// share the bucket, which is allowed (a cache may drop any entry at any
/// time) and bounded.
///
/// Counters are 32-bit and wrap; an entry survives a wrap only if it stays
/// resident through 2^32 invalidations of its own domain, which the
/// replacement policy makes practically impossible.
#[derive(Debug)]
pub struct Generations {
    global: AtomicU32,
    domain: Box<[AtomicU32]>,
    space: Box<[AtomicU32]>,
}

/// The generations an entry was filled under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GenStamp {
    global: u32,
    domain: u32,
    space: u32,
}

/// Number of domain tags (16-bit domain IDs).
const DOMAINS: usize = 1 << 16;

impl Generations {
    /// Counters for 2^16 domains and `space_buckets` space buckets.
    pub fn new(space_buckets: usize) -> Self {
        let n = space_buckets.max(1).next_power_of_two();
        Self {
            global: AtomicU32::new(0),
            domain: (0..DOMAINS).map(|_| AtomicU32::new(0)).collect(),
            space: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn bucket(&self, domain: u16, space: u32) -> usize {
        (mix((domain as u64) << 32 | space as u64) as usize) & (self.space.len() - 1)
    }

    /// The current generations for an entry tagged (`domain`, `space`).
    pub fn stamp(&self, domain: u16, space: Option<u32>) -> GenStamp {
        GenStamp {
            global: self.global.load(Ordering::Acquire),
            domain: self.domain[domain as usize].load(Ordering::Acquire),
            space: space.map_or(0, |s| self.space[self.bucket(domain, s)].load(Ordering::Acquire)),
        }
    }

    /// Whether an entry stamped `s` for (`domain`, `space`) is still valid.
    pub fn valid(&self, s: GenStamp, domain: u16, space: Option<u32>) -> bool {
        s == self.stamp(domain, space)
    }

    /// Invalidates everything.
    pub fn bump_global(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }

    /// Invalidates every entry of `domain`.
    pub fn bump_domain(&self, domain: u16) {
        self.domain[domain as usize].fetch_add(1, Ordering::AcqRel);
    }

    /// Invalidates every entry of (`domain`, `space`) (and possibly others
    /// sharing its bucket).
    pub fn bump_space(&self, domain: u16, space: u32) {
        self.space[self.bucket(domain, space)].fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_bump_invalidates_only_that_domain() {
        let g = Generations::new(64);
        let a = g.stamp(1, Some(5));
        let b = g.stamp(2, Some(5));
        g.bump_domain(1);
        assert!(!g.valid(a, 1, Some(5)));
        assert!(g.valid(b, 2, Some(5)));
    }

    #[test]
    fn space_bump_invalidates_that_space_and_not_spaceless_entries() {
        let g = Generations::new(64);
        let a = g.stamp(1, Some(5));
        let s = g.stamp(1, None);
        g.bump_space(1, 5);
        assert!(!g.valid(a, 1, Some(5)));
        assert!(g.valid(s, 1, None));
    }

    #[test]
    fn global_bump_invalidates_everything() {
        let g = Generations::new(64);
        let a = g.stamp(7, None);
        g.bump_global();
        assert!(!g.valid(a, 7, None));
    }
}
