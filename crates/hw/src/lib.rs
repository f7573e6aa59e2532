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
