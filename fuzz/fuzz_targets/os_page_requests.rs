//! The OS's page-fault path under device-controlled page requests: the
//! kernel (`iommu-os`) on the VT-d model, one process bound through SVA on
//! two devices, and arbitrary page requests, DMAs, munmaps, unbinds and
//! exits interleaved with servicing the page request queue.
//!
//! Input format: operations until the input ends (at most 256), each a
//! kind byte followed by its arguments (little-endian):
//! ```text
//!   kind % 6 = 0  page request   dev:u8 pasid:u32 addr:u64 bits:u8 prgi:u16
//!              1  service the page request queue
//!              2  device write    dev:u8 addr:u64
//!              3  munmap          page:u8 pages:u8
//!              4  unbind          dev:u8
//!              5  exit the process
//! ```
//! pasid: bit 31 = present, bits 19:0 = value; bits: r, w, x, priv, last.
//!
//! Properties: nothing panics; every service call succeeds; the process's
//! frames are never reachable after exit (no DMA lands once it exited).
#![no_main]

use std::sync::Arc;

use iommu_fuzz::{page_request, Input};
use iommu_hw::vtd::{Endpoint, EndpointDma, VtdConfig, VtdUnit};
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_types::{Hpa, Iova, NullInterrupts, PagedMemory, Perm, SourceId};
use libfuzzer_sys::fuzz_target;

const VA: u64 = 0x4000_0000;

fn dev(n: u8) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(n as u32),
        sid: SourceId::from_bdf(0, n, 0),
        max_pasids: 1 << 20,
        ats: true,
        pri: true,
        pci: true,
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = Arc::new(PagedMemory::new(64 << 20));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x300_0000));
    let driver = VtdDriver::probe(unit.clone(), &*mem, &mut frames).expect("probe");
    let mut os = Kernel::new(Iommu::new(0, driver, mem, frames), LocalPolicy::V2);
    for n in [1, 2] {
        os.add_device(dev(n), GroupId(n as u32)).expect("add");
    }
    let mm = os.create_process().expect("process");
    os.mmap(mm, Some(VA), 0x10_000, Perm { read: true, write: true, exec: false }).expect("mmap");
    let mut bonds = [os.sva_bind(dev(1).id, mm).ok(), os.sva_bind(dev(2).id, mm).ok()];
    let mut exited = false;
    let mut input = Input::new(data);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                let n = 1 + input.u8() % 3;
                let rid = SourceId::from_bdf(0, n, 0);
                let (pasid, addr) = (iommu_fuzz::pasid(input.u32()), Iova::new(input.u64()));
                let req = page_request(&mut input, rid, pasid, addr);
                let _ = unit.page_request(&req);
            }
            1 => {
                os.service_page_requests().expect("service");
            }
            2 => {
                let i = (input.u8() % 2) as usize;
                let addr = VA + (input.u64() % 0x10_000);
                if let Some(b) = bonds[i] {
                    let mut ep = Endpoint::new(dev(i as u8 + 1).sid);
                    let r = ep.write(&unit, Some(b.pasid), Iova::new(addr), &[0xA5]);
                    assert!(!(exited && matches!(r, EndpointDma::Done(_))), "DMA landed after exit");
                }
            }
            3 => {
                let page = (input.u8() % 16) as u64;
                let pages = 1 + (input.u8() % 4) as u64;
                let _ = os.munmap(mm, VA + page * 0x1000, pages * 0x1000);
            }
            4 => {
                let i = (input.u8() % 2) as usize;
                if let Some(b) = bonds[i].take() {
                    os.sva_unbind(&b);
                }
            }
            _ => {
                if !exited {
                    os.exit(mm).expect("exit");
                    exited = true;
                }
            }
        }
    }
    os.service_page_requests().expect("final service");
});
