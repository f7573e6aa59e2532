//! SVA bind / unbind through the kernel on the VT-d model (semantics §5.1
//! specs 1–11, §5.9 spec 58 at the kernel level, §5.11 specs 70–71), and the
//! end-to-end flows of issue 3: SVA DMA into a process, a page fault
//! resolved through a page request, `munmap` then a DMA that must fault,
//! exit while bound.

mod common;

use common::*;
use iommu_format::vtd::inv_desc::{InvDescriptor, ResponseCode as HwCode};
use iommu_format::vtd::pasid::PasidEntry;
use iommu_hw::vtd::{Endpoint, EndpointDma};
use iommu_os::driver::vtd::HwAction;
use iommu_os::frames::FrameAllocator;
use iommu_os::iommu::{GroupId, HandleKind, HandleType};
use iommu_os::iopf::ResponseCode;
use iommu_os::pasid::LocalPolicy;
use iommu_os::pgtable::PtFormat;
use iommu_os::Errno;
use iommu_types::{Iova, Pasid, Perm, RegisterBus, SourceId};

const RW: Perm = Perm { read: true, write: true, exec: false };
const RO: Perm = Perm { read: true, write: false, exec: false };
const VA: u64 = 0x4000_0000;

/// A device DMA that takes page faults the way an ATS/PRI endpoint does:
/// translate, on no-access send a page request, let the kernel service it,
/// retry once after SUCCESS.
fn dev_write(unit: &Unit, os: &mut Os, ep: &mut Endpoint, pasid: Pasid, addr: u64, data: &[u8]) -> Result<(), HwCode> {
    match ep.write(unit, Some(pasid), Iova::new(addr), data) {
        EndpointDma::Done(_) => return Ok(()),
        EndpointDma::PageRequested(prgi) => {
            os.service_page_requests().unwrap();
            match ep.response(unit, prgi) {
                Some(HwCode::Success) => {}
                Some(code) => return Err(code),
                None => panic!("no response"),
            }
        }
        other => panic!("dma: {other:?}"),
    }
    match ep.write(unit, Some(pasid), Iova::new(addr), data) {
        EndpointDma::Done(_) => Ok(()),
        other => panic!("retry: {other:?}"),
    }
}

fn bound(n: u8) -> (std::sync::Arc<Unit>, Os, iommu_os::iommu::MmId, iommu_os::kernel::Bond) {
    let (unit, mut os) = kernel();
    os.add_device(sva_dev(n), GroupId(n as u32)).unwrap();
    let mm = os.create_process().unwrap();
    os.mmap(mm, Some(VA), 0x10_000, RW).unwrap();
    let bond = os.sva_bind(sva_dev(n).id, mm).unwrap();
    (unit, os, mm, bond)
}

#[test]
fn spec01_bind_of_an_unknown_device_is_enodev_and_allocates_no_pasid() {
    let (_u, mut os) = kernel();
    let mm = os.create_process().unwrap();
    assert_eq!(os.sva_bind(sva_dev(9).id, mm), Err(Errno::NoDev));
    assert_eq!(os.mm_pasids(mm).unwrap().global(), None);
    assert_eq!(os.global_pasids().in_use(), 0);
}

#[test]
fn spec02_first_bind_allocates_a_pasid_below_max_pasids() {
    let (_u, os, mm, bond) = bound(1);
    assert!(bond.pasid.raw() >= 1 && bond.pasid.raw() < 1 << 20);
    assert_eq!(os.mm_pasids(mm).unwrap().global(), Some(bond.pasid));
}

#[test]
fn spec03_second_bind_returns_the_same_bond_and_needs_two_unbinds() {
    let (_u, mut os, mm, bond) = bound(1);
    let again = os.sva_bind(sva_dev(1).id, mm).unwrap();
    assert_eq!(again, bond);
    assert_eq!(os.bond_users(&bond), 2);
    os.sva_unbind(&bond);
    let e = os.iommu().driver().pasid_entry(os.iommu().mem(), sva_dev(1).sid, bond.pasid).unwrap();
    assert!(e.present());
    os.sva_unbind(&again);
    let e = os.iommu().driver().pasid_entry(os.iommu().mem(), sva_dev(1).sid, bond.pasid);
    assert!(e.is_none_or(|e| !e.present()));
}

#[test]
fn spec04_two_devices_share_one_sva_domain_until_both_unbind() {
    let (_u, mut os, mm, b1) = bound(1);
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let b2 = os.sva_bind(sva_dev(2).id, mm).unwrap();
    let doms = os.sva_domains(mm);
    assert_eq!(doms.len(), 1);
    assert_eq!(doms[0].1, 2);
    os.sva_unbind(&b1);
    assert_eq!(os.sva_domains(mm), vec![(doms[0].0, 1)]);
    os.sva_unbind(&b2);
    assert!(os.sva_domains(mm).is_empty());
    assert_eq!(os.iommu().domain_count(), 0);
}

#[test]
fn spec06_existing_pasid_beyond_a_devices_max_pasids_is_eoverflow() {
    let (_u, mut os) = kernel();
    // Take PASIDs 1..=3 so the mm gets PASID 4.
    for _ in 0..3 {
        os.global_pasids_mut().alloc(1 << 20).unwrap();
    }
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    os.add_device(pci(2, 4, true, true), GroupId(2)).unwrap();
    let mm = os.create_process().unwrap();
    let b = os.sva_bind(sva_dev(1).id, mm).unwrap();
    assert_eq!(b.pasid, Pasid::new(4));
    assert_eq!(os.sva_bind(pci(2, 4, true, true).id, mm), Err(Errno::Overflow));
    assert_eq!(os.iommu().pasid_domain(pci(2, 4, true, true).id, Pasid::new(4)), None);
}

#[test]
fn spec07_device_without_pasids_is_enospc() {
    let (_u, mut os) = kernel();
    os.add_device(pci(1, 0, true, true), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    assert_eq!(os.sva_bind(pci(1, 0, true, true).id, mm), Err(Errno::NoSpc));
}

#[test]
fn spec08_pasid_slot_used_by_a_non_sva_attach_is_ebusy() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    // The mm will get PASID 1; a user attach takes that slot first.
    let d = os.iommu_mut().alloc_paging(PtFormat::FirstStage { levels: 4 }, false).unwrap();
    os.iommu_mut().attach_dev_pasid(d, sva_dev(1).id, Pasid::new(1), Some(HandleKind::User(7))).unwrap();
    assert_eq!(os.sva_bind(sva_dev(1).id, mm), Err(Errno::Busy));
    assert_eq!(os.iommu().attach_handle_get(sva_dev(1).id, Pasid::new(1), HandleType::Any).unwrap().domain, d);
}

#[test]
fn spec09_pasid_outlives_unbind_and_is_freed_at_mm_drop() {
    let (_u, mut os, mm, bond) = bound(1);
    os.sva_unbind(&bond);
    assert_eq!(os.mm_pasids(mm).unwrap().global(), Some(bond.pasid));
    assert!(os.global_pasids().is_allocated(bond.pasid));
    let again = os.sva_bind(sva_dev(1).id, mm).unwrap();
    assert_eq!(again.pasid, bond.pasid);
    os.sva_unbind(&again);
    os.exit(mm).unwrap();
    assert!(!os.global_pasids().is_allocated(bond.pasid));
    assert!(!os.mm_exists(mm));
}

#[test]
fn spec10_exit_while_bound_blocks_silently_and_unbind_drains_later() {
    let (unit, mut os, mm, bond) = bound(1);
    os.iommu_mut().driver_mut().take_log();
    os.exit(mm).unwrap();
    let sid = sva_dev(1).sid;
    let e = os.iommu().driver().pasid_entry(os.iommu().mem(), sid, bond.pasid).unwrap();
    assert!(!e.present());
    assert_eq!(e.get(PasidEntry::FPD), 1);
    let log = os.iommu_mut().driver_mut().take_log();
    assert!(log.contains(&HwAction::PasidEntryFaultIgnore { sid, pasid: bond.pasid }));
    assert!(!log
        .iter()
        .any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. }))));
    // The bond is still valid; the PASID is still the mm's.
    assert_eq!(os.bond_users(&bond), 1);
    assert!(os.global_pasids().is_allocated(bond.pasid));
    // DMA is blocked without a fault record.
    let mut ep = Endpoint::new(sid);
    assert!(!matches!(ep.write(&unit, Some(bond.pasid), Iova::new(VA), &[1]), EndpointDma::Done(_)));
    let fsts = unit.read(iommu_format::vtd::regs::offset::FSTS, iommu_types::Width::W32).unwrap();
    assert_eq!(fsts & iommu_format::vtd::regs::fsts::PPF as u64, 0, "a fault was recorded");
    os.sva_unbind(&bond);
    let log = os.iommu_mut().driver_mut().take_log();
    assert!(log
        .iter()
        .any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. }))));
    assert!(!os.global_pasids().is_allocated(bond.pasid));
}

#[test]
fn spec10_page_request_after_exit_is_answered_invalid() {
    let (unit, mut os, mm, bond) = bound(1);
    os.exit(mm).unwrap();
    let req = iommu_format::vtd::page_req::PageRequest {
        rid: sva_dev(1).sid,
        pasid: Some(bond.pasid),
        addr: Iova::new(VA),
        read: true,
        write: false,
        exec: false,
        privileged: false,
        lpig: true,
        prgi: 3,
        private: [0, 0],
    };
    // FPD does not stop page requests (they are not translation faults).
    let _ = unit.page_request(&req);
    let out = os.service_page_requests().unwrap();
    assert!(out.iter().all(|o| o.code == ResponseCode::Invalid));
    let ep = Endpoint::new(sva_dev(1).sid);
    assert_eq!(ep.response(&unit, 3), Some(HwCode::InvalidRequest));
}

#[test]
fn spec11_write_fault_on_a_read_only_vma_is_answered_invalid() {
    let (unit, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    os.mmap(mm, Some(VA), 0x1000, RO).unwrap();
    let bond = os.sva_bind(sva_dev(1).id, mm).unwrap();
    let mut ep = Endpoint::new(sva_dev(1).sid);
    assert_eq!(dev_write(&unit, &mut os, &mut ep, bond.pasid, VA, &[1]), Err(HwCode::InvalidRequest));
}

#[test]
fn e2e_sva_dma_reaches_the_process_memory_through_a_page_fault() {
    let (unit, mut os, mm, bond) = bound(1);
    let mut ep = Endpoint::new(sva_dev(1).sid);
    // The page is not populated: the first DMA page-faults, the kernel
    // resolves it, the retry lands.
    dev_write(&unit, &mut os, &mut ep, bond.pasid, VA + 0x10, b"hello").unwrap();
    let mut buf = [0u8; 5];
    os.cpu_read(mm, VA + 0x10, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}

#[test]
fn e2e_dma_to_a_populated_page_needs_no_page_request() {
    let (unit, mut os, mm, bond) = bound(1);
    os.cpu_write(mm, VA, b"cpu").unwrap();
    let mut ep = Endpoint::new(sva_dev(1).sid);
    let mut buf = [0u8; 3];
    assert!(matches!(ep.read(&unit, Some(bond.pasid), Iova::new(VA), &mut buf), EndpointDma::Done(_)));
    assert_eq!(&buf, b"cpu");
}

#[test]
fn e2e_munmap_then_dma_faults_with_no_stale_translation() {
    let (unit, mut os, mm, bond) = bound(1);
    let mut ep = Endpoint::new(sva_dev(1).sid);
    dev_write(&unit, &mut os, &mut ep, bond.pasid, VA, b"x").unwrap();
    // Both the IOTLB and the device TLB now hold the page.
    assert!(unit
        .device_tlb_lookup(sva_dev(1).sid, Some(bond.pasid), Iova::new(VA), iommu_types::Access::WRITE)
        .is_some());
    os.munmap(mm, VA, 0x1000).unwrap();
    assert!(unit
        .device_tlb_lookup(sva_dev(1).sid, Some(bond.pasid), Iova::new(VA), iommu_types::Access::WRITE)
        .is_none());
    // The retry after munmap must fault: the page request is refused by
    // the mm (no VMA) and answered INVALID.
    assert_eq!(dev_write(&unit, &mut os, &mut ep, bond.pasid, VA, b"y"), Err(HwCode::InvalidRequest));
}

#[test]
fn e2e_munmap_invalidates_every_bound_device() {
    let (unit, mut os, mm, b1) = bound(1);
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let b2 = os.sva_bind(sva_dev(2).id, mm).unwrap();
    let (mut e1, mut e2) = (Endpoint::new(sva_dev(1).sid), Endpoint::new(sva_dev(2).sid));
    dev_write(&unit, &mut os, &mut e1, b1.pasid, VA, b"1").unwrap();
    dev_write(&unit, &mut os, &mut e2, b2.pasid, VA, b"2").unwrap();
    os.munmap(mm, VA, 0x1000).unwrap();
    for (sid, p) in [(sva_dev(1).sid, b1.pasid), (sva_dev(2).sid, b2.pasid)] {
        assert!(unit.device_tlb_lookup(sid, Some(p), Iova::new(VA), iommu_types::Access::WRITE).is_none());
    }
}

#[test]
fn spec70_bind_device_pasid_on_an_mm_with_a_global_pasid_is_ebusy() {
    let (_u, mut os, mm, _bond) = bound(1);
    os.add_device(pci(2, 4, true, true), GroupId(2)).unwrap();
    assert_eq!(os.sva_bind_device_pasid(pci(2, 4, true, true).id, mm, Pasid::new(1)), Err(Errno::Busy));
}

#[test]
fn spec70_global_bind_on_an_mm_in_device_local_mode_is_ebusy() {
    let (_u, mut os) = kernel();
    os.add_device(pci(1, 4, true, true), GroupId(1)).unwrap();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let mm = os.create_process().unwrap();
    os.sva_bind_device_pasid(pci(1, 4, true, true).id, mm, Pasid::new(2)).unwrap();
    assert_eq!(os.sva_bind(sva_dev(2).id, mm), Err(Errno::Busy));
}

#[test]
fn spec70_second_local_pasid_is_enospc_under_v2_and_allowed_under_v3() {
    for (policy, want) in [(LocalPolicy::V2, Err(Errno::NoSpc)), (LocalPolicy::V3, Ok(()))] {
        let (_u, mut os) = kernel_with(iommu_hw::vtd::VtdConfig::full_featured(), policy);
        os.add_device(pci(1, 4, true, true), GroupId(1)).unwrap();
        os.add_device(pci(2, 4, true, true), GroupId(2)).unwrap();
        let mm = os.create_process().unwrap();
        os.sva_bind_device_pasid(pci(1, 4, true, true).id, mm, Pasid::new(2)).unwrap();
        let r = os.sva_bind_device_pasid(pci(2, 4, true, true).id, mm, Pasid::new(3)).map(|_| ());
        assert_eq!(r, want, "{policy:?}");
    }
}

#[test]
fn spec70_local_pasid_beyond_max_pasids_is_eoverflow() {
    let (_u, mut os) = kernel();
    os.add_device(pci(1, 4, true, true), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    assert_eq!(os.sva_bind_device_pasid(pci(1, 4, true, true).id, mm, Pasid::new(4)), Err(Errno::Overflow));
}

#[test]
fn spec70_same_local_bind_twice_is_one_bond_with_two_users() {
    let (_u, mut os) = kernel();
    os.add_device(pci(1, 4, true, true), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    let a = os.sva_bind_device_pasid(pci(1, 4, true, true).id, mm, Pasid::new(2)).unwrap();
    let b = os.sva_bind_device_pasid(pci(1, 4, true, true).id, mm, Pasid::new(2)).unwrap();
    assert_eq!(a, b);
    assert_eq!(os.bond_users(&a), 2);
}

#[test]
fn spec71_enqcmd_loads_only_a_global_pasid() {
    let (_u, mut os, mm, bond) = bound(1);
    assert_eq!(os.enqcmd(mm, 0), Ok(bond.pasid));
    let (_u, mut os) = kernel();
    os.add_device(pci(1, 4, true, true), GroupId(1)).unwrap();
    let local = os.create_process().unwrap();
    os.sva_bind_device_pasid(pci(1, 4, true, true).id, local, Pasid::new(2)).unwrap();
    assert_eq!(os.enqcmd(local, 0), Err(Errno::Fault));
}

#[test]
fn seed002_three_pasid_device_fails_globally_once_1_to_3_are_taken_and_binds_locally() {
    let (unit, mut os) = kernel();
    let small = pci(1, 4, true, true); // PASIDs 1..=3 usable
    os.add_device(small, GroupId(1)).unwrap();
    for n in 2..=4 {
        os.add_device(sva_dev(n), GroupId(n as u32)).unwrap();
        let other = os.create_process().unwrap();
        os.sva_bind(sva_dev(n).id, other).unwrap();
    }
    let mm = os.create_process().unwrap();
    os.mmap(mm, Some(VA), 0x1000, RW).unwrap();
    assert_eq!(os.sva_bind(small.id, mm), Err(Errno::NoSpc));
    // The global PASID the failed bind allocated stays with mm (L4), so
    // mm is now in global mode; a fresh process binds device-locally.
    let mm2 = os.create_process().unwrap();
    os.mmap(mm2, Some(VA), 0x1000, RW).unwrap();
    let bond = os.sva_bind_device_pasid(small.id, mm2, Pasid::new(1)).unwrap();
    let mut ep = Endpoint::new(small.sid);
    dev_write(&unit, &mut os, &mut ep, bond.pasid, VA, b"local").unwrap();
    let mut buf = [0u8; 5];
    os.cpu_read(mm2, VA, &mut buf).unwrap();
    assert_eq!(&buf, b"local");
    let _ = SourceId::new(0);
}

#[test]
fn spec12_bind_of_an_mm_with_lam_is_ebusy() {
    let (_u, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let mm = os.create_process().unwrap();
    os.enable_lam(mm).unwrap();
    assert_eq!(os.sva_bind(sva_dev(1).id, mm), Err(Errno::Busy));
}

#[test]
fn enqcmd_fixup_loads_each_thread_once() {
    let (_u, mut os, mm, bond) = bound(1);
    let t = os.spawn_thread(mm).unwrap();
    assert_eq!(os.ia32_pasid(mm, t).unwrap().0, 0);
    assert_eq!(os.enqcmd(mm, t), Ok(bond.pasid));
    assert_eq!(os.ia32_pasid(mm, t).unwrap().0, (1 << 31) | bond.pasid.raw() as u64);
    assert_eq!(os.ia32_pasid(mm, 0).unwrap().0, 0);
}

#[test]
fn device_removal_with_a_bond_is_ebusy_and_after_unbind_frees_its_structures() {
    let (_u, mut os, _mm, bond) = bound(1);
    assert_eq!(os.remove_device(sva_dev(1).id), Err(Errno::Busy));
    os.sva_unbind(&bond);
    let before = os.iommu().frames().in_use();
    os.remove_device(sva_dev(1).id).unwrap();
    assert!(os.iommu().frames().in_use() < before);
    assert_eq!(os.iommu().device(sva_dev(1).id), Err(Errno::NoDev));
}

#[test]
fn device_removal_answers_its_pending_page_requests_invalid() {
    let (unit, mut os) = kernel();
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    // A partial request is kept; removal drops it without a response, and
    // the device is gone from the IOPF queue.
    let req = iommu_format::vtd::page_req::PageRequest {
        rid: sva_dev(1).sid,
        pasid: Some(Pasid::new(1)),
        addr: Iova::new(VA),
        read: true,
        write: false,
        exec: false,
        privileged: false,
        lpig: false,
        prgi: 1,
        private: [0, 0],
    };
    let _ = unit.page_request(&req);
    os.service_page_requests().unwrap();
    assert_eq!(os.iopf().partial_count(sva_dev(1).id), 1);
    os.remove_device(sva_dev(1).id).unwrap();
    assert!(!os.iopf().contains(sva_dev(1).id));
}

mod picky {
    //! The VT-d driver wrapped with two rules other drivers have: finding a
    //! device incompatible with the first SVA domain it is offered (spec 5:
    //! EINVAL, the soft error that makes the SVA layer allocate a new
    //! domain), and, when `strict`, SMMUv3's rule that PASIDs cannot live
    //! under a second-stage-only RID domain (L10, spec 61's shape).
    use super::common::Drv;
    use iommu_os::driver::{DeviceInfo, DomainConfig, DomainDesc, DomainRef, FaultBatch, FlushTarget, IommuDriver};
    use iommu_os::frames::FrameAllocator;
    use iommu_os::iopf::Response;
    use iommu_os::pasid::DeviceId;
    use iommu_os::Errno;
    use iommu_types::{Pasid, PhysMem, SourceId};

    #[derive(Debug)]
    pub struct Picky {
        pub inner: Drv,
        pub refuses: Option<SourceId>,
        pub first_sva: Option<DomainRef>,
        pub strict: bool,
    }

    impl IommuDriver for Picky {
        fn name(&self) -> &'static str {
            "picky"
        }
        fn check_rid_with_pasids(&self, rid: &DomainDesc, attaching_rid: bool) -> Result<(), Errno> {
            match (self.strict, rid.config, attaching_rid) {
                (true, DomainConfig::SecondStage { .. }, false) => Err(Errno::Inval),
                (true, DomainConfig::SecondStage { .. }, true) => Err(Errno::Busy),
                _ => Ok(()),
            }
        }
        fn probe_device(&mut self, m: &dyn PhysMem, f: &mut dyn FrameAllocator, d: &DeviceInfo) -> Result<(), Errno> {
            self.inner.probe_device(m, f, d)
        }
        fn release_device(&mut self, m: &dyn PhysMem, f: &mut dyn FrameAllocator, d: &DeviceInfo) {
            self.inner.release_device(m, f, d)
        }
        fn set_dev_pasid(
            &mut self,
            m: &dyn PhysMem,
            f: &mut dyn FrameAllocator,
            d: &DeviceInfo,
            p: Pasid,
            new: &DomainDesc,
            old: Option<&DomainDesc>,
        ) -> Result<(), Errno> {
            if new.sva {
                let first = *self.first_sva.get_or_insert(new.id);
                if Some(d.sid) == self.refuses && first == new.id {
                    return Err(Errno::Inval);
                }
            }
            self.inner.set_dev_pasid(m, f, d, p, new, old)
        }
        fn remove_dev_pasid(
            &mut self,
            m: &dyn PhysMem,
            f: &mut dyn FrameAllocator,
            d: &DeviceInfo,
            p: Pasid,
            fi: bool,
        ) {
            self.inner.remove_dev_pasid(m, f, d, p, fi)
        }
        fn flush_range(
            &mut self,
            m: &dyn PhysMem,
            d: &DomainDesc,
            t: &[FlushTarget],
            s: u64,
            e: u64,
            l: bool,
        ) -> Result<(), Errno> {
            self.inner.flush_range(m, d, t, s, e, l)
        }
        fn caches_not_present(&self) -> bool {
            self.inner.caches_not_present()
        }
        fn domain_freed(&mut self, d: DomainRef) {
            self.inner.domain_freed(d)
        }
        fn take_faults(
            &mut self,
            m: &dyn PhysMem,
            l: &dyn Fn(SourceId) -> Option<DeviceId>,
        ) -> Result<FaultBatch, Errno> {
            self.inner.take_faults(m, l)
        }
        fn clear_fault_overflow(&mut self) -> Result<(), Errno> {
            self.inner.clear_fault_overflow()
        }
        fn send_page_response(&mut self, m: &dyn PhysMem, d: &DeviceInfo, r: &Response) -> Result<(), Errno> {
            self.inner.send_page_response(m, d, r)
        }
    }
}

#[test]
fn spec05_device_incompatible_with_the_mms_sva_domain_gets_a_new_one() {
    let (_u, core) = core();
    let (instance, driver, mem, frames) = core.into_parts();
    let picky = picky::Picky { inner: driver, refuses: Some(sva_dev(2).sid), first_sva: None, strict: false };
    let mut os =
        iommu_os::kernel::Kernel::new(iommu_os::iommu::Iommu::new(instance, picky, mem, frames), LocalPolicy::V2);
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let mm = os.create_process().unwrap();
    os.sva_bind(sva_dev(1).id, mm).unwrap();
    os.sva_bind(sva_dev(2).id, mm).unwrap();
    let doms = os.sva_domains(mm);
    assert_eq!(doms.len(), 2);
    assert!(doms.iter().all(|(_, users)| *users == 1));
}

#[test]
fn l10_pasid_attach_under_an_incompatible_rid_domain_is_einval_and_the_reverse_ebusy() {
    let (_u, core) = core();
    let (instance, driver, mem, frames) = core.into_parts();
    let strict = picky::Picky { inner: driver, refuses: None, first_sva: None, strict: true };
    let mut core = iommu_os::iommu::Iommu::new(instance, strict, mem, frames);
    core.add_device(sva_dev(1), GroupId(1)).unwrap();
    let dev = sva_dev(1).id;
    let s2 = core.alloc_paging(PtFormat::SecondStage { levels: 4 }, false).unwrap();
    let fs = core.alloc_paging(PtFormat::FirstStage { levels: 4 }, false).unwrap();
    core.attach_rid(s2, dev).unwrap();
    assert_eq!(core.attach_dev_pasid(fs, dev, Pasid::new(1), None), Err(Errno::Inval));
    core.detach_rid(dev).unwrap();
    core.attach_dev_pasid(fs, dev, Pasid::new(1), None).unwrap();
    assert_eq!(core.attach_rid(s2, dev), Err(Errno::Busy));
    assert_eq!(core.rid_domain(dev), Ok(core.identity_domain()));
}
