//! Seed thread S4 on SMMUv3 (semantics §5.11 spec 70, §6 Q12): a platform
//! master (stall model, no ATS/PRI) whose SubstreamID space holds 4 values,
//! next to the global PASID space. Its CD table is sized from its 2 SSID
//! bits; global allocation starves it once PASIDs 1–3 are taken; a
//! device-chosen PASID serves it, with the v2 restrictions, and its DMA
//! through that SubstreamID reaches the process.

use std::sync::Arc;

use iommu_hw::smmuv3::{Smmu, SmmuConfig};
use iommu_os::driver::smmuv3::SmmuDriver;
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu, MmId};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_os::Errno;
use iommu_types::{Hpa, NullInterrupts, PagedMemory, Pasid, Perm, SourceId, StreamId, SubstreamId};

type Mem = Arc<PagedMemory>;
type Model = Smmu<Mem, NullInterrupts>;
type Os = Kernel<SmmuDriver<Arc<Model>>, Mem, RangeFrames>;

const VA: u64 = 0x4000_0000;
const RW: Perm = Perm { read: true, write: true, exec: false };

/// The 4-SSID platform master.
fn accel() -> DeviceInfo {
    DeviceInfo { id: DeviceId(2), sid: SourceId::from_bdf(0, 2, 0), max_pasids: 4, ats: false, pri: false, pci: false }
}

/// A PCIe function with a full PASID space, ATS and PRI.
fn dsa() -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(6),
        sid: SourceId::from_bdf(0, 6, 0),
        max_pasids: 1 << 20,
        ats: true,
        pri: true,
        pci: true,
    }
}

/// The kernel over the SMMUv3 driver and model; both devices added; other
/// users hold global PASIDs 1–3; a process with one mapped page.
fn rig() -> (Arc<Model>, Os, MmId) {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let smmu = Arc::new(Smmu::new(SmmuConfig::full(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x800_0000));
    let drv = SmmuDriver::probe(smmu.clone(), &*mem, &mut frames).unwrap();
    let mut os = Kernel::new(Iommu::new(0, drv, mem, frames), LocalPolicy::V2);
    os.add_device(accel(), GroupId(2)).unwrap();
    os.add_device(dsa(), GroupId(6)).unwrap();
    for _ in 1..4 {
        os.global_pasids_mut().alloc(1 << 20).unwrap();
    }
    let mm = os.create_process().unwrap();
    os.mmap(mm, Some(VA), 0x1000, RW).unwrap();
    (smmu, os, mm)
}

#[test]
fn spec70_smmuv3_global_bind_of_a_four_ssid_master_is_enospc_once_pasids_1_to_3_are_taken() {
    let (_, mut os, mm) = rig();
    assert_eq!(os.sva_bind(accel().id, mm).err(), Some(Errno::NoSpc));
}

#[test]
fn spec70_smmuv3_device_pasid_bind_succeeds_and_dma_through_its_substream_reaches_the_process() {
    let (smmu, mut os, mm) = rig();
    os.cpu_write(mm, VA, b"before").unwrap();
    os.sva_bind_device_pasid(accel().id, mm, Pasid::new(2)).unwrap();
    let sid = StreamId(accel().sid.raw() as u32);
    smmu.dma_write(sid, SubstreamId::try_new(2).ok(), VA, b"by the accel").unwrap();
    let mut buf = [0u8; 12];
    os.cpu_read(mm, VA, &mut buf).unwrap();
    assert_eq!(&buf, b"by the accel");
}

#[test]
fn spec70_smmuv3_the_cd_table_holds_exactly_the_masters_four_substreams() {
    let (_, mut os, mm) = rig();
    os.sva_bind_device_pasid(accel().id, mm, Pasid::new(3)).unwrap();
    let sid = accel().sid.raw() as u32;
    let core = os.iommu();
    assert!(core.driver().read_cd(core.mem(), sid, 3).is_ok_and(|cd| cd.get(iommu_format::smmuv3::cd::Cd::V) == 1));
    assert_eq!(core.driver().read_cd(core.mem(), sid, 4).err(), Some(Errno::NoEnt));
}

#[test]
fn spec70_smmuv3_device_pasid_beyond_the_substream_space_is_eoverflow() {
    let (_, mut os, mm) = rig();
    assert_eq!(os.sva_bind_device_pasid(accel().id, mm, Pasid::new(4)).err(), Some(Errno::Overflow));
}

#[test]
fn spec70_smmuv3_second_distinct_device_pasid_of_one_mm_is_enospc() {
    let (_, mut os, mm) = rig();
    os.sva_bind_device_pasid(accel().id, mm, Pasid::new(2)).unwrap();
    assert_eq!(os.sva_bind_device_pasid(accel().id, mm, Pasid::new(3)).err(), Some(Errno::NoSpc));
}

#[test]
fn spec70_smmuv3_global_bind_of_an_mm_in_device_local_mode_is_ebusy_and_enqcmd_faults() {
    let (_, mut os, mm) = rig();
    os.sva_bind_device_pasid(accel().id, mm, Pasid::new(2)).unwrap();
    assert_eq!(os.sva_bind(dsa().id, mm).err(), Some(Errno::Busy));
    // The ENQCMD / ST64BV0 analogue: no global PASID to load.
    assert_eq!(os.enqcmd(mm, 0).err(), Some(Errno::Fault));
}
