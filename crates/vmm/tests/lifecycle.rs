//! Teardown in any order and the bounds a guest meets (issue 4 items 5–6),
//! and the seed-era `bind_gpasid` path producing the same host state as
//! iommufd for the same guest actions.

mod common;

use common::*;
use iommu_format::vtd::inv_desc::ResponseCode as HwCode;
use iommu_format::vtd::page_req::PageRequest;
use iommu_os::iommu::MmId;
use iommu_os::kernel::Bond;
use iommu_os::pasid::DeviceId;
use iommu_types::{Iova, Pasid, Perm, PhysMem, SourceId};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::viommu::GuestTables;
use iommu_vmm::{HostApi, PasidMode, Vm, VmConfig, VmmEvent};

const RW: Perm = Perm { read: true, write: true, exec: false };
const VA: u64 = 0x4000_0000;
const HOST_DEV: DeviceId = DeviceId(1);

fn host_sid() -> SourceId {
    SourceId::from_bdf(0, 1, 0)
}

struct Setup {
    unit: std::sync::Arc<Unit>,
    host: Host,
    vm: Vm,
    before: HostSnapshot,
}

fn setup(cfg: VmConfig) -> Setup {
    let (mem, unit, mut host) = host();
    add_device(&mut host, 1, 1 << 20);
    let before = HostSnapshot::take(&host);
    let mut vm = Vm::create(&mut host, mem, cfg).unwrap();
    vm.assign_device(&mut host, HOST_DEV, vsid(3)).unwrap();
    Setup { unit, host, vm, before }
}

/// A guest process with a page at VA holding `tag`, bound to the device.
fn bound_process(s: &mut Setup, tag: &[u8]) -> (MmId, Bond) {
    let gdev = s.vm.devices()[0].guest;
    s.vm.run_guest(&mut s.host, |g| {
        let mm = g.create_process()?;
        g.mmap(mm, Some(VA), 0x2000, RW)?;
        g.cpu_write(mm, VA, tag)?;
        Ok::<_, iommu_os::Errno>((mm, g.sva_bind(gdev, mm)?))
    })
    .unwrap()
}

/// The host device's last-in-group page request for the page after VA at
/// host PASID `h`.
fn host_request(h: Pasid, prgi: u16) -> PageRequest {
    PageRequest {
        rid: host_sid(),
        pasid: Some(h),
        addr: Iova::new(VA + 0x1000),
        read: true,
        write: true,
        exec: false,
        privileged: false,
        lpig: true,
        prgi,
        private: [0, 0],
    }
}

/// A page request from the host device for host PASID `h`, delivered by
/// the host into the VM's fault queue and forwarded into the guest's PRQ,
/// where the guest leaves it unanswered.
fn fault_left_with_the_guest(s: &mut Setup, h: Pasid, prgi: u16) {
    s.unit.page_request(&host_request(h, prgi));
    s.host.service_page_requests().unwrap();
    assert_eq!(s.vm.forward_faults(&mut s.host), 1);
}

#[test]
fn guest_crash_with_a_fault_in_the_guest_queue_answers_it_invalid_and_leaves_the_host_clean() {
    let mut s = setup(VmConfig::default());
    let (_, bond) = bound_process(&mut s, b"x");
    let h = s.vm.host_pasid(0, bond.pasid).unwrap();
    fault_left_with_the_guest(&mut s, h, 7);
    assert_eq!(s.host.iopf().pending(HOST_DEV).count(), 1);
    let Setup { unit, mut host, vm, before } = s;
    vm.destroy(&mut host);
    assert_eq!(HostSnapshot::take(&host).leaks_since(&before), Vec::<String>::new());
    let answered: Vec<_> = unit.take_responses(host_sid()).into_iter().map(|r| (r.prgi, r.code)).collect();
    assert_eq!(answered, vec![(7, HwCode::InvalidRequest)]);
}

#[test]
fn guest_unbind_then_destroy_leaves_the_host_clean() {
    let mut s = setup(VmConfig::default());
    let (_, bond) = bound_process(&mut s, b"x");
    s.vm.run_guest(&mut s.host, |g| g.sva_unbind(&bond));
    assert!(s.vm.bindings().is_empty());
    let Setup { mut host, vm, before, .. } = s;
    vm.destroy(&mut host);
    assert_eq!(HostSnapshot::take(&host).leaks_since(&before), Vec::<String>::new());
}

#[test]
fn host_pasid_revoked_before_unbind_blocks_dma_and_the_later_guest_unbind_is_harmless() {
    let mut s = setup(VmConfig { pasid_mode: PasidMode::Translated, ..VmConfig::default() });
    let (_, bond) = bound_process(&mut s, b"revoked!");
    let h = s.vm.host_pasid(0, bond.pasid).unwrap();
    s.vm.revoke_pasid(&mut s.host, 0, bond.pasid).unwrap();
    assert!(!s.host.global_pasids().is_allocated(h), "the host PASID went back to the allocator");
    assert!(!s.host.iommu().attached_pasids(HOST_DEV).contains(&h));
    let mut buf = [0u8; 8];
    assert!(s.unit.dma_read(host_sid(), Some(h), Iova::new(VA), &mut buf).is_err());
    // A full resynchronisation does not bring it back.
    s.vm.resync_all(&mut s.host);
    assert!(s.vm.host_pasid(0, bond.pasid).is_none());
    s.vm.run_guest(&mut s.host, |g| g.sva_unbind(&bond));
    let Setup { mut host, vm, before, .. } = s;
    vm.destroy(&mut host);
    assert_eq!(HostSnapshot::take(&host).leaks_since(&before), Vec::<String>::new());
}

#[test]
fn unplugged_device_can_be_removed_from_the_host_while_the_guest_still_holds_its_bond() {
    let mut s = setup(VmConfig::default());
    let (_, bond) = bound_process(&mut s, b"x");
    let h = s.vm.host_pasid(0, bond.pasid).unwrap();
    s.vm.unplug(&mut s.host, 0).unwrap();
    assert!(s.host.iommu().attached_pasids(HOST_DEV).is_empty());
    s.host.remove_device(HOST_DEV).unwrap();
    let mut buf = [0u8; 8];
    assert!(s.unit.dma_read(host_sid(), Some(h), Iova::new(VA), &mut buf).is_err());
    let Setup { mut host, vm, before, .. } = s;
    vm.destroy(&mut host);
    let after = HostSnapshot::take(&host);
    // The device itself is gone on purpose; nothing else may remain.
    let before = HostSnapshot { attached: vec![], fault_groups: vec![], ..before };
    assert_eq!(after.leaks_since(&before), Vec::<String>::new());
}

#[test]
fn guest_beyond_its_pasid_bound_is_refused_with_enospc_and_its_dma_faults() {
    let mut s = setup(VmConfig { max_pasids: 1, ..VmConfig::default() });
    let (_, first) = bound_process(&mut s, b"first");
    let (_, second) = bound_process(&mut s, b"second");
    assert_eq!(s.vm.bindings().len(), 1);
    assert!(s.vm.events().any(|e| matches!(e, VmmEvent::Refused { errno: iommu_os::Errno::NoSpc, .. })));
    assert!(s.vm.dma_read(&mut s.host, &s.unit, 0, Some(first.pasid), VA, 5).is_ok());
    assert!(s.vm.dma_read(&mut s.host, &s.unit, 0, Some(second.pasid), VA, 6).is_err());
}

#[test]
fn fault_groups_beyond_the_vm_bound_are_answered_invalid_by_the_vmm() {
    let mut s = setup(VmConfig { max_fault_groups: 1, ..VmConfig::default() });
    let (_, bond) = bound_process(&mut s, b"x");
    let h = s.vm.host_pasid(0, bond.pasid).unwrap();
    fault_left_with_the_guest(&mut s, h, 1);
    s.unit.page_request(&host_request(h, 2));
    s.host.service_page_requests().unwrap();
    assert_eq!(s.vm.forward_faults(&mut s.host), 0);
    let answered: Vec<_> = s.unit.take_responses(host_sid()).into_iter().map(|r| (r.prgi, r.code)).collect();
    assert_eq!(answered, vec![(2, HwCode::InvalidRequest)]);
}

#[test]
fn stage2_fault_on_a_pass_through_pasid_is_answered_by_the_host_not_the_guest() {
    let mut s = setup(VmConfig::default());
    let gdev = s.vm.devices()[0].guest;
    let p = Pasid::new(9);
    s.vm.run_guest(&mut s.host, |g| {
        let id = g.iommu().identity_domain();
        g.iommu_mut().attach_dev_pasid(id, gdev, p, None)
    })
    .unwrap();
    assert_eq!(s.vm.bindings(), vec![(0, p, p, false)]);
    // Guest RAM is reachable with guest-physical addresses...
    s.vm.run_guest(&mut s.host, |g| g.iommu().mem().write(iommu_types::Hpa::new(0x20_0000), b"gpa").map_err(|_| ()))
        .unwrap();
    assert_eq!(s.vm.dma_read(&mut s.host, &s.unit, 0, Some(p), 0x20_0000, 3).unwrap(), b"gpa");
    // ...and beyond it nothing: the host answers, the guest never sees it.
    let beyond = s.vm.ram().size() + 0x1000;
    assert!(s.vm.dma_read(&mut s.host, &s.unit, 0, Some(p), beyond, 4).is_err());
    assert_eq!(s.vm.viommu().stats.page_requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Spec 65/67 and issue 4 item 3: the same guest bind through the
/// seed-era `bind_gpasid` produces the same host PASID entry (first stage =
/// the guest table, second stage = the VM's stage 2) as through iommufd,
/// and the same DMA results.
#[test]
fn bind_gpasid_and_iommufd_produce_the_same_host_pasid_entry() {
    let mut entries = Vec::new();
    for api in [HostApi::Iommufd, HostApi::BindGpasid] {
        let mut s = setup(VmConfig { pasid_mode: PasidMode::Translated, host_api: api, ..VmConfig::default() });
        let (_, bond) = bound_process(&mut s, b"same-bytes");
        let h = s.vm.host_pasid(0, bond.pasid).unwrap();
        let e = GuestTables { unit: &*s.unit }.raw_entry(host_sid(), h).expect("host entry present");
        let got = s.vm.dma_read(&mut s.host, &s.unit, 0, Some(bond.pasid), VA, 10).unwrap();
        assert_eq!(got, b"same-bytes", "{api:?}");
        s.vm.run_guest(&mut s.host, |g| g.sva_unbind(&bond));
        assert!(GuestTables { unit: &*s.unit }.raw_entry(host_sid(), h).is_none(), "{api:?}: unbind tore it down");
        entries.push((h, e.config, e.fpd, e.pgsnp));
        let Setup { mut host, vm, before, .. } = s;
        vm.destroy(&mut host);
        assert_eq!(HostSnapshot::take(&host).leaks_since(&before), Vec::<String>::new(), "{api:?}");
    }
    assert_eq!(entries[0], entries[1]);
    assert!(matches!(entries[0].1, iommu_format::vtd::pasid::PasidConfig::Nested(..)));
}
