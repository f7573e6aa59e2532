//! Layer 4: the OS side of PASID-granular DMA remapping, written the way a
//! kernel is: it programs IOMMUs only through registers, tables in memory
//! and interrupts (the `types` traits), never through a model's internals,
//! so the same code can run as a host kernel and as a guest kernel on a
//! vIOMMU.
//!
//! The contract it follows is Linux's (`shared/specs/linux-iommu-semantics.md`):
//! §1 API and errno table, §4 sequences, §5 behaviour specs.
//!
//! Built so far:
//! * [`errno`]: the one place errno-style numbers appear;
//! * [`pasid`]: PASID spaces: the global allocator bounded by each
//!   device's `max_pasids`, per-mm PASID state (one optional global PASID
//!   plus device-local (device, PASID) pairs, with the v2 and v3 rules of
//!   the 2026 per-device PASID proposal), and the ENQCMD #GP fix-up;
//! * [`frames`]: physical frames for the OS's tables, with failure injection;
//! * [`driver::vtd`]: VT-d bring-up, device contexts, PASID-entry install and
//!   teardown with the exact invalidation sequences, logged as [`driver::vtd::HwAction`]s.
#![forbid(unsafe_code)]

pub mod driver;
pub mod errno;
pub mod frames;
pub mod iommu;
pub mod iopf;
pub mod kernel;
pub mod mm;
pub mod pasid;
pub mod pgtable;

pub use errno::Errno;
