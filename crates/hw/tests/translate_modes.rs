//! Translation through the whole unit in every PASID-granular mode, and the
//! scalable-mode request checks (VT-d §3.4.3, §3.6–§3.8, §7.1.3).

use iommu_format::vtd::context::{ContextRepr, TranslationType};
use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::InvDescriptor;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::regs::{gcmd, offset, Cap};
use iommu_hw::vtd::{AtsCompletion, Request, VtdConfig, VtdFault, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{
    Access, DomainId, Gpa, Hpa, Iova, NullInterrupts, PageSize, PagedMemory, Pasid, Perm, PhysMem, RegisterBus,
    SourceId, Width,
};

const DEV: SourceId = SourceId::from_bdf(1, 0, 0);
const RW: Perm = Perm { read: true, write: true, exec: false };
const IQ: u64 = 0x0F00_0000;

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

struct World {
    unit: Unit,
    alloc: PageAlloc,
    setup: VtdSetup,
}

fn world(scalable: bool) -> World {
    let unit = VtdUnit::new(VtdConfig::full_featured(), PagedMemory::new(256 << 20), NullInterrupts);
    let mut alloc = PageAlloc::new(0x10_0000, 0x0E00_0000);
    let setup = VtdSetup::new(&mut alloc, scalable);
    World { unit, alloc, setup }
}

fn entry(did: u16, config: PasidConfig) -> PasidEntryRepr {
    PasidEntryRepr { fpd: false, did: DomainId::new(did), pwsnp: false, pgsnp: false, config }
}

fn fs_cfg(root: Hpa, levels: u8) -> FirstStageCfg {
    FirstStageCfg { root: Gpa::new(root.raw()), levels, sre: false, ere: false, wpe: false, eafe: false }
}

fn req(pasid: Option<u32>, addr: u64, access: Access) -> Request {
    Request { sid: DEV, pasid: pasid.map(Pasid::new), addr: Iova::new(addr), access }
}

/// A device with one first-stage PASID (1) mapping 0x1000 → 0x20_0000.
fn fs_world(fpd: bool) -> World {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, true, true);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    fs.map(mem, &mut w.alloc, 0x1000, 0x20_0000, PageSize::Size4K, RW);
    let e = PasidEntryRepr { fpd, ..entry(1, PasidConfig::FirstStage(fs_cfg(fs.root, 4))) };
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(1), &e);
    w.setup.enable(&w.unit);
    w
}

#[test]
fn legacy_second_stage_translates() {
    let mut w = world(false);
    let mem = w.unit.mem();
    let mut ss = PageTable::new(Format::SecondStage, 3, &mut w.alloc);
    ss.map(mem, &mut w.alloc, 0x8000, 0x30_0000, PageSize::Size4K, RW);
    let ce =
        ContextRepr { fpd: false, tt: TranslationType::Untranslated, slptptr: ss.root, aw: 1, did: DomainId::new(5) };
    w.setup.legacy_device(mem, &mut w.alloc, DEV, &ce);
    w.setup.enable(&w.unit);
    assert_eq!(w.unit.translate(&req(None, 0x8010, Access::WRITE)).unwrap().addr, Hpa::new(0x30_0010));
}

/// VT-d §3.8: nested translation through the unit, 4-level over 4-level.
#[test]
fn nested_pasid_translates_through_both_stages() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    let mut gfs = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    gfs.map(mem, &mut w.alloc, 0x7000_0000, 0x4000_0000, PageSize::Size4K, RW);
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut w.alloc);
    for l in 1..=4 {
        let page = gfs.entry_addr(0x7000_0000, l).unwrap().raw() & !0xFFF;
        ss.map(mem, &mut w.alloc, page, page, PageSize::Size4K, RW);
    }
    ss.map(mem, &mut w.alloc, 0x4000_0000, 0x0900_0000, PageSize::Size2M, RW);
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    let e = entry(3, PasidConfig::Nested(fs_cfg(gfs.root, 4), ss_cfg));
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(9), &e);
    w.setup.enable(&w.unit);
    let t = w.unit.translate(&req(Some(9), 0x7000_0123, Access::READ)).unwrap();
    assert_eq!((t.addr, t.size), (Hpa::new(0x0900_0123), PageSize::Size4K));
}

/// VT-d §3.6: 5-level first stage (FSPM=1 with CAP.FS5LP).
#[test]
fn five_level_first_stage_translates_a_57_bit_address() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    let mut fs = PageTable::new(Format::FirstStage, 5, &mut w.alloc);
    fs.map(mem, &mut w.alloc, 0x00F0_0000_0000_0000, 0x50_0000, PageSize::Size4K, RW);
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(2), &entry(1, PasidConfig::FirstStage(fs_cfg(fs.root, 5))));
    w.setup.enable(&w.unit);
    let t = w.unit.translate(&req(Some(2), 0x00F0_0000_0000_0008, Access::READ)).unwrap();
    assert_eq!(t.addr, Hpa::new(0x50_0008));
}

/// VT-d §9.6: 5-level first stage without CAP.FS5LP is an invalid entry (0x5B).
#[test]
fn five_level_first_stage_without_fs5lp_is_invalid_entry() {
    let cfg = VtdConfig::full_featured();
    let cfg = VtdConfig { cap: Cap([cfg.cap]).with(Cap::FS5LP, 0).0[0], ..cfg };
    let mut w = World { unit: VtdUnit::new(cfg, PagedMemory::new(256 << 20), NullInterrupts), ..world(true) };
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    let fs = PageTable::new(Format::FirstStage, 5, &mut w.alloc);
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(2), &entry(1, PasidConfig::FirstStage(fs_cfg(fs.root, 5))));
    w.setup.enable(&w.unit);
    let f = w.unit.translate(&req(Some(2), 0, Access::READ)).unwrap_err();
    assert_eq!(f.reason, FaultReason::PasidEntryInvalid);
}

#[test]
fn pass_through_pasid_is_identity() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(4), &entry(1, PasidConfig::PassThrough));
    w.setup.enable(&w.unit);
    assert_eq!(w.unit.translate(&req(Some(4), 0xABC_D123, Access::WRITE)).unwrap().addr, Hpa::new(0xABC_D123));
}

#[test]
fn first_stage_pasid_translates_and_unmapped_page_faults_0x71() {
    let w = fs_world(false);
    assert_eq!(w.unit.translate(&req(Some(1), 0x1004, Access::READ)).unwrap().addr, Hpa::new(0x20_0004));
    let f = w.unit.translate(&req(Some(1), 0x9000, Access::READ)).unwrap_err();
    assert_eq!(f, VtdFault { reason: FaultReason::FsEntryNotPresent, recorded: true });
}

/// VT-d §7.1.2: FPD in the PASID entry suppresses recording.
#[test]
fn pasid_entry_fpd_suppresses_fault_recording() {
    let w = fs_world(true);
    let f = w.unit.translate(&req(Some(1), 0x9000, Access::READ)).unwrap_err();
    assert_eq!(f, VtdFault { reason: FaultReason::FsEntryNotPresent, recorded: false });
    assert_eq!(RegisterBus::read(&w.unit, offset::FSTS, Width::W32).unwrap(), 0);
}

/// VT-d §7.1.3 (0x5D): a supervisor request needs SRE.
#[test]
fn privileged_request_without_sre_faults_0x5d() {
    let w = fs_world(false);
    let f = w.unit.translate(&req(Some(1), 0x1000, Access::READ.privileged())).unwrap_err();
    assert_eq!(f.reason, FaultReason::SreClear);
}

/// VT-d §7.1.3 (0x5C): an execute request needs ERE.
#[test]
fn execute_request_without_ere_faults_0x5c() {
    let w = fs_world(false);
    let f = w.unit.translate(&req(Some(1), 0x1000, Access::READ.exec())).unwrap_err();
    assert_eq!(f.reason, FaultReason::EreClear);
}

/// VT-d §7.1.3 (0x45): a request with PASID needs PASIDE in the context entry.
#[test]
fn pasid_request_with_paside_clear_faults_0x45() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    // Clear PASIDE (bit 3) in the context entry the setup wrote.
    let ce = Hpa::new(w.unit.mem().read_u64(Hpa::new(w.setup.root.raw() + 16)).unwrap() & !0xFFF);
    let lo = mem.read_u64(ce).unwrap();
    mem.write_u64(ce, lo & !(1 << 3)).unwrap();
    w.setup.enable(&w.unit);
    assert_eq!(w.unit.translate(&req(Some(1), 0, Access::READ)).unwrap_err().reason, FaultReason::SmPasidDisabled);
}

/// PCIe ATS: a translation fills the device TLB; a PASID-based device-TLB
/// invalidation (VT-d §6.5.2.7) empties it.
#[test]
fn device_tlb_is_filled_by_ats_and_emptied_by_invalidation() {
    let w = fs_world(false);
    let t = w.unit.ats_translate(DEV, Some(Pasid::new(1)), Iova::new(0x1000), Access::READ);
    assert!(matches!(t, AtsCompletion::Translated { .. }));
    assert_eq!(
        w.unit.device_tlb_lookup(DEV, Some(Pasid::new(1)), Iova::new(0x1008), Access::READ),
        Some(Hpa::new(0x20_0008))
    );
    RegisterBus::write(&w.unit, offset::IQA, Width::W64, IQ | 1 << 11).unwrap();
    RegisterBus::write(&w.unit, offset::GCMD, Width::W32, (gcmd::TE | gcmd::QIE) as u64).unwrap();
    let d = InvDescriptor::PasidDeviceTlb {
        sid: DEV,
        pfsid: 0,
        qdep: 0,
        pasid: Pasid::new(1),
        global: false,
        addr: Iova::new(0x1000),
        size: false,
    };
    w.unit.mem().write(Hpa::new(IQ), &d.encode().to_bytes()).unwrap();
    RegisterBus::write(&w.unit, offset::IQT, Width::W64, 32).unwrap();
    assert_eq!(w.unit.device_tlb_lookup(DEV, Some(Pasid::new(1)), Iova::new(0x1008), Access::READ), None);
}

/// ATS on an unmapped page: success with no access, and no fault recorded
/// (the device will ask with a page request).
#[test]
fn ats_on_unmapped_page_returns_no_access_without_recording() {
    let w = fs_world(false);
    let t = w.unit.ats_translate(DEV, Some(Pasid::new(1)), Iova::new(0x7000), Access::WRITE);
    assert_eq!(t, AtsCompletion::NoAccess);
    assert_eq!(RegisterBus::read(&w.unit, offset::FSTS, Width::W32).unwrap(), 0);
}

#[test]
fn caching_mode_sets_cap_cm() {
    let cfg = VtdConfig::full_featured().caching_mode(true);
    assert_eq!(Cap([cfg.cap]).get(Cap::CM), 1);
}

/// Found by fuzzing, VT-d §3.15: pass-through never makes the interrupt
/// range a DMA target (0x87 in scalable mode).
#[test]
fn pass_through_into_the_interrupt_range_faults() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, false, false);
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(4), &entry(1, PasidConfig::PassThrough));
    w.setup.enable(&w.unit);
    let f = w.unit.translate(&req(Some(4), 0xFEE0_0000, Access::WRITE)).unwrap_err();
    assert_eq!(f.reason, FaultReason::SmInterruptAddress);
}

/// A 2 MiB page that contains the interrupt window is handed out only at
/// 4 KiB granularity, so no cached or ATS translation reaches the window.
#[test]
fn large_page_over_the_interrupt_window_is_used_at_4k_granularity() {
    let mut w = world(true);
    let mem = w.unit.mem();
    w.setup.scalable_device(mem, &mut w.alloc, DEV, true, false);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    // The 2 MiB page 0xFEE0_0000..0xFF00_0000: its first MiB is the window.
    fs.map(mem, &mut w.alloc, 0x20_0000, 0xFEE0_0000, PageSize::Size2M, RW);
    w.setup.pasid_entry(mem, &mut w.alloc, DEV, Pasid::new(1), &entry(1, PasidConfig::FirstStage(fs_cfg(fs.root, 4))));
    w.setup.enable(&w.unit);
    let above_window = Iova::new(0x30_0000);
    let t = w.unit.ats_translate(DEV, Some(Pasid::new(1)), above_window, Access::READ);
    let want = AtsCompletion::Translated { frame: Hpa::new(0xFEF0_0000), size: PageSize::Size4K, perm: RW };
    assert_eq!(t, want);
    let f = w.unit.translate(&req(Some(1), 0x20_0000, Access::READ)).unwrap_err();
    assert_eq!(f.reason, FaultReason::SmInterruptAddress);
}
