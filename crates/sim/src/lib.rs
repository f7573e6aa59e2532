//! Layer 5: the simulated machine and what runs on it.
//!
//! * [`replay`]: replays conformance cases recorded on QEMU
//!   (`shared/vtd-conformance`, case schema v1) against the VT-d model and
//!   prints observations in the same shape;
//! * [`demo`]: the built-in default scenario `iommu-sim` runs with no
//!   arguments.
//!
//! The `iommu-sim` binary is a thin `main` over this library.
#![forbid(unsafe_code)]

pub mod demo;
pub mod demo_os;
pub mod demo_vmm;
pub mod replay;
