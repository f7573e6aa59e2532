//! Layer 5: the VMM side. A VM's guest kernel is the project's own `os`
//! code, running on a VT-d vIOMMU (the `hw` model in caching mode over
//! guest memory); the VMM turns the guest's PASID entries into nested
//! attachments on the host through the host kernel's iommufd-shaped API
//! (`iommu_os::kernel::iommufd`), forwards guest invalidations and page
//! faults, and tears everything down in any order.
//!
//! * [`guest_mem`]: guest RAM over a host memory file;
//! * [`viommu`]: the vIOMMU's capabilities, the trapping register bus, and
//!   the VMM's reader of the guest's tables;
//! * [`vm`]: the VM (shadowing, invalidations, faults, DMA, teardown);
//! * [`check`]: what the host must look like once a VM is gone.
#![forbid(unsafe_code)]

pub mod check;
pub mod guest_mem;
pub mod viommu;
pub mod vm;

pub use guest_mem::GuestMem;
pub use vm::{Assigned, DmaAccess, DmaFailure, HostApi, PasidMode, Vm, VmConfig, VmError, VmStats, VmmEvent};
