//! Unit tests of the IOPF core (semantics §1.2 IOPF rows, §4.9).

use super::*;

const DEV: DeviceId = DeviceId(1);
const OTHER: DeviceId = DeviceId(2);
const P1: Pasid = Pasid::new(1);
const P2: Pasid = Pasid::new(2);
/// Small bounds so the (N+1)-th request is cheap to reach.
const SMALL: IopfLimits = IopfLimits { max_partial: 2, max_pending: 2 };

/// A read request of `dev` at page `page`, PASID `pasid`, group `grpid`.
fn fault(dev: DeviceId, pasid: Option<Pasid>, grpid: u16, page: u64, last: bool) -> Fault {
    Fault { dev, pasid, addr: Iova::new(page << 12), access: Access::READ, last, grpid, private: [page, grpid as u64] }
}

fn queue_with(devs: &[DeviceId], limits: IopfLimits) -> IopfQueue {
    let mut q = IopfQueue::with_limits(limits);
    for d in devs {
        q.add_device(*d).unwrap();
    }
    q
}

fn queue() -> IopfQueue {
    queue_with(&[DEV], IopfLimits::default())
}

/// Reports `f` and returns the group it formed.
fn group(q: &mut IopfQueue, f: Fault) -> FaultGroup {
    match q.report(f) {
        Report::Group(g) => g,
        other => panic!("expected a group, got {other:?}"),
    }
}

#[test]
fn add_device_twice_is_busy() {
    let mut q = queue();
    assert_eq!(q.add_device(DEV), Err(Errno::Busy));
}

#[test]
fn partial_request_is_kept_without_response() {
    let mut q = queue();
    assert_eq!(q.report(fault(DEV, Some(P1), 3, 1, false)), Report::Partial);
    assert_eq!(q.partial_count(DEV), 1);
}

/// Semantics §4.9: the last request builds a group of the partials with
/// the same group index, in arrival order, followed by the last one.
#[test]
fn partials_then_last_form_one_group_in_arrival_order() {
    let mut q = queue();
    let (a, b, last) =
        (fault(DEV, Some(P1), 3, 1, false), fault(DEV, Some(P1), 3, 2, false), fault(DEV, Some(P1), 3, 3, true));
    let _ = q.report(a);
    let _ = q.report(b);
    let g = group(&mut q, last);
    assert_eq!((g.dev, g.pasid, g.grpid, g.faults), (DEV, Some(P1), 3, vec![a, b, last]));
}

#[test]
fn forming_a_group_takes_its_partials_out_of_the_partial_list() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = group(&mut q, fault(DEV, Some(P1), 3, 2, true));
    assert_eq!(q.partial_count(DEV), 0);
}

#[test]
fn reported_group_is_pending_until_answered() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    assert_eq!(q.pending(DEV).collect::<Vec<_>>(), vec![&g]);
}

#[test]
fn last_request_leaves_partials_of_another_group_index() {
    let mut q = queue();
    let other = fault(DEV, Some(P1), 4, 1, false);
    let _ = q.report(other);
    let g = group(&mut q, fault(DEV, Some(P1), 3, 2, true));
    assert_eq!((g.faults.len(), q.partial_count(DEV)), (1, 1));
}

/// Semantics §7: groups are keyed by (PASID, group index), so the same
/// index under another PASID is another group.
#[test]
fn last_request_leaves_partials_of_another_pasid() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P2), 3, 1, false));
    let g = group(&mut q, fault(DEV, Some(P1), 3, 2, true));
    assert_eq!((g.faults.len(), q.partial_count(DEV)), (1, 1));
}

#[test]
fn groups_of_different_devices_are_independent() {
    let mut q = queue_with(&[DEV, OTHER], IopfLimits::default());
    let _ = q.report(fault(OTHER, Some(P1), 3, 1, false));
    let g = group(&mut q, fault(DEV, Some(P1), 3, 2, true));
    assert_eq!((g.faults.len(), q.partial_count(OTHER)), (1, 1));
}

#[test]
fn each_group_gets_a_distinct_id() {
    let mut q = queue();
    let a = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let b = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    assert_ne!(a.id, b.id);
}

/// Semantics §4.9: the response uses the last request's PASID, group
/// index and private data.
#[test]
fn respond_yields_the_response_of_the_last_request() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let last = fault(DEV, Some(P1), 3, 9, true);
    let g = group(&mut q, last);
    let r = q.respond(g.id, ResponseCode::Success);
    let want = Response { dev: DEV, pasid: Some(P1), grpid: 3, code: ResponseCode::Success, private: last.private };
    assert_eq!(r, Some(want));
}

#[test]
fn respond_unlinks_the_group() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let _ = q.respond(g.id, ResponseCode::Success);
    assert_eq!((q.pending(DEV).count(), q.group(g.id)), (0, None));
}

/// Semantics §1.2 `iopf_group_response`: idempotent.
#[test]
fn second_respond_to_a_group_yields_nothing() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let _ = q.respond(g.id, ResponseCode::Success);
    assert_eq!(q.respond(g.id, ResponseCode::Invalid), None);
}

/// Semantics §1.2 `iopf_queue_remove_device`.
#[test]
fn remove_device_answers_invalid_to_every_pending_group() {
    let mut q = queue();
    let a = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let b = group(&mut q, fault(DEV, Some(P2), 4, 2, true));
    let codes: Vec<_> = q.remove_device(DEV).iter().map(|r| (r.pasid, r.grpid, r.code)).collect();
    assert_eq!(codes, vec![(a.pasid, 3, ResponseCode::Invalid), (b.pasid, 4, ResponseCode::Invalid)]);
}

#[test]
fn remove_device_drops_partials_and_the_fault_parameter() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.remove_device(DEV);
    assert_eq!((q.partial_count(DEV), q.contains(DEV)), (0, false));
}

#[test]
fn respond_after_remove_device_yields_nothing() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let _ = q.remove_device(DEV);
    assert_eq!(q.respond(g.id, ResponseCode::Success), None);
}

#[test]
fn remove_device_leaves_other_devices_alone() {
    let mut q = queue_with(&[DEV, OTHER], IopfLimits::default());
    let g = group(&mut q, fault(OTHER, Some(P1), 3, 1, true));
    let _ = q.remove_device(DEV);
    assert_eq!(q.pending(OTHER).map(|g| g.id).collect::<Vec<_>>(), vec![g.id]);
}

/// Semantics §1.2 `iopf_queue_discard_partial`, §5.9 #58.
#[test]
fn discard_partial_drops_every_partial_of_every_device() {
    let mut q = queue_with(&[DEV, OTHER], IopfLimits::default());
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(OTHER, Some(P1), 3, 1, false));
    q.discard_partial();
    assert_eq!((q.partial_count(DEV), q.partial_count(OTHER)), (0, 0));
}

#[test]
fn discard_partial_keeps_pending_groups() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    q.discard_partial();
    assert_eq!(q.group(g.id).map(|g| g.id), Some(g.id));
}

#[test]
fn last_request_after_discard_forms_a_group_of_itself() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    q.discard_partial();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 2, true));
    assert_eq!(g.faults.len(), 1);
}

/// Semantics §1.2 `iommu_report_device_fault`: no fault parameter → a
/// page request is answered INVALID immediately.
#[test]
fn last_request_of_a_device_not_added_is_answered_invalid() {
    let mut q = IopfQueue::new();
    let f = fault(DEV, Some(P1), 3, 1, true);
    let want = Response { dev: DEV, pasid: Some(P1), grpid: 3, code: ResponseCode::Invalid, private: f.private };
    assert_eq!(q.report(f), Report::Respond(want));
}

#[test]
fn partial_request_of_a_device_not_added_is_dropped() {
    let mut q = IopfQueue::new();
    assert_eq!(q.report(fault(DEV, Some(P1), 3, 1, false)), Report::Dropped);
}

#[test]
fn partial_beyond_the_bound_is_dropped() {
    let mut q = queue_with(&[DEV], SMALL);
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(DEV, Some(P1), 3, 2, false));
    assert_eq!(q.report(fault(DEV, Some(P1), 3, 3, false)), Report::Dropped);
}

#[test]
fn partial_beyond_the_bound_is_not_kept() {
    let mut q = queue_with(&[DEV], SMALL);
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(DEV, Some(P1), 3, 2, false));
    let _ = q.report(fault(DEV, Some(P1), 3, 3, false));
    assert_eq!(q.partial_count(DEV), SMALL.max_partial);
}

#[test]
fn partial_bound_is_per_device() {
    let mut q = queue_with(&[DEV, OTHER], SMALL);
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(DEV, Some(P1), 3, 2, false));
    assert_eq!(q.report(fault(OTHER, Some(P1), 3, 1, false)), Report::Partial);
}

/// Semantics §4.9 abort group: a group beyond the pending bound is answered
/// FAILURE at once.
#[test]
fn last_request_beyond_the_pending_bound_is_answered_failure() {
    let mut q = queue_with(&[DEV], SMALL);
    let _ = group(&mut q, fault(DEV, Some(P1), 1, 1, true));
    let _ = group(&mut q, fault(DEV, Some(P1), 2, 1, true));
    let f = fault(DEV, Some(P1), 3, 1, true);
    let want = Response { dev: DEV, pasid: Some(P1), grpid: 3, code: ResponseCode::Failure, private: f.private };
    assert_eq!(q.report(f), Report::Respond(want));
}

#[test]
fn aborted_group_drops_its_partials() {
    let mut q = queue_with(&[DEV], SMALL);
    let _ = group(&mut q, fault(DEV, Some(P1), 1, 1, true));
    let _ = group(&mut q, fault(DEV, Some(P1), 2, 1, true));
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(DEV, Some(P1), 3, 2, true));
    assert_eq!((q.partial_count(DEV), q.pending(DEV).count()), (0, SMALL.max_pending));
}

#[test]
fn answering_a_group_makes_room_below_the_pending_bound() {
    let mut q = queue_with(&[DEV], SMALL);
    let a = group(&mut q, fault(DEV, Some(P1), 1, 1, true));
    let _ = group(&mut q, fault(DEV, Some(P1), 2, 1, true));
    let _ = q.respond(a.id, ResponseCode::Success);
    assert!(matches!(q.report(fault(DEV, Some(P1), 3, 1, true)), Report::Group(_)));
}

#[test]
fn flush_pasid_answers_invalid_to_that_pasid_only() {
    let mut q = queue();
    let _ = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let _ = group(&mut q, fault(DEV, Some(P2), 3, 1, true));
    let flushed: Vec<_> = q.flush_pasid(DEV, Some(P1)).iter().map(|r| (r.pasid, r.code)).collect();
    assert_eq!(flushed, vec![(Some(P1), ResponseCode::Invalid)]);
}

#[test]
fn flush_pasid_keeps_pending_groups_of_other_pasids() {
    let mut q = queue();
    let _ = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let other = group(&mut q, fault(DEV, Some(P2), 3, 1, true));
    let _ = q.flush_pasid(DEV, Some(P1));
    assert_eq!(q.pending(DEV).map(|g| g.id).collect::<Vec<_>>(), vec![other.id]);
}

#[test]
fn flush_pasid_drops_only_that_pasids_partials() {
    let mut q = queue();
    let _ = q.report(fault(DEV, Some(P1), 3, 1, false));
    let _ = q.report(fault(DEV, Some(P2), 3, 1, false));
    let _ = q.flush_pasid(DEV, Some(P1));
    assert_eq!(q.partial_count(DEV), 1);
}

/// Semantics §5.9 #59: once flushed, a late handler's answer yields no
/// response.
#[test]
fn respond_after_flush_pasid_yields_nothing() {
    let mut q = queue();
    let g = group(&mut q, fault(DEV, Some(P1), 3, 1, true));
    let _ = q.flush_pasid(DEV, Some(P1));
    assert_eq!(q.respond(g.id, ResponseCode::Success), None);
}

#[test]
fn flush_pasid_leaves_other_devices_alone() {
    let mut q = queue_with(&[DEV, OTHER], IopfLimits::default());
    let g = group(&mut q, fault(OTHER, Some(P1), 3, 1, true));
    let _ = q.flush_pasid(DEV, Some(P1));
    assert_eq!(q.group(g.id).map(|g| g.dev), Some(OTHER));
}

#[test]
fn response_codes_have_kernel_internal_values() {
    let raw = [ResponseCode::Success, ResponseCode::Invalid, ResponseCode::Failure].map(ResponseCode::raw);
    assert_eq!(raw, [0, 1, 2]);
}
