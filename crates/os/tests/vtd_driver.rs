//! The VT-d driver against the VT-d model, through registers and memory
//! only: bring-up and the behaviour specs of semantics §5.9.

use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::{InvDescriptor, IotlbScope, PasidCacheScope, PasidIotlbScope};
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntry, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::regs::{gcmd, offset};
use iommu_hw::vtd::{Request, VtdConfig, VtdUnit};
use iommu_os::driver::vtd::{DeviceCaps, HwAction, VtdDriver};
use iommu_os::frames::{FrameAllocator, RangeFrames};
use iommu_os::Errno;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{
    Access, DomainId, Gpa, Hpa, Iova, NullInterrupts, PageSize, PagedMemory, Pasid, Perm, RegisterBus, SourceId, Width,
};

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

const DEV: SourceId = SourceId::from_bdf(0, 4, 0);
const P1: Pasid = Pasid::new(1);
const RW: Perm = Perm { read: true, write: true, exec: false };
const ATS_PRI: DeviceCaps = DeviceCaps { max_pasids: 1 << 20, ats: true, pri: true };

/// The OS's allocators: frames for its own structures, and a separate
/// range for the page tables the tests build.
struct Env {
    frames: RangeFrames,
    tables: PageAlloc,
}

fn unit(cfg: VtdConfig) -> Unit {
    VtdUnit::new(cfg, PagedMemory::new(256 << 20), NullInterrupts)
}

fn env() -> Env {
    Env {
        frames: RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x400_0000)),
        tables: PageAlloc::new(0x400_0000, 0x800_0000),
    }
}

fn up<'u>(u: &'u Unit, w: &mut Env) -> VtdDriver<&'u Unit> {
    let mut d = VtdDriver::probe(u, u.mem(), &mut w.frames).unwrap();
    d.add_device(u.mem(), &mut w.frames, DEV, ATS_PRI).unwrap();
    d.take_log();
    d
}

/// A driver with `e` installed at (DEV, P1) and an empty action log.
fn installed<'u>(u: &'u Unit, w: &mut Env, e: &PasidEntryRepr) -> VtdDriver<&'u Unit> {
    let mut d = up(u, w);
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, e).unwrap();
    d.take_log();
    d
}

/// A first-stage entry whose tables map 0x1000 → 0x90_0000.
fn fs_entry(u: &Unit, w: &mut Env) -> PasidEntryRepr {
    let mut pt = PageTable::new(Format::FirstStage, 4, &mut w.tables);
    pt.map(u.mem(), &mut w.tables, 0x1000, 0x90_0000, PageSize::Size4K, RW);
    let fs =
        FirstStageCfg { root: Gpa::new(pt.root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
    PasidEntryRepr {
        fpd: false,
        did: DomainId::new(1),
        pwsnp: false,
        pgsnp: false,
        config: PasidConfig::FirstStage(fs),
    }
}

fn ss_entry(u: &Unit, w: &mut Env) -> PasidEntryRepr {
    let mut pt = PageTable::new(Format::SecondStage, 4, &mut w.tables);
    pt.map(u.mem(), &mut w.tables, 0x1000, 0x90_0000, PageSize::Size4K, RW);
    let ss = SecondStageCfg { root: pt.root, levels: 4, ssade: false };
    PasidEntryRepr {
        fpd: false,
        did: DomainId::new(7),
        pwsnp: false,
        pgsnp: false,
        config: PasidConfig::SecondStage(ss),
    }
}

fn dma(u: &Unit, pasid: Pasid) -> Result<Hpa, FaultReason> {
    let req = Request { sid: DEV, pasid: Some(pasid), addr: Iova::new(0x1000), access: Access::READ };
    u.translate(&req).map(|t| t.addr).map_err(|f| f.reason)
}

#[test]
fn probe_enables_translation_and_queued_invalidation() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let _d = VtdDriver::probe(&u, u.mem(), &mut w.frames).unwrap();
    let gsts = RegisterBus::read(&u, offset::GSTS, Width::W32).unwrap() as u32;
    assert_eq!(gsts & (gcmd::TE | gcmd::SRTP | gcmd::QIE), gcmd::TE | gcmd::SRTP | gcmd::QIE);
}

#[test]
fn probe_refuses_a_unit_without_scalable_mode() {
    let u = unit(VtdConfig::qemu(false, false, 48, false));
    let mut w = env();
    let r = VtdDriver::probe(&u, u.mem(), &mut w.frames);
    assert_eq!(r.err(), Some(Errno::NoDev));
    assert_eq!(w.frames.in_use(), 0);
}

#[test]
fn installed_first_stage_entry_translates_device_dma() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let mut d = up(&u, &mut w);
    let e = fs_entry(&u, &mut w);
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &e).unwrap();
    assert_eq!(dma(&u, P1), Ok(Hpa::new(0x90_0000)));
}

/// Semantics §5.9 #53: installing into a present entry → EBUSY, the first
/// entry intact; the entry is written with P last.
#[test]
fn spec_53_install_into_present_entry_is_ebusy_and_p_is_written_last() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let mut d = up(&u, &mut w);
    let e = fs_entry(&u, &mut w);
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &e).unwrap();
    assert_eq!(
        d.take_log(),
        vec![
            HwAction::PasidEntryWrite { sid: DEV, pasid: P1 },
            HwAction::PasidEntrySetPresent { sid: DEV, pasid: P1 },
            HwAction::WriteBufferFlush
        ]
    );
    let other = ss_entry(&u, &mut w);
    assert_eq!(d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &other), Err(Errno::Busy));
    assert_eq!(d.pasid_entry(u.mem(), DEV, P1).unwrap(), e.encode());
    assert!(d.log().is_empty());
}

/// Semantics §5.9 #54: teardown of a first-stage entry on an ATS+PRI
/// device: P cleared → PASID-cache (PASID-selective) → PASID-IOTLB →
/// device-TLB → zeroed → drain.
#[test]
fn spec_54_first_stage_teardown_sequence() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let e = fs_entry(&u, &mut w);
    let mut d = installed(&u, &mut w, &e);
    d.teardown_pasid(u.mem(), DEV, P1, false).unwrap();
    let did = DomainId::new(1);
    let all = Iova::new(0x7FFF_FFFF_FFFF_F000);
    let devtlb =
        InvDescriptor::PasidDeviceTlb { sid: DEV, pfsid: 0, qdep: 0, pasid: P1, global: false, addr: all, size: true };
    assert_eq!(
        d.take_log(),
        vec![
            HwAction::PasidEntryClearPresent { sid: DEV, pasid: P1 },
            HwAction::Invalidate(InvDescriptor::PasidCache { did, scope: PasidCacheScope::Pasid(P1) }),
            HwAction::Invalidate(InvDescriptor::PasidIotlb { did, pasid: P1, scope: PasidIotlbScope::AllNonGlobal }),
            HwAction::Invalidate(devtlb),
            HwAction::PasidEntryZero { sid: DEV, pasid: P1 },
            HwAction::Invalidate(InvDescriptor::Wait {
                interrupt: false,
                status: None,
                fence: true,
                drain_page_requests: true
            }),
            HwAction::Invalidate(InvDescriptor::PasidIotlb { did, pasid: P1, scope: PasidIotlbScope::AllNonGlobal }),
            HwAction::Invalidate(devtlb),
        ]
    );
    assert_eq!(dma(&u, P1), Err(FaultReason::PasidEntryNotPresent));
}

/// Semantics §5.9 #54: a second-stage entry is flushed domain-selectively.
#[test]
fn spec_54_second_stage_teardown_uses_domain_selective_iotlb() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let e = ss_entry(&u, &mut w);
    let mut d = installed(&u, &mut w, &e);
    d.teardown_pasid(u.mem(), DEV, P1, false).unwrap();
    let domain_flush =
        HwAction::Invalidate(InvDescriptor::Iotlb { scope: IotlbScope::Domain(DomainId::new(7)), dr: true, dw: true });
    assert_eq!(d.log()[2], domain_flush);
}

/// Semantics §5.9 #55 and §5.1 #10: mm exit leaves {P=0, FPD=1}, no drain,
/// and DMA faults silently; the later unbind clears the entry and drains.
#[test]
fn spec_55_mm_exit_leaves_fpd_entry_and_unbind_drains() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let e = fs_entry(&u, &mut w);
    let mut d = installed(&u, &mut w, &e);
    d.teardown_pasid(u.mem(), DEV, P1, true).unwrap();
    let log = d.take_log();
    assert_eq!(log.last(), Some(&HwAction::PasidEntryFaultIgnore { sid: DEV, pasid: P1 }));
    assert!(!log
        .iter()
        .any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. }))));
    let entry = d.pasid_entry(u.mem(), DEV, P1).unwrap();
    assert_eq!((entry.present(), entry.get(PasidEntry::FPD)), (false, 1));
    let req = Request { sid: DEV, pasid: Some(P1), addr: Iova::new(0x1000), access: Access::READ };
    assert!(!u.translate(&req).unwrap_err().recorded);
    d.teardown_pasid(u.mem(), DEV, P1, false).unwrap();
    let log = d.take_log();
    assert_eq!(log[0], HwAction::PasidEntryZero { sid: DEV, pasid: P1 });
    assert!(matches!(log[1], HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. })));
    let did = DomainId::new(1);
    assert_eq!(
        log[2],
        HwAction::Invalidate(InvDescriptor::PasidIotlb { did, pasid: P1, scope: PasidIotlbScope::AllNonGlobal })
    );
    assert_eq!(d.pasid_entry(u.mem(), DEV, P1).unwrap(), PasidEntry::default());
}

/// Semantics §5.9 #56: with caching mode, install is followed by a
/// PASID-cache and a PASID-IOTLB invalidation instead of a write-buffer flush.
#[test]
fn spec_56_caching_mode_install_invalidates_pasid_cache_and_iotlb() {
    let u = unit(VtdConfig::full_featured().caching_mode(true));
    let mut w = env();
    let mut d = up(&u, &mut w);
    let e = fs_entry(&u, &mut w);
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &e).unwrap();
    let did = DomainId::new(1);
    assert_eq!(
        &d.log()[2..],
        &[
            HwAction::Invalidate(InvDescriptor::PasidCache { did, scope: PasidCacheScope::Pasid(P1) }),
            HwAction::Invalidate(InvDescriptor::PasidIotlb { did, pasid: P1, scope: PasidIotlbScope::AllNonGlobal }),
        ]
    );
}

#[test]
fn install_beyond_device_pasid_range_is_einval() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let mut d = VtdDriver::probe(&u, u.mem(), &mut w.frames).unwrap();
    d.add_device(u.mem(), &mut w.frames, DEV, DeviceCaps { max_pasids: 8, ats: false, pri: false }).unwrap();
    let e = fs_entry(&u, &mut w);
    assert_eq!(d.install_pasid(u.mem(), &mut w.frames, DEV, Pasid::new(8), &e), Err(Errno::Inval));
}

/// The driver's invalidations reach the hardware: after teardown and a new
/// install the device sees the new tables, not a stale IOTLB entry.
#[test]
fn teardown_then_install_serves_the_new_translation() {
    let u = unit(VtdConfig::full_featured());
    let mut w = env();
    let mut d = up(&u, &mut w);
    let e = fs_entry(&u, &mut w);
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &e).unwrap();
    assert_eq!(dma(&u, P1), Ok(Hpa::new(0x90_0000)));
    d.teardown_pasid(u.mem(), DEV, P1, false).unwrap();
    let mut pt = PageTable::new(Format::FirstStage, 4, &mut w.tables);
    pt.map(u.mem(), &mut w.tables, 0x1000, 0xA0_0000, PageSize::Size4K, RW);
    let fs =
        FirstStageCfg { root: Gpa::new(pt.root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
    let e2 = PasidEntryRepr { config: PasidConfig::FirstStage(fs), ..e };
    d.install_pasid(u.mem(), &mut w.frames, DEV, P1, &e2).unwrap();
    assert_eq!(dma(&u, P1), Ok(Hpa::new(0xA0_0000)));
}

/// Fault injection (semantics §5.8): probe fails at every allocation in
/// turn, returns ENOMEM and leaks no frame.
#[test]
fn probe_failing_at_each_allocation_leaks_nothing() {
    for n in 1.. {
        let u = unit(VtdConfig::full_featured());
        let mut w = env();
        w.frames.fail_nth(Some(n));
        match VtdDriver::probe(&u, u.mem(), &mut w.frames) {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e, Errno::NoMem);
                assert_eq!(w.frames.in_use(), 0, "allocation {n}");
            }
        }
    }
}
