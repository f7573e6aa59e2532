//! Core states that cannot be reached from outside between two calls.

use std::sync::Arc;

use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, Pasid, SourceId};

use super::*;
use crate::driver::vtd::VtdDriver;
use crate::frames::RangeFrames;

type Unit = VtdUnit<Arc<PagedMemory>, NullInterrupts>;

fn core() -> Iommu<VtdDriver<Arc<Unit>>, Arc<PagedMemory>, RangeFrames> {
    let mem = Arc::new(PagedMemory::new(64 << 20));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x200_0000));
    let driver = VtdDriver::probe(unit, &*mem, &mut frames).unwrap();
    Iommu::new(0, driver, mem, frames)
}

#[test]
fn spec18_fault_lookup_on_a_reserved_slot_is_enoent() {
    let mut core = core();
    let dev =
        DeviceInfo { id: DeviceId(1), sid: SourceId::new(8), max_pasids: 1 << 20, ats: true, pri: true, pci: true };
    core.add_device(dev, GroupId(1)).unwrap();
    // An attach in progress has reserved the slot but not published it.
    core.groups.get_mut(&GroupId(1)).unwrap().slots.insert(5, Slot::Reserved);
    assert_eq!(core.attach_handle_get(dev.id, Pasid::new(5), HandleType::Any), Err(Errno::NoEnt));
    assert_eq!(core.pasid_domain(dev.id, Pasid::new(5)), None);
}

#[test]
fn reserved_slot_refuses_a_second_attach_with_ebusy() {
    let mut core = core();
    let dev =
        DeviceInfo { id: DeviceId(1), sid: SourceId::new(8), max_pasids: 1 << 20, ats: true, pri: true, pci: true };
    core.add_device(dev, GroupId(1)).unwrap();
    core.groups.get_mut(&GroupId(1)).unwrap().slots.insert(5, Slot::Reserved);
    let d = core.alloc_paging(PtFormat::FirstStage { levels: 4 }, false).unwrap();
    assert_eq!(core.attach_dev_pasid(d, dev.id, Pasid::new(5), None), Err(Errno::Busy));
}
