//! A machine for the OS-side tests: the VT-d model over simulated memory,
//! the VT-d driver probed through its registers, the IOMMU core and the
//! kernel on top.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_os::driver::vtd::{HwAction, VtdDriver};
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, SourceId};

pub type Mem = Arc<PagedMemory>;
pub type Unit = VtdUnit<Mem, NullInterrupts>;
pub type Drv = VtdDriver<Arc<Unit>>;
pub type Core = Iommu<Drv, Mem, RangeFrames>;
pub type Os = Kernel<Drv, Mem, RangeFrames>;

/// Frames the OS allocates from: [16 MiB, 128 MiB) of a 256 MiB machine.
pub const FRAMES: (u64, u64) = (0x100_0000, 0x800_0000);

/// The unit and a core over it (instance 0).
pub fn core_with(cfg: VtdConfig) -> (Arc<Unit>, Core) {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let unit = Arc::new(VtdUnit::new(cfg, mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(FRAMES.0), Hpa::new(FRAMES.1));
    let driver = VtdDriver::probe(unit.clone(), &*mem, &mut frames).expect("probe");
    (unit, Iommu::new(0, driver, mem, frames))
}

/// The full-featured unit and a core.
pub fn core() -> (Arc<Unit>, Core) {
    core_with(VtdConfig::full_featured())
}

/// A kernel over a full-featured unit.
pub fn kernel_with(cfg: VtdConfig, policy: LocalPolicy) -> (Arc<Unit>, Os) {
    let (unit, core) = core_with(cfg);
    (unit, Kernel::new(core, policy))
}

/// A kernel over a full-featured unit, v2 device-local rules.
pub fn kernel() -> (Arc<Unit>, Os) {
    kernel_with(VtdConfig::full_featured(), LocalPolicy::V2)
}

/// A PCI device `n` at 00:n.0.
pub fn pci(n: u8, max_pasids: u32, ats: bool, pri: bool) -> DeviceInfo {
    DeviceInfo { id: DeviceId(n as u32), sid: SourceId::from_bdf(0, n, 0), max_pasids, ats, pri, pci: true }
}

/// A platform (non-PCI) device `n` with a requester ID like 00:n.0.
pub fn platform(n: u8, max_pasids: u32) -> DeviceInfo {
    DeviceInfo { pci: false, ..pci(n, max_pasids, false, false) }
}

/// A PASID-capable device with ATS and PRI (an SVA device).
pub fn sva_dev(n: u8) -> DeviceInfo {
    pci(n, 1 << 20, true, true)
}

/// Adds `info` in its own group (group id = device number).
pub fn add(core: &mut Core, info: DeviceInfo) -> DeviceId {
    core.add_device(info, GroupId(info.id.0)).expect("add_device");
    info.id
}

/// The driver's log since the last call.
pub fn log(core: &mut Core) -> Vec<HwAction> {
    core.driver_mut().take_log()
}
