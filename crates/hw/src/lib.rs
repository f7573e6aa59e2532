//! Layer 3: the IOMMU device models. This is the only layer that joins
//! walkers and caches: `translate` = cache lookup → walk → fill.
//!
//! * [`vtd`]: Intel VT-d with scalable mode, PASIDs, first-stage,
//!   second-stage, nested and pass-through translation, queued and
//!   register-based invalidation, fault recording, page requests and ATS;
//! * [`smmuv3`]: Arm SMMUv3 with stream and CD tables (linear and 2-level),
//!   SubstreamIDs, stage-1, stage-2 and nested translation, the command
//!   and event queues and the global error handshake.
//!
//! The models are `Send + Sync`; translation takes no global lock (one
//! cache set at a time, and the fault log only when a fault is recorded),
//! so many device threads may translate at once while another thread
//! programs registers.
#![forbid(unsafe_code)]

pub mod smmuv3;
pub mod vtd;

/// The bus errors every register file shares: a misaligned access, or one
/// reaching past a `window`-byte register window.
fn check_access(off: u64, width: iommu_types::Width, window: u64) -> Result<(), iommu_types::BusError> {
    if off % width.bytes() != 0 {
        return Err(iommu_types::BusError::Misaligned { offset: off, width });
    }
    if off.checked_add(width.bytes()).is_none_or(|end| end > window) {
        return Err(iommu_types::BusError::OutOfRange(off));
    }
    Ok(())
}
