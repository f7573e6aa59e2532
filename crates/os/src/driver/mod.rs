//! IOMMU drivers. Each programs its hardware only through
//! [`RegisterBus`](iommu_types::RegisterBus), memory
//! ([`PhysMem`](iommu_types::PhysMem)) and interrupts, as a kernel driver
//! does, so it runs unchanged on the model, on a fake, or as a guest driver
//! on a vIOMMU.

pub mod vtd;
