//! A host machine for the VMM tests: the VT-d model over 256 MiB of
//! memory, the host kernel probed on it, one assigned-device candidate.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, SourceId};

pub type Mem = Arc<PagedMemory>;
pub type Unit = VtdUnit<Mem, NullInterrupts>;
pub type Host = Kernel<VtdDriver<Arc<Unit>>, Mem, RangeFrames>;

/// The host: memory, its VT-d unit, its kernel.
pub fn host() -> (Mem, Arc<Unit>, Host) {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x800_0000));
    let driver = VtdDriver::probe(unit.clone(), &*mem, &mut frames).expect("probe");
    let kernel = Kernel::new(Iommu::new(0, driver, mem.clone(), frames), LocalPolicy::V2);
    (mem, unit, kernel)
}

/// A PASID/ATS/PRI device at 00:n.0 with `max_pasids`, added to the host
/// in its own group.
pub fn add_device(host: &mut Host, n: u8, max_pasids: u32) -> DeviceId {
    let info = DeviceInfo {
        id: DeviceId(n as u32),
        sid: SourceId::from_bdf(0, n, 0),
        max_pasids,
        ats: true,
        pri: true,
        pci: true,
    };
    host.add_device(info, GroupId(n as u32)).expect("add_device");
    info.id
}

/// The guest's requester ID for an assigned device.
pub fn vsid(n: u8) -> SourceId {
    SourceId::from_bdf(0, n, 0)
}
