//! The seed-era guest-SVA API on the VT-d model (semantics §5.11 specs
//! 65–69): bind_gpasid / unbind_gpasid over IOASID-style sets, and aux
//! domains.

mod common;

use common::*;
use iommu_format::vtd::inv_desc::InvDescriptor;
use iommu_format::vtd::pasid::{PasidEntry, Pgtt};
use iommu_os::driver::vtd::HwAction;
use iommu_os::iommu::GroupId;
use iommu_os::kernel::{gpasid_flags, GpasidBindData, IoasidSetId, FORMAT_INTEL_VTD, GPASID_BIND_ARGSZ};
use iommu_os::pgtable::PtFormat;
use iommu_os::Errno;
use iommu_types::{Gpa, Pasid};

const SS4: PtFormat = PtFormat::SecondStage { levels: 4 };

fn data(hpasid: Pasid, gpasid: Option<u32>) -> GpasidBindData {
    GpasidBindData {
        argsz: GPASID_BIND_ARGSZ,
        format: FORMAT_INTEL_VTD,
        flags: if gpasid.is_some() { gpasid_flags::GPASID_VAL } else { 0 },
        hpasid: hpasid.raw() as u64,
        gpasid: gpasid.unwrap_or(0) as u64,
        gpgd: Gpa::new(0x20_0000),
        addr_width: 48,
    }
}

/// A VM: device 1 assigned with the VM's stage 2 on its RID, a PASID set
/// and one host PASID from it.
fn vm() -> (Os, IoasidSetId, Pasid) {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let s2 = os.iommu_mut().alloc_paging(SS4, true).unwrap();
    os.iommu_mut().attach_rid(s2, sva_dev(1).id).unwrap();
    let set = os.ioasid_set_alloc(8).unwrap();
    let hpasid = os.ioasid_alloc(set).unwrap();
    (os, set, hpasid)
}

fn entry(os: &Os, pasid: Pasid) -> Option<PasidEntry> {
    os.iommu().driver().pasid_entry(os.iommu().mem(), sva_dev(1).sid, pasid)
}

fn has_drain(log: &[HwAction]) -> bool {
    log.iter().any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. })))
}

fn has_devtlb(log: &[HwAction], pasid: Pasid) -> bool {
    log.iter().any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::PasidDeviceTlb { pasid: p, .. }) if *p == pasid))
}

#[test]
fn spec65_second_bind_of_the_same_device_and_host_pasid_is_ebusy_and_keeps_the_first() {
    let (mut os, set, hp) = vm();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp, Some(5))).unwrap();
    let first = entry(&os, hp).unwrap();
    let mut other = data(hp, Some(6));
    other.gpgd = Gpa::new(0x30_0000);
    assert_eq!(os.bind_gpasid(sva_dev(1).id, set, &other), Err(Errno::Busy));
    assert_eq!(entry(&os, hp).unwrap(), first);
    assert_eq!(os.gpasid_to_host(set, Pasid::new(5)), Some(hp));
}

#[test]
fn spec65_bind_builds_a_nested_entry_over_the_devices_second_stage() {
    let (mut os, set, hp) = vm();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp, Some(5))).unwrap();
    let e = entry(&os, hp).unwrap();
    assert!(e.present());
    assert_eq!(e.pgtt(), Pgtt::Nested);
    assert_eq!(e.get_in_place(PasidEntry::FSPTPTR), 0x20_0000);
    assert_eq!(os.host_to_gpasid(set, hp), Some(Pasid::new(5)));
}

#[test]
fn spec66_bind_data_validation_errors_are_einval() {
    let (mut os, set, hp) = vm();
    let dev = sva_dev(1).id;
    type Breaker = fn(&mut GpasidBindData);
    let cases: [(&str, Breaker); 6] = [
        ("format", |d| d.format = 2),
        ("argsz", |d| d.argsz = GPASID_BIND_ARGSZ - 1),
        ("flags", |d| d.flags |= 1 << 40),
        ("hpasid 0", |d| d.hpasid = 0),
        ("hpasid 2^20", |d| d.hpasid = 1 << 20),
        ("address width", |d| d.addr_width = 39),
    ];
    for (what, break_it) in cases {
        let mut d = data(hp, None);
        break_it(&mut d);
        assert_eq!(os.bind_gpasid(dev, set, &d), Err(Errno::Inval), "{what}");
    }
    assert!(!os.gpasid_bound(dev, hp));
}

#[test]
fn spec66_device_with_a_pasid_width_other_than_20_bits_is_einval() {
    let (mut os, set, hp) = vm();
    os.add_device(pci(2, 1 << 16, true, true), GroupId(2)).unwrap();
    assert_eq!(os.bind_gpasid(pci(2, 1 << 16, true, true).id, set, &data(hp, None)), Err(Errno::Inval));
}

#[test]
fn spec67_unbind_flushes_the_device_tlb_and_drains_without_a_guest_flush() {
    let (mut os, set, hp) = vm();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp, Some(5))).unwrap();
    os.iommu_mut().driver_mut().take_log();
    os.unbind_gpasid(sva_dev(1).id, hp).unwrap();
    let log = os.iommu_mut().driver_mut().take_log();
    assert!(has_devtlb(&log, hp));
    assert!(has_drain(&log));
    assert!(entry(&os, hp).is_none_or(|e| !e.present()));
    assert_eq!(os.gpasid_to_host(set, Pasid::new(5)), None);
}

#[test]
fn spec68_free_before_unbind_tears_the_binding_down_before_the_value_is_reused() {
    let (mut os, set, hp) = vm();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp, None)).unwrap();
    os.iommu_mut().driver_mut().take_log();
    os.ioasid_free(set, hp).unwrap();
    let log = os.iommu_mut().driver_mut().take_log();
    assert!(has_drain(&log));
    assert!(!os.gpasid_bound(sva_dev(1).id, hp));
    assert!(!os.global_pasids().is_allocated(hp));
    // The value comes back only now, and binds cleanly.
    let again = os.ioasid_alloc(set).unwrap();
    assert_eq!(again, hp);
    os.bind_gpasid(sva_dev(1).id, set, &data(again, None)).unwrap();
}

#[test]
fn spec68_freeing_a_set_unbinds_everything_in_it() {
    let (mut os, set, hp) = vm();
    let hp2 = os.ioasid_alloc(set).unwrap();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp, None)).unwrap();
    os.bind_gpasid(sva_dev(1).id, set, &data(hp2, None)).unwrap();
    let domains = os.iommu().domain_count();
    os.ioasid_set_free(set).unwrap();
    assert!(!os.gpasid_bound(sva_dev(1).id, hp) && !os.gpasid_bound(sva_dev(1).id, hp2));
    assert_eq!(os.iommu().domain_count(), domains - 2);
    assert_eq!(os.global_pasids().in_use(), 0);
}

#[test]
fn ioasid_quota_is_enforced() {
    let (_u, mut os) = kernel();
    let set = os.ioasid_set_alloc(1).unwrap();
    os.ioasid_alloc(set).unwrap();
    assert_eq!(os.ioasid_alloc(set), Err(Errno::NoSpc));
}

#[test]
fn spec69_aux_domain_cannot_be_attached_normally_afterwards() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let d = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    os.aux_attach(d, sva_dev(1).id).unwrap();
    assert_eq!(os.attach_normal(d, sva_dev(1).id), Err(Errno::Inval));
    os.aux_detach(d, sva_dev(1).id).unwrap();
    assert_eq!(os.attach_normal(d, sva_dev(1).id), Err(Errno::Inval));
}

#[test]
fn spec69_normal_domain_cannot_become_aux() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let d = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    os.attach_normal(d, sva_dev(1).id).unwrap();
    assert_eq!(os.aux_attach(d, sva_dev(2).id), Err(Errno::Inval));
}

#[test]
fn spec69_aux_domain_cannot_be_attached_to_a_second_device() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let d = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    os.aux_attach(d, sva_dev(1).id).unwrap();
    assert_eq!(os.aux_attach(d, sva_dev(2).id), Err(Errno::Busy));
}

#[test]
fn spec69_aux_detach_invalidates_the_device_tlb_for_its_pasid() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let d = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    let p = os.aux_attach(d, sva_dev(1).id).unwrap();
    assert_eq!(os.aux_get_pasid(d), Some(p));
    os.iommu_mut().driver_mut().take_log();
    os.aux_detach(d, sva_dev(1).id).unwrap();
    assert!(has_devtlb(&os.iommu_mut().driver_mut().take_log(), p));
    assert!(!os.global_pasids().is_allocated(p));
}

#[test]
fn spec66_bind_for_a_platform_device_is_eopnotsupp() {
    let (mut os, set, hp) = vm();
    os.add_device(platform(2, 1 << 20), GroupId(2)).unwrap();
    assert_eq!(os.bind_gpasid(platform(2, 1 << 20).id, set, &data(hp, None)), Err(Errno::OpNotSupp));
}

// ---- mediated devices sharing an aux domain under one parent (spec 69) --

/// A kernel with two PASID-capable parents (devices 1 and 2, own groups)
/// and a paging domain for aux use.
fn mdev_rig() -> (Os, iommu_os::driver::DomainRef) {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let d = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    (os, d)
}

#[test]
fn spec69_two_mdevs_of_one_parent_share_the_aux_domain_and_its_pasid() {
    let (mut os, d) = mdev_rig();
    let (a, b) = (os.add_mdev(sva_dev(1).id).unwrap(), os.add_mdev(sva_dev(1).id).unwrap());
    let p = os.aux_attach(d, a).unwrap();
    os.iommu_mut().driver_mut().take_log();
    assert_eq!(os.aux_attach(d, b), Ok(p));
    assert!(os.iommu_mut().driver_mut().take_log().is_empty(), "sharing writes nothing to the hardware");
    assert_eq!(os.aux_users(d), vec![a, b]);
    assert_eq!(os.iommu().domain_attachments(d), vec![(sva_dev(1).id, p)], "one attachment, at the parent");
    assert!(entry(&os, p).is_some_and(|e| e.present()));
}

#[test]
fn spec69_an_mdev_of_another_parent_gets_ebusy() {
    let (mut os, d) = mdev_rig();
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    let other = os.add_mdev(sva_dev(2).id).unwrap();
    let p = os.aux_attach(d, a).unwrap();
    assert_eq!(os.aux_attach(d, other), Err(Errno::Busy));
    assert_eq!(os.aux_attach(d, sva_dev(2).id), Err(Errno::Busy), "nor the other parent itself");
    assert_eq!(os.aux_users(d), vec![a]);
    assert_eq!(os.aux_get_pasid(d), Some(p));
}

#[test]
fn spec69_the_parent_itself_and_its_mdev_share_the_aux_domain() {
    let (mut os, d) = mdev_rig();
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    let p = os.aux_attach(d, sva_dev(1).id).unwrap();
    assert_eq!(os.aux_attach(d, a), Ok(p));
}

#[test]
fn spec69_the_same_user_attaching_twice_gets_ebusy() {
    let (mut os, d) = mdev_rig();
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    os.aux_attach(d, a).unwrap();
    assert_eq!(os.aux_attach(d, a), Err(Errno::Busy));
    os.aux_detach(d, a).unwrap();
    assert_eq!(os.aux_get_pasid(d), None, "one reference, dropped by one detach");
}

#[test]
fn spec69_the_first_mdev_detach_keeps_the_pasid_entry_and_the_last_tears_it_down() {
    let (mut os, d) = mdev_rig();
    let (a, b) = (os.add_mdev(sva_dev(1).id).unwrap(), os.add_mdev(sva_dev(1).id).unwrap());
    let p = os.aux_attach(d, a).unwrap();
    os.aux_attach(d, b).unwrap();
    os.iommu_mut().driver_mut().take_log();
    os.aux_detach(d, a).unwrap();
    assert!(os.iommu_mut().driver_mut().take_log().is_empty(), "no teardown while b uses it");
    assert!(entry(&os, p).is_some_and(|e| e.present()));
    assert!(os.global_pasids().is_allocated(p));
    assert_eq!(os.aux_detach(d, a), Err(Errno::NoEnt), "a is no longer a user");
    os.aux_detach(d, b).unwrap();
    assert!(has_devtlb(&os.iommu_mut().driver_mut().take_log(), p));
    assert!(entry(&os, p).is_none_or(|e| !e.present()));
    assert!(!os.global_pasids().is_allocated(p));
    assert_eq!(os.attach_normal(d, sva_dev(1).id), Err(Errno::Inval), "aux for good");
}

#[test]
fn mdev_of_an_unknown_parent_is_enodev_and_mdevs_cannot_parent_mdevs() {
    let (mut os, _) = mdev_rig();
    assert_eq!(os.add_mdev(iommu_os::pasid::DeviceId(9)), Err(Errno::NoDev));
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    assert_eq!(os.add_mdev(a), Err(Errno::NoDev));
}

#[test]
fn mdev_ids_come_from_the_reserved_range_which_physical_devices_cannot_use() {
    use iommu_os::kernel::MDEV_ID_BASE;
    let (mut os, _) = mdev_rig();
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    assert!(a.0 >= MDEV_ID_BASE);
    assert_eq!(os.mdev_parent(a), Some(sva_dev(1).id));
    assert_eq!(os.mdev_parent(sva_dev(1).id), None);
    let mut clash = pci(3, 1 << 20, true, true);
    clash.id = a;
    assert_eq!(os.add_device(clash, GroupId(3)), Err(Errno::Inval));
}

#[test]
fn mdevs_per_parent_are_capped_with_enospc() {
    use iommu_os::kernel::MAX_MDEVS_PER_PARENT;
    let (mut os, _) = mdev_rig();
    for _ in 0..MAX_MDEVS_PER_PARENT {
        os.add_mdev(sva_dev(1).id).unwrap();
    }
    assert_eq!(os.add_mdev(sva_dev(1).id), Err(Errno::NoSpc));
    os.add_mdev(sva_dev(2).id).unwrap();
}

#[test]
fn an_mdev_using_an_aux_domain_cannot_be_removed_nor_can_its_parent() {
    let (mut os, d) = mdev_rig();
    let a = os.add_mdev(sva_dev(1).id).unwrap();
    os.aux_attach(d, a).unwrap();
    assert_eq!(os.remove_mdev(a), Err(Errno::Busy));
    assert_eq!(os.remove_device(sva_dev(1).id), Err(Errno::Busy));
    os.aux_detach(d, a).unwrap();
    assert_eq!(os.remove_device(sva_dev(1).id), Err(Errno::Busy), "still the parent of a");
    os.remove_mdev(a).unwrap();
    assert_eq!(os.remove_mdev(a), Err(Errno::NoDev));
    os.remove_device(sva_dev(1).id).unwrap();
}
