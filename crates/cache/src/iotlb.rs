//! An IOTLB: translations of input pages, tagged by domain and (for
//! PASID-granular translations) address space, at 4 KiB, 2 MiB and 1 GiB.
//! The same structure serves as a device TLB (ATS), tagged by requester.

use std::sync::atomic::{AtomicBool, Ordering};

use iommu_types::{Hpa, PageSize, Perm};

use crate::{mix, CacheKey, Policy, TaggedCache};

/// The space tag of translations that are not per address space (VT-d
/// second-stage-only translations are shared by every PASID of a domain).
pub const NO_SPACE: u32 = u32::MAX;

/// IOTLB key. The set is chosen by (domain, page, size) only, so every
/// space's and every kind's copy of a page sits in one set and a
/// page-selective invalidation scans one set per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IotlbKey {
    /// Domain tag (VT-d DID; for a device TLB, the requester ID).
    pub domain: u16,
    /// Space tag (PASID), or [`NO_SPACE`].
    pub space: u32,
    /// Input page number at `size` (input >> size.shift()).
    pub page: u64,
    /// Page size of the translation.
    pub size: PageSize,
    /// The kind of translation (the model's own small tag, e.g. first-stage,
    /// second-stage, nested), part of equality so a lookup finds only its kind.
    pub kind: u8,
}

impl CacheKey for IotlbKey {
    fn set_hash(&self) -> u64 {
        mix((self.domain as u64) << 48 ^ self.page << 2 ^ self.size as u64)
    }
}

/// A cached translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IotlbEntry {
    /// Output frame (aligned to the key's page size).
    pub frame: Hpa,
    /// Effective permissions.
    pub perm: Perm,
    /// User requests allowed.
    pub user: bool,
    /// The leaf's dirty bit was set when the entry was filled (a write hit
    /// on an entry without it must walk again to set D).
    pub dirty: bool,
}

const SIZES: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

/// A bounded IOTLB. See [`TaggedCache`] for capacity and policy.
#[derive(Debug)]
pub struct Iotlb {
    cache: TaggedCache<IotlbKey, IotlbEntry>,
    /// Whether any translation of each size was ever filled (skips probes).
    seen: [AtomicBool; 3],
}

/// Which address spaces a range invalidation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaceMatch {
    /// Every space of the domain, including [`NO_SPACE`].
    Any,
    /// Exactly this space.
    Only(u32),
}

impl Iotlb {
    /// An IOTLB of `sets × ways` entries.
    pub fn new(sets: usize, ways: usize, policy: Policy) -> Self {
        Self { cache: TaggedCache::new(sets, ways, policy), seen: Default::default() }
    }

    /// The underlying cache (statistics, capacity).
    pub fn cache(&self) -> &TaggedCache<IotlbKey, IotlbEntry> {
        &self.cache
    }

    /// Looks up `input` for (`domain`, `space`, `kind`) at each page size.
    pub fn lookup(&self, domain: u16, space: u32, kind: u8, input: u64) -> Option<(IotlbEntry, PageSize)> {
        for (i, size) in SIZES.iter().enumerate() {
            if i > 0 && !self.seen[i].load(Ordering::Relaxed) {
                continue;
            }
            let key = IotlbKey { domain, space, page: input >> size.shift(), size: *size, kind };
            if let Some(e) = self.cache.lookup(&key) {
                return Some((e, *size));
            }
        }
        None
    }

    /// Caches a translation of the `size` page containing `input`.
    pub fn fill(&self, domain: u16, space: u32, kind: u8, input: u64, size: PageSize, entry: IotlbEntry) {
        let i = SIZES.iter().position(|s| *s == size).unwrap_or(0);
        self.seen[i].store(true, Ordering::Relaxed);
        let key = IotlbKey { domain, space, page: input >> size.shift(), size, kind };
        let sp = (space != NO_SPACE).then_some(space);
        self.cache.fill(key, domain, sp, entry);
    }

    /// Invalidates everything.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Invalidates every translation of `domain`.
    pub fn invalidate_domain(&self, domain: u16) {
        self.cache.invalidate_domain(domain);
    }

    /// Invalidates every translation of (`domain`, `space`).
    pub fn invalidate_space(&self, domain: u16, space: u32) {
        self.cache.invalidate_space(domain, space);
    }

    /// Invalidates the translations of `domain` whose page overlaps the
    /// `2^am` 4 KiB pages at `addr` (aligned down to that size), in the
    /// matching spaces and of the kinds `kinds` (a bit mask over `kind`).
    /// Cost: one set per page and size touched, or one bounded full scan
    /// when the range spans more pages than there are sets. Returns the
    /// number of entries removed.
    pub fn invalidate_range(&self, domain: u16, spaces: SpaceMatch, kinds: u32, addr: u64, am: u8) -> usize {
        let am = am.min(52) as u32;
        let base = addr & !((1u64 << (12 + am)) - 1);
        let last = base.wrapping_add((1u64 << (12 + am)) - 1);
        let space_ok = |s: u32| match spaces {
            SpaceMatch::Any => true,
            SpaceMatch::Only(x) => s == x,
        };
        let mut removed = 0;
        for (i, size) in SIZES.iter().enumerate() {
            if !self.seen[i].load(Ordering::Relaxed) {
                continue;
            }
            let (first, end) = (base >> size.shift(), last >> size.shift());
            let hit = |k: &IotlbKey| {
                k.domain == domain
                    && k.size == *size
                    && space_ok(k.space)
                    && kinds & (1 << k.kind) != 0
                    && (first..=end).contains(&k.page)
            };
            if end - first < self.cache.set_count() as u64 {
                for page in first..=end {
                    let probe = IotlbKey { domain, space: 0, page, size: *size, kind: 0 };
                    removed += self.cache.invalidate_in_set(&probe, |k, _, _| hit(k));
                }
            } else {
                removed += self.cache.invalidate_where(|k, _, _| hit(k));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: IotlbEntry = IotlbEntry { frame: Hpa::new(0x5000), perm: Perm::ALL, user: true, dirty: true };

    fn tlb() -> Iotlb {
        Iotlb::new(64, 4, Policy::Lru)
    }

    #[test]
    fn lookup_finds_2m_entry_for_any_address_inside() {
        let t = tlb();
        t.fill(1, NO_SPACE, 0, 0x4020_0000, PageSize::Size2M, IotlbEntry { frame: Hpa::new(0x20_0000), ..E });
        assert_eq!(t.lookup(1, NO_SPACE, 0, 0x403F_FFFF).map(|x| x.1), Some(PageSize::Size2M));
    }

    #[test]
    fn range_invalidation_removes_only_overlapping_pages_of_that_domain() {
        let t = tlb();
        for p in 0..8u64 {
            t.fill(1, NO_SPACE, 0, p << 12, PageSize::Size4K, E);
        }
        t.fill(2, NO_SPACE, 0, 0, PageSize::Size4K, E);
        assert_eq!(t.invalidate_range(1, SpaceMatch::Any, 1, 0x2000, 1), 2);
        assert!(t.lookup(1, NO_SPACE, 0, 0x2000).is_none() && t.lookup(1, NO_SPACE, 0, 0x3000).is_none());
        assert!(t.lookup(1, NO_SPACE, 0, 0x4000).is_some() && t.lookup(2, NO_SPACE, 0, 0).is_some());
    }

    #[test]
    fn range_invalidation_of_a_4k_page_removes_the_covering_1g_entry() {
        let t = tlb();
        t.fill(1, 7, 1, 0x4000_0000, PageSize::Size1G, E);
        assert_eq!(t.invalidate_range(1, SpaceMatch::Only(7), 1 << 1, 0x4123_4000, 0), 1);
        assert!(t.lookup(1, 7, 1, 0x4000_0000).is_none());
    }

    #[test]
    fn huge_range_invalidation_falls_back_to_a_bounded_scan() {
        let t = tlb();
        t.fill(1, NO_SPACE, 0, 0x1234_5000, PageSize::Size4K, E);
        assert_eq!(t.invalidate_range(1, SpaceMatch::Any, 1, 0, 40), 1);
    }

    #[test]
    fn space_invalidation_keeps_other_spaces() {
        let t = tlb();
        t.fill(1, 5, 1, 0x1000, PageSize::Size4K, E);
        t.fill(1, 6, 1, 0x1000, PageSize::Size4K, E);
        t.invalidate_space(1, 5);
        assert!(t.lookup(1, 5, 1, 0x1000).is_none());
        assert!(t.lookup(1, 6, 1, 0x1000).is_some());
    }
}
