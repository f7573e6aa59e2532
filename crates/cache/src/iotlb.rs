//! An IOTLB: translations of input pages at 4 KiB, 2 MiB and 1 GiB.
//!
//! Entries are found by what a request carries: the requester (`source`),
//! its address-space tag (`space`: the PASID of a PASID-tagged request, or
//! [`NO_SPACE`]), the input page and the request's access class (`flags`).
//! A hit therefore needs no other cache. Each entry is also tagged with the
//! domain and, when the translation is per address space, the space it was
//! translated in, so domain- and space-wide invalidations are constant-time
//! generation bumps, and page-selective ones scan only the sets their pages
//! hash to (the set depends on the page and size alone).
//!
//! The same structure serves as the device TLBs of ATS endpoints, with the
//! requester as the domain tag.

use std::sync::atomic::{AtomicBool, Ordering};

use iommu_types::{Hpa, PageSize, Perm};

use crate::{mix, CacheKey, Policy, TaggedCache};

/// The space of requests without an address-space tag, and of
/// translations that are not per address space.
pub const NO_SPACE: u32 = u32::MAX;

/// IOTLB key: how a request finds its translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IotlbKey {
    /// Requester (source-id / StreamID).
    pub source: u16,
    /// The request's address-space tag (PASID), or [`NO_SPACE`].
    pub space: u32,
    /// Input page number at `size` (input >> size.shift()).
    pub page: u64,
    /// Page size of the translation.
    pub size: PageSize,
    /// The request's access class (the model's own bits, e.g. privileged,
    /// execute), for translations whose checks depend on it.
    pub flags: u8,
}

impl CacheKey for IotlbKey {
    fn set_hash(&self) -> u64 {
        mix(self.page << 2 ^ self.size as u64)
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
    /// The kind of translation (the model's own small tag: first-stage,
    /// second-stage, nested), which selective invalidations filter on.
    pub kind: u8,
    /// The address space the translation was made in ([`NO_SPACE`] when it
    /// is not per space), which PASID-selective invalidations filter on.
    pub space: u32,
}

const SIZES: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

/// Which entries a range invalidation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RangeFilter {
    /// Domain tag the entries must carry.
    pub domain: u16,
    /// Translation space they must have been made in, or any.
    pub space: SpaceMatch,
    /// Bit mask over [`IotlbEntry::kind`].
    pub kinds: u32,
}

/// Which address spaces an invalidation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpaceMatch {
    /// Every space, including [`NO_SPACE`].
    Any,
    /// Exactly this space.
    Only(u32),
}

/// A bounded IOTLB. See [`TaggedCache`] for capacity and policy.
#[derive(Debug)]
pub struct Iotlb {
    cache: TaggedCache<IotlbKey, IotlbEntry>,
    /// Whether any translation of each size was ever filled (skips probes).
    seen: [AtomicBool; 3],
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

    /// Looks up `input` for a request from `source` in `space` with `flags`,
    /// at each page size that was ever filled.
    pub fn lookup(&self, source: u16, space: u32, flags: u8, input: u64) -> Option<(IotlbEntry, PageSize)> {
        for (i, size) in SIZES.iter().enumerate() {
            if i > 0 && !self.seen[i].load(Ordering::Relaxed) {
                continue;
            }
            let key = IotlbKey { source, space, page: input >> size.shift(), size: *size, flags };
            if let Some(e) = self.cache.lookup(&key) {
                return Some((e, *size));
            }
        }
        None
    }

    /// Caches the translation of the `size` page containing `input` for
    /// requests like (`source`, `space`, `flags`), tagged with `domain` (and
    /// with `entry.space` unless it is [`NO_SPACE`]).
    #[allow(clippy::too_many_arguments)]
    pub fn fill(&self, source: u16, space: u32, flags: u8, domain: u16, input: u64, size: PageSize, entry: IotlbEntry) {
        let i = SIZES.iter().position(|s| *s == size).unwrap_or(0);
        self.seen[i].store(true, Ordering::Relaxed);
        let key = IotlbKey { source, space, page: input >> size.shift(), size, flags };
        let tag = (entry.space != NO_SPACE).then_some(entry.space);
        self.cache.fill(key, domain, tag, entry);
    }

    /// Invalidates everything.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Invalidates every translation tagged with `domain`.
    pub fn invalidate_domain(&self, domain: u16) {
        self.cache.invalidate_domain(domain);
    }

    /// Invalidates every translation tagged with (`domain`, `space`).
    pub fn invalidate_space(&self, domain: u16, space: u32) {
        self.cache.invalidate_space(domain, space);
    }

    /// Invalidates the translations that `filter` selects whose page
    /// overlaps the `2^am` 4 KiB pages at `addr` (aligned down to that
    /// size). Cost: one set per page and size touched, or one bounded full
    /// scan when the range spans more pages than there are sets. Returns the
    /// number of entries removed.
    pub fn invalidate_range(&self, filter: RangeFilter, addr: u64, am: u8) -> usize {
        // 2^am pages of 4 KiB; a span of 2^64 bytes or more is everything.
        let span_mask = 1u64.checked_shl(12 + am as u32).map_or(u64::MAX, |s| s - 1);
        let base = addr & !span_mask;
        let last = base | span_mask;
        let space_ok = |s: u32| match filter.space {
            SpaceMatch::Any => true,
            SpaceMatch::Only(x) => s == x,
        };
        let mut removed = 0;
        for (i, size) in SIZES.iter().enumerate() {
            if !self.seen[i].load(Ordering::Relaxed) {
                continue;
            }
            let (first, end) = (base >> size.shift(), last >> size.shift());
            let hit = |k: &IotlbKey, e: &IotlbEntry, domain: u16| {
                domain == filter.domain
                    && k.size == *size
                    && space_ok(e.space)
                    && filter.kinds & (1 << e.kind) != 0
                    && (first..=end).contains(&k.page)
            };
            if end - first < self.cache.set_count() as u64 {
                for page in first..=end {
                    let probe = IotlbKey { source: 0, space: 0, page, size: *size, flags: 0 };
                    removed += self.cache.invalidate_in_set(&probe, hit);
                }
            } else {
                removed += self.cache.invalidate_where(hit);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: IotlbEntry =
        IotlbEntry { frame: Hpa::new(0x5000), perm: Perm::ALL, user: true, dirty: true, kind: 0, space: NO_SPACE };

    fn tlb() -> Iotlb {
        Iotlb::new(64, 4, Policy::Lru)
    }

    fn all_of(domain: u16) -> RangeFilter {
        RangeFilter { domain, space: SpaceMatch::Any, kinds: u32::MAX }
    }

    #[test]
    fn lookup_finds_2m_entry_for_any_address_inside() {
        let t = tlb();
        t.fill(8, NO_SPACE, 0, 1, 0x4020_0000, PageSize::Size2M, IotlbEntry { frame: Hpa::new(0x20_0000), ..E });
        assert_eq!(t.lookup(8, NO_SPACE, 0, 0x403F_FFFF).map(|x| x.1), Some(PageSize::Size2M));
    }

    #[test]
    fn lookup_is_per_requester_space_and_flags() {
        let t = tlb();
        t.fill(8, 5, 0, 1, 0x1000, PageSize::Size4K, E);
        assert!(t.lookup(8, 5, 0, 0x1000).is_some());
        assert!(t.lookup(9, 5, 0, 0x1000).is_none());
        assert!(t.lookup(8, 6, 0, 0x1000).is_none());
        assert!(t.lookup(8, 5, 1, 0x1000).is_none());
    }

    #[test]
    fn range_invalidation_removes_only_overlapping_pages_of_that_domain() {
        let t = tlb();
        for p in 0..8u64 {
            t.fill(8, NO_SPACE, 0, 1, p << 12, PageSize::Size4K, E);
        }
        t.fill(9, NO_SPACE, 0, 2, 0x2000, PageSize::Size4K, E);
        assert_eq!(t.invalidate_range(all_of(1), 0x2000, 1), 2);
        assert!(t.lookup(8, NO_SPACE, 0, 0x2000).is_none() && t.lookup(8, NO_SPACE, 0, 0x3000).is_none());
        assert!(t.lookup(8, NO_SPACE, 0, 0x4000).is_some() && t.lookup(9, NO_SPACE, 0, 0x2000).is_some());
    }

    #[test]
    fn range_invalidation_of_a_4k_page_removes_the_covering_1g_entry() {
        let t = tlb();
        t.fill(8, 7, 0, 1, 0x4000_0000, PageSize::Size1G, IotlbEntry { kind: 1, space: 7, ..E });
        let f = RangeFilter { domain: 1, space: SpaceMatch::Only(7), kinds: 1 << 1 };
        assert_eq!(t.invalidate_range(f, 0x4123_4000, 0), 1);
        assert!(t.lookup(8, 7, 0, 0x4000_0000).is_none());
    }

    #[test]
    fn range_invalidation_filters_on_kind() {
        let t = tlb();
        t.fill(8, NO_SPACE, 0, 1, 0x1000, PageSize::Size4K, IotlbEntry { kind: 2, ..E });
        assert_eq!(t.invalidate_range(RangeFilter { kinds: 1 << 1, ..all_of(1) }, 0x1000, 0), 0);
        assert_eq!(t.invalidate_range(RangeFilter { kinds: 1 << 2, ..all_of(1) }, 0x1000, 0), 1);
    }

    /// Found by fuzzing: an address mask covering 2^64 bytes must not overflow.
    #[test]
    fn range_covering_the_whole_address_space_invalidates_without_overflow() {
        let t = tlb();
        t.fill(8, NO_SPACE, 0, 1, !0xFFF, PageSize::Size4K, E);
        assert_eq!(t.invalidate_range(all_of(1), u64::MAX, 255), 1);
    }

    #[test]
    fn huge_range_invalidation_falls_back_to_a_bounded_scan() {
        let t = tlb();
        t.fill(8, NO_SPACE, 0, 1, 0x1234_5000, PageSize::Size4K, E);
        assert_eq!(t.invalidate_range(all_of(1), 0, 40), 1);
    }

    #[test]
    fn space_invalidation_keeps_other_spaces_and_spaceless_entries() {
        let t = tlb();
        t.fill(8, 5, 0, 1, 0x1000, PageSize::Size4K, IotlbEntry { space: 5, ..E });
        t.fill(8, 6, 0, 1, 0x1000, PageSize::Size4K, IotlbEntry { space: 6, ..E });
        t.fill(8, 9, 0, 1, 0x1000, PageSize::Size4K, E);
        t.invalidate_space(1, 5);
        assert!(t.lookup(8, 5, 0, 0x1000).is_none());
        assert!(t.lookup(8, 6, 0, 0x1000).is_some());
        assert!(t.lookup(8, 9, 0, 0x1000).is_some());
    }
}
