//! The iommufd-shaped user API on the VT-d model (semantics §1.3, L1–L12,
//! behaviour specs §5.3–§5.7): HWPT allocation, PASID attach / replace /
//! detach, the fault queue, HWPT invalidation, vIOMMU and vdevice. Each
//! test checks the errno, the state the API then reports (attachments,
//! objects, core slots) and, where it has one, the hardware effect: DMA
//! through the unit, PASID entries, page responses the device receives and
//! the driver's descriptor log.
//!
//! Not ported: spec 47 (SMMUv3 vIOMMU command filtering) and spec 51
//! (vEVENTQ) exist only for SMMUv3; spec 42 (a PCI VF with PRI refused on a
//! fault-capable HWPT) needs a VF notion the model's `DeviceInfo` does not
//! have; the "bad cache / vdevice ID" case of spec 44 has no VT-d
//! counterpart (the VT-d invalidation entry names neither).
//!
//! Guest RAM is one memory file mapped in the IOAS at IOVA = its host
//! address, so guest-physical and host-physical addresses coincide and a
//! guest first-stage table can be built in it with the test kit.

mod common;

use std::sync::Arc;

use common::*;
use iommu_format::vtd::inv_desc::{InvDescriptor, PasidIotlbScope, ResponseCode as HwCode};
use iommu_format::vtd::page_req::PageRequest;
use iommu_format::vtd::pasid::{PasidEntry, Pgtt};
use iommu_format::vtd::regs::{Cap, Ecap};
use iommu_hw::vtd::{PageGroupResponse, PrqOutcome, VtdConfig};
use iommu_os::driver::vtd::HwAction;
use iommu_os::driver::DomainRef;
use iommu_os::iommu::{GroupId, HandleType};
use iommu_os::kernel::iommufd::uapi::{
    hwpt_data, hwpt_flags, pgfault_flags, pgfault_perm, vtd_s1_flags, PageResponse, PgFault, VtdS1, VtdS1Invalidate,
    INVALIDATE_DATA_VTD_S1, PAGE_RESP_INVALID, PAGE_RESP_SUCCESS, PGFAULT_LEN, VIOMMU_TYPE_ARM_SMMUV3,
    VIOMMU_TYPE_DEFAULT, VIOMMU_TYPE_INTEL_VTD, VTD_S1_INVALIDATE_LEN, VTD_S1_LEN,
};
use iommu_os::kernel::iommufd::{HwptAlloc, Invalidate, IommufdFd, MapFile, ObjId, Poll};
use iommu_os::pasid::LocalPolicy;
use iommu_os::Errno;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{Hpa, Iova, PageSize, Pasid, Perm, PhysMem};

/// Pages of guest RAM.
const RAM_PAGES: u64 = 64;
/// Guest RAM offset of the first data page (below it: guest page tables).
const DATA_OFF: u64 = 0x1_0000;
/// Where the guest's first stage maps data page 0 (page `i` at `GVA + i * 4 KiB`).
const GVA: u64 = 0x4000_0000;
const PAGE: u64 = 0x1000;
const RW: Perm = Perm { read: true, write: true, exec: false };

/// A VMM: a context with PASID-capable device 1 (group 1) bound, and an
/// IOAS holding guest RAM.
struct Vm {
    unit: Arc<Unit>,
    os: Os,
    fd: IommufdFd,
    idev: ObjId,
    ioas: ObjId,
    /// Host (= guest-physical) address of guest RAM.
    ram: u64,
}

fn vm() -> Vm {
    let (unit, os) = kernel();
    vm_on(unit, os)
}

fn vm_on(unit: Arc<Unit>, mut os: Os) -> Vm {
    os.add_device(sva_dev(1), GroupId(1)).unwrap();
    let fd = os.iommufd_open().unwrap();
    let idev = os.device_bind(fd, sva_dev(1).id).unwrap();
    let ioas = os.ioas_alloc(fd).unwrap();
    let memfd = os.memfd_create(RAM_PAGES).unwrap();
    let ram = os.memfd_range(memfd).unwrap().0.raw();
    let map = MapFile { memfd, offset: 0, iova: Iova::new(ram), len: RAM_PAGES * PAGE, perm: Perm::ALL };
    os.ioas_map_file(fd, ioas, &map).unwrap();
    Vm { unit, os, fd, idev, ioas, ram }
}

/// A kernel whose unit lacks the CAP bits `cap_off` and ECAP bits `ecap_off`.
fn vm_without(cap_off: &[iommu_format::bits::Field], ecap_off: &[iommu_format::bits::Field]) -> Vm {
    let full = VtdConfig::full_featured();
    let cap = cap_off.iter().fold(Cap([full.cap]), |c, f| c.with(*f, 0)).0[0];
    let ecap = ecap_off.iter().fold(Ecap([full.ecap]), |e, f| e.with(*f, 0)).0[0];
    let (unit, os) = kernel_with(VtdConfig { cap, ecap, ..full }, LocalPolicy::V2);
    vm_on(unit, os)
}

fn pasid(p: u32) -> Pasid {
    Pasid::new(p)
}

/// A 48-bit guest first stage rooted at `root`.
fn s1(root: u64) -> VtdS1 {
    VtdS1 { pgtbl_addr: root, addr_width: 48, ..Default::default() }
}

impl Vm {
    fn dev(&self) -> iommu_os::pasid::DeviceId {
        sva_dev(1).id
    }

    fn alloc(&mut self, req: &HwptAlloc<'_>) -> Result<ObjId, Errno> {
        self.os.hwpt_alloc(self.fd, req)
    }

    /// A paging HWPT over the IOAS.
    fn paging(&mut self, flags: u32) -> Result<ObjId, Errno> {
        let req = HwptAlloc { flags, dev_id: self.idev, pt_id: self.ioas, ..Default::default() };
        self.alloc(&req)
    }

    /// A paging HWPT over the IOAS delivering faults to `fault`.
    fn paging_iopf(&mut self, fault: ObjId) -> ObjId {
        let flags = hwpt_flags::FAULT_ID_VALID | hwpt_flags::ALLOC_PASID;
        let req = HwptAlloc { flags, dev_id: self.idev, pt_id: self.ioas, fault_id: fault, ..Default::default() };
        self.alloc(&req).unwrap()
    }

    /// A nested HWPT with stage-1 data `s` over `parent` (a nest-parent HWPT
    /// or a vIOMMU).
    fn nested_with(&mut self, parent: ObjId, flags: u32, fault: ObjId, s: &VtdS1) -> Result<ObjId, Errno> {
        let data = s.to_bytes();
        let req = HwptAlloc {
            flags,
            dev_id: self.idev,
            pt_id: parent,
            fault_id: fault,
            data_type: hwpt_data::VTD_S1,
            data_len: VTD_S1_LEN as u32,
            data: Some(&data),
        };
        self.alloc(&req)
    }

    /// A PASID-compatible nested HWPT over `parent` with its guest root at `root`.
    fn nested(&mut self, parent: ObjId, root: u64) -> ObjId {
        self.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s1(root)).unwrap()
    }

    fn objects(&self) -> usize {
        self.os.iommufd_objects(self.fd)
    }

    fn attach(&mut self, p: Option<Pasid>, hwpt: ObjId) -> Result<(), Errno> {
        self.os.device_attach(self.fd, self.idev, p, hwpt)
    }

    fn replace(&mut self, p: Option<Pasid>, hwpt: ObjId) -> Result<(), Errno> {
        self.os.device_replace(self.fd, self.idev, p, hwpt)
    }

    fn attached(&self, p: Option<Pasid>) -> Option<ObjId> {
        self.os.device_attached(self.fd, self.idev, p)
    }

    fn domain(&self, hwpt: ObjId) -> DomainRef {
        self.os.hwpt_domain(self.fd, hwpt).unwrap()
    }

    /// The domain the core has in (device 1's group, `p`).
    fn core_domain(&self, p: Pasid) -> Option<DomainRef> {
        self.os.iommu().pasid_domain(self.dev(), p)
    }

    /// Device 1's PASID entry, if present.
    fn entry(&self, p: Pasid) -> Option<PasidEntry> {
        self.os.iommu().driver().pasid_entry(self.os.iommu().mem(), sva_dev(1).sid, p).filter(|e| e.present())
    }

    fn take_log(&mut self) -> Vec<HwAction> {
        self.os.iommu_mut().driver_mut().take_log()
    }

    /// Writes `bytes` at guest RAM offset `off`.
    fn poke(&self, off: u64, bytes: &[u8]) {
        self.os.iommu().mem().write(Hpa::new(self.ram + off), bytes).unwrap();
    }

    /// Device 1 reads `n` bytes at `addr` with `p` through the unit.
    fn dma_read(&self, p: Pasid, addr: u64, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0; n];
        self.unit.dma_read(sva_dev(1).sid, Some(p), Iova::new(addr), &mut buf).ok().map(|()| buf)
    }

    /// A guest first stage in guest RAM mapping `GVA + i * 4 KiB` to data
    /// page `i` for `i < pages`. Returns the table (its root is the
    /// guest-physical `pgtbl_addr`) and the allocator of its table pages.
    fn guest_s1(&self, pages: u64) -> (PageTable, PageAlloc) {
        let mut alloc = PageAlloc::new(self.ram, self.ram + DATA_OFF);
        let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
        for i in 0..pages {
            self.guest_map(&mut fs, &mut alloc, i, i);
        }
        (fs, alloc)
    }

    /// Points guest page `GVA + i * 4 KiB` at data page `data` (the guest
    /// changing its first stage, without any invalidation).
    fn guest_map(&self, fs: &mut PageTable, alloc: &mut PageAlloc, i: u64, data: u64) {
        let gpa = self.ram + DATA_OFF + data * PAGE;
        fs.map(self.os.iommu().mem(), alloc, GVA + i * PAGE, gpa, PageSize::Size4K, RW);
    }

    // ---- fault queue ----------------------------------------------------

    /// A fault queue and a PASID-compatible IOPF paging HWPT attached at `p`.
    fn iopf_at(&mut self, p: Pasid) -> (ObjId, ObjId) {
        let fault = self.os.fault_queue_alloc(self.fd, 0).unwrap();
        let hwpt = self.paging_iopf(fault);
        self.attach(Some(p), hwpt).unwrap();
        (fault, hwpt)
    }

    /// Device 1 asks for the page at `addr` (read and write) with `p` in
    /// group `prgi`, and the kernel services the queue: a group for a user
    /// handle goes to the fault queue and is not answered.
    fn page_request(&mut self, p: Pasid, addr: u64, prgi: u16, last: bool) {
        let r = PageRequest {
            rid: sva_dev(1).sid,
            pasid: Some(p),
            addr: Iova::new(addr),
            read: true,
            write: true,
            exec: false,
            privileged: false,
            lpig: last,
            prgi,
            private: [0, 0],
        };
        assert_eq!(self.unit.page_request(&r), PrqOutcome::Queued);
        assert_eq!(self.os.service_page_requests().unwrap(), vec![], "nothing answered by the kernel");
    }

    fn read(&mut self, fault: ObjId, count: usize) -> Result<Vec<PgFault>, Errno> {
        let bytes = self.os.fault_read(self.fd, fault, count, 0)?;
        assert_eq!(bytes.len() % PGFAULT_LEN, 0);
        Ok(bytes.chunks_exact(PGFAULT_LEN).map(|c| PgFault::from_bytes(c.try_into().unwrap())).collect())
    }

    fn respond(&mut self, fault: ObjId, cookie: u32, code: u32) -> Result<usize, Errno> {
        self.os.fault_write(self.fd, fault, &PageResponse { cookie, code }.to_bytes(), 0)
    }

    /// Page responses device 1 received.
    fn responses(&self) -> Vec<PageGroupResponse> {
        self.unit.take_responses(sva_dev(1).sid)
    }

    fn poll(&mut self, fault: ObjId) -> Poll {
        self.os.fault_poll(self.fd, fault).unwrap()
    }
}

/// The response software sends device 1 for group `prgi` of `p`.
fn answer(p: Pasid, prgi: u16, code: HwCode) -> PageGroupResponse {
    PageGroupResponse { rid: sva_dev(1).sid, pasid: Some(p), prgi, code, by_hardware: false }
}

fn page_responses(log: &[HwAction]) -> Vec<(u16, HwCode)> {
    log.iter()
        .filter_map(|a| match a {
            HwAction::Invalidate(InvDescriptor::PageGroupResponse { prgi, code, .. }) => Some((*prgi, *code)),
            _ => None,
        })
        .collect()
}

fn has_drain(log: &[HwAction]) -> bool {
    log.iter().any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. })))
}

fn entries(list: &[VtdS1Invalidate]) -> Vec<u8> {
    list.iter().flat_map(|e| e.to_bytes()).collect()
}

fn inv(data: &[u8], entry_num: u32) -> Invalidate<'_> {
    Invalidate {
        data_type: INVALIDATE_DATA_VTD_S1,
        entry_len: VTD_S1_INVALIDATE_LEN as u32,
        entry_num,
        data: Some(data),
    }
}

// ---- §5.3 HWPT allocation ---------------------------------------------------

#[test]
fn spec22_device_id_as_pt_id_is_einval() {
    let mut vm = vm();
    let (objects, domains) = (vm.objects(), vm.os.iommu().domain_count());
    let req = HwptAlloc { dev_id: vm.idev, pt_id: vm.idev, ..Default::default() };
    assert_eq!(vm.alloc(&req), Err(Errno::Inval));
    assert_eq!((vm.objects(), vm.os.iommu().domain_count()), (objects, domains));
}

#[test]
fn spec22_ioas_id_as_dev_id_is_enoent() {
    let mut vm = vm();
    let (objects, domains) = (vm.objects(), vm.os.iommu().domain_count());
    let req = HwptAlloc { dev_id: vm.ioas, pt_id: vm.ioas, ..Default::default() };
    assert_eq!(vm.alloc(&req), Err(Errno::NoEnt));
    assert_eq!((vm.objects(), vm.os.iommu().domain_count()), (objects, domains));
}

#[test]
fn spec23_nest_parent_with_a_fault_queue_is_eopnotsupp() {
    let mut vm = vm();
    let fault = vm.os.fault_queue_alloc(vm.fd, 0).unwrap();
    let (objects, domains) = (vm.objects(), vm.os.iommu().domain_count());
    let flags = hwpt_flags::NEST_PARENT | hwpt_flags::FAULT_ID_VALID;
    let req = HwptAlloc { flags, dev_id: vm.idev, pt_id: vm.ioas, fault_id: fault, ..Default::default() };
    assert_eq!(vm.alloc(&req), Err(Errno::OpNotSupp));
    assert_eq!((vm.objects(), vm.os.iommu().domain_count()), (objects, domains));
}

/// §1.3 paging row: a data type with no data is EINVAL (the type/length
/// consistency check comes before any driver sees the request).
#[test]
fn spec23_ioas_backed_allocation_with_a_data_type_but_zero_length_is_einval() {
    let mut vm = vm();
    let objects = vm.objects();
    let data = s1(0).to_bytes();
    let req = HwptAlloc {
        dev_id: vm.idev,
        pt_id: vm.ioas,
        data_type: hwpt_data::VTD_S1,
        data_len: 0,
        data: Some(&data),
        ..Default::default()
    };
    assert_eq!(vm.alloc(&req), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

/// A nested request over `parent` with a raw data block.
fn nested_raw(vm: &mut Vm, parent: ObjId, data_type: u32, data_len: u32, data: Option<&[u8]>) -> Result<ObjId, Errno> {
    let req = HwptAlloc {
        flags: hwpt_flags::ALLOC_PASID,
        dev_id: vm.idev,
        pt_id: parent,
        data_type,
        data_len,
        data,
        ..Default::default()
    };
    vm.alloc(&req)
}

#[test]
fn spec24_nested_with_data_type_none_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let data = s1(0x10000).to_bytes();
    assert_eq!(nested_raw(&mut vm, parent, hwpt_data::NONE, VTD_S1_LEN as u32, Some(&data)), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

/// §1.3 nested row: a nested request without any data (type NONE, length
/// 0) is EOPNOTSUPP, while type NONE with data is EINVAL (above).
#[test]
fn spec24_nested_without_data_type_or_data_is_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    assert_eq!(nested_raw(&mut vm, parent, hwpt_data::NONE, 0, None), Err(Errno::OpNotSupp));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_with_an_unknown_data_type_is_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let data = s1(0x10000).to_bytes();
    assert_eq!(nested_raw(&mut vm, parent, 0x77, VTD_S1_LEN as u32, Some(&data)), Err(Errno::OpNotSupp));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_data_shorter_than_the_vtd_block_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let data = s1(0x10000).to_bytes();
    let short = VTD_S1_LEN as u32 - 1;
    assert_eq!(nested_raw(&mut vm, parent, hwpt_data::VTD_S1, short, Some(&data)), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_with_a_null_data_pointer_is_efault() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    assert_eq!(nested_raw(&mut vm, parent, hwpt_data::VTD_S1, VTD_S1_LEN as u32, None), Err(Errno::Fault));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nest_parent_flag_on_a_nested_request_is_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let r = vm.nested_with(parent, hwpt_flags::NEST_PARENT, ObjId::default(), &s1(0x10000));
    assert_eq!(r, Err(Errno::OpNotSupp));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_over_a_parent_without_nest_parent_is_einval() {
    let mut vm = vm();
    let plain = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let objects = vm.objects();
    let r = vm.nested_with(plain, hwpt_flags::ALLOC_PASID, ObjId::default(), &s1(0x10000));
    assert_eq!(r, Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_over_a_nested_hwpt_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let n = vm.nested(parent, 0x10000);
    let objects = vm.objects();
    let r = vm.nested_with(n, hwpt_flags::ALLOC_PASID, ObjId::default(), &s1(0x10000));
    assert_eq!(r, Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec24_nested_with_a_bogus_fault_id_is_enoent() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let flags = hwpt_flags::ALLOC_PASID | hwpt_flags::FAULT_ID_VALID;
    // Neither an unused ID nor an object of another type is a fault queue.
    for bogus in [ObjId(999), vm.ioas] {
        assert_eq!(vm.nested_with(parent, flags, bogus, &s1(0x10000)), Err(Errno::NoEnt), "{bogus:?}");
    }
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec25_vtd_address_width_other_than_48_or_57_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let (objects, domains) = (vm.objects(), vm.os.iommu().domain_count());
    // 0x130 has 48 in its low byte: the width must not be truncated.
    for width in [0, 39, 47, 52, 56, 64, 0x130] {
        let s = VtdS1 { addr_width: width, ..s1(0x10000) };
        assert_eq!(vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s), Err(Errno::Inval), "{width}");
    }
    assert_eq!((vm.objects(), vm.os.iommu().domain_count()), (objects, domains));
}

#[test]
fn spec25_57_bit_width_with_five_level_first_stage_support_is_accepted() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let s = VtdS1 { addr_width: 57, ..s1(0x10000) };
    let n = vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s).unwrap();
    vm.attach(Some(pasid(5)), n).unwrap();
    assert_eq!(vm.entry(pasid(5)).unwrap().pgtt(), Pgtt::Nested);
}

#[test]
fn spec25_57_bit_width_without_five_level_first_stage_is_einval() {
    let mut vm = vm_without(&[Cap::FS5LP], &[]);
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let s = VtdS1 { addr_width: 57, ..s1(0x10000) };
    assert_eq!(vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec25_sre_without_supervisor_request_support_is_einval() {
    let mut vm = vm_without(&[], &[Ecap::SRS]);
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let s = VtdS1 { flags: vtd_s1_flags::SRE, ..s1(0x10000) };
    assert_eq!(vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec25_eafe_without_extended_accessed_flag_support_is_einval() {
    let mut vm = vm_without(&[], &[Ecap::EAFS]);
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let s = VtdS1 { flags: vtd_s1_flags::EAFE, ..s1(0x10000) };
    assert_eq!(vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec25_unknown_vtd_flags_are_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    let s = VtdS1 { flags: 1 << 3, ..s1(0x10000) };
    assert_eq!(vm.nested_with(parent, hwpt_flags::ALLOC_PASID, ObjId::default(), &s), Err(Errno::OpNotSupp));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec26_destroying_a_parent_with_a_nested_child_is_ebusy() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let n = vm.nested(parent, 0x10000);
    let objects = vm.objects();
    assert_eq!(vm.os.destroy(vm.fd, parent), Err(Errno::Busy));
    assert_eq!(vm.objects(), objects);
    assert!(vm.os.hwpt_domain(vm.fd, parent).is_ok());
    // Once the child is gone the parent goes too.
    vm.os.destroy(vm.fd, n).unwrap();
    vm.os.destroy(vm.fd, parent).unwrap();
    assert_eq!(vm.os.hwpt_domain(vm.fd, parent), Err(Errno::NoEnt));
}

#[test]
fn spec26_destroying_an_attached_hwpt_is_ebusy() {
    let mut vm = vm();
    let hwpt = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(Some(pasid(7)), hwpt).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.destroy(vm.fd, hwpt), Err(Errno::Busy));
    assert_eq!(vm.objects(), objects);
    assert_eq!(vm.attached(Some(pasid(7))), Some(hwpt));
    assert_eq!(vm.core_domain(pasid(7)), Some(vm.domain(hwpt)));
}

#[test]
fn spec26_destroying_an_ioas_that_backs_a_hwpt_is_ebusy() {
    let mut vm = vm();
    let hwpt = vm.paging(0).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.destroy(vm.fd, vm.ioas), Err(Errno::Busy));
    assert_eq!(vm.objects(), objects);
    // The IOAS still maps guest RAM into the HWPT.
    let d = vm.domain(hwpt);
    assert_eq!(vm.os.iommu().iova_to_phys(d, Iova::new(vm.ram + PAGE)), Some(Hpa::new(vm.ram + PAGE)));
}

/// The unit reports no PASID support (ECAP.PASID clear).
#[test]
fn spec27_alloc_pasid_on_an_iommu_without_pasid_support_is_eopnotsupp() {
    let mut vm = vm_without(&[], &[Ecap::PASID]);
    let (objects, domains) = (vm.objects(), vm.os.iommu().domain_count());
    assert_eq!(vm.paging(hwpt_flags::ALLOC_PASID), Err(Errno::OpNotSupp));
    assert_eq!((vm.objects(), vm.os.iommu().domain_count()), (objects, domains));
    assert_eq!(vm.os.get_hw_info(vm.fd, vm.idev).unwrap().max_pasid_log2, 0);
}

// ---- §5.4 PASID attach ------------------------------------------------------

#[test]
fn spec28_pasid_attach_while_the_rid_holds_a_non_pasid_compatible_hwpt_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    vm.attach(None, parent).unwrap();
    let nested = vm.nested(parent, 0x10000);
    let plain = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let fault = vm.os.fault_queue_alloc(vm.fd, 0).unwrap();
    let iopf = vm.paging_iopf(fault);
    for hwpt in [nested, plain, iopf] {
        assert_eq!(vm.attach(Some(pasid(1)), hwpt), Err(Errno::Inval), "{hwpt:?}");
        assert_eq!(vm.attached(Some(pasid(1))), None);
        assert_eq!(vm.core_domain(pasid(1)), None);
        assert!(vm.entry(pasid(1)).is_none());
    }
}

#[test]
fn spec29_rid_replace_with_a_non_pasid_compatible_hwpt_while_a_pasid_is_attached_is_einval() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT | hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(None, parent).unwrap();
    let nested = vm.nested(parent, 0x10000);
    vm.attach(Some(pasid(1)), nested).unwrap();
    let incompatible = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    assert_eq!(vm.replace(None, incompatible), Err(Errno::Inval));
    assert_eq!(vm.attached(None), Some(parent));
    assert_eq!(vm.os.iommu().rid_domain(vm.dev()), Ok(vm.domain(parent)));
    assert_eq!(vm.attached(Some(pasid(1))), Some(nested));
}

#[test]
fn spec29_pasid_detach_leaves_no_domain_at_the_pasid() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT | hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(None, parent).unwrap();
    let nested = vm.nested(parent, 0x10000);
    vm.attach(Some(pasid(1)), nested).unwrap();
    assert!(vm.entry(pasid(1)).is_some());
    vm.take_log();
    vm.os.device_detach(vm.fd, vm.idev, Some(pasid(1))).unwrap();
    assert_eq!(vm.attached(Some(pasid(1))), None);
    assert_eq!(vm.core_domain(pasid(1)), None);
    assert_eq!(vm.os.iommu().attach_handle_get(vm.dev(), pasid(1), HandleType::Any), Err(Errno::NoEnt));
    assert!(vm.entry(pasid(1)).is_none());
    assert!(has_drain(&vm.take_log()), "the teardown drains page requests");
    // The HWPT is free again, the RID untouched.
    assert_eq!(vm.attached(None), Some(parent));
    vm.os.destroy(vm.fd, nested).unwrap();
}

/// Device 2: no PASID support, own group, bound to the same context.
fn bind_non_pasid_device(vm: &mut Vm) -> ObjId {
    let info = pci(2, 0, false, false);
    vm.os.add_device(info, GroupId(2)).unwrap();
    vm.os.device_bind(vm.fd, info.id).unwrap()
}

#[test]
fn spec30_non_pasid_device_may_attach_a_pasid_compatible_hwpt_to_its_rid() {
    let mut vm = vm();
    let idev2 = bind_non_pasid_device(&mut vm);
    let hwpt = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.os.device_attach(vm.fd, idev2, None, hwpt).unwrap();
    assert_eq!(vm.os.device_attached(vm.fd, idev2, None), Some(hwpt));
    assert_eq!(vm.os.iommu().rid_domain(pci(2, 0, false, false).id), Ok(vm.domain(hwpt)));
    // Untagged DMA of device 2 now goes through the IOAS.
    vm.poke(PAGE, b"rid");
    let mut buf = [0u8; 3];
    vm.unit.dma_read(pci(2, 0, false, false).sid, None, Iova::new(vm.ram + PAGE), &mut buf).unwrap();
    assert_eq!(&buf, b"rid");
}

#[test]
fn spec30_pasid_attach_on_a_non_pasid_device_is_einval() {
    let mut vm = vm();
    let idev2 = bind_non_pasid_device(&mut vm);
    let hwpt = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.os.device_attach(vm.fd, idev2, None, hwpt).unwrap();
    assert_eq!(vm.os.device_attach(vm.fd, idev2, Some(pasid(1)), hwpt), Err(Errno::Inval));
    assert_eq!(vm.os.device_attached(vm.fd, idev2, Some(pasid(1))), None);
    assert!(vm.os.iommu().attached_pasids(pci(2, 0, false, false).id).is_empty());
}

#[test]
fn spec31_pasid_attach_of_a_hwpt_without_alloc_pasid_is_einval() {
    let mut vm = vm();
    let hwpt = vm.paging(0).unwrap();
    assert_eq!(vm.attach(Some(pasid(3)), hwpt), Err(Errno::Inval));
    assert_eq!(vm.attached(Some(pasid(3))), None);
    assert_eq!(vm.core_domain(pasid(3)), None);
    assert!(vm.entry(pasid(3)).is_none());
}

/// The model makes no auto-domains: an IOAS where a HWPT is required is
/// refused.
#[test]
fn spec31_pasid_attach_of_an_ioas_id_is_einval() {
    let mut vm = vm();
    assert_eq!(vm.attach(Some(pasid(3)), vm.ioas), Err(Errno::Inval));
    assert_eq!(vm.attached(Some(pasid(3))), None);
    assert_eq!(vm.core_domain(pasid(3)), None);
}

#[test]
fn spec32_attaching_another_hwpt_at_an_occupied_pasid_is_ebusy() {
    let mut vm = vm();
    let a = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let b = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(Some(pasid(100)), a).unwrap();
    assert_eq!(vm.attach(Some(pasid(100)), b), Err(Errno::Busy));
    assert_eq!(vm.attached(Some(pasid(100))), Some(a));
    assert_eq!(vm.core_domain(pasid(100)), Some(vm.domain(a)));
}

#[test]
fn spec32_attaching_the_same_hwpt_twice_at_a_pasid_is_ebusy() {
    let mut vm = vm();
    let a = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(Some(pasid(100)), a).unwrap();
    let entry = vm.entry(pasid(100));
    assert_eq!(vm.attach(Some(pasid(100)), a), Err(Errno::Busy));
    assert_eq!(vm.attached(Some(pasid(100))), Some(a));
    assert_eq!(vm.core_domain(pasid(100)), Some(vm.domain(a)));
    assert_eq!(vm.entry(pasid(100)), entry);
}

#[test]
fn spec33_replace_at_a_pasid_never_attached_is_einval() {
    let mut vm = vm();
    let a = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    assert_eq!(vm.replace(Some(pasid(200)), a), Err(Errno::Inval));
    assert_eq!(vm.attached(Some(pasid(200))), None);
    assert_eq!(vm.core_domain(pasid(200)), None);
}

#[test]
fn spec33_replace_with_an_ioas_id_is_einval_and_keeps_the_attachment() {
    let mut vm = vm();
    let a = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(Some(pasid(200)), a).unwrap();
    assert_eq!(vm.replace(Some(pasid(200)), vm.ioas), Err(Errno::Inval));
    assert_eq!(vm.attached(Some(pasid(200))), Some(a));
    assert_eq!(vm.core_domain(pasid(200)), Some(vm.domain(a)));
}

#[test]
fn spec33_replace_with_nested_n0_then_n1_moves_the_pasid_along() {
    let mut vm = vm();
    let a = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let n0 = vm.nested(parent, 0x10000);
    let n1 = vm.nested(parent, 0x20000);
    vm.attach(Some(pasid(200)), a).unwrap();
    for (n, root) in [(n0, 0x10000), (n1, 0x20000)] {
        vm.replace(Some(pasid(200)), n).unwrap();
        assert_eq!(vm.attached(Some(pasid(200))), Some(n));
        assert_eq!(vm.core_domain(pasid(200)), Some(vm.domain(n)));
        let h = vm.os.iommu().attach_handle_get(vm.dev(), pasid(200), HandleType::User).unwrap();
        assert_eq!(h.domain, vm.domain(n));
        let e = vm.entry(pasid(200)).unwrap();
        assert_eq!((e.pgtt(), e.get_in_place(PasidEntry::FSPTPTR)), (Pgtt::Nested, root));
    }
    // Only the current HWPT is in use.
    vm.os.destroy(vm.fd, a).unwrap();
    vm.os.destroy(vm.fd, n0).unwrap();
    assert_eq!(vm.os.destroy(vm.fd, n1), Err(Errno::Busy));
}

/// The driver fails the replace: on a caching-mode unit, installing the
/// new entry ends with a PASID-cache flush, the 3rd queue submission of a
/// replace (after the old entry's teardown flush and its drain), and the
/// injected invalidation time-out there makes the driver put the old entry
/// back. The mock driver of the selftest fails with ENOMEM; this one with
/// the time-out's ETIMEDOUT.
#[test]
fn spec34_replace_failing_in_the_driver_keeps_the_old_hwpt_in_effect() {
    let full = VtdConfig::full_featured();
    let cfg = VtdConfig { cap: Cap([full.cap]).with(Cap::CM, 1).0[0], ..full };
    let (unit, os) = kernel_with(cfg, LocalPolicy::V2);
    let mut vm = vm_on(unit, os);
    let p = pasid(1024);
    let old = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let new = vm.nested(parent, 0x10000);
    vm.attach(Some(p), old).unwrap();
    let old_entry = vm.entry(p).unwrap();
    vm.poke(2 * PAGE, b"old");
    assert_eq!(vm.dma_read(p, vm.ram + 2 * PAGE, 3).as_deref(), Some(&b"old"[..]));

    vm.os.iommu_mut().driver_mut().fail_nth_submit(Some(3));
    assert_eq!(vm.replace(Some(p), new), Err(Errno::TimedOut));
    vm.os.iommu_mut().driver_mut().fail_nth_submit(None);

    assert_eq!(vm.attached(Some(p)), Some(old));
    assert_eq!(vm.core_domain(p), Some(vm.domain(old)));
    let h = vm.os.iommu().attach_handle_get(vm.dev(), p, HandleType::User).unwrap();
    assert_eq!(h.domain, vm.domain(old));
    assert_eq!(vm.entry(p), Some(old_entry));
    assert_eq!(vm.dma_read(p, vm.ram + 2 * PAGE, 3).as_deref(), Some(&b"old"[..]));
    // The new HWPT took nothing: it can go.
    vm.os.destroy(vm.fd, new).unwrap();
}

#[test]
fn spec35_replace_answers_a_read_fault_invalid_and_detach_leaves_the_pasid_empty() {
    let mut vm = vm();
    let p = pasid(2048);
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let fault = vm.os.fault_queue_alloc(vm.fd, 0).unwrap();
    let flags = hwpt_flags::FAULT_ID_VALID | hwpt_flags::ALLOC_PASID;
    let iopf = vm.nested_with(parent, flags, fault, &s1(0x10000)).unwrap();
    let plain = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.attach(Some(p), iopf).unwrap();

    vm.page_request(p, 0x7000, 4, true);
    let records = vm.read(fault, PGFAULT_LEN).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].pasid, 2048);
    assert_ne!(records[0].flags & pgfault_flags::PASID_VALID, 0);
    assert!(vm.responses().is_empty(), "delivered, not answered");

    vm.replace(Some(p), plain).unwrap();
    assert_eq!(vm.responses(), vec![answer(p, 4, HwCode::InvalidRequest)]);
    assert_eq!(vm.attached(Some(p)), Some(plain));
    assert_eq!(vm.respond(fault, records[0].cookie, PAGE_RESP_SUCCESS), Err(Errno::Inval), "already answered");

    vm.os.device_detach(vm.fd, vm.idev, Some(p)).unwrap();
    assert_eq!(vm.attached(Some(p)), None);
    assert_eq!(vm.core_domain(p), None);
    assert!(vm.entry(p).is_none());
    assert!(vm.responses().is_empty(), "no second answer");
}

// ---- §5.5 fault queue ---------------------------------------------------

#[test]
fn spec36_a_fault_reads_as_one_record_with_a_cookie() {
    let mut vm = vm();
    let p = pasid(1);
    let (fault, _) = vm.iopf_at(p);
    vm.page_request(p, 0xABC_D000, 2, true);
    let records = vm.read(fault, 4 * PGFAULT_LEN).unwrap();
    assert_eq!(records.len(), 1);
    let r = records[0];
    assert!(r.cookie >= 1);
    let expected = PgFault {
        flags: pgfault_flags::PASID_VALID | pgfault_flags::LAST_PAGE,
        dev_id: vm.idev.0,
        pasid: 1,
        grpid: 2,
        perm: pgfault_perm::READ | pgfault_perm::WRITE,
        addr: 0xABC_D000,
        length: 4096,
        cookie: r.cookie,
    };
    assert_eq!(r, expected);
    assert_eq!(vm.read(fault, 4 * PGFAULT_LEN).unwrap(), vec![], "delivered once");
}

#[test]
fn spec36_a_success_response_reaches_the_device_once_with_its_group() {
    let mut vm = vm();
    let p = pasid(1);
    let (fault, _) = vm.iopf_at(p);
    vm.page_request(p, 0xABC_D000, 2, true);
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    vm.take_log();
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_SUCCESS), Ok(8));
    assert_eq!(page_responses(&vm.take_log()), vec![(2, HwCode::Success)]);
    assert_eq!(vm.responses(), vec![answer(p, 2, HwCode::Success)]);
    assert_eq!(vm.os.iopf().pending(vm.dev()).count(), 0);
}

#[test]
fn spec37_read_of_a_length_not_a_multiple_of_the_record_is_espipe() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    for count in [1, PGFAULT_LEN - 1, PGFAULT_LEN + 1, 2 * PGFAULT_LEN + 8] {
        assert_eq!(vm.os.fault_read(vm.fd, fault, count, 0), Err(Errno::SPipe), "{count}");
    }
    assert!(vm.poll(fault).readable, "still undelivered");
    assert_eq!(vm.read(fault, PGFAULT_LEN).unwrap().len(), 1);
}

#[test]
fn spec37_read_at_a_non_zero_offset_is_espipe() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    assert_eq!(vm.os.fault_read(vm.fd, fault, PGFAULT_LEN, PGFAULT_LEN as u64), Err(Errno::SPipe));
    assert!(vm.poll(fault).readable, "still undelivered");
}

#[test]
fn spec38_a_group_that_does_not_fit_the_buffer_is_not_read_at_all() {
    let mut vm = vm();
    let p = pasid(1);
    let (fault, _) = vm.iopf_at(p);
    vm.page_request(p, 0x1000, 5, false);
    vm.page_request(p, 0x2000, 5, true);
    assert_eq!(vm.read(fault, PGFAULT_LEN).unwrap(), vec![]);
    assert!(vm.poll(fault).readable);
    let records = vm.read(fault, 2 * PGFAULT_LEN).unwrap();
    assert_eq!(records.iter().map(|r| r.addr).collect::<Vec<_>>(), vec![0x1000, 0x2000]);
    assert_eq!(records[0].cookie, records[1].cookie, "one cookie per group");
    assert_eq!(records.iter().map(|r| r.flags & pgfault_flags::LAST_PAGE).collect::<Vec<_>>(), vec![0, 2]);
}

#[test]
fn spec39_response_with_an_unknown_cookie_is_einval() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    assert_eq!(vm.respond(fault, cookie + 1, PAGE_RESP_SUCCESS), Err(Errno::Inval));
    assert!(vm.responses().is_empty());
    // The real cookie still answers.
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_INVALID), Ok(8));
    assert_eq!(vm.responses(), vec![answer(pasid(1), 2, HwCode::InvalidRequest)]);
}

#[test]
fn spec39_response_code_other_than_success_or_invalid_is_einval() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    // 2 is the kernel-internal FAILURE, deliberately not in the uAPI.
    for code in [2, 3, u32::MAX] {
        assert_eq!(vm.respond(fault, cookie, code), Err(Errno::Inval), "{code}");
    }
    assert!(vm.responses().is_empty());
    assert_eq!(vm.os.iopf().pending(vm.dev()).count(), 1, "still pending");
}

#[test]
fn spec39_second_response_for_a_cookie_is_einval() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_SUCCESS), Ok(8));
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_SUCCESS), Err(Errno::Inval));
    assert_eq!(vm.responses(), vec![answer(pasid(1), 2, HwCode::Success)]);
}

/// Two groups of PASID 1: group 2 read but unanswered, group 3 unread.
fn two_outstanding_groups(vm: &mut Vm) -> (ObjId, ObjId, u32) {
    let (fault, hwpt) = vm.iopf_at(pasid(1));
    vm.page_request(pasid(1), 0x1000, 2, true);
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    vm.page_request(pasid(1), 0x2000, 3, true);
    (fault, hwpt, cookie)
}

fn sorted(mut r: Vec<PageGroupResponse>) -> Vec<PageGroupResponse> {
    r.sort_by_key(|r| r.prgi);
    r
}

#[test]
fn spec40_detach_answers_each_outstanding_group_invalid_exactly_once() {
    let mut vm = vm();
    let (fault, _, cookie) = two_outstanding_groups(&mut vm);
    vm.take_log();
    vm.os.device_detach(vm.fd, vm.idev, Some(pasid(1))).unwrap();
    let invalid = vec![answer(pasid(1), 2, HwCode::InvalidRequest), answer(pasid(1), 3, HwCode::InvalidRequest)];
    assert_eq!(sorted(vm.responses()), invalid);
    assert_eq!(page_responses(&vm.take_log()).len(), 2);
    assert_eq!(vm.poll(fault), Poll { readable: false, writable: true });
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_SUCCESS), Err(Errno::Inval));
    assert!(vm.responses().is_empty());
}

#[test]
fn spec40_replace_answers_each_outstanding_group_invalid_exactly_once() {
    let mut vm = vm();
    let (fault, _, cookie) = two_outstanding_groups(&mut vm);
    let plain = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    vm.replace(Some(pasid(1)), plain).unwrap();
    let invalid = vec![answer(pasid(1), 2, HwCode::InvalidRequest), answer(pasid(1), 3, HwCode::InvalidRequest)];
    assert_eq!(sorted(vm.responses()), invalid);
    assert_eq!(vm.poll(fault), Poll { readable: false, writable: true });
    assert_eq!(vm.respond(fault, cookie, PAGE_RESP_SUCCESS), Err(Errno::Inval));
    vm.os.device_detach(vm.fd, vm.idev, Some(pasid(1))).unwrap();
    assert!(vm.responses().is_empty(), "nothing answered twice");
}

/// Destroy: a fault queue cannot go while a HWPT names it, so its
/// outstanding groups are answered when the context is closed, which
/// detaches and destroys everything.
#[test]
fn spec40_closing_the_context_answers_each_outstanding_group_invalid_exactly_once() {
    let mut vm = vm();
    let (fault, _, _) = two_outstanding_groups(&mut vm);
    assert_eq!(vm.os.destroy(vm.fd, fault), Err(Errno::Busy));
    vm.os.iommufd_close(vm.fd).unwrap();
    let invalid = vec![answer(pasid(1), 2, HwCode::InvalidRequest), answer(pasid(1), 3, HwCode::InvalidRequest)];
    assert_eq!(sorted(vm.responses()), invalid);
    assert_eq!(vm.os.iommufd_contexts(), 0);
    assert_eq!(vm.os.iopf().pending(vm.dev()).count(), 0);
    assert!(vm.os.iommu().attached_pasids(vm.dev()).is_empty());
}

#[test]
fn spec41_poll_is_always_writable_and_readable_only_with_undelivered_groups() {
    let mut vm = vm();
    let (fault, _) = vm.iopf_at(pasid(1));
    assert_eq!(vm.poll(fault), Poll { readable: false, writable: true });
    vm.page_request(pasid(1), 0x1000, 2, true);
    assert_eq!(vm.poll(fault), Poll { readable: true, writable: true });
    let cookie = vm.read(fault, PGFAULT_LEN).unwrap()[0].cookie;
    assert_eq!(vm.poll(fault), Poll { readable: false, writable: true }, "delivered, unanswered");
    vm.respond(fault, cookie, PAGE_RESP_SUCCESS).unwrap();
    assert_eq!(vm.poll(fault), Poll { readable: false, writable: true });
}

// ---- §5.6 HWPT invalidation -------------------------------------------------

/// A nested HWPT over a parent of guest RAM, with a guest first stage of
/// `pages` pages, attached at PASID 1; returns it, the guest table and its
/// allocator.
fn nested_vm(pages: u64) -> (Vm, ObjId, PageTable, PageAlloc) {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let (fs, alloc) = vm.guest_s1(pages);
    let n = vm.nested(parent, fs.root.raw());
    vm.attach(Some(pasid(1)), n).unwrap();
    (vm, n, fs, alloc)
}

#[test]
fn spec43_zero_entries_of_a_valid_type_is_a_successful_probe() {
    let (mut vm, n, _, _) = nested_vm(1);
    vm.take_log();
    let req = Invalidate { data_type: INVALIDATE_DATA_VTD_S1, entry_len: 0, entry_num: 0, data: None };
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &req), (Ok(()), 0));
    assert_eq!(vm.take_log(), vec![], "a probe flushes nothing");
}

#[test]
fn spec43_invalidating_a_paging_parent_is_einval_with_no_entry_handled() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let data = entries(&[VtdS1Invalidate::ALL]);
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, parent, &inv(&data, 1)), (Err(Errno::Inval), 0));
}

#[test]
fn spec44_wrong_data_type_is_einval() {
    let (mut vm, n, _, _) = nested_vm(1);
    let data = entries(&[VtdS1Invalidate::ALL]);
    let req = Invalidate { data_type: INVALIDATE_DATA_VTD_S1 + 1, ..inv(&data, 1) };
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &req), (Err(Errno::Inval), 0));
}

#[test]
fn spec44_entry_len_other_than_the_entry_size_is_einval() {
    let (mut vm, n, _, _) = nested_vm(1);
    let data = [0u8; 2 * VTD_S1_INVALIDATE_LEN];
    vm.take_log();
    for len in [VTD_S1_INVALIDATE_LEN - 1, VTD_S1_INVALIDATE_LEN + 1, 1, 0] {
        let req = Invalidate { entry_len: len as u32, ..inv(&data, 1) };
        assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &req), (Err(Errno::Inval), 0), "{len}");
    }
    assert_eq!(vm.take_log(), vec![]);
}

#[test]
fn spec44_unknown_entry_flags_are_eopnotsupp() {
    let (mut vm, n, _, _) = nested_vm(1);
    let data = entries(&[VtdS1Invalidate { addr: GVA, npages: 1, flags: 1 << 1, reserved: 0 }]);
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &inv(&data, 1)), (Err(Errno::OpNotSupp), 0));
}

#[test]
fn spec44_null_entry_array_with_entries_is_einval() {
    let (mut vm, n, _, _) = nested_vm(1);
    let req = Invalidate { data: None, ..inv(&[], 1) };
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &req), (Err(Errno::Inval), 0));
}

#[test]
fn spec45_second_entry_invalid_leaves_the_first_done_and_reports_one_handled() {
    let (mut vm, n, mut fs, mut alloc) = nested_vm(1);
    vm.poke(DATA_OFF, b"old");
    vm.poke(DATA_OFF + PAGE, b"new");
    assert_eq!(vm.dma_read(pasid(1), GVA, 3).as_deref(), Some(&b"old"[..]));
    vm.guest_map(&mut fs, &mut alloc, 0, 1);
    vm.take_log();
    let data = entries(&[
        VtdS1Invalidate { addr: GVA, npages: 1, flags: 0, reserved: 0 },
        VtdS1Invalidate { addr: GVA, npages: 1, flags: 0, reserved: 1 },
    ]);
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &inv(&data, 2)), (Err(Errno::OpNotSupp), 1));
    let page = PasidIotlbScope::Page { addr: Iova::new(GVA), am: 0, ih: false };
    let flushed = vm
        .take_log()
        .iter()
        .filter(|a| matches!(a, HwAction::Invalidate(InvDescriptor::PasidIotlb { pasid: p, scope, .. }) if *p == pasid(1) && *scope == page))
        .count();
    assert_eq!(flushed, 1);
    assert_eq!(vm.dma_read(pasid(1), GVA, 3).as_deref(), Some(&b"new"[..]), "the first entry took effect");
}

#[test]
fn spec46_invalidate_all_flushes_every_cached_translation_of_the_hwpt() {
    let (mut vm, n, mut fs, mut alloc) = nested_vm(2);
    for (i, s) in [(0, b"p0"), (1, b"p1"), (2, b"q0"), (3, b"q1")] {
        vm.poke(DATA_OFF + i * PAGE, s);
    }
    assert_eq!(vm.dma_read(pasid(1), GVA, 2).as_deref(), Some(&b"p0"[..]));
    assert_eq!(vm.dma_read(pasid(1), GVA + PAGE, 2).as_deref(), Some(&b"p1"[..]));
    // The guest moves both pages; the unit still uses what it cached.
    vm.guest_map(&mut fs, &mut alloc, 0, 2);
    vm.guest_map(&mut fs, &mut alloc, 1, 3);
    assert_eq!(vm.dma_read(pasid(1), GVA, 2).as_deref(), Some(&b"p0"[..]), "stale until invalidated");
    vm.take_log();
    let data = entries(&[VtdS1Invalidate::ALL]);
    assert_eq!(vm.os.hwpt_invalidate(vm.fd, n, &inv(&data, 1)), (Ok(()), 1));
    let log = vm.take_log();
    let all = InvDescriptor::PasidIotlb {
        did: vm.os.iommu().driver().did_of(vm.domain(n)).unwrap(),
        pasid: pasid(1),
        scope: PasidIotlbScope::AllNonGlobal,
    };
    assert!(log.contains(&HwAction::Invalidate(all)), "{log:?}");
    assert!(
        log.iter().any(
            |a| matches!(a, HwAction::Invalidate(InvDescriptor::PasidDeviceTlb { pasid: p, .. }) if *p == pasid(1))
        ),
        "the device TLB too (ATS): {log:?}"
    );
    assert_eq!(vm.dma_read(pasid(1), GVA, 2).as_deref(), Some(&b"q0"[..]));
    assert_eq!(vm.dma_read(pasid(1), GVA + PAGE, 2).as_deref(), Some(&b"q1"[..]));
}

// ---- §5.7 vIOMMU and vdevice ----------------------------------------------------

#[test]
fn spec48_viommu_on_hwpt_0_is_enoent() {
    let mut vm = vm();
    let objects = vm.objects();
    assert_eq!(vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 0, vm.idev, ObjId(0)), Err(Errno::NoEnt));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec48_viommu_on_a_hwpt_that_is_not_a_nest_parent_is_einval() {
    let mut vm = vm();
    let plain = vm.paging(hwpt_flags::ALLOC_PASID).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 0, vm.idev, plain), Err(Errno::Inval));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec48_viommu_of_an_unsupported_type_is_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    for ty in [VIOMMU_TYPE_DEFAULT, VIOMMU_TYPE_ARM_SMMUV3, 0x77] {
        assert_eq!(vm.os.viommu_alloc(vm.fd, ty, 0, vm.idev, parent), Err(Errno::OpNotSupp), "{ty:#x}");
    }
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec48_viommu_with_an_unknown_flag_is_eopnotsupp() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 1, vm.idev, parent), Err(Errno::OpNotSupp));
    assert_eq!(vm.objects(), objects);
}

#[test]
fn spec48_destroying_the_parent_of_a_viommu_is_ebusy() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let viommu = vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 0, vm.idev, parent).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.destroy(vm.fd, parent), Err(Errno::Busy));
    assert_eq!(vm.objects(), objects);
    vm.os.destroy(vm.fd, viommu).unwrap();
    vm.os.destroy(vm.fd, parent).unwrap();
}

#[test]
fn spec48_destroying_a_viommu_in_use_is_ebusy() {
    let mut vm = vm();
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let viommu = vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 0, vm.idev, parent).unwrap();
    let vdev = vm.os.vdevice_alloc(vm.fd, viommu, vm.idev, 0x10).unwrap();
    let nested = vm.nested(viommu, 0x10000);
    // Named by a vdevice and by a nested HWPT; each alone keeps it.
    assert_eq!(vm.os.destroy(vm.fd, viommu), Err(Errno::Busy));
    vm.os.destroy(vm.fd, vdev).unwrap();
    assert_eq!(vm.os.destroy(vm.fd, viommu), Err(Errno::Busy));
    assert_eq!(vm.os.vdevice_lookup(vm.fd, viommu, 0x10), None);
    vm.os.destroy(vm.fd, nested).unwrap();
    vm.os.destroy(vm.fd, viommu).unwrap();
}

/// A vIOMMU over a new nest parent and a PASID-compatible nested HWPT over it.
fn viommu_nested(vm: &mut Vm) -> (ObjId, ObjId) {
    let parent = vm.paging(hwpt_flags::NEST_PARENT).unwrap();
    let viommu = vm.os.viommu_alloc(vm.fd, VIOMMU_TYPE_INTEL_VTD, 0, vm.idev, parent).unwrap();
    let nested = vm.nested(viommu, 0x10000);
    (viommu, nested)
}

#[test]
fn spec49_attach_to_a_viommu_nested_hwpt_before_the_vdevice_is_enoent() {
    let mut vm = vm();
    let (viommu, nested) = viommu_nested(&mut vm);
    assert_eq!(vm.attach(Some(pasid(1)), nested), Err(Errno::NoEnt));
    assert_eq!(vm.attached(Some(pasid(1))), None);
    assert_eq!(vm.core_domain(pasid(1)), None);
    // With its vdevice the device attaches.
    vm.os.vdevice_alloc(vm.fd, viommu, vm.idev, 0x10).unwrap();
    vm.attach(Some(pasid(1)), nested).unwrap();
    assert_eq!(vm.entry(pasid(1)).unwrap().pgtt(), Pgtt::Nested);
}

#[test]
fn spec50_second_vdevice_for_a_device_is_eexist() {
    let mut vm = vm();
    let (viommu, _) = viommu_nested(&mut vm);
    vm.os.vdevice_alloc(vm.fd, viommu, vm.idev, 0x10).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.vdevice_alloc(vm.fd, viommu, vm.idev, 0x11), Err(Errno::Exist));
    assert_eq!(vm.objects(), objects);
    assert_eq!(vm.os.vdevice_lookup(vm.fd, viommu, 0x10), Some(vm.idev));
    assert_eq!(vm.os.vdevice_lookup(vm.fd, viommu, 0x11), None);
}

#[test]
fn spec50_duplicate_virtual_id_in_one_viommu_is_eexist() {
    let mut vm = vm();
    let (viommu, _) = viommu_nested(&mut vm);
    vm.os.add_device(sva_dev(2), GroupId(2)).unwrap();
    let idev2 = vm.os.device_bind(vm.fd, sva_dev(2).id).unwrap();
    vm.os.vdevice_alloc(vm.fd, viommu, vm.idev, 0x10).unwrap();
    let objects = vm.objects();
    assert_eq!(vm.os.vdevice_alloc(vm.fd, viommu, idev2, 0x10), Err(Errno::Exist));
    assert_eq!(vm.objects(), objects);
    assert_eq!(vm.os.vdevice_lookup(vm.fd, viommu, 0x10), Some(vm.idev));
    // Another ID is fine.
    vm.os.vdevice_alloc(vm.fd, viommu, idev2, 0x11).unwrap();
}
