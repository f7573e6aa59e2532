//! The kernel's I/O page-fault path end to end on the VT-d model: page
//! requests go into the unit's page request queue through
//! [`VtdUnit::page_request`](iommu_hw::vtd::VtdUnit::page_request), the
//! kernel services them ([`Kernel::service_page_requests`]), and the tests
//! check what the device is answered, what the kernel returns and what the
//! process memory holds afterwards (semantics §4.4, §4.9, §5.1 specs 10–11,
//! §5.9 specs 58–59).
//!
//! [`Kernel::service_page_requests`]: iommu_os::kernel::Kernel::service_page_requests

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use iommu_format::vtd::inv_desc::ResponseCode as HwCode;
use iommu_format::vtd::page_req::PageRequest;
use iommu_format::vtd::regs::{offset, prs};
use iommu_hw::vtd::{Endpoint, EndpointDma, PageGroupResponse, PrqOutcome};
use iommu_os::iommu::{GroupId, MmId};
use iommu_os::iopf::ResponseCode;
use iommu_os::kernel::{Bond, FaultOutcome};
use iommu_os::pasid::DeviceId;
use iommu_os::Errno;
use iommu_types::{Iova, Pasid, Perm, RegisterBus, SourceId, Width};
use proptest::prelude::*;

const RW: Perm = Perm { read: true, write: true, exec: false };
/// Where every test process maps its buffer.
const VA: u64 = 0x4000_0000;
const PAGE: u64 = 0x1000;
/// Pages of the buffer mapped at `VA`.
const PAGES: u64 = 16;
/// An address no VMA of any test process covers.
const UNMAPPED: u64 = 0x9000_0000;

/// The OS name of test device `n`.
fn dev(n: u8) -> DeviceId {
    sva_dev(n).id
}

/// The requester ID of test device `n`.
fn sid(n: u8) -> SourceId {
    sva_dev(n).sid
}

/// A process with `PAGES` read-write pages at `VA`, nothing resident.
fn process(os: &mut Os) -> MmId {
    let mm = os.create_process().unwrap();
    assert_eq!(os.mmap(mm, Some(VA), PAGES * PAGE, RW), Ok(VA));
    mm
}

/// A kernel with SVA device 1 added and bound to a fresh process.
fn bound() -> (Arc<Unit>, Os, MmId, Bond) {
    let (unit, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let mm = process(&mut os);
    let bond = os.sva_bind(dev(1), mm).unwrap();
    (unit, os, mm, bond)
}

/// A user page request from device `n`: read (or write) of the page at
/// `addr`, in group `prgi`, last in its group when `last`.
fn req(n: u8, pasid: Option<Pasid>, addr: u64, write: bool, last: bool, prgi: u16) -> PageRequest {
    PageRequest {
        rid: sid(n),
        pasid,
        addr: Iova::new(addr),
        read: !write,
        write,
        exec: false,
        privileged: false,
        lpig: last,
        prgi,
        private: [0, 0],
    }
}

/// Sends `r` and checks the unit queued it.
fn queue(unit: &Unit, r: PageRequest) {
    assert_eq!(unit.page_request(&r), PrqOutcome::Queued, "{r:?}");
}

/// The responses device `n` received since the last call.
fn responses(unit: &Unit, n: u8) -> Vec<PageGroupResponse> {
    unit.take_responses(sid(n))
}

/// A response software sent to device `n`.
fn sw_response(n: u8, pasid: Option<Pasid>, prgi: u16, code: HwCode) -> PageGroupResponse {
    PageGroupResponse { rid: sid(n), pasid, prgi, code, by_hardware: false }
}

fn outcome(n: u8, pasid: Option<Pasid>, grpid: u16, code: ResponseCode) -> FaultOutcome {
    FaultOutcome { dev: dev(n), pasid, grpid, code }
}

/// Whether the page of `addr` is resident in `mm`.
fn resident(os: &Os, mm: MmId, addr: u64) -> bool {
    os.mm(mm).unwrap().translate(os.iommu().mem(), addr).is_some()
}

fn prs_reg(unit: &Unit) -> u32 {
    RegisterBus::read(unit, offset::PRS, Width::W32).unwrap() as u32
}

/// How a device DMA that takes page faults ended, when it did not land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DmaFail {
    /// The page request was answered with this (non-SUCCESS) code.
    Answered(HwCode),
    /// The page request got no response at all.
    NoResponse,
    /// Servicing the page request queue failed.
    Service(Errno),
    /// The first attempt ended neither done nor with a page request.
    First(EndpointDma),
    /// The retry after SUCCESS did not land.
    Retry(EndpointDma),
}

/// One page-sized DMA by an ATS/PRI endpoint: translate, on no access send
/// a page request, let the kernel service the queue, retry once after
/// SUCCESS. `dma` performs one attempt.
fn with_faults(
    unit: &Unit,
    os: &mut Os,
    ep: &mut Endpoint,
    mut dma: impl FnMut(&mut Endpoint) -> EndpointDma,
) -> Result<(), DmaFail> {
    match dma(ep) {
        EndpointDma::Done(_) => return Ok(()),
        EndpointDma::PageRequested(prgi) => {
            os.service_page_requests().map_err(DmaFail::Service)?;
            match ep.response(unit, prgi) {
                Some(HwCode::Success) => {}
                Some(code) => return Err(DmaFail::Answered(code)),
                None => return Err(DmaFail::NoResponse),
            }
        }
        other => return Err(DmaFail::First(other)),
    }
    match dma(ep) {
        EndpointDma::Done(_) => Ok(()),
        other => Err(DmaFail::Retry(other)),
    }
}

fn dma_write(unit: &Unit, os: &mut Os, ep: &mut Endpoint, pasid: Pasid, addr: u64, data: &[u8]) -> Result<(), DmaFail> {
    with_faults(unit, os, ep, |ep| ep.write(unit, Some(pasid), Iova::new(addr), data))
}

fn dma_read(
    unit: &Unit,
    os: &mut Os,
    ep: &mut Endpoint,
    pasid: Pasid,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), DmaFail> {
    with_faults(unit, os, ep, |ep| ep.read(unit, Some(pasid), Iova::new(addr), buf))
}

// ---- groups ------------------------------------------------------------

/// §4.9: the partial requests wait, the last one closes the group, the
/// group is handled as a whole and answered once with the last request's
/// PASID and group index.
#[test]
fn spec11_group_of_three_requests_gets_one_success_and_makes_every_page_resident() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, VA, false, false, 7));
    queue(&unit, req(1, p, VA + PAGE, true, false, 7));
    queue(&unit, req(1, p, VA + 2 * PAGE, false, true, 7));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 7, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 7, HwCode::Success)]);
    for page in 0..3 {
        assert!(resident(&os, mm, VA + page * PAGE), "page {page}");
    }
    assert!(!resident(&os, mm, VA + 3 * PAGE));
    assert_eq!(os.iopf().partial_count(dev(1)), 0);
    assert_eq!(os.iopf().pending(dev(1)).count(), 0);
    // The device retries and its DMA lands without another page request.
    let mut ep = Endpoint::new(sid(1));
    assert!(matches!(ep.write(&unit, p, Iova::new(VA + PAGE), b"w"), EndpointDma::Done(_)));
    let mut buf = [0u8; 1];
    os.cpu_read(mm, VA + PAGE, &mut buf).unwrap();
    assert_eq!(&buf, b"w");
}

/// Spec 11: faults are handled in order and the first error is sticky.
/// The first page (before the error) is populated, the last one (after it)
/// is not: the handler stops at the first unresolvable fault, as Linux's
/// SVA handler does.
#[test]
fn spec11_group_with_an_unmapped_second_request_gets_one_invalid_and_stops_at_the_error() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, VA, false, false, 2));
    queue(&unit, req(1, p, UNMAPPED, false, false, 2));
    queue(&unit, req(1, p, VA + 2 * PAGE, false, true, 2));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 2, ResponseCode::Invalid)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 2, HwCode::InvalidRequest)]);
    assert!(resident(&os, mm, VA), "the fault before the error is resolved");
    assert!(!resident(&os, mm, VA + 2 * PAGE), "no fault after the error is handled");
    assert!(!resident(&os, mm, UNMAPPED));
    assert_eq!(os.iopf().partial_count(dev(1)), 0);
}

/// Spec 11 with §4.9's grouping key: requests are grouped by PASID and
/// group index, so the same index under two PASIDs of one device makes two
/// groups, each handled in its own process.
#[test]
fn spec11_same_group_index_under_two_pasids_forms_two_groups() {
    let (unit, mut os, mm_a, a) = bound();
    let mm_b = process(&mut os);
    let b = os.sva_bind(dev(1), mm_b).unwrap();
    assert_ne!(a.pasid, b.pasid);
    // A's group has a bad partial; B's group, same index, must not see it.
    queue(&unit, req(1, Some(a.pasid), UNMAPPED, false, false, 5));
    queue(&unit, req(1, Some(b.pasid), VA + PAGE, true, true, 5));
    queue(&unit, req(1, Some(a.pasid), VA + 2 * PAGE, false, true, 5));
    assert_eq!(
        os.service_page_requests().unwrap(),
        vec![outcome(1, Some(b.pasid), 5, ResponseCode::Success), outcome(1, Some(a.pasid), 5, ResponseCode::Invalid)]
    );
    assert_eq!(
        responses(&unit, 1),
        vec![
            sw_response(1, Some(b.pasid), 5, HwCode::Success),
            sw_response(1, Some(a.pasid), 5, HwCode::InvalidRequest)
        ]
    );
    assert!(resident(&os, mm_b, VA + PAGE));
    assert!(!resident(&os, mm_a, VA + PAGE));
    assert!(!resident(&os, mm_a, VA + 2 * PAGE), "A's group stopped at its bad partial");
}

// ---- spec 58: driver-level rules and overflow ---------------------------

#[test]
fn spec58_stop_marker_gets_no_response() {
    let (unit, mut os, mm, bond) = bound();
    let stop = PageRequest { read: false, write: false, ..req(1, Some(bond.pasid), VA, false, true, 4) };
    assert!(stop.is_stop_marker());
    queue(&unit, stop);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![]);
    assert!(!resident(&os, mm, VA));
    // The queue was consumed: a second pass finds nothing either.
    assert_eq!(RegisterBus::read(&*unit, offset::PQH, Width::W64), RegisterBus::read(&*unit, offset::PQT, Width::W64));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![]);
}

/// The driver answers a last request without PASID itself (INVALID, no
/// PASID in the response) and drops a non-last one silently; neither
/// reaches the IOPF core, so the kernel's list of answered groups is empty.
#[test]
fn spec58_last_request_without_pasid_gets_invalid_and_a_non_last_one_nothing() {
    let (unit, mut os, mm, _bond) = bound();
    queue(&unit, req(1, None, VA, false, false, 6));
    queue(&unit, req(1, None, VA + PAGE, false, true, 6));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, None, 6, HwCode::InvalidRequest)]);
    assert_eq!(os.iopf().partial_count(dev(1)), 0);
    assert!(!resident(&os, mm, VA));
    assert!(!resident(&os, mm, VA + PAGE));
}

/// Fills the page request queue with non-last requests of group `prgi`
/// (on pages 0..8 of `VA`) until the unit reports an overflow; returns how
/// many were queued.
fn overflow_with_partials(unit: &Unit, pasid: Pasid, prgi: u16) -> u64 {
    let mut queued = 0u64;
    loop {
        let r = req(1, Some(pasid), VA + (queued % 8) * PAGE, false, false, prgi);
        match unit.page_request(&r) {
            PrqOutcome::Queued => queued += 1,
            PrqOutcome::Overflow => return queued,
            other => panic!("request {queued}: {other:?}"),
        }
        assert!(queued <= 128, "a 128-slot queue accepted more than 128 requests");
    }
}

#[test]
fn spec58_overflow_discards_partials_clears_pro_and_later_groups_are_handled() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    // One slot stays free so that PQH = PQT means empty.
    assert_eq!(overflow_with_partials(&unit, bond.pasid, 9), 127);
    assert_ne!(prs_reg(&unit) & prs::PRO, 0);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(os.iopf().partial_count(dev(1)), 0, "partials survive the overflow");
    assert_eq!(prs_reg(&unit) & prs::PRO, 0, "PRS.PRO still set");
    assert_eq!(responses(&unit, 1), vec![], "partial requests were answered");
    for page in 0..8 {
        assert!(!resident(&os, mm, VA + page * PAGE), "discarded partial on page {page} was handled");
    }
    // The queue takes requests again and a complete group is handled.
    queue(&unit, req(1, p, VA + 10 * PAGE, false, false, 10));
    queue(&unit, req(1, p, VA + 11 * PAGE, true, true, 10));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 10, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 10, HwCode::Success)]);
    assert!(resident(&os, mm, VA + 10 * PAGE));
    assert!(resident(&os, mm, VA + 11 * PAGE));
}

/// After the overflow the device still sends the last request of the group
/// the overflow cut: it forms a group of its own (the discarded partials do
/// not come back), which is handled and answered once.
#[test]
fn spec58_last_request_of_a_group_cut_by_overflow_forms_a_group_without_the_discarded_partials() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    overflow_with_partials(&unit, bond.pasid, 9);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    queue(&unit, req(1, p, VA + 12 * PAGE, false, true, 9));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 9, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 9, HwCode::Success)]);
    assert!(resident(&os, mm, VA + 12 * PAGE));
    for page in 0..8 {
        assert!(!resident(&os, mm, VA + page * PAGE), "discarded partial on page {page} came back");
    }
}

/// A last request the full queue drops is answered by the unit itself
/// (this model's choice: SUCCESS, so the device retries); the kernel never
/// sees it and sends nothing for that group.
#[test]
fn spec58_last_request_lost_to_overflow_is_answered_only_by_the_unit() {
    let (unit, mut os, _mm, bond) = bound();
    let p = Some(bond.pasid);
    overflow_with_partials(&unit, bond.pasid, 9);
    assert_eq!(unit.page_request(&req(1, p, VA, false, true, 9)), PrqOutcome::Overflow);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(
        responses(&unit, 1),
        vec![PageGroupResponse { by_hardware: true, ..sw_response(1, p, 9, HwCode::Success) }]
    );
}

// ---- spec 59: no response after the drain ---------------------------------

/// Partial requests of a PASID, some already in the IOPF queue and one
/// still in the hardware queue, when the PASID is unbound: they are dropped
/// unanswered, and no later service pass emits anything for them.
#[test]
fn spec59_unbind_drops_pending_partials_and_no_response_for_them_follows() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, VA, false, false, 4));
    queue(&unit, req(1, p, VA + PAGE, true, false, 4));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(os.iopf().partial_count(dev(1)), 2);
    queue(&unit, req(1, p, VA + 2 * PAGE, false, false, 4));
    os.sva_unbind(&bond);
    assert_eq!(os.bond_users(&bond), 0);
    assert_eq!(os.iopf().partial_count(dev(1)), 0);
    assert_eq!(os.iopf().pending(dev(1)).count(), 0);
    assert_eq!(responses(&unit, 1), vec![]);
    for _ in 0..2 {
        assert_eq!(os.service_page_requests().unwrap(), vec![]);
        assert_eq!(responses(&unit, 1), vec![]);
    }
    for page in 0..3 {
        assert!(!resident(&os, mm, VA + page * PAGE), "page {page}");
    }
}

/// §4.4 steps 2–3: a complete group still in the hardware queue at unbind
/// is handled and answered while the PASID is still attached (before the
/// drain); nothing for it follows the unbind.
#[test]
fn spec59_group_queued_before_unbind_is_answered_once_before_unbind_returns() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, VA, false, false, 8));
    queue(&unit, req(1, p, VA + PAGE, true, true, 8));
    os.sva_unbind(&bond);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 8, HwCode::Success)]);
    assert!(resident(&os, mm, VA) && resident(&os, mm, VA + PAGE));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![]);
}

/// The PASID stays with the mm after unbind (L4), so a rebind reuses it:
/// the partials dropped at unbind must not join the next group with the
/// same index.
#[test]
fn spec59_partials_dropped_at_unbind_never_join_a_group_after_rebind() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, UNMAPPED, false, false, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    os.sva_unbind(&bond);
    let again = os.sva_bind(dev(1), mm).unwrap();
    assert_eq!(again.pasid, bond.pasid);
    queue(&unit, req(1, p, VA, true, true, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 3, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 3, HwCode::Success)]);
    assert!(resident(&os, mm, VA));
}

/// Spec 10 then 59: partials of an mm that exits stay until the unbind,
/// which drops them; the PASID then goes to the next process, whose group
/// with the same index must not contain them.
#[test]
fn spec59_partials_of_an_exited_mm_never_join_a_group_of_the_pasids_next_owner() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, UNMAPPED, false, false, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    os.exit(mm).unwrap();
    queue(&unit, req(1, p, VA + PAGE, false, false, 3));
    os.sva_unbind(&bond);
    assert!(!os.mm_exists(mm));
    assert_eq!(os.iopf().partial_count(dev(1)), 0);
    assert_eq!(responses(&unit, 1), vec![]);
    let next = process(&mut os);
    let b2 = os.sva_bind(dev(1), next).unwrap();
    assert_eq!(b2.pasid, bond.pasid, "the freed PASID is reused");
    queue(&unit, req(1, p, VA, true, true, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 3, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 3, HwCode::Success)]);
    assert!(resident(&os, next, VA));
    assert!(!resident(&os, next, VA + PAGE), "a partial of the dead mm was handled for the next owner");
}

// ---- several devices, idempotence ----------------------------------------

/// L12 / §4.9: a request for a PASID with no attach handle, or with a
/// handle that has no SVA fault handler (a user attachment), is answered
/// INVALID at once.
#[test]
fn l12_request_for_a_pasid_without_an_sva_handle_is_answered_invalid() {
    use iommu_os::iommu::HandleKind;
    use iommu_os::pgtable::PtFormat;
    let (unit, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let d = os.iommu_mut().alloc_paging(PtFormat::FirstStage { levels: 4 }, false).unwrap();
    let user = Pasid::new(5);
    os.iommu_mut().attach_dev_pasid(d, dev(1), user, Some(HandleKind::User(7))).unwrap();
    queue(&unit, req(1, Some(user), VA, false, true, 1));
    queue(&unit, req(1, Some(Pasid::new(9)), VA, false, true, 2));
    assert_eq!(
        os.service_page_requests().unwrap(),
        vec![
            outcome(1, Some(user), 1, ResponseCode::Invalid),
            outcome(1, Some(Pasid::new(9)), 2, ResponseCode::Invalid)
        ]
    );
    assert_eq!(
        responses(&unit, 1),
        vec![
            sw_response(1, Some(user), 1, HwCode::InvalidRequest),
            sw_response(1, Some(Pasid::new(9)), 2, HwCode::InvalidRequest)
        ]
    );
}

/// The unbind of device 1 services the whole queue (§4.4 step 2), so a
/// group of device 2 queued meanwhile is answered during the unbind, once;
/// the kernel's later service pass neither repeats nor reports it (the
/// unbind does not hand its outcome to anyone).
#[test]
fn spec59_unbind_answers_another_devices_queued_group_exactly_once() {
    let (unit, mut os, mm, b1) = bound();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let mm2 = process(&mut os);
    let b2 = os.sva_bind(dev(2), mm2).unwrap();
    let p2 = Some(b2.pasid);
    queue(&unit, req(2, p2, VA, false, false, 6));
    queue(&unit, req(2, p2, VA + PAGE, true, true, 6));
    os.sva_unbind(&b1);
    assert_eq!(responses(&unit, 2), vec![sw_response(2, p2, 6, HwCode::Success)]);
    assert!(resident(&os, mm2, VA) && resident(&os, mm2, VA + PAGE));
    assert!(!resident(&os, mm, VA));
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 2), vec![]);
}

/// Two devices bound to one mm share its PASID and use the same group
/// index; their requests interleave in the queue. Groups are per device:
/// device 2's bad partial fails only device 2's group.
#[test]
fn iopf_interleaved_groups_of_two_devices_are_each_answered_to_their_own_device() {
    let (unit, mut os, mm, b1) = bound();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let b2 = os.sva_bind(dev(2), mm).unwrap();
    assert_eq!(b1.pasid, b2.pasid);
    let p = Some(b1.pasid);
    queue(&unit, req(1, p, VA, false, false, 5));
    queue(&unit, req(2, p, UNMAPPED, false, false, 5));
    queue(&unit, req(1, p, VA + PAGE, true, true, 5));
    queue(&unit, req(2, p, VA + 2 * PAGE, true, true, 5));
    assert_eq!(
        os.service_page_requests().unwrap(),
        vec![outcome(1, p, 5, ResponseCode::Success), outcome(2, p, 5, ResponseCode::Invalid)]
    );
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 5, HwCode::Success)]);
    assert_eq!(responses(&unit, 2), vec![sw_response(2, p, 5, HwCode::InvalidRequest)]);
    assert!(resident(&os, mm, VA) && resident(&os, mm, VA + PAGE));
    assert!(!resident(&os, mm, VA + 2 * PAGE));
}

/// Two devices bound to two processes mapping the same address: each
/// device's requests are resolved in its own process and answered to it.
#[test]
fn iopf_interleaved_groups_of_two_processes_populate_each_process_only() {
    let (unit, mut os, mm1, b1) = bound();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let mm2 = process(&mut os);
    let b2 = os.sva_bind(dev(2), mm2).unwrap();
    assert_ne!(b1.pasid, b2.pasid);
    let (p1, p2) = (Some(b1.pasid), Some(b2.pasid));
    queue(&unit, req(2, p2, VA + 3 * PAGE, false, false, 1));
    queue(&unit, req(1, p1, VA, true, false, 1));
    queue(&unit, req(2, p2, VA + 4 * PAGE, true, true, 1));
    queue(&unit, req(1, p1, VA + PAGE, false, true, 1));
    assert_eq!(
        os.service_page_requests().unwrap(),
        vec![outcome(2, p2, 1, ResponseCode::Success), outcome(1, p1, 1, ResponseCode::Success)]
    );
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p1, 1, HwCode::Success)]);
    assert_eq!(responses(&unit, 2), vec![sw_response(2, p2, 1, HwCode::Success)]);
    for page in 0..5 {
        let a = VA + page * PAGE;
        assert_eq!(resident(&os, mm1, a), page < 2, "mm1 page {page}");
        assert_eq!(resident(&os, mm2, a), page >= 3, "mm2 page {page}");
    }
}

/// §4.9 "response sent once": a later service pass, and the unbind's
/// flush, do not answer an answered group again; a new group that reuses
/// the index is a new group and answered once.
#[test]
fn iopf_group_answered_once_is_never_answered_again() {
    let (unit, mut os, mm, bond) = bound();
    let p = Some(bond.pasid);
    queue(&unit, req(1, p, VA, false, true, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 3, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 3, HwCode::Success)]);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![]);
    queue(&unit, req(1, p, VA + PAGE, true, true, 3));
    assert_eq!(os.service_page_requests().unwrap(), vec![outcome(1, p, 3, ResponseCode::Success)]);
    assert_eq!(responses(&unit, 1), vec![sw_response(1, p, 3, HwCode::Success)]);
    assert!(resident(&os, mm, VA + PAGE));
    os.sva_unbind(&bond);
    assert_eq!(os.service_page_requests().unwrap(), vec![]);
    assert_eq!(responses(&unit, 1), vec![]);
}

// ---- isolation -----------------------------------------------------------

/// The byte process B fills its pages with.
const SENTINEL: u8 = 0xBB;
/// Where in a page process A keeps the 8 bytes the model tracks.
const OFF: u64 = 0x80;
/// Pages the isolation property uses.
const ISO_PAGES: u64 = 8;
/// Where both processes of the isolation property map them: across a 1 GiB
/// (and so 2 MiB) boundary, so ranges span page-table boundaries.
const ISO_VA: u64 = 0x4000_0000 - 4 * PAGE;

/// Spec 10 and isolation: after A exits, its device's cached translations
/// are gone before A's frames go back to the allocator, so a DMA by A's
/// device cannot reach the frames B gets next.
#[test]
fn spec10_dma_after_exit_never_reaches_frames_reused_by_another_process() {
    let (unit, mut os, a, bond) = bound();
    let mut ep = Endpoint::new(sid(1));
    for page in 0..4 {
        dma_write(&unit, &mut os, &mut ep, bond.pasid, VA + page * PAGE, b"a").unwrap();
    }
    let frames: Vec<_> = (0..4).map(|p| os.mm(a).unwrap().translate(os.iommu().mem(), VA + p * PAGE)).collect();
    os.exit(a).unwrap();
    let b = process(&mut os);
    for page in 0..PAGES {
        os.cpu_write(b, VA + page * PAGE, &[SENTINEL; PAGE as usize]).unwrap();
    }
    let reused = frames
        .iter()
        .flatten()
        .filter(|f| (0..PAGES).any(|p| os.mm(b).unwrap().translate(os.iommu().mem(), VA + p * PAGE) == Some(**f)));
    assert!(reused.count() > 0, "the test needs B to reuse A's frames");
    for page in 0..4 {
        let r = ep.write(&unit, Some(bond.pasid), Iova::new(VA + page * PAGE), b"x");
        assert!(!matches!(r, EndpointDma::Done(_)), "page {page}: {r:?}");
        let _ = os.service_page_requests().unwrap();
    }
    for page in 0..PAGES {
        let mut buf = [0u8; PAGE as usize];
        os.cpu_read(b, VA + page * PAGE, &mut buf).unwrap();
        assert!(buf.iter().all(|x| *x == SENTINEL), "B's page {page} changed");
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A's CPU stores 8 bytes of `val` at `OFF` in a page.
    CpuWriteA(u64, u8),
    /// A's device writes 8 bytes of `val` at `OFF` in a page, with A's PASID.
    DmaWriteA(u64, u8),
    /// A's device reads the 8 bytes at `OFF`, with A's PASID.
    DmaReadA(u64),
    /// A's device writes with B's PASID (not bound on A's device).
    DmaWriteAWithPasidB(u64),
    /// `munmap` of `n` pages of A from a page (clipped to the buffer).
    MunmapA(u64, u64),
    /// `mmap` of one page of A again (fixed address).
    RemapA(u64),
    /// B fills one page with the sentinel (the page may get a frame A just
    /// released).
    TouchB(u64),
    /// B's device reads one of B's pages (warming its own translations).
    DmaReadB(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..ISO_PAGES;
    let val = 1u8..0x80;
    prop_oneof![
        3 => (page.clone(), val.clone()).prop_map(|(p, v)| Op::CpuWriteA(p, v)),
        4 => (page.clone(), val).prop_map(|(p, v)| Op::DmaWriteA(p, v)),
        4 => page.clone().prop_map(Op::DmaReadA),
        1 => page.clone().prop_map(Op::DmaWriteAWithPasidB),
        2 => (page.clone(), 1..4u64).prop_map(|(p, n)| Op::MunmapA(p, n)),
        2 => page.clone().prop_map(Op::RemapA),
        3 => page.clone().prop_map(Op::TouchB),
        2 => page.prop_map(Op::DmaReadB),
    ]
}

/// Checks B's memory: every resident page holds only the sentinel, and
/// every page B never touched is still not resident.
fn check_b(os: &mut Os, b: MmId, touched: &BTreeSet<u64>) -> Result<(), TestCaseError> {
    for page in 0..ISO_PAGES {
        let addr = ISO_VA + page * PAGE;
        if touched.contains(&page) {
            let mut buf = [0u8; PAGE as usize];
            os.cpu_read(b, addr, &mut buf).unwrap();
            prop_assert!(buf.iter().all(|x| *x == SENTINEL), "B's page {} changed", page);
        } else {
            prop_assert!(!resident(os, b, addr), "B's page {} became resident", page);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Two processes map the same addresses, each bound to its own device.
    /// Whatever A's CPU and device do (with page faults serviced), and
    /// whatever A unmaps, A's device never reads or writes B's memory, and
    /// a DMA by A to a page A unmapped never lands: it ends in INVALID.
    #[test]
    fn isolation_dma_of_one_process_never_touches_another_and_unmapped_pages_always_fault(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let (unit, mut os) = kernel();
        os.add_device(sva_dev(1), GroupId(1)).unwrap();
        os.add_device(sva_dev(2), GroupId(2)).unwrap();
        let a = os.create_process().unwrap();
        let b = os.create_process().unwrap();
        os.mmap(a, Some(ISO_VA), ISO_PAGES * PAGE, RW).unwrap();
        os.mmap(b, Some(ISO_VA), ISO_PAGES * PAGE, RW).unwrap();
        let ba = os.sva_bind(dev(1), a).unwrap();
        let bb = os.sva_bind(dev(2), b).unwrap();
        prop_assert_ne!(ba.pasid, bb.pasid);
        let (mut ep_a, mut ep_b) = (Endpoint::new(sid(1)), Endpoint::new(sid(2)));
        let mut mapped = [true; ISO_PAGES as usize];
        let mut value = [0u8; ISO_PAGES as usize];
        let mut touched = BTreeSet::new();
        // B starts with half its pages holding the sentinel.
        for page in 0..ISO_PAGES / 2 {
            os.cpu_write(b, ISO_VA + page * PAGE, &[SENTINEL; PAGE as usize]).unwrap();
            touched.insert(page);
        }
        for op in ops {
            match op {
                Op::CpuWriteA(page, v) => {
                    let r = os.cpu_write(a, ISO_VA + page * PAGE + OFF, &[v; 8]);
                    if mapped[page as usize] {
                        prop_assert_eq!(r, Ok(()));
                        value[page as usize] = v;
                    } else {
                        prop_assert_eq!(r, Err(Errno::Fault));
                    }
                }
                Op::DmaWriteA(page, v) => {
                    let r = dma_write(&unit, &mut os, &mut ep_a, ba.pasid, ISO_VA + page * PAGE + OFF, &[v; 8]);
                    if mapped[page as usize] {
                        prop_assert_eq!(r, Ok(()), "{:?}", op);
                        value[page as usize] = v;
                    } else {
                        prop_assert_eq!(r, Err(DmaFail::Answered(HwCode::InvalidRequest)), "{:?}", op);
                    }
                }
                Op::DmaReadA(page) => {
                    let mut buf = [0u8; 8];
                    let r = dma_read(&unit, &mut os, &mut ep_a, ba.pasid, ISO_VA + page * PAGE + OFF, &mut buf);
                    if r.is_ok() {
                        prop_assert_ne!(buf, [SENTINEL; 8], "A's device read B's memory");
                    }
                    if mapped[page as usize] {
                        prop_assert_eq!(r, Ok(()), "{:?}", op);
                        prop_assert_eq!(buf, [value[page as usize]; 8], "{:?}", op);
                    } else {
                        prop_assert_eq!(r, Err(DmaFail::Answered(HwCode::InvalidRequest)), "{:?}", op);
                    }
                }
                Op::DmaWriteAWithPasidB(page) => {
                    let r = dma_write(&unit, &mut os, &mut ep_a, bb.pasid, ISO_VA + page * PAGE, &[0x11; 8]);
                    // No handle for (A's group, B's PASID): INVALID (L12).
                    prop_assert_eq!(r, Err(DmaFail::Answered(HwCode::InvalidRequest)), "{:?}", op);
                }
                Op::MunmapA(page, n) => {
                    let n = n.min(ISO_PAGES - page);
                    prop_assert_eq!(os.munmap(a, ISO_VA + page * PAGE, n * PAGE), Ok(()));
                    for p in page..page + n {
                        mapped[p as usize] = false;
                        value[p as usize] = 0;
                    }
                }
                Op::RemapA(page) => {
                    let r = os.mmap(a, Some(ISO_VA + page * PAGE), PAGE, RW);
                    if mapped[page as usize] {
                        prop_assert_eq!(r, Err(Errno::Exist));
                    } else {
                        prop_assert_eq!(r, Ok(ISO_VA + page * PAGE));
                        mapped[page as usize] = true;
                    }
                }
                Op::TouchB(page) => {
                    os.cpu_write(b, ISO_VA + page * PAGE, &[SENTINEL; PAGE as usize]).unwrap();
                    touched.insert(page);
                }
                Op::DmaReadB(page) => {
                    if touched.insert(page) {
                        os.cpu_write(b, ISO_VA + page * PAGE, &[SENTINEL; PAGE as usize]).unwrap();
                    }
                    let mut buf = [0u8; 8];
                    let r = dma_read(&unit, &mut os, &mut ep_b, bb.pasid, ISO_VA + page * PAGE + OFF, &mut buf);
                    prop_assert_eq!(r, Ok(()));
                    prop_assert_eq!(buf, [SENTINEL; 8]);
                }
            }
            check_b(&mut os, b, &touched)?;
            // A's and B's resident pages never share a frame.
            let mem = os.iommu().mem();
            let frames_b: BTreeSet<_> = (0..ISO_PAGES)
                .filter_map(|p| os.mm(b).unwrap().translate(mem, ISO_VA + p * PAGE))
                .map(|h| h.raw() & !(PAGE - 1))
                .collect();
            for p in 0..ISO_PAGES {
                if let Some(h) = os.mm(a).unwrap().translate(mem, ISO_VA + p * PAGE) {
                    prop_assert!(!frames_b.contains(&(h.raw() & !(PAGE - 1))), "A's page {} is B's frame", p);
                }
            }
        }
    }
}
