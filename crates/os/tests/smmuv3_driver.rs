//! The SMMUv3 driver against the SMMUv3 model, through registers and
//! memory only: bring-up, the behaviour specs 60–64 of semantics §5.10
//! (counting CFGI and CMD_SYNC per STE/CD transition as Linux's kunit
//! suite does), DMA through SubstreamIDs, and page faults answered through
//! PRI and through the stall model.

use std::sync::Arc;

use iommu_format::smmuv3::cmd::{Command, PriResponse};
use iommu_format::smmuv3::desc::Granule;
use iommu_format::smmuv3::pri::PageRequest;
use iommu_format::smmuv3::regs::offset as o;
use iommu_format::smmuv3::ste::{S1Dss, Ste, SteConfig};
use iommu_hw::smmuv3::{PriOutcome, Request, Smmu, SmmuConfig};
use iommu_os::driver::smmuv3::{HwAction, SmmuDriver};
use iommu_os::driver::{DeviceInfo, DomainConfig, DomainDesc, DomainRef, IommuDriver};
use iommu_os::frames::{FrameAllocator, RangeFrames};
use iommu_os::iopf::{Response, ResponseCode};
use iommu_os::pasid::DeviceId;
use iommu_os::Errno;
use iommu_testkit::smmuv3::{s1_attrs, BumpAlloc, VmsaTables};
use iommu_types::{
    Access, Hpa, NullInterrupts, PagedMemory, Pasid, PhysMem, RegisterBus, SourceId, StreamId, SubstreamId, Width,
};

type Mem = Arc<PagedMemory>;
type Model = Smmu<Mem, NullInterrupts>;

const P1: Pasid = Pasid::new(1);
const IOVA: u64 = 0x4000_0000;
const DATA: u64 = 0x900_0000;

struct Rig {
    smmu: Arc<Model>,
    drv: SmmuDriver<Arc<Model>>,
    frames: RangeFrames,
    tables: BumpAlloc,
}

impl Rig {
    fn new() -> Self {
        let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
        let smmu = Arc::new(Smmu::new(SmmuConfig::full(), mem.clone(), NullInterrupts));
        let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x400_0000));
        let drv = SmmuDriver::probe(smmu.clone(), &*mem, &mut frames).expect("probe");
        Self { smmu, drv, frames, tables: BumpAlloc::new(0x400_0000, 0x800_0000) }
    }

    fn mem(&self) -> Mem {
        self.smmu.mem().clone()
    }

    fn probe(&mut self, dev: &DeviceInfo) {
        let mem = self.mem();
        self.drv.probe_device(&*mem, &mut self.frames, dev).expect("probe_device");
    }

    fn set(&mut self, dev: &DeviceInfo, pasid: Pasid, d: &DomainDesc) -> Result<(), Errno> {
        let mem = self.mem();
        self.drv.set_dev_pasid(&*mem, &mut self.frames, dev, pasid, d, None)
    }

    fn remove(&mut self, dev: &DeviceInfo, pasid: Pasid, fault_ignore: bool) {
        let mem = self.mem();
        self.drv.remove_dev_pasid(&*mem, &mut self.frames, dev, pasid, fault_ignore);
    }

    /// A stage-1 domain whose 48-bit tables map IOVA → `out` read/write.
    fn s1_domain(&mut self, index: u32, out: u64, sva: bool) -> DomainDesc {
        let mem = self.mem();
        let mut t = VmsaTables::stage1(&*mem, &mut self.tables, Granule::G4K, 48).unwrap();
        t.map(&*mem, &mut self.tables, IOVA, out, 3, s1_attrs(0b01)).unwrap();
        DomainDesc {
            id: DomainRef { instance: 0, index },
            config: DomainConfig::FirstStage { root: Hpa::new(t.root()), levels: 4, supervisor: false },
            sva,
        }
    }

    fn ste(&self, dev: &DeviceInfo) -> Ste {
        self.drv.read_ste(&*self.mem(), sid(dev)).unwrap()
    }

    fn dma(&self, dev: &DeviceInfo, pasid: Option<u32>, addr: u64, write: bool) -> Option<u64> {
        let access = if write { Access::WRITE } else { Access::READ };
        let ssid = pasid.map(|p| SubstreamId::try_new(p).unwrap());
        self.smmu.translate(&Request { sid: StreamId(sid(dev)), ssid, addr, access }).ok().map(|t| t.pa)
    }
}

fn sid(dev: &DeviceInfo) -> u32 {
    dev.sid.raw() as u32
}

fn pci(n: u8, max_pasids: u32, ats: bool, pri: bool) -> DeviceInfo {
    DeviceInfo { id: DeviceId(n as u32), sid: SourceId::from_bdf(0, n, 0), max_pasids, ats, pri, pci: true }
}

fn domain(index: u32, config: DomainConfig) -> DomainDesc {
    DomainDesc { id: DomainRef { instance: 0, index }, config, sva: false }
}

fn identity() -> DomainDesc {
    domain(100, DomainConfig::Identity)
}

fn blocked() -> DomainDesc {
    domain(101, DomainConfig::Blocked)
}

fn s2_domain() -> DomainDesc {
    domain(102, DomainConfig::SecondStage { root: Hpa::new(0x70_0000), levels: 4 })
}

/// How many times each step of a transition synchronised: the number of
/// CMD_SYNCs that follow a CFGI of the given kind.
fn syncs_after(log: &[HwAction], cfgi: fn(&Command) -> bool) -> usize {
    log.windows(2)
        .filter(|w| {
            matches!(w[0], HwAction::Command(c) if cfgi(&c)) && matches!(w[1], HwAction::Command(Command::Sync { .. }))
        })
        .count()
}

fn is_cfgi_cd(c: &Command) -> bool {
    matches!(c, Command::CfgiCd { .. })
}

fn is_cfgi_ste(c: &Command) -> bool {
    matches!(c, Command::CfgiSte { .. })
}

#[test]
fn probe_enables_the_smmu_with_its_queues_and_unknown_streams_abort_silently() {
    let r = Rig::new();
    let ack = RegisterBus::read(&*r.smmu, o::CR0ACK, Width::W32).unwrap();
    assert_eq!(ack, 0b1111, "SMMUEN, PRIQEN, EVENTQEN, CMDQEN");
    let stranger = pci(9, 0, false, false);
    assert_eq!(r.dma(&stranger, None, IOVA, false), None);
    assert!(r.drv.events().is_empty());
}

#[test]
fn spec60_cd_table_ste_s1dss_follows_the_rid_domain() {
    let mut r = Rig::new();
    let cases = [(identity(), S1Dss::Bypass), (blocked(), S1Dss::Terminate)];
    for (n, (rid, want)) in cases.into_iter().enumerate() {
        let dev = pci(1 + n as u8, 8, false, false);
        r.probe(&dev);
        r.set(&dev, Pasid::ZERO, &rid).unwrap();
        let d = r.s1_domain(10 + n as u32, DATA, false);
        r.set(&dev, P1, &d).unwrap();
        let ste = r.ste(&dev);
        assert_eq!(ste.config(), SteConfig::S1);
        assert_eq!(S1Dss::from_bits(ste.get(Ste::S1DSS)), want);
    }
    // A stage-1 RID domain lives in CD 0.
    let dev = pci(5, 8, false, false);
    r.probe(&dev);
    let rid = r.s1_domain(20, DATA + 0x1000, false);
    r.set(&dev, Pasid::ZERO, &rid).unwrap();
    assert_eq!(S1Dss::from_bits(r.ste(&dev).get(Ste::S1DSS)), S1Dss::Substream0);
    assert_eq!(r.dma(&dev, None, IOVA, false), Some(DATA + 0x1000));
}

#[test]
fn spec60_untagged_dma_follows_s1dss_and_tagged_dma_its_cd() {
    let mut r = Rig::new();
    let (a, b) = (pci(1, 8, false, false), pci(2, 8, false, false));
    for (dev, rid) in [(&a, identity()), (&b, blocked())] {
        r.probe(dev);
        r.set(dev, Pasid::ZERO, &rid).unwrap();
        let d = r.s1_domain(sid(dev), DATA, false);
        r.set(dev, P1, &d).unwrap();
        assert_eq!(r.dma(dev, Some(1), IOVA + 0x10, true), Some(DATA + 0x10));
    }
    assert_eq!(r.dma(&a, None, 0x1234_5000, false), Some(0x1234_5000), "identity RID bypasses");
    assert_eq!(r.dma(&b, None, 0x1234_5000, false), None, "blocked RID terminates");
}

#[test]
fn spec61_pasid_attach_under_a_stage_2_rid_is_einval() {
    let mut r = Rig::new();
    let dev = pci(1, 8, false, false);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &s2_domain()).unwrap();
    let d = r.s1_domain(10, DATA, false);
    assert_eq!(r.set(&dev, P1, &d), Err(Errno::Inval));
    assert_eq!(r.drv.check_rid_with_pasids(&s2_domain(), false), Err(Errno::Inval));
    assert_eq!(r.ste(&dev).config(), SteConfig::S2, "the stage-2 STE is untouched");
}

#[test]
fn spec61_stage_2_rid_attach_while_ssids_are_live_is_ebusy() {
    let mut r = Rig::new();
    let dev = pci(1, 8, false, false);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &identity()).unwrap();
    let d = r.s1_domain(10, DATA, false);
    r.set(&dev, P1, &d).unwrap();
    assert_eq!(r.set(&dev, Pasid::ZERO, &s2_domain()), Err(Errno::Busy));
    assert_eq!(r.drv.check_rid_with_pasids(&s2_domain(), true), Err(Errno::Busy));
    assert_eq!(r.dma(&dev, Some(1), IOVA, false), Some(DATA), "the PASID still translates");
}

fn sva_rig() -> (Rig, DeviceInfo) {
    let mut r = Rig::new();
    let dev = pci(1, 1 << 20, true, true);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &identity()).unwrap();
    let d = r.s1_domain(10, DATA, true);
    r.set(&dev, P1, &d).unwrap();
    r.drv.take_log();
    (r, dev)
}

#[test]
fn spec62_sva_cd_to_release_cd_is_hitless_in_two_syncs() {
    let (mut r, dev) = sva_rig();
    r.remove(&dev, P1, true);
    let log = r.drv.take_log();
    assert_eq!(syncs_after(&log, is_cfgi_cd), 2);
    assert!(log.iter().all(
        |a| !matches!(a, HwAction::CdWrite { words, .. } if words.count_ones() > 1 && words & 1 != 0 && words & 2 != 0)
    ));
    let cd = r.drv.read_cd(&*r.mem(), sid(&dev), 1).unwrap();
    assert_eq!((cd.get(iommu_format::smmuv3::cd::Cd::V), cd.get(iommu_format::smmuv3::cd::Cd::EPD0)), (1, 1));
    // DMA now aborts quietly: no event for the dead address space.
    assert_eq!(r.dma(&dev, Some(1), IOVA, false), None);
    assert!(r.smmu.atc_entries(StreamId(sid(&dev)), Some(SubstreamId::try_new(1).ok())) == 0);
}

#[test]
fn spec62_sva_cd_to_cleared_cd_takes_two_syncs() {
    let (mut r, dev) = sva_rig();
    r.remove(&dev, P1, false);
    let log = r.drv.take_log();
    assert_eq!(syncs_after(&log, is_cfgi_cd), 2);
    let cd = r.drv.read_cd(&*r.mem(), sid(&dev), 1);
    assert!(cd.is_err() || cd.unwrap().words() == [0; 8]);
}

#[test]
fn spec62_stage_2_to_cd_table_ste_breaks_before_make_in_three_syncs() {
    let mut r = Rig::new();
    let dev = pci(1, 8, false, false);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &s2_domain()).unwrap();
    r.drv.take_log();
    let rid = r.s1_domain(20, DATA, false);
    r.set(&dev, Pasid::ZERO, &rid).unwrap();
    let log = r.drv.take_log();
    assert_eq!(syncs_after(&log, is_cfgi_ste), 3);
}

#[test]
fn spec63_removing_the_last_pasid_under_an_identity_rid_rewrites_the_ste_to_bypass() {
    let mut r = Rig::new();
    let dev = pci(1, 8, false, false);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &identity()).unwrap();
    let before = r.frames.in_use();
    let d = r.s1_domain(10, DATA, false);
    r.set(&dev, P1, &d).unwrap();
    assert_eq!(r.ste(&dev).config(), SteConfig::S1);
    r.remove(&dev, P1, false);
    assert_eq!(r.ste(&dev).config(), SteConfig::Bypass);
    assert_eq!(r.frames.in_use(), before, "the CD table is freed");
    assert_eq!(r.dma(&dev, None, 0x5000, false), Some(0x5000));
}

#[test]
fn spec64_ats_is_enabled_only_after_eats_is_set_and_after_a_full_atc_invalidation() {
    let mut r = Rig::new();
    let dev = pci(1, 1 << 20, true, true);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &identity()).unwrap();
    r.drv.take_log();
    let d = r.s1_domain(10, DATA, true);
    r.set(&dev, P1, &d).unwrap();
    let log = r.drv.take_log();
    let enable = log.iter().position(|a| matches!(a, HwAction::AtsEnable { .. })).expect("ATS enabled");
    let last_ste = log.iter().rposition(|a| matches!(a, HwAction::SteWrite { .. })).unwrap();
    assert!(last_ste < enable);
    assert!(matches!(log[enable - 1], HwAction::Command(Command::Sync { .. })));
    assert!(matches!(log[enable - 2], HwAction::Command(Command::AtcInv { ssid: None, size: 52, .. })));
    assert_eq!(r.ste(&dev).get(Ste::EATS), 1);
}

#[test]
fn spec64_every_cd_removal_with_ats_on_is_followed_by_atc_inv_for_its_ssid() {
    let (mut r, dev) = sva_rig();
    // Fill the device's ATC for PASID 1.
    let s1 = SubstreamId::try_new(1).ok();
    assert!(matches!(
        r.smmu.ats_translate(StreamId(sid(&dev)), s1, IOVA),
        iommu_hw::smmuv3::AtsCompletion::Translated { .. }
    ));
    r.remove(&dev, P1, false);
    let log = r.drv.take_log();
    let cleared = log.iter().rposition(|a| matches!(a, HwAction::CdWrite { .. })).unwrap();
    let inv =
        log.iter().position(|a| matches!(a, HwAction::Command(Command::AtcInv { ssid: Some(s), .. }) if s.raw() == 1));
    assert!(inv.is_some_and(|i| i > cleared));
    assert_eq!(r.smmu.atc_entries(StreamId(sid(&dev)), Some(s1)), 0);
}

#[test]
fn pasid_dma_uses_a_two_level_cd_table_for_a_20_bit_device_and_a_linear_one_for_8_pasids() {
    let mut r = Rig::new();
    let big = pci(1, 1 << 20, false, false);
    let small = pci(2, 8, false, false);
    for dev in [&big, &small] {
        r.probe(dev);
        r.set(dev, Pasid::ZERO, &identity()).unwrap();
    }
    let d = r.s1_domain(10, DATA, false);
    r.set(&big, Pasid::new(70_000), &d).unwrap();
    r.set(&small, Pasid::new(7), &d).unwrap();
    assert_eq!(r.ste(&big).get(Ste::S1FMT), 2);
    assert_eq!(r.ste(&small).get(Ste::S1FMT), 0);
    assert_eq!(r.dma(&big, Some(70_000), IOVA + 8, false), Some(DATA + 8));
    assert_eq!(r.dma(&small, Some(7), IOVA + 8, false), Some(DATA + 8));
    assert_eq!(r.set(&small, Pasid::new(8), &d), Err(Errno::Inval), "beyond the device's 3 SSID bits");
}

#[test]
fn a_page_request_reaches_the_iopf_core_and_its_answer_is_a_pri_resp() {
    let (mut r, dev) = sva_rig();
    let req = PageRequest {
        sid: StreamId(sid(&dev)),
        ssid: SubstreamId::try_new(1).ok(),
        addr: IOVA + 0x2000,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        last: true,
        grpid: 5,
    };
    assert_eq!(r.smmu.page_request(&req), PriOutcome::Queued);
    let mem = r.mem();
    let batch = r.drv.take_faults(&*mem, &|s| (s == dev.sid).then_some(dev.id)).unwrap();
    assert_eq!(batch.faults.len(), 1);
    let f = batch.faults[0];
    assert_eq!((f.pasid, f.grpid, f.last, f.addr.raw()), (Some(P1), 5, true, IOVA + 0x2000));
    let resp = Response { dev: dev.id, pasid: f.pasid, grpid: f.grpid, code: ResponseCode::Success, private: [0, 0] };
    r.drv.send_page_response(&*mem, &dev, &resp).unwrap();
    let got = r.smmu.take_prg_responses(StreamId(sid(&dev)));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].grpid, got[0].resp), (5, PriResponse::Success));
}

#[test]
fn a_stall_model_fault_reaches_the_iopf_core_and_its_answer_resumes_the_transaction() {
    let mut r = Rig::new();
    let dev = DeviceInfo { pci: false, ..pci(3, 1 << 4, false, false) };
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &blocked()).unwrap();
    let d = r.s1_domain(10, DATA, true);
    r.set(&dev, P1, &d).unwrap();
    // An unmapped page faults and stalls (CD.S is set for this master).
    assert_eq!(r.dma(&dev, Some(1), IOVA + 0x10_0000, false), None);
    let mem = r.mem();
    let batch = r.drv.take_faults(&*mem, &|s| (s == dev.sid).then_some(dev.id)).unwrap();
    assert_eq!(batch.faults.len(), 1);
    let f = batch.faults[0];
    assert_eq!((f.pasid, f.addr.raw()), (Some(P1), IOVA + 0x10_0000));
    let resp = Response { dev: dev.id, pasid: f.pasid, grpid: f.grpid, code: ResponseCode::Success, private: [0, 0] };
    r.drv.send_page_response(&*mem, &dev, &resp).unwrap();
    assert_eq!(r.smmu.take_resume(StreamId(sid(&dev)), f.grpid), Some(true), "retried");
}

#[test]
fn flush_range_invalidates_the_asid_pages_and_the_atc_of_every_target() {
    let (mut r, dev) = sva_rig();
    let d = r.s1_domain(10, DATA, true);
    let mem = r.mem();
    let s1 = SubstreamId::try_new(1).ok();
    assert!(r.dma(&dev, Some(1), IOVA, false).is_some());
    assert!(matches!(
        r.smmu.ats_translate(StreamId(sid(&dev)), s1, IOVA),
        iommu_hw::smmuv3::AtsCompletion::Translated { .. }
    ));
    r.drv.flush_range(&*mem, &d, &[(dev, P1)], IOVA, IOVA + 0x2000, true).unwrap();
    let log = r.drv.take_log();
    assert!(log.iter().any(|a| matches!(a, HwAction::Command(Command::TlbiNhVa { .. }))));
    assert!(log.iter().any(|a| matches!(a, HwAction::Command(Command::AtcInv { ssid: Some(_), .. }))));
    assert_eq!(r.smmu.atc_entries(StreamId(sid(&dev)), Some(s1)), 0);
}

/// A one-page flush must not use a range TLBI: TG != 0 with NUM, SCALE
/// and TTL all zero is reserved (SMMUv3 §4.4.1.1) and raises CERROR_ILL.
#[test]
fn flush_of_one_page_succeeds_with_a_non_range_tlbi_and_drops_the_tlb_entry() {
    let (mut r, dev) = sva_rig();
    let d = r.s1_domain(10, DATA, true);
    let mem = r.mem();
    assert!(r.dma(&dev, Some(1), IOVA, false).is_some());
    r.drv.take_log();
    r.drv.flush_range(&*mem, &d, &[(dev, P1)], IOVA, IOVA + 0x1000, false).expect("no CERROR_ILL");
    let log = r.drv.take_log();
    assert!(log.iter().any(|a| matches!(a, HwAction::Command(Command::TlbiNhVa { range, .. }) if !range.is_range())));
    let ctx = [(StreamId(sid(&dev)), SubstreamId::try_new(1).ok())];
    let audit = r.smmu.audit_caches(&ctx);
    assert_eq!(audit.stale, []);
    assert_eq!(audit.checked, 0, "the TLB entry is gone");
}

#[test]
fn release_device_returns_every_frame_the_device_took() {
    let mut r = Rig::new();
    let before = r.frames.in_use();
    let dev = pci(1, 1 << 20, true, true);
    r.probe(&dev);
    r.set(&dev, Pasid::ZERO, &identity()).unwrap();
    let d = r.s1_domain(10, DATA, true);
    r.set(&dev, Pasid::new(5000), &d).unwrap();
    let mem = r.mem();
    r.drv.release_device(&*mem, &mut r.frames, &dev);
    // The stream table's level-2 leaf for this StreamID stays.
    assert_eq!(r.frames.in_use(), before + 4);
    let _ = mem.read_u64(Hpa::new(0));
}

/// The IOMMU core over the SMMUv3 driver: domains get VMSAv8-64 tables,
/// and a PASID attach through the core makes DMA with that SubstreamID
/// translate; unmap + flush makes it fault again.
#[test]
fn the_core_builds_arm_tables_and_pasid_dma_translates_until_unmapped() {
    use iommu_os::iommu::{GroupId, Iommu};
    use iommu_os::pgtable::PtFormat;
    use iommu_types::{Iova, Perm};

    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let smmu = Arc::new(Smmu::new(SmmuConfig::full(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x400_0000));
    let drv = SmmuDriver::probe(smmu.clone(), &*mem, &mut frames).unwrap();
    let mut core = Iommu::new(0, drv, mem.clone(), frames);
    let dev = pci(1, 1 << 20, false, false);
    core.add_device(dev, GroupId(1)).unwrap();
    assert_eq!(core.alloc_paging(PtFormat::FirstStage { levels: 4 }, false), Err(Errno::Inval), "x86 tables");
    let format = core.driver().table_format(false, 4);
    assert_eq!(format, PtFormat::ArmS1 { levels: 4 });
    let d = core.alloc_paging(format, false).unwrap();
    let rw = Perm { read: true, write: true, exec: false };
    let f = core.map(d, Iova::new(IOVA), Hpa::new(DATA), 0x2000, rw).unwrap();
    core.flush(f).unwrap();
    core.attach_dev_pasid(d, dev.id, Pasid::new(3), None).unwrap();
    let req =
        |addr| Request { sid: StreamId(sid(&dev)), ssid: SubstreamId::try_new(3).ok(), addr, access: Access::WRITE };
    assert_eq!(smmu.translate(&req(IOVA + 0x1008)).map(|t| t.pa).ok(), Some(DATA + 0x1008));
    let f = core.unmap(d, Iova::new(IOVA), 0x2000).unwrap();
    core.flush(f).unwrap();
    assert!(smmu.translate(&req(IOVA + 0x1008)).is_err(), "no stale TLB entry after unmap + flush");
}

/// Semantics §5.8 for the driver's multi-step operations: failing the
/// n-th command submission of a PASID attach (CD write, STE rewrite, ATS
/// enable) or of a RID change leaves the STE, the CD and the frames as
/// they were, and the same operation then succeeds.
#[test]
fn fail_nth_submission_of_attach_leaves_everything_as_it_was() {
    for rid_s1 in [false, true] {
        let mut n = 1;
        loop {
            let mut r = Rig::new();
            let dev = pci(1, 1 << 20, true, true);
            r.probe(&dev);
            r.set(&dev, Pasid::ZERO, &identity()).unwrap();
            let d = r.s1_domain(10, DATA, true);
            let rid = r.s1_domain(11, DATA + 0x1000, false);
            let (ste, frames) = (r.ste(&dev).words(), r.frames.in_use());
            r.drv.fail_nth_submit(Some(n));
            let res = if rid_s1 { r.set(&dev, Pasid::ZERO, &rid) } else { r.set(&dev, P1, &d) };
            r.drv.fail_nth_submit(None);
            if res.is_ok() {
                assert!(n > 3, "the attach took at least three submissions");
                break;
            }
            assert_eq!(r.ste(&dev).words(), ste, "rid_s1 {rid_s1}, fail {n}: STE");
            assert_eq!(r.frames.in_use(), frames, "rid_s1 {rid_s1}, fail {n}: frames");
            assert_eq!(r.dma(&dev, None, 0x7000, false), Some(0x7000), "rid_s1 {rid_s1}, fail {n}");
            if rid_s1 {
                r.set(&dev, Pasid::ZERO, &rid).unwrap();
                assert_eq!(r.dma(&dev, None, IOVA, false), Some(DATA + 0x1000));
            } else {
                r.set(&dev, P1, &d).unwrap();
                assert_eq!(r.dma(&dev, Some(1), IOVA, false), Some(DATA));
            }
            n += 1;
        }
    }
}

#[test]
fn removing_a_stage_1_rid_domain_blocks_untagged_dma_and_frees_the_cd_table() {
    let mut r = Rig::new();
    let dev = pci(1, 8, false, false);
    r.probe(&dev);
    let before = r.frames.in_use();
    let rid = r.s1_domain(20, DATA, false);
    r.set(&dev, Pasid::ZERO, &rid).unwrap();
    assert_eq!(r.dma(&dev, None, IOVA, false), Some(DATA));
    r.remove(&dev, Pasid::ZERO, false);
    assert_eq!(r.ste(&dev).config(), SteConfig::Abort);
    assert_eq!(r.dma(&dev, None, IOVA, false), None);
    assert_eq!(r.frames.in_use(), before);
}
