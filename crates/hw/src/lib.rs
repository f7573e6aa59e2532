//! Layer 3: the IOMMU device models. This is the only layer that joins
//! walkers and caches: `translate` = cache lookup → walk → fill.
//!
//! * [`vtd`]: Intel VT-d with scalable mode, PASIDs, first-stage,
//!   second-stage, nested and pass-through translation, queued and
//!   register-based invalidation, fault recording, page requests and ATS.
//!
//! The models are `Send + Sync`; translation takes no global lock (one
//! cache set at a time, and the fault log only when a fault is recorded),
//! so many device threads may translate at once while another thread
//! programs registers.
#![forbid(unsafe_code)]

pub mod vtd;
