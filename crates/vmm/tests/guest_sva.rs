//! Guest SVA end to end (issue 4's acceptance): two guest processes bound
//! to one assigned device with different PASIDs; DMA through nested
//! translation lands in the right guest pages; a guest page fault is
//! resolved through the guest's page request queue; a guest `munmap` plus
//! the guest's invalidation leaves no DMA able to reach the old page; VM
//! destroy with live bindings leaves the host clean.

mod common;

use common::*;
use iommu_format::vtd::inv_desc::ResponseCode as HwCode;
use iommu_os::iommu::MmId;
use iommu_os::kernel::Bond;
use iommu_types::{Access, Iova, Perm, SourceId};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::{DmaFailure, PasidMode, Vm, VmConfig, VmError, VmmEvent};

const RW: Perm = Perm { read: true, write: true, exec: false };
const VA: u64 = 0x4000_0000;

struct Setup {
    unit: std::sync::Arc<Unit>,
    host: Host,
    vm: Vm,
    before: HostSnapshot,
    procs: [MmId; 2],
    bonds: [Bond; 2],
}

/// A VM with one assigned device and two guest processes, each with a
/// page at VA holding its own bytes, each bound to the device.
fn setup(mode: PasidMode) -> Setup {
    let (mem, unit, mut host) = host();
    let hd = add_device(&mut host, 1, 1 << 20);
    let before = HostSnapshot::take(&host);
    let mut vm = Vm::create(&mut host, mem, VmConfig { pasid_mode: mode, ..VmConfig::default() }).unwrap();
    let dev = vm.assign_device(&mut host, hd, vsid(3)).unwrap();
    let gdev = vm.devices()[dev].guest;
    let mut procs = [MmId(0); 2];
    let mut bonds = Vec::new();
    for (i, tag) in [b"process-one!", b"process-two!"].iter().enumerate() {
        let (mm, bond) = vm
            .run_guest(&mut host, |g| {
                let mm = g.create_process()?;
                g.mmap(mm, Some(VA), 0x1000, RW)?;
                g.cpu_write(mm, VA, *tag)?;
                Ok::<_, iommu_os::Errno>((mm, g.sva_bind(gdev, mm)?))
            })
            .unwrap();
        procs[i] = mm;
        bonds.push(bond);
    }
    Setup { unit, host, vm, before, procs, bonds: [bonds[0], bonds[1]] }
}

fn guest_read(s: &mut Setup, mm: MmId, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    s.vm.run_guest(&mut s.host, |g| g.cpu_read(mm, addr, &mut buf)).unwrap();
    buf
}

#[test]
fn two_guest_processes_get_distinct_pasids_with_nested_host_attachments() {
    let s = setup(PasidMode::Identity);
    assert_ne!(s.bonds[0].pasid, s.bonds[1].pasid);
    let b = s.vm.bindings();
    assert_eq!(b.len(), 2);
    for (i, bond) in s.bonds.iter().enumerate() {
        let (_, g, h, nested) = b.iter().find(|x| x.1 == bond.pasid).copied().unwrap();
        assert_eq!((g, h, nested), (bond.pasid, bond.pasid, true), "binding {i}: identity mode, nested");
        assert!(s.host.iommu().attached_pasids(iommu_os::pasid::DeviceId(1)).contains(&h));
    }
}

#[test]
fn dma_through_nested_translation_reads_each_process_own_page() {
    let mut s = setup(PasidMode::Identity);
    for (i, tag) in [b"process-one!", b"process-two!"].iter().enumerate() {
        let got = s.vm.dma_read(&mut s.host, &s.unit, 0, Some(s.bonds[i].pasid), VA, 12).unwrap();
        assert_eq!(&got, tag);
    }
}

#[test]
fn dma_write_lands_in_the_bound_process_only() {
    let mut s = setup(PasidMode::Identity);
    s.vm.dma_write(&mut s.host, &s.unit, 0, Some(s.bonds[1].pasid), VA, b"from-device!").unwrap();
    let p1 = s.procs[0];
    let p2 = s.procs[1];
    assert_eq!(guest_read(&mut s, p2, VA, 12), b"from-device!");
    assert_eq!(guest_read(&mut s, p1, VA, 12), b"process-one!");
}

#[test]
fn guest_page_fault_is_resolved_through_the_guest_page_request_queue() {
    let mut s = setup(PasidMode::Identity);
    let p1 = s.procs[0];
    let va2 = VA + 0x10_0000;
    s.vm.run_guest(&mut s.host, |g| g.mmap(p1, Some(va2), 0x1000, RW)).unwrap();
    s.vm.dma_write(&mut s.host, &s.unit, 0, Some(s.bonds[0].pasid), va2, b"faulted-in").unwrap();
    assert_eq!(guest_read(&mut s, p1, va2, 10), b"faulted-in");
    let ev: Vec<VmmEvent> = s.vm.events().copied().collect();
    assert!(ev.iter().any(|e| matches!(e, VmmEvent::FaultForwarded { .. })), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, VmmEvent::FaultAnswered { success: true, .. })), "{ev:?}");
    assert_eq!(s.vm.stats.faults_forwarded, 1);
    assert_eq!(s.vm.viommu().stats.page_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn fault_on_a_page_the_guest_never_mapped_is_answered_invalid() {
    let mut s = setup(PasidMode::Identity);
    let r = s.vm.dma_write(&mut s.host, &s.unit, 0, Some(s.bonds[0].pasid), VA + 0x50_0000, b"x");
    assert_eq!(r, Err(VmError::Dma(DmaFailure::Answered(HwCode::InvalidRequest))));
}

#[test]
fn guest_munmap_leaves_no_dma_able_to_reach_the_old_page() {
    let mut s = setup(PasidMode::Identity);
    let p1 = s.procs[0];
    let pasid = s.bonds[0].pasid;
    // The device has the translation cached in its device TLB.
    s.vm.dma_read(&mut s.host, &s.unit, 0, Some(pasid), VA, 4).unwrap();
    let sid = SourceId::from_bdf(0, 1, 0);
    assert!(s.unit.device_tlb_lookup(sid, Some(pasid), Iova::new(VA), Access::READ).is_some());
    s.vm.run_guest(&mut s.host, |g| g.munmap(p1, VA, 0x1000)).unwrap();
    assert!(s.unit.device_tlb_lookup(sid, Some(pasid), Iova::new(VA), Access::READ).is_none());
    let r = s.vm.dma_read(&mut s.host, &s.unit, 0, Some(pasid), VA, 4);
    assert_eq!(r, Err(VmError::Dma(DmaFailure::Answered(HwCode::InvalidRequest))));
    assert!(s.vm.events().any(|e| matches!(e, VmmEvent::Invalidated { .. })));
}

#[test]
fn guest_unbind_removes_the_host_attachment_and_dma_then_fails() {
    let mut s = setup(PasidMode::Identity);
    let b0 = s.bonds[0];
    s.vm.run_guest(&mut s.host, |g| g.sva_unbind(&b0));
    assert_eq!(s.vm.bindings().len(), 1);
    assert!(!s.host.iommu().attached_pasids(iommu_os::pasid::DeviceId(1)).contains(&b0.pasid));
    let r = s.vm.dma_read(&mut s.host, &s.unit, 0, Some(b0.pasid), VA, 4);
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn vm_destroy_with_live_bindings_leaves_the_host_clean() {
    let mut s = setup(PasidMode::Identity);
    s.vm.dma_read(&mut s.host, &s.unit, 0, Some(s.bonds[0].pasid), VA, 4).unwrap();
    let before = s.before.clone();
    let pasid = s.bonds[0].pasid;
    s.vm.destroy(&mut s.host);
    let after = HostSnapshot::take(&s.host);
    assert_eq!(after.leaks_since(&before), Vec::<String>::new());
    let mut buf = [0u8; 4];
    let sid = SourceId::from_bdf(0, 1, 0);
    assert!(s.unit.dma_read(sid, Some(pasid), Iova::new(VA), &mut buf).is_err());
    assert!(s.unit.device_tlb_lookup(sid, Some(pasid), Iova::new(VA), Access::READ).is_none());
}

#[test]
fn translated_mode_binds_host_pasids_from_the_global_space() {
    let mut s = setup(PasidMode::Translated);
    for (i, tag) in [b"process-one!", b"process-two!"].iter().enumerate() {
        let h = s.vm.host_pasid(0, s.bonds[i].pasid).unwrap();
        assert!(s.host.global_pasids().is_allocated(h));
        let got = s.vm.dma_read(&mut s.host, &s.unit, 0, Some(s.bonds[i].pasid), VA, 12).unwrap();
        assert_eq!(&got, tag);
    }
    let before = s.before.clone();
    s.vm.destroy(&mut s.host);
    assert_eq!(HostSnapshot::take(&s.host).leaks_since(&before), Vec::<String>::new());
}
