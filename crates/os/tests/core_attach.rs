//! Core PASID attach / replace / detach against the VT-d model (semantics
//! §5.2 specs 13–21, and spec 57 of §5.9): errno, slot state and the
//! driver's hardware-visible actions.

mod common;

use common::*;
use iommu_format::vtd::pasid::{PasidEntry, Pgtt};
use iommu_hw::vtd::VtdConfig;
use iommu_os::driver::vtd::HwAction;
use iommu_os::frames::FrameAllocator;
use iommu_os::iommu::{GroupId, HandleKind, HandleType, NestedS1};
use iommu_os::pgtable::PtFormat;
use iommu_os::Errno;
use iommu_types::{Gpa, Hpa, Iova, Pasid, Perm};

const P1: Pasid = Pasid::new(1);
const FS4: PtFormat = PtFormat::FirstStage { levels: 4 };
const SS4: PtFormat = PtFormat::SecondStage { levels: 4 };
const RW: Perm = Perm { read: true, write: true, exec: false };

fn entry(core: &Core, n: u8, pasid: Pasid) -> PasidEntry {
    core.driver().pasid_entry(core.mem(), pci(n, 0, false, false).sid, pasid).expect("entry")
}

#[test]
fn spec13_attach_at_pasid_zero_is_einval() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    assert_eq!(core.attach_dev_pasid(d, dev, Pasid::ZERO, None), Err(Errno::Inval));
}

#[test]
fn spec13_attach_with_another_instances_domain_is_einval() {
    let (_u, mut core) = core();
    let (_u2, mut other) = core_with(VtdConfig::full_featured());
    let dev = add(&mut core, sva_dev(1));
    // Same index, different instance.
    let foreign = other.alloc_paging(FS4, false).unwrap();
    let foreign = iommu_os::driver::DomainRef { instance: 7, ..foreign };
    assert_eq!(core.attach_dev_pasid(foreign, dev, P1, None), Err(Errno::Inval));
}

#[test]
fn spec13_attach_of_the_blocked_domain_is_eopnotsupp() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let blocked = core.blocked_domain();
    assert_eq!(core.attach_dev_pasid(blocked, dev, P1, None), Err(Errno::OpNotSupp));
}

#[test]
fn spec14_pasid_beyond_a_members_max_pasids_is_einval() {
    let (_u, mut core) = core();
    let dev = add(&mut core, pci(1, 16, true, false));
    let d = core.alloc_paging(FS4, false).unwrap();
    assert_eq!(core.attach_dev_pasid(d, dev, Pasid::new(16), None), Err(Errno::Inval));
    assert_eq!(core.attach_dev_pasid(d, dev, Pasid::new(15), None), Ok(()));
}

#[test]
fn spec14_group_members_without_pasid_are_skipped_and_not_programmed() {
    let (_u, mut core) = core();
    core.add_device(sva_dev(1), GroupId(9)).unwrap();
    core.add_device(pci(2, 0, false, false), GroupId(9)).unwrap();
    let d = core.alloc_paging(FS4, false).unwrap();
    log(&mut core);
    core.attach_dev_pasid(d, sva_dev(1).id, Pasid::new(100), None).unwrap();
    let writes: Vec<_> = log(&mut core).into_iter().filter(|a| matches!(a, HwAction::PasidEntryWrite { .. })).collect();
    assert_eq!(writes, [HwAction::PasidEntryWrite { sid: sva_dev(1).sid, pasid: Pasid::new(100) }]);
}

#[test]
fn spec15_attach_to_an_occupied_slot_is_ebusy_and_keeps_the_slot() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let a = core.alloc_paging(FS4, false).unwrap();
    let b = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(a, dev, P1, Some(HandleKind::User(1))).unwrap();
    let before = entry(&core, 1, P1);
    assert_eq!(core.attach_dev_pasid(a, dev, P1, None), Err(Errno::Busy));
    assert_eq!(core.attach_dev_pasid(b, dev, P1, None), Err(Errno::Busy));
    assert_eq!(core.pasid_domain(dev, P1), Some(a));
    assert_eq!(core.attach_handle_get(dev, P1, HandleType::User).unwrap().kind, HandleKind::User(1));
    assert_eq!(entry(&core, 1, P1), before);
}

#[test]
fn spec16_attach_failing_on_the_second_member_rolls_back_the_first() {
    let (_u, mut core) = core();
    core.add_device(sva_dev(1), GroupId(9)).unwrap();
    core.add_device(sva_dev(2), GroupId(9)).unwrap();
    let d = core.alloc_paging(FS4, false).unwrap();
    let frames_before = core.frames().in_use();
    // PASID 64 lives in a new PASID table on each device: the second
    // member's table allocation fails.
    core.frames_mut().fail_nth(Some(2));
    assert_eq!(core.attach_dev_pasid(d, sva_dev(1).id, Pasid::new(64), None), Err(Errno::NoMem));
    core.frames_mut().fail_nth(None);
    assert_eq!(core.pasid_domain(sva_dev(1).id, Pasid::new(64)), None);
    assert!(core.driver().pasid_entry(core.mem(), sva_dev(1).sid, Pasid::new(64)).is_none());
    assert!(core.domain_attachments(d).is_empty());
    assert_eq!(core.frames().in_use(), frames_before);
}

#[test]
fn spec17_replace_on_an_empty_slot_is_einval() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    assert_eq!(core.replace_dev_pasid(d, dev, P1, HandleKind::User(1)), Err(Errno::Inval));
}

#[test]
fn spec17_replace_failing_in_the_driver_keeps_the_old_domain_and_handle() {
    let (_u, mut core) = core_with(VtdConfig::full_featured().caching_mode(true));
    let dev = add(&mut core, sva_dev(1));
    let old = core.alloc_paging(FS4, false).unwrap();
    let new = core.alloc_paging(SS4, false).unwrap();
    core.attach_dev_pasid(old, dev, P1, Some(HandleKind::User(1))).unwrap();
    let before = entry(&core, 1, P1);
    // Teardown of the old entry (1), its drain (2), then the caching-mode
    // invalidation after installing the new one (3) fails.
    core.driver_mut().fail_nth_submit(Some(3));
    assert_eq!(core.replace_dev_pasid(new, dev, P1, HandleKind::User(2)), Err(Errno::TimedOut));
    assert_eq!(core.attach_handle_get(dev, P1, HandleType::Any).unwrap().kind, HandleKind::User(1));
    assert_eq!(core.pasid_domain(dev, P1), Some(old));
    assert_eq!(entry(&core, 1, P1), before);
    assert!(core.domain_attachments(new).is_empty());
}

#[test]
fn spec17_replace_with_the_same_domain_only_swaps_the_handle() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(d, dev, P1, Some(HandleKind::User(1))).unwrap();
    log(&mut core);
    core.replace_dev_pasid(d, dev, P1, HandleKind::User(2)).unwrap();
    assert!(log(&mut core).is_empty());
    assert_eq!(core.attach_handle_get(dev, P1, HandleType::User).unwrap().kind, HandleKind::User(2));
}

#[test]
fn spec19_handle_of_another_type_is_ebusy() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(d, dev, P1, Some(HandleKind::User(1))).unwrap();
    assert_eq!(core.attach_handle_get(dev, P1, HandleType::Sva), Err(Errno::Busy));
}

#[test]
fn spec19_bare_domain_slot_has_no_handle() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(d, dev, P1, None).unwrap();
    assert_eq!(core.attach_handle_get(dev, P1, HandleType::Any), Err(Errno::NoEnt));
}

#[test]
fn spec20_dma_ownership_claim_with_a_pasid_attached_is_ebusy() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(d, dev, P1, None).unwrap();
    assert_eq!(core.claim_dma_owner(dev, 42), Err(Errno::Busy));
    core.detach_dev_pasid(d, dev, P1);
    assert_eq!(core.claim_dma_owner(dev, 42), Ok(()));
    assert_eq!(core.claim_dma_owner(dev, 43), Err(Errno::Busy));
}

#[test]
fn spec21_attach_and_replace_during_reset_are_ebusy() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let a = core.alloc_paging(FS4, false).unwrap();
    let b = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(a, dev, P1, Some(HandleKind::User(1))).unwrap();
    core.reset_prepare(dev);
    assert_eq!(core.attach_dev_pasid(b, dev, Pasid::new(2), None), Err(Errno::Busy));
    assert_eq!(core.replace_dev_pasid(b, dev, P1, HandleKind::User(2)), Err(Errno::Busy));
}

#[test]
fn spec21_reset_done_reinstalls_the_pasid_attachments() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let a = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(a, dev, P1, None).unwrap();
    let before = entry(&core, 1, P1);
    core.reset_prepare(dev);
    assert!(core.driver().pasid_entry(core.mem(), sva_dev(1).sid, P1).is_none_or(|e| !e.present()));
    core.reset_done(dev).unwrap();
    assert_eq!(entry(&core, 1, P1), before);
    assert_eq!(core.pasid_domain(dev, P1), Some(a));
}

#[test]
fn spec57_nested_entry_takes_the_guest_root_and_the_parents_second_stage() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let parent = core.alloc_paging(SS4, true).unwrap();
    let s1 = NestedS1 { root: Gpa::new(0x7000), addr_width: 48, sre: false, eafe: false, wpe: false };
    let nested = core.alloc_nested(parent, s1).unwrap();
    core.attach_dev_pasid(nested, dev, P1, None).unwrap();
    let e = entry(&core, 1, P1);
    assert_eq!(e.pgtt(), Pgtt::Nested);
    assert_eq!(e.get_in_place(PasidEntry::FSPTPTR), 0x7000);
    assert_eq!(e.get(PasidEntry::FSPM), 0);
    let parent_root = match core.domain_kind(parent).unwrap() {
        iommu_os::iommu::DomainKind::Paging { table, .. } => table.root(),
        _ => unreachable!(),
    };
    assert_eq!(e.get_in_place(PasidEntry::SSPTPTR), parent_root.raw());
    assert_eq!(e.get(PasidEntry::AW), 2);
    assert_eq!(e.get(PasidEntry::SSADE), 0);
    assert_eq!(e.get(PasidEntry::DID), core.driver().did_of(nested).unwrap().raw() as u64);
}

#[test]
fn nest_parent_with_a_nested_child_cannot_be_freed() {
    let (_u, mut core) = core();
    let parent = core.alloc_paging(SS4, true).unwrap();
    let s1 = NestedS1 { root: Gpa::new(0x7000), addr_width: 48, sre: false, eafe: false, wpe: false };
    let nested = core.alloc_nested(parent, s1).unwrap();
    assert_eq!(core.free_domain(parent), Err(Errno::Busy));
    core.free_domain(nested).unwrap();
    assert_eq!(core.free_domain(parent), Ok(()));
}

#[test]
fn attached_domain_cannot_be_freed() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let d = core.alloc_paging(FS4, false).unwrap();
    core.attach_dev_pasid(d, dev, P1, None).unwrap();
    assert_eq!(core.free_domain(d), Err(Errno::Busy));
}

#[test]
fn detach_returns_the_pasid_table_and_frees_the_domain_without_leaks() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let before = core.frames().in_use();
    let d = core.alloc_paging(FS4, false).unwrap();
    let flush = core.map(d, Iova::new(0x1000), Hpa::new(0x90_0000), 0x1000, RW).unwrap();
    core.flush(flush).unwrap();
    core.attach_dev_pasid(d, dev, Pasid::new(200), None).unwrap();
    core.detach_dev_pasid(d, dev, Pasid::new(200));
    let flush = core.unmap(d, Iova::new(0x1000), 0x1000).unwrap();
    core.flush(flush).unwrap();
    core.free_domain(d).unwrap();
    assert_eq!(core.frames().in_use(), before);
}

#[test]
fn rid_attach_when_off_the_default_domain_is_ebusy() {
    let (_u, mut core) = core();
    let dev = add(&mut core, sva_dev(1));
    let a = core.alloc_paging(SS4, false).unwrap();
    let b = core.alloc_paging(SS4, false).unwrap();
    core.attach_rid(a, dev).unwrap();
    assert_eq!(core.attach_rid(b, dev), Err(Errno::Busy));
    core.replace_rid(b, dev).unwrap();
    assert_eq!(core.rid_domain(dev), Ok(b));
    core.detach_rid(dev).unwrap();
    assert_eq!(core.rid_domain(dev), Ok(core.identity_domain()));
}
