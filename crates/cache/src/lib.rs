//! Layer 2 (beside `walk`): bounded, tagged caches.
//!
//! Every cache has a fixed capacity set at construction (sets × ways), an
//! explicit replacement policy ([`Policy`]) and never grows. Entries carry a
//! *domain* tag (VT-d DID, SMMU VMID) and optionally an address-*space* tag
//! (PASID, ASID). Invalidation comes in three costs:
//!
//! * global, per domain and per (domain, space): constant time, by bumping a
//!   generation counter that every entry snapshots when it is filled (a
//!   stale snapshot is a miss) — see [`Generations`];
//! * selective by key (a page range, a device): proportional to what it
//!   touches, by scanning only the sets the keys hash to;
//! * anything else: a bounded scan of the whole cache.
//!
//! Caches know nothing of walkers. Lookups lock one set (a small mutex), so
//! threads translating for different sets never contend and nothing takes a
//! global lock.
#![forbid(unsafe_code)]

mod gen;
mod iotlb;
mod set_assoc;

pub use gen::{GenStamp, Generations};
pub use iotlb::{Iotlb, IotlbEntry, IotlbKey, RangeFilter, SpaceMatch, NO_SPACE};
pub use set_assoc::{CacheStats, Policy, TaggedCache};

/// A cache key: hashable to choose a set.
pub trait CacheKey: Copy + Eq {
    /// A 64-bit hash choosing the set. Keys that a selective invalidation
    /// must find together (e.g. the same page in different address spaces)
    /// must hash alike.
    fn set_hash(&self) -> u64;
}

/// A fast 64-bit mixer (splitmix64 finaliser) for set hashing.
pub const fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
