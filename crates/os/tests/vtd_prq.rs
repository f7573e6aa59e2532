//! The VT-d driver's page request queue consumer against the VT-d model,
//! through registers and memory only: semantics §2.8 driver rules, §5.9
//! #58, and the page request → IOPF core → page response flow.

use std::cell::Cell;

use iommu_format::vtd::inv_desc::{InvDescriptor, ResponseCode as VtdCode};
use iommu_format::vtd::page_req::PageRequest;
use iommu_format::vtd::regs::{offset as o, prs};
use iommu_hw::vtd::{PageGroupResponse, PrqOutcome, VtdConfig, VtdUnit};
use iommu_os::driver::vtd::{DeviceCaps, HwAction, VtdDriver};
use iommu_os::frames::RangeFrames;
use iommu_os::iopf::{Fault, IopfQueue, Report, ResponseCode};
use iommu_os::pasid::DeviceId;
use iommu_os::Errno;
use iommu_types::{
    Access, BusError, Hpa, Iova, NullInterrupts, PagedMemory, Pasid, PhysMem, RegisterBus, SourceId, Width,
};

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

const DEV: SourceId = SourceId::from_bdf(0, 4, 0);
/// The OS's name for `DEV`.
const DEV_ID: DeviceId = DeviceId(7);
const P1: Pasid = Pasid::new(1);
const ATS_PRI: DeviceCaps = DeviceCaps { max_pasids: 1 << 20, ats: true, pri: true };
/// Descriptors the one-page queue holds before it is full (one slot stays
/// free so that PQH = PQT means empty).
const QUEUE_CAPACITY: u64 = 4096 / 32 - 1;

fn unit() -> Unit {
    VtdUnit::new(VtdConfig::full_featured(), PagedMemory::new(256 << 20), NullInterrupts)
}

fn frames() -> RangeFrames {
    RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x400_0000))
}

/// A driver over `bus` with `DEV` added (PRI on) and an empty action log.
fn up_on<B: RegisterBus>(bus: B, u: &Unit) -> VtdDriver<B> {
    let mut f = frames();
    let mut d = VtdDriver::probe(bus, u.mem(), &mut f).unwrap();
    d.add_device(u.mem(), &mut f, DEV, ATS_PRI).unwrap();
    d.take_log();
    d
}

fn up(u: &Unit) -> VtdDriver<&Unit> {
    up_on(u, u)
}

/// A user read of page 0x1000 by `DEV` on P1, last in group 5.
fn req() -> PageRequest {
    PageRequest {
        rid: DEV,
        pasid: Some(P1),
        addr: Iova::new(0x7F00_1000),
        read: true,
        write: false,
        exec: false,
        privileged: false,
        lpig: true,
        prgi: 5,
        private: [0x11, 0x22],
    }
}

fn queue(u: &Unit, r: PageRequest) {
    assert_eq!(u.page_request(&r), PrqOutcome::Queued);
}

fn reg(u: &Unit, off: u64, width: Width) -> u64 {
    RegisterBus::read(u, off, width).unwrap()
}

/// The responses software (not the unit itself) sent to `DEV`.
fn software_responses(u: &Unit) -> Vec<PageGroupResponse> {
    u.take_responses(DEV).into_iter().filter(|r| !r.by_hardware).collect()
}

fn response(pasid: Option<Pasid>, prgi: u16, code: VtdCode) -> PageGroupResponse {
    PageGroupResponse { rid: DEV, pasid, prgi, code, by_hardware: false }
}

/// Fills the queue with partial requests, then one more request: the unit
/// finds the queue full and sets PRS.PRO.
fn overflow(u: &Unit) {
    let partial = PageRequest { lpig: false, ..req() };
    for _ in 0..QUEUE_CAPACITY {
        queue(u, partial);
    }
    assert_eq!(u.page_request(&req()), PrqOutcome::Overflow);
}

/// A register bus onto the unit whose PQT reads return a forged value (a
/// broken or malicious unit), everything else passed through.
#[derive(Debug)]
struct ForgedPqt<'u> {
    unit: &'u Unit,
    pqt: Cell<Option<u64>>,
}

impl RegisterBus for ForgedPqt<'_> {
    fn read(&self, offset: u64, width: Width) -> Result<u64, BusError> {
        match self.pqt.get() {
            Some(v) if offset == o::PQT => Ok(v),
            _ => self.unit.read(offset, width),
        }
    }
    fn write(&self, offset: u64, width: Width, value: u64) -> Result<(), BusError> {
        self.unit.write(offset, width, value)
    }
}

/// Writes `r` into the first slot of the OS's page request queue, as the
/// unit would, and makes PQT read as one descriptor past it.
fn forge_one(u: &Unit, bus: &ForgedPqt<'_>, r: &PageRequest) {
    let base = Hpa::new(reg(u, o::PQA, Width::W64) & !0xFFF);
    u.mem().write(base, &r.encode().to_bytes()).unwrap();
    bus.pqt.set(Some(32));
}

/// VT-d §7.5.1: the descriptor the unit wrote decodes to the request.
#[test]
fn queued_request_is_taken_with_its_fields() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, req());
    let b = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(b.requests, vec![req()]);
}

#[test]
fn take_advances_pqh_to_pqt() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, req());
    queue(&u, req());
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(reg(&u, o::PQH, Width::W64), reg(&u, o::PQT, Width::W64));
}

/// VT-d §11.4.11.4: PPR is RW1C; software clears it when it services the
/// queue.
#[test]
fn take_clears_pending_page_request() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, req());
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(reg(&u, o::PRS, Width::W32) as u32 & prs::PPR, 0);
}

#[test]
fn second_take_yields_nothing() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, req());
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(d.take_page_requests(u.mem()).unwrap().requests, vec![]);
}

#[test]
fn requests_after_the_ring_wraps_are_taken_in_order() {
    let u = unit();
    let mut d = up(&u);
    let partial = PageRequest { lpig: false, ..req() };
    for _ in 0..QUEUE_CAPACITY {
        queue(&u, partial);
    }
    let _ = d.take_page_requests(u.mem()).unwrap();
    let (a, b) = (PageRequest { prgi: 1, ..req() }, PageRequest { prgi: 2, ..req() });
    queue(&u, a);
    queue(&u, b);
    assert_eq!(d.take_page_requests(u.mem()).unwrap().requests, vec![a, b]);
}

/// Semantics §5.9 #58: a stop marker is dropped.
#[test]
fn spec58_stop_marker_is_not_reported() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { read: false, write: false, ..req() });
    let b = d.take_page_requests(u.mem()).unwrap();
    assert_eq!((b.requests, b.dropped), (vec![], 1));
}

/// Semantics §5.9 #58: … with no response.
#[test]
fn spec58_stop_marker_gets_no_response() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { read: false, write: false, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(u.take_responses(DEV), vec![]);
}

/// Semantics §5.9 #58: a request without PASID gets INVALID if last.
#[test]
fn spec58_last_request_without_pasid_is_answered_invalid() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { pasid: None, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(software_responses(&u), vec![response(None, 5, VtdCode::InvalidRequest)]);
}

#[test]
fn request_without_pasid_is_not_reported() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { pasid: None, ..req() });
    let b = d.take_page_requests(u.mem()).unwrap();
    assert_eq!((b.requests, b.answered), (vec![], 1));
}

#[test]
fn spec58_non_last_request_without_pasid_gets_no_response() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { pasid: None, lpig: false, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(u.take_responses(DEV), vec![]);
}

/// Semantics §2.8: a non-canonical address is answered INVALID when last.
#[test]
fn non_canonical_last_request_is_answered_invalid() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { addr: Iova::new(0x0100_0000_0000_0000), ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 5, VtdCode::InvalidRequest)]);
}

/// Semantics §2.8: supervisor requests are not supported.
#[test]
fn privileged_write_request_is_answered_invalid() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { read: false, write: true, privileged: true, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 5, VtdCode::InvalidRequest)]);
}

/// Semantics §2.8: execute together with read is not supported.
#[test]
fn execute_read_request_is_answered_invalid() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, PageRequest { exec: true, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 5, VtdCode::InvalidRequest)]);
}

#[test]
fn request_from_a_rid_the_driver_does_not_manage_is_answered_invalid() {
    let u = unit();
    let bus = ForgedPqt { unit: &u, pqt: Cell::new(None) };
    let mut d = up_on(&bus, &u);
    let stranger = SourceId::from_bdf(3, 0, 0);
    forge_one(&u, &bus, &PageRequest { rid: stranger, ..req() });
    let _ = d.take_page_requests(u.mem()).unwrap();
    let sent: Vec<_> = u.take_responses(stranger).into_iter().map(|r| r.code).collect();
    assert_eq!(sent, vec![VtdCode::InvalidRequest]);
}

/// A forged PQT (every bit set) is reduced to an offset inside the queue:
/// the walk ends after at most one lap of the ring, reading only the queue
/// page (zeroed: nothing decodes).
#[test]
fn garbage_pqt_neither_hangs_nor_leaves_the_queue() {
    let u = unit();
    let bus = ForgedPqt { unit: &u, pqt: Cell::new(Some(u64::MAX)) };
    let mut d = up_on(&bus, &u);
    let b = d.take_page_requests(u.mem()).unwrap();
    assert_eq!((b.requests, b.dropped), (vec![], QUEUE_CAPACITY as usize));
}

/// VT-d §7.7.1: a page group response reaches the device with the group's
/// PASID, index and code.
#[test]
fn page_response_reaches_the_device() {
    let u = unit();
    let mut d = up(&u);
    d.page_response(u.mem(), DEV, Some(P1), 0x1FF, ResponseCode::Success, None).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 0x1FF, VtdCode::Success)]);
}

/// VT-d §7.7.1: FAILURE is response code 1111b.
#[test]
fn page_response_failure_is_response_failure() {
    let u = unit();
    let mut d = up(&u);
    d.page_response(u.mem(), DEV, Some(P1), 5, ResponseCode::Failure, None).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 5, VtdCode::ResponseFailure)]);
}

#[test]
fn page_response_is_logged_as_a_page_group_response_descriptor() {
    let u = unit();
    let mut d = up(&u);
    d.page_response(u.mem(), DEV, Some(P1), 5, ResponseCode::Invalid, Some([1, 2])).unwrap();
    let want = InvDescriptor::PageGroupResponse {
        rid: DEV,
        pasid: Some(P1),
        code: VtdCode::InvalidRequest,
        lpig: true,
        prgi: 5,
        private: Some([1, 2]),
    };
    assert_eq!(d.take_log(), vec![HwAction::Invalidate(want)]);
}

#[test]
fn page_response_with_a_group_index_wider_than_nine_bits_is_inval() {
    let u = unit();
    let mut d = up(&u);
    let r = d.page_response(u.mem(), DEV, Some(P1), 0x200, ResponseCode::Success, None);
    assert_eq!(r, Err(Errno::Inval));
}

/// VT-d §7.5: a request arriving at a full queue sets PRS.PRO; the driver
/// reports it.
#[test]
fn take_reports_overflow() {
    let u = unit();
    let mut d = up(&u);
    overflow(&u);
    assert!(d.take_page_requests(u.mem()).unwrap().overflow);
}

#[test]
fn take_without_overflow_reports_none() {
    let u = unit();
    let mut d = up(&u);
    queue(&u, req());
    assert!(!d.take_page_requests(u.mem()).unwrap().overflow);
}

#[test]
fn take_keeps_overflow_set() {
    let u = unit();
    let mut d = up(&u);
    overflow(&u);
    let _ = d.take_page_requests(u.mem()).unwrap();
    assert_ne!(reg(&u, o::PRS, Width::W32) as u32 & prs::PRO, 0);
}

/// VT-d §11.4.11.4: PRO is RW1C.
#[test]
fn clear_prq_overflow_clears_pro() {
    let u = unit();
    let mut d = up(&u);
    overflow(&u);
    let _ = d.take_page_requests(u.mem()).unwrap();
    d.clear_prq_overflow().unwrap();
    assert_eq!(reg(&u, o::PRS, Width::W32) as u32 & prs::PRO, 0);
}

#[test]
fn requests_are_queued_again_after_the_overflow_is_cleared() {
    let u = unit();
    let mut d = up(&u);
    overflow(&u);
    let _ = d.take_page_requests(u.mem()).unwrap();
    d.clear_prq_overflow().unwrap();
    assert_eq!(u.page_request(&req()), PrqOutcome::Queued);
}

/// Semantics §5.9 #58: the queue is emptied before the overflow bit is
/// cleared.
#[test]
fn spec58_clear_prq_overflow_with_requests_in_the_queue_is_busy() {
    let u = unit();
    let mut d = up(&u);
    overflow(&u);
    assert_eq!(d.clear_prq_overflow(), Err(Errno::Busy));
}

/// Semantics §5.9 #58, the whole flow: the partial requests taken before
/// the overflow are discarded from the IOPF queue before PRO is cleared.
#[test]
fn spec58_overflow_discards_partials_before_pro_is_cleared() {
    let u = unit();
    let mut d = up(&u);
    let mut q = IopfQueue::new();
    q.add_device(DEV_ID).unwrap();
    overflow(&u);
    let b = d.take_page_requests(u.mem()).unwrap();
    for r in &b.requests {
        let _ = q.report(Fault::from_vtd_request(DEV_ID, r));
    }
    q.discard_partial();
    d.clear_prq_overflow().unwrap();
    let pro = reg(&u, o::PRS, Width::W32) as u32 & prs::PRO;
    assert_eq!((q.partial_count(DEV_ID), pro), (0, 0));
}

#[test]
fn fault_from_vtd_request_carries_every_field() {
    let r = PageRequest { write: true, lpig: false, ..req() };
    let f = Fault::from_vtd_request(DEV_ID, &r);
    let want = Fault {
        dev: DEV_ID,
        pasid: Some(P1),
        addr: Iova::new(0x7F00_1000),
        access: Access::READ_WRITE,
        last: false,
        grpid: 5,
        private: [0x11, 0x22],
    };
    assert_eq!(f, want);
}

/// The page request → IOPF core → page response flow: a group answered
/// SUCCESS reaches the device with its group index and PASID.
#[test]
fn reported_group_answered_success_reaches_the_device() {
    let u = unit();
    let mut d = up(&u);
    let mut q = IopfQueue::new();
    q.add_device(DEV_ID).unwrap();
    queue(&u, req());
    let r = d.take_page_requests(u.mem()).unwrap().requests[0];
    let Report::Group(g) = q.report(Fault::from_vtd_request(DEV_ID, &r)) else { panic!("no group") };
    let resp = q.respond(g.id, ResponseCode::Success).unwrap();
    d.page_response(u.mem(), DEV, resp.pasid, resp.grpid, resp.code, None).unwrap();
    assert_eq!(software_responses(&u), vec![response(Some(P1), 5, VtdCode::Success)]);
}
