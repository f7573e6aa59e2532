//! Layer 2: page walkers and structure lookups, as pure functions over
//! [`PhysMem`](iommu_types::PhysMem).
//!
//! Walkers know nothing of caches (only `hw` joins the two). They allocate
//! nothing, keep every intermediate value on the stack, and count the memory
//! references they make so that nested walks can be shown to stay within
//! their architectural bound of (n+1)(m+1)−1 entry fetches.
//!
//! * [`stage`]: vendor-neutral outcome types ([`Translation`], [`WalkFault`]);
//! * [`vtd`]: VT-d root/context lookup, PASID directory/table lookup, the
//!   first-stage (x86-64 4/5-level), second-stage (3/4/5-level) and nested
//!   walks, and the one function mapping a [`WalkFault`] to a VT-d fault
//!   reason;
//! * [`smmuv3`]: SMMUv3 stream-table and CD lookups with the STE/CD
//!   validity rules, the VMSAv8-64 stage-1, stage-2 and nested walks, and
//!   the mapping of their faults to events.
#![forbid(unsafe_code)]

pub mod smmuv3;
pub mod stage;
pub mod vtd;

pub use stage::{PermFault, Stage, Translation, WalkFault};
