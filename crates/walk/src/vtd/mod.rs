//! VT-d lookups and walks (VT-d chapter 3 "DMA remapping", §3.4–§3.8).
//!
//! * [`context`]: root and context entries for a source-id (§3.4.2, §3.4.3);
//! * [`pasid`]: PASID directory and table entries (§3.4.3, §9.5, §9.6);
//! * [`page`]: first-stage (§3.6), second-stage (§3.7) and nested (§3.8) walks;
//! * [`reason`]: the one mapping from a [`WalkFault`](crate::WalkFault) to a
//!   VT-d fault reason (§7.1.3).

pub mod context;
pub mod page;
pub mod pasid;
pub mod reason;

use iommu_format::vtd::fault::FaultReason;

/// A fault found while resolving the root, context, PASID directory or PASID
/// table entry of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupFault {
    /// The architectural reason.
    pub reason: FaultReason,
    /// Whether fault processing was disabled (FPD) by a structure read
    /// before the fault was detected, which suppresses recording of this
    /// qualified fault (VT-d §7.1.2).
    pub fpd: bool,
}

impl LookupFault {
    pub(crate) const fn new(reason: FaultReason, fpd: bool) -> Self {
        Self { reason, fpd }
    }
}
