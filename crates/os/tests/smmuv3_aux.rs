//! Aux domains on the SMMUv3 model (semantics §1.2 aux row, §4.8 "Aux
//! domain detach", §5.11 spec 69): the kernel over the SMMUv3 driver,
//! mediated devices sharing an aux domain under their parent, DMA through
//! the aux SubstreamID, and the last detach's CD clear + CFGI_CD +
//! CMD_SYNC + ATC_INV (SMMUv3 §4.5.1) after which the SSID faults.

use std::sync::Arc;

use iommu_format::smmuv3::cmd::Command;
use iommu_hw::smmuv3::{AtsCompletion, Request, Smmu, SmmuConfig};
use iommu_os::driver::smmuv3::{HwAction, SmmuDriver};
use iommu_os::driver::{DeviceInfo, DomainRef, IommuDriver};
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_os::Errno;
use iommu_types::{
    Access, Hpa, Iova, NullInterrupts, PagedMemory, Pasid, Perm, PhysMem, SourceId, StreamId, SubstreamId,
};

type Mem = Arc<PagedMemory>;
type Model = Smmu<Mem, NullInterrupts>;
type Os = Kernel<SmmuDriver<Arc<Model>>, Mem, RangeFrames>;

const IOVA: u64 = 0x4000_0000;
/// The frames the aux domain maps (outside the OS's frame range).
const DATA: u64 = 0x900_0000;

/// A PCI function with PASIDs and ATS: the parent of the mdevs.
fn parent(n: u8) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(n as u32),
        sid: SourceId::from_bdf(0, n, 0),
        max_pasids: 1 << 20,
        ats: true,
        pri: false,
        pci: true,
    }
}

struct Rig {
    smmu: Arc<Model>,
    os: Os,
    /// The aux domain, IOVA..+2 pages mapped to DATA..+2 pages.
    d: DomainRef,
}

impl Rig {
    /// The SMMU model, the driver probed through its registers, the core
    /// and the kernel; parents 1 and 2 (own groups), each with its own
    /// stage-1 DMA domain at the RID as a PF driver using the DMA API has;
    /// the aux domain mapped.
    ///
    /// The RID domains are paging rather than identity on purpose: under an
    /// identity RID the driver returns the STE to bypass once the last SSID
    /// is gone (semantics §4.8), and SSID-tagged transactions then abort
    /// with C_BAD_SUBSTREAMID whatever the CD held (SMMUv3 §3.9); a
    /// stage-1 RID keeps the CD table, so it is the cleared CD that
    /// faults, and keeps ATS on, so only the per-SSID ATC_INV can remove
    /// the SSID's ATC entries.
    fn new() -> Self {
        let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
        let smmu = Arc::new(Smmu::new(SmmuConfig::full(), mem.clone(), NullInterrupts));
        let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x400_0000));
        let drv = SmmuDriver::probe(smmu.clone(), &*mem, &mut frames).unwrap();
        let mut os = Kernel::new(Iommu::new(0, drv, mem.clone(), frames), LocalPolicy::V2);
        let format = os.iommu().driver().table_format(false, 4);
        for n in [1, 2] {
            os.add_device(parent(n), GroupId(n as u32)).unwrap();
            let dma = os.iommu_mut().alloc_paging(format, false).unwrap();
            os.iommu_mut().attach_rid(dma, parent(n).id).unwrap();
        }
        let d = os.iommu_mut().alloc_paging(format, false).unwrap();
        let rw = Perm { read: true, write: true, exec: false };
        let f = os.iommu_mut().map(d, Iova::new(IOVA), Hpa::new(DATA), 0x2000, rw).unwrap();
        os.iommu_mut().flush(f).unwrap();
        Self { smmu, os, d }
    }

    fn sid(n: u8) -> StreamId {
        StreamId(parent(n).sid.raw() as u32)
    }

    /// A DMA write of `data` from parent `n` with SubstreamID `pasid`.
    fn dma_write(&self, n: u8, pasid: Pasid, addr: u64, data: &[u8]) -> bool {
        self.smmu.dma_write(Self::sid(n), SubstreamId::try_new(pasid.raw()).ok(), addr, data).is_ok()
    }

    fn translate(&self, n: u8, pasid: Pasid, addr: u64) -> Option<u64> {
        let req =
            Request { sid: Self::sid(n), ssid: SubstreamId::try_new(pasid.raw()).ok(), addr, access: Access::READ };
        self.smmu.translate(&req).ok().map(|t| t.pa)
    }

    fn log(&mut self) -> Vec<HwAction> {
        self.os.iommu_mut().driver_mut().take_log()
    }
}

fn is_cd_write(a: &HwAction, p: Pasid) -> bool {
    matches!(a, HwAction::CdWrite { ssid, .. } if *ssid == p.raw())
}

fn is_cfgi_cd(a: &HwAction, p: Pasid) -> bool {
    matches!(a, HwAction::Command(Command::CfgiCd { ssid, .. }) if ssid.raw() == p.raw())
}

fn is_sync(a: &HwAction) -> bool {
    matches!(a, HwAction::Command(Command::Sync { .. }))
}

fn is_atc_inv(a: &HwAction, p: Pasid) -> bool {
    matches!(a, HwAction::Command(Command::AtcInv { ssid: Some(s), .. }) if s.raw() == p.raw())
}

#[test]
fn spec69_smmuv3_aux_domain_dma_through_its_ssid_reaches_the_mapped_frames() {
    let mut r = Rig::new();
    let a = r.os.add_mdev(parent(1).id).unwrap();
    let p = r.os.aux_attach(r.d, a).unwrap();
    let cd = r.os.iommu().driver().read_cd(&**r.smmu.mem(), Rig::sid(1).0, p.raw()).unwrap();
    assert_eq!(cd.get(iommu_format::smmuv3::cd::Cd::V), 1, "the aux SSID has a live CD");
    assert!(r.dma_write(1, p, IOVA + 0x1010, b"aux dma"));
    let mut buf = [0u8; 7];
    r.smmu.mem().read(Hpa::new(DATA + 0x1010), &mut buf).unwrap();
    assert_eq!(&buf, b"aux dma");
    assert_eq!(r.translate(1, p, IOVA + 0x2000), None, "beyond the mapping");
    assert_eq!(r.translate(2, p, IOVA), None, "another function has no such SSID");
}

#[test]
fn spec69_smmuv3_two_mdevs_share_one_cd_and_the_first_detach_keeps_dma_working() {
    let mut r = Rig::new();
    let (a, b) = (r.os.add_mdev(parent(1).id).unwrap(), r.os.add_mdev(parent(1).id).unwrap());
    let p = r.os.aux_attach(r.d, a).unwrap();
    r.log();
    assert_eq!(r.os.aux_attach(r.d, b), Ok(p));
    assert!(r.log().is_empty(), "the second mdev only takes a reference");
    r.os.aux_detach(r.d, a).unwrap();
    assert!(r.log().is_empty(), "the first detach leaves the CD alone");
    assert_eq!(r.translate(1, p, IOVA + 0x8), Some(DATA + 0x8));
    assert!(r.dma_write(1, p, IOVA, b"b still works"));
}

#[test]
fn spec69_smmuv3_an_mdev_of_another_parent_is_ebusy_and_writes_nothing() {
    let mut r = Rig::new();
    let a = r.os.add_mdev(parent(1).id).unwrap();
    let other = r.os.add_mdev(parent(2).id).unwrap();
    let p = r.os.aux_attach(r.d, a).unwrap();
    r.log();
    assert_eq!(r.os.aux_attach(r.d, other), Err(Errno::Busy));
    assert!(r.log().is_empty());
    assert_eq!(r.translate(2, p, IOVA), None);
}

#[test]
fn spec69_smmuv3_last_detach_clears_the_cd_then_cfgi_cd_sync_and_atc_inv_and_the_ssid_faults() {
    let mut r = Rig::new();
    let (a, b) = (r.os.add_mdev(parent(1).id).unwrap(), r.os.add_mdev(parent(1).id).unwrap());
    let p = r.os.aux_attach(r.d, a).unwrap();
    r.os.aux_attach(r.d, b).unwrap();
    let (sid, ssid) = (Rig::sid(1), SubstreamId::try_new(p.raw()).ok());
    // The parent's ATC caches both pages of the aux SSID.
    for page in [IOVA, IOVA + 0x1000] {
        assert!(matches!(r.smmu.ats_translate(sid, ssid, page), AtsCompletion::Translated { .. }));
    }
    assert_eq!(r.smmu.atc_entries(sid, Some(ssid)), 2);
    r.os.aux_detach(r.d, a).unwrap();
    assert_eq!(r.smmu.atc_entries(sid, Some(ssid)), 2, "the first detach invalidates nothing");
    r.log();
    r.os.aux_detach(r.d, b).unwrap();
    let log = r.log();
    let cleared = log.iter().position(|x| is_cd_write(x, p)).expect("the CD is written");
    let cfgi = log.iter().skip(cleared).position(|x| is_cfgi_cd(x, p)).map(|i| i + cleared).expect("CFGI_CD");
    assert!(is_sync(&log[cfgi + 1]), "CMD_SYNC right after CFGI_CD: {log:?}");
    let inv = log.iter().position(|x| is_atc_inv(x, p)).expect("ATC_INV for the SSID");
    assert!(inv > cfgi + 1, "the ATC is invalidated after the CD is gone: {log:?}");
    assert!(is_sync(&log[inv + 1]));
    assert_eq!(r.smmu.atc_entries(sid, Some(ssid)), 0);
    assert_eq!(r.smmu.atc_lookup(sid, ssid, IOVA, Access::READ), None);
    assert_eq!(r.translate(1, p, IOVA), None, "DMA with the SSID faults");
    assert!(!r.dma_write(1, p, IOVA, b"late"));
    assert!(!matches!(r.smmu.ats_translate(sid, ssid, IOVA), AtsCompletion::Translated { .. }));
    assert!(!r.os.global_pasids().is_allocated(p));
}
