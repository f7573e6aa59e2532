//! Register-file, queue and fault-log behaviour of the VT-d unit, driven
//! through MMIO and memory only.

use std::sync::Arc;

use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::{InvDescriptor, IotlbScope, ResponseCode};
use iommu_format::vtd::regs::{ectl, fsts, gcmd, offset as o};
use iommu_types::{
    Access, Hpa, Iova, Msi, PagedMemory, Pasid, PhysMem, RecordingInterrupts, RegisterBus, SourceId, Width,
};

use super::*;

type Unit = VtdUnit<PagedMemory, Arc<RecordingInterrupts>>;

const RT: u64 = 0x10_0000;
const IQ: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const SID: SourceId = SourceId::from_bdf(0, 1, 0);

fn unit_with(cfg: VtdConfig) -> (Unit, Arc<RecordingInterrupts>) {
    let irq = Arc::new(RecordingInterrupts::default());
    (VtdUnit::new(cfg, PagedMemory::new(64 << 20), irq.clone()), irq)
}

fn unit() -> Unit {
    unit_with(VtdConfig::full_featured()).0
}

fn w32(u: &Unit, off: u64, v: u64) {
    RegisterBus::write(u, off, Width::W32, v).unwrap();
}
fn w64(u: &Unit, off: u64, v: u64) {
    RegisterBus::write(u, off, Width::W64, v).unwrap();
}
fn r32(u: &Unit, off: u64) -> u64 {
    RegisterBus::read(u, off, Width::W32).unwrap()
}
fn r64(u: &Unit, off: u64) -> u64 {
    RegisterBus::read(u, off, Width::W64).unwrap()
}

/// Root table at RT (all zero: every bus not present), translation on.
fn enable_translation(u: &Unit, scalable: bool) {
    w64(u, o::RTADDR, RT | if scalable { 1 << 10 } else { 0 });
    w32(u, o::GCMD, gcmd::SRTP as u64);
    w32(u, o::GCMD, gcmd::TE as u64);
}

fn enable_qi(u: &Unit, wide: bool, qs: u64) {
    w64(u, o::IQA, IQ | if wide { 1 << 11 } else { 0 } | qs);
    w32(u, o::GCMD, gcmd::QIE as u64);
}

fn write_desc(u: &Unit, index: u64, wide: bool, d: &InvDescriptor) {
    let size = if wide { 32 } else { 16 };
    let bytes = d.encode().to_bytes();
    u.mem().write(Hpa::new(IQ + index * size), &bytes[..size as usize]).unwrap();
}

fn wait_status(data: u32) -> InvDescriptor {
    InvDescriptor::Wait {
        interrupt: false,
        status: Some((Hpa::new(STATUS), data)),
        fence: false,
        drain_page_requests: false,
    }
}

fn read_req(addr: u64) -> Request {
    Request { sid: SID, pasid: None, addr: Iova::new(addr), access: Access::READ }
}

/// VT-d §11.4.4: each GCMD command is reflected in GSTS.
#[test]
fn gcmd_srtp_te_qie_are_reported_in_gsts() {
    let u = unit();
    enable_translation(&u, false);
    enable_qi(&u, false, 0);
    w32(&u, o::GCMD, (gcmd::TE | gcmd::QIE) as u64);
    assert_eq!(r32(&u, o::GSTS) as u32, gcmd::TE | gcmd::SRTP | gcmd::QIE);
}

#[test]
fn gcmd_reads_as_zero() {
    let u = unit();
    w32(&u, o::GCMD, gcmd::TE as u64);
    assert_eq!(r32(&u, o::GCMD), 0);
}

/// With translation disabled, DMA addresses are used as they are.
#[test]
fn translation_disabled_is_identity() {
    let u = unit();
    assert_eq!(u.translate(&read_req(0x1234_5678)).unwrap().addr, Hpa::new(0x1234_5678));
}

/// VT-d §7.1.3: a zero root table makes every request fault 0x1.
#[test]
fn zero_root_table_faults_root_not_present_and_records_it() {
    let u = unit();
    enable_translation(&u, false);
    let f = u.translate(&read_req(0x5000)).unwrap_err();
    assert_eq!(f, VtdFault { reason: FaultReason::RootNotPresent, recorded: true });
    let fro = u.caps().fault_record_offset();
    assert_eq!(r64(&u, fro + 8) >> 32 & 0xFF, 0x1);
    assert_eq!(r64(&u, fro) & !0xFFF, 0x5000);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::PPF, fsts::PPF);
}

/// VT-d §11.4.14: F is write-1-to-clear; PPF follows the F bits.
#[test]
fn clearing_f_empties_the_log_and_ppf() {
    let u = unit();
    enable_translation(&u, false);
    let _ = u.translate(&read_req(0x5000));
    let fro = u.caps().fault_record_offset();
    w64(&u, fro + 8, 1 << 63);
    assert_eq!(r64(&u, fro + 8) >> 63, 0);
    assert_eq!(r32(&u, o::FSTS), 0);
}

/// VT-d §7.2.1: when the next fault recording register is still full, the
/// fault is dropped and FSTS.PFO set.
#[test]
fn fault_log_overflow_sets_pfo_and_drops_the_fault() {
    let u = unit();
    enable_translation(&u, false);
    let n = u.caps().fault_record_count();
    for i in 0..n {
        assert!(u.translate(&read_req(0x1000 * i as u64)).unwrap_err().recorded);
    }
    let f = u.translate(&read_req(0xDEAD_0000)).unwrap_err();
    assert!(!f.recorded);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::PFO, fsts::PFO);
    w32(&u, o::FSTS, fsts::PFO as u64);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::PFO, 0);
}

/// VT-d §7.3: a fault raises the fault event MSI when FECTL.IM is clear.
#[test]
fn fault_event_interrupt_is_raised_when_unmasked() {
    let (u, irq) = unit_with(VtdConfig::full_featured());
    w32(&u, o::FEDATA, 0x41);
    w32(&u, o::FEADDR, 0xFEE0_0000);
    w32(&u, o::FECTL, 0);
    enable_translation(&u, false);
    let _ = u.translate(&read_req(0));
    assert_eq!(irq.take(), vec![Msi { addr: 0xFEE0_0000, data: 0x41 }]);
}

/// VT-d §7.3: while masked the event is held pending (IP) and delivered on unmask.
#[test]
fn masked_fault_event_is_delivered_on_unmask() {
    let (u, irq) = unit_with(VtdConfig::full_featured());
    enable_translation(&u, false);
    let _ = u.translate(&read_req(0));
    assert!(irq.take().is_empty());
    assert_eq!(r32(&u, o::FECTL) as u32 & ectl::IP, ectl::IP);
    w32(&u, o::FECTL, 0);
    assert_eq!(irq.take().len(), 1);
    assert_eq!(r32(&u, o::FECTL) as u32 & ectl::IP, 0);
}

/// VT-d §6.5.2.8: a wait descriptor with status write stores its data.
#[test]
fn wait_descriptor_writes_status() {
    let u = unit();
    enable_qi(&u, true, 0);
    write_desc(&u, 0, true, &wait_status(0xABCD_1234));
    w64(&u, o::IQT, 32);
    assert_eq!(u.mem().read_u64(Hpa::new(STATUS)).unwrap() as u32, 0xABCD_1234);
    assert_eq!(r64(&u, o::IQH), 32);
}

/// VT-d §6.5.2.8: IF sets ICS.IWC and raises the completion event.
#[test]
fn wait_descriptor_with_if_sets_iwc_and_interrupts() {
    let (u, irq) = unit_with(VtdConfig::full_featured());
    w32(&u, o::IECTL, 0);
    w32(&u, o::IEDATA, 7);
    enable_qi(&u, false, 0);
    let d = InvDescriptor::Wait { interrupt: true, status: None, fence: false, drain_page_requests: false };
    write_desc(&u, 0, false, &d);
    w64(&u, o::IQT, 16);
    assert_eq!(r32(&u, o::ICS), 1);
    assert_eq!(irq.take(), vec![Msi { addr: 0, data: 7 }]);
    w32(&u, o::ICS, 1);
    assert_eq!(r32(&u, o::ICS), 0);
}

/// VT-d §6.5.2.10: an invalid descriptor sets IQE and parks IQH on it;
/// later descriptors do not run.
#[test]
fn invalid_descriptor_parks_the_queue_on_it() {
    let u = unit();
    enable_qi(&u, true, 0);
    write_desc(&u, 0, true, &InvDescriptor::Iotlb { scope: IotlbScope::Global, dr: false, dw: false });
    u.mem().write_u64(Hpa::new(IQ + 32), 0xF).unwrap(); // unknown type
    write_desc(&u, 2, true, &wait_status(1));
    w64(&u, o::IQT, 96);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::IQE, fsts::IQE);
    assert_eq!(r64(&u, o::IQH), 32);
    assert_eq!(u.mem().read_u64(Hpa::new(STATUS)).unwrap(), 0);
}

/// ImplChoices::iqe_restart = OnTailWrite: clearing IQE alone does not
/// resume; the next IQT write does (as QEMU 10.0.2).
#[test]
fn queue_resumes_at_next_tail_write_after_iqe_is_cleared() {
    let u = unit();
    enable_qi(&u, true, 0);
    u.mem().write_u64(Hpa::new(IQ), 0xF).unwrap();
    write_desc(&u, 1, true, &wait_status(5));
    w64(&u, o::IQT, 64);
    write_desc(&u, 0, true, &InvDescriptor::Iotlb { scope: IotlbScope::Global, dr: false, dw: false });
    w32(&u, o::FSTS, fsts::IQE as u64);
    assert_eq!(r64(&u, o::IQH), 0);
    w64(&u, o::IQT, 64);
    assert_eq!((r64(&u, o::IQH), u.mem().read_u64(Hpa::new(STATUS)).unwrap()), (64, 5));
}

#[test]
fn queue_resumes_on_iqe_clear_when_so_configured() {
    let cfg = VtdConfig {
        choices: ImplChoices { iqe_restart: IqeRestart::OnClear, ..ImplChoices::default() },
        ..VtdConfig::full_featured()
    };
    let (u, _) = unit_with(cfg);
    enable_qi(&u, true, 0);
    u.mem().write_u64(Hpa::new(IQ), 0xF).unwrap();
    w64(&u, o::IQT, 32);
    write_desc(&u, 0, true, &wait_status(9));
    w32(&u, o::FSTS, fsts::IQE as u64);
    assert_eq!(r64(&u, o::IQH), 32);
}

/// VT-d §6.5.2: the queue is circular; IQH wraps to 0 past the last slot.
#[test]
fn queue_head_wraps_past_the_end_with_valid_descriptors() {
    let u = unit();
    enable_qi(&u, false, 0);
    for i in 0..256 {
        write_desc(&u, i, false, &wait_status(i as u32));
    }
    w64(&u, o::IQT, 255 * 16);
    w64(&u, o::IQT, 16);
    assert_eq!(r64(&u, o::IQH), 16);
    assert_eq!(r32(&u, o::FSTS), 0);
}

/// VT-d §11.4.10.2: a 256-bit queue needs IQT bit 4 clear.
#[test]
fn misaligned_tail_in_256_bit_queue_is_a_queue_error() {
    let u = unit();
    enable_qi(&u, true, 0);
    w64(&u, o::IQT, 16);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::IQE, fsts::IQE);
}

/// VT-d §6.5.1: register-based IOTLB invalidation completes (IVT clears,
/// IAIG reports the granularity).
#[test]
fn register_iotlb_invalidation_completes() {
    let u = unit();
    let iotlb = u.caps().iotlb_offset() + 8;
    w64(&u, iotlb, 1 << 63 | 1 << 60);
    assert_eq!(r64(&u, iotlb) >> 63, 0);
    assert_eq!(r64(&u, iotlb) >> 57 & 3, 1);
}

#[test]
fn context_command_completes_and_clears_icc() {
    let u = unit();
    w64(&u, o::CCMD, 1 << 63 | 1 << 61);
    assert_eq!(r64(&u, o::CCMD) >> 63, 0);
}

#[test]
fn misaligned_and_out_of_window_accesses_are_bus_errors() {
    let u = unit();
    assert!(RegisterBus::read(&u, 0x1C + 2, Width::W32).is_err());
    assert!(RegisterBus::write(&u, 0x1000, Width::W32, 0).is_err());
    assert!(RegisterBus::read(&u, u64::MAX - 3, Width::W32).is_err());
}

/// 32-bit accesses to the halves of a 64-bit register merge.
#[test]
fn rtaddr_written_as_two_halves_reads_back_whole() {
    let u = unit();
    w32(&u, o::RTADDR, 0x1234_5000);
    w32(&u, o::RTADDR + 4, 0x9);
    assert_eq!(r64(&u, o::RTADDR), 0x9_1234_5000);
    assert_eq!(r32(&u, o::RTADDR + 4), 0x9);
}

/// VT-d §7.7: a page group response descriptor is delivered to the device.
#[test]
fn page_group_response_descriptor_reaches_the_device() {
    let u = unit();
    enable_qi(&u, true, 0);
    let d = InvDescriptor::PageGroupResponse {
        rid: SID,
        pasid: Some(Pasid::new(3)),
        code: ResponseCode::Success,
        lpig: true,
        prgi: 9,
        private: None,
    };
    write_desc(&u, 0, true, &d);
    w64(&u, o::IQT, 32);
    let r = u.take_responses(SID);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].prgi, r[0].code, r[0].by_hardware), (9, ResponseCode::Success, false));
}

/// VT-d §7.5: page requests need scalable mode; otherwise refused with a
/// fault and, for a last-in-group request, an INVALID response.
#[test]
fn page_request_in_legacy_mode_is_refused_with_invalid_response() {
    let u = unit();
    enable_translation(&u, false);
    let req = iommu_format::vtd::page_req::PageRequest {
        rid: SID,
        pasid: Some(Pasid::new(1)),
        addr: Iova::new(0x7000),
        read: true,
        write: false,
        exec: false,
        privileged: false,
        lpig: true,
        prgi: 2,
        private: [0, 0],
    };
    assert_eq!(u.page_request(&req), PrqOutcome::Refused(FaultReason::LegacyModePageRequest));
    assert_eq!(u.take_responses(SID)[0].code, ResponseCode::InvalidRequest);
}

/// A request with PASID while the root table is in legacy mode faults 0x31.
#[test]
fn pasid_request_in_legacy_mode_faults_0x31() {
    let u = unit();
    enable_translation(&u, false);
    let req = Request { pasid: Some(Pasid::new(1)), ..read_req(0) };
    assert_eq!(u.translate(&req).unwrap_err().reason, FaultReason::LegacyModePasidRequest);
}

/// VT-d §6.5.2.10: a device-TLB invalidation to an endpoint that does not
/// answer times out: FSTS.ITE, IQERCD.ITESID, the queue parked on it.
#[test]
fn device_tlb_invalidation_to_unresponsive_endpoint_times_out() {
    let u = unit();
    u.set_ats_responsive(SID, false);
    enable_qi(&u, true, 0);
    let d = InvDescriptor::DeviceTlb { sid: SID, pfsid: 0, qdep: 0, addr: Iova::new(0), size: false };
    write_desc(&u, 0, true, &d);
    write_desc(&u, 1, true, &wait_status(3));
    w64(&u, o::IQT, 64);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::ITE, fsts::ITE);
    assert_eq!(r64(&u, o::IQERCD) >> 32 & 0xFFFF, SID.raw() as u64);
    assert_eq!((r64(&u, o::IQH), u.mem().read_u64(Hpa::new(STATUS)).unwrap()), (0, 0));
    u.set_ats_responsive(SID, true);
    w32(&u, o::FSTS, fsts::ITE as u64);
    w64(&u, o::IQT, 64);
    assert_eq!((r64(&u, o::IQH), u.mem().read_u64(Hpa::new(STATUS)).unwrap()), (64, 3));
}

/// Found by fuzzing: queues whose base sits at the top of the address
/// space fail their memory accesses instead of overflowing.
#[test]
fn queues_at_the_top_of_the_address_space_do_not_overflow() {
    let u = unit();
    w64(&u, o::IQA, u64::MAX);
    w32(&u, o::GCMD, gcmd::QIE as u64);
    w64(&u, o::IQT, 0x7_FFF0);
    assert_eq!(r32(&u, o::FSTS) as u32 & fsts::IQE, fsts::IQE);
    w64(&u, o::PQA, u64::MAX);
    w64(&u, o::RTADDR, RT | 1 << 10);
    w32(&u, o::GCMD, (gcmd::SRTP | gcmd::QIE) as u64);
    w32(&u, o::GCMD, (gcmd::TE | gcmd::QIE) as u64);
    let req = iommu_format::vtd::page_req::PageRequest {
        rid: SID,
        pasid: None,
        addr: Iova::new(0),
        read: true,
        write: false,
        exec: false,
        privileged: false,
        lpig: false,
        prgi: 0,
        private: [0, 0],
    };
    assert!(matches!(u.page_request(&req), PrqOutcome::Refused(_)));
}

/// Found by fuzzing: a device-TLB invalidation whose size encoding covers
/// the whole address space.
#[test]
fn device_tlb_invalidation_of_everything_does_not_overflow() {
    let u = unit();
    enable_qi(&u, true, 0);
    let d = InvDescriptor::DeviceTlb { sid: SID, pfsid: 0, qdep: 0, addr: Iova::new(!0xFFF), size: true };
    write_desc(&u, 0, true, &d);
    w64(&u, o::IQT, 32);
    assert_eq!(r64(&u, o::IQH), 32);
}

/// VT-d §6.5.2.3 and §6.2.1: a nested (PGTT=011b) translation is cached as
/// one combined entry tagged by its first-stage input address, so a
/// page-selective IOTLB invalidation (type 0x2) of the domain, which names
/// a second-stage address, cannot tell which combined entries it covers:
/// it drops every nested entry of the DID, even for an unrelated address.
/// A page-selective PASID-based IOTLB invalidation (type 0x6) names a
/// first-stage address and drops only what it covers.
#[test]
fn page_selective_iotlb_invalidation_drops_every_nested_entry_of_the_domain() {
    use iommu_format::vtd::inv_desc::PasidIotlbScope;
    use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
    use iommu_testkit::vtd::VtdSetup;
    use iommu_testkit::{Format, PageAlloc, PageTable};
    use iommu_types::{DomainId, Gpa, PageSize, Perm};

    const DID: u16 = 3;
    const PASID: Pasid = Pasid::new(9);
    const GVA: u64 = 0x7000_0000;
    const DATA_GPA: u64 = 0x200_0000;
    const DATA_HPA: u64 = 0x300_0000;
    /// A second-stage (guest-physical) address no translation here uses.
    const UNRELATED_GPA: u64 = 0x280_0000;
    let rw = Perm { read: true, write: true, exec: false };

    let u = unit();
    let mem = u.mem();
    let mut alloc = PageAlloc::new(0x40_0000, 0x100_0000);
    let mut setup = VtdSetup::new(&mut alloc, true);
    setup.scalable_device(mem, &mut alloc, SID, false, false);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
    fs.map(mem, &mut alloc, GVA, DATA_GPA, PageSize::Size4K, rw);
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    for level in 1..=4 {
        let page = fs.entry_addr(GVA, level).unwrap().raw() & !0xFFF;
        ss.map(mem, &mut alloc, page, page, PageSize::Size4K, rw);
    }
    ss.map(mem, &mut alloc, DATA_GPA, DATA_HPA, PageSize::Size4K, rw);
    ss.map(mem, &mut alloc, UNRELATED_GPA, DATA_HPA + 0x1000, PageSize::Size4K, rw);
    let fs_cfg =
        FirstStageCfg { root: Gpa::new(fs.root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    let entry = PasidEntryRepr {
        fpd: false,
        did: DomainId::new(DID),
        pwsnp: false,
        pgsnp: false,
        config: PasidConfig::Nested(fs_cfg, ss_cfg),
    };
    setup.pasid_entry(mem, &mut alloc, SID, PASID, &entry);
    setup.enable(&u);
    w64(&u, o::IQA, IQ | 1 << 11);
    w32(&u, o::GCMD, (gcmd::TE | gcmd::QIE) as u64);

    let req = Request { sid: SID, pasid: Some(PASID), addr: Iova::new(GVA + 0x10), access: Access::READ };
    let first = u.translate(&req).unwrap();
    assert_eq!((first.addr, first.cached), (Hpa::new(DATA_HPA + 0x10), false));
    assert!(u.translate(&req).unwrap().cached, "the nested translation is cached");

    let mut tail = 0;
    let mut submit = |d: InvDescriptor| {
        write_desc(&u, tail, true, &d);
        write_desc(&u, tail + 1, true, &wait_status(tail as u32 + 1));
        tail += 2;
        w64(&u, o::IQT, tail * 32);
        assert_eq!(u.mem().read_u64(Hpa::new(STATUS)).unwrap(), tail - 1, "descriptor ran");
    };

    // PASID-based, page-selective, another first-stage page: kept.
    let other_page = PasidIotlbScope::Page { addr: Iova::new(GVA + 0x10_0000), am: 0, ih: false };
    submit(InvDescriptor::PasidIotlb { did: DomainId::new(DID), pasid: PASID, scope: other_page });
    assert!(u.translate(&req).unwrap().cached, "PASID-IOTLB invalidation of another address keeps it");

    // Domain, page-selective, an unrelated second-stage page: dropped.
    let unrelated = IotlbScope::Page { did: DomainId::new(DID), addr: Iova::new(UNRELATED_GPA), am: 0, ih: false };
    submit(InvDescriptor::Iotlb { scope: unrelated, dr: true, dw: true });
    let misses = u.iotlb().cache().stats().misses;
    let again = u.translate(&req).unwrap();
    assert_eq!((again.addr, again.cached), (Hpa::new(DATA_HPA + 0x10), false), "walked again");
    assert_eq!(u.iotlb().cache().stats().misses, misses + 1);
}
