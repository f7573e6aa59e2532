//! The OS half of the default scenario: the project's kernel (`iommu-os`)
//! drives the VT-d model through registers and memory only, through the
//! lifecycles the seed threads argued about. Every step states what must
//! happen; the run fails when one does not.

use std::io::Write;
use std::sync::Arc;

use iommu_format::vtd::inv_desc::{InvDescriptor, ResponseCode as HwCode};
use iommu_hw::vtd::{Endpoint, EndpointDma, VtdConfig, VtdUnit};
use iommu_os::driver::vtd::{HwAction, VtdDriver};
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu, MmId};
use iommu_os::kernel::{GpasidBindData, Kernel, FORMAT_INTEL_VTD, GPASID_BIND_ARGSZ};
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_os::pgtable::PtFormat;
use iommu_os::Errno;
use iommu_types::{Gpa, Hpa, Iova, NullInterrupts, PagedMemory, Pasid, Perm, SourceId};

type Mem = Arc<PagedMemory>;
type Unit = VtdUnit<Mem, NullInterrupts>;
type Os = Kernel<VtdDriver<Arc<Unit>>, Mem, RangeFrames>;

const RW: Perm = Perm { read: true, write: true, exec: false };
const VA: u64 = 0x4000_0000;

fn device(n: u8, max_pasids: u32) -> DeviceInfo {
    DeviceInfo { id: DeviceId(n as u32), sid: SourceId::from_bdf(0, n, 0), max_pasids, ats: true, pri: true, pci: true }
}

/// Counts unmet expectations while writing the report.
pub(crate) struct Report<'a, W: Write> {
    pub(crate) out: &'a mut W,
    pub(crate) failed: u32,
}

impl<W: Write> Report<'_, W> {
    pub(crate) fn check(&mut self, what: &str, got: impl std::fmt::Debug, ok: bool) -> std::io::Result<()> {
        if !ok {
            self.failed += 1;
        }
        writeln!(self.out, "  {} {what}: {got:?}", if ok { "ok " } else { "BAD" })
    }
}

/// A device write the way an ATS/PRI endpoint does it: on a missing page
/// it sends a page request, the kernel services the queue, and it retries
/// after SUCCESS. Returns the response code when it did not succeed.
fn dma(unit: &Unit, os: &mut Os, ep: &mut Endpoint, pasid: Pasid, addr: u64, data: &[u8]) -> Result<bool, HwCode> {
    match ep.write(unit, Some(pasid), Iova::new(addr), data) {
        EndpointDma::Done(_) => return Ok(false),
        EndpointDma::PageRequested(prgi) => {
            let _ = os.service_page_requests();
            match ep.response(unit, prgi) {
                Some(HwCode::Success) => {}
                Some(code) => return Err(code),
                None => return Err(HwCode::ResponseFailure),
            }
        }
        _ => return Err(HwCode::ResponseFailure),
    }
    match ep.write(unit, Some(pasid), Iova::new(addr), data) {
        EndpointDma::Done(_) => Ok(true),
        _ => Err(HwCode::ResponseFailure),
    }
}

fn process(os: &mut Os) -> Result<MmId, Errno> {
    let mm = os.create_process()?;
    os.mmap(mm, Some(VA), 0x10_000, RW)?;
    Ok(mm)
}

/// Runs the OS scenario; returns how many expectations failed.
///
/// # Errors
/// An I/O error writing the report.
pub fn run(out: &mut impl Write) -> std::io::Result<u32> {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x800_0000));
    let mut r = Report { out, failed: 0 };
    writeln!(r.out, "OS side: the kernel drives the unit through registers and memory only")?;
    let driver = match VtdDriver::probe(unit.clone(), &*mem, &mut frames) {
        Ok(d) => d,
        Err(e) => {
            r.check("driver probe", e, false)?;
            return Ok(r.failed);
        }
    };
    let mut os: Os = Kernel::new(Iommu::new(0, driver, mem, frames), LocalPolicy::V2);
    let (gpu, small, nic) = (device(1, 1 << 20), device(2, 4), device(3, 1 << 20));
    for (d, g) in [(gpu, 1), (small, 2), (nic, 3)] {
        let added = os.add_device(d, GroupId(g));
        r.check(&format!("add {} (max_pasids {})", d.sid, d.max_pasids), added, added.is_ok())?;
    }

    writeln!(r.out, "host SVA with a page fault")?;
    let Ok(mm) = process(&mut os) else { return Ok(r.failed + 1) };
    let bond = os.sva_bind(gpu.id, mm);
    r.check("sva_bind(gpu, mm)", bond.map(|b| b.pasid), bond.is_ok())?;
    let Ok(bond) = bond else { return Ok(r.failed) };
    let mut ep = Endpoint::new(gpu.sid);
    let w = dma(&unit, &mut os, &mut ep, bond.pasid, VA, b"hello");
    r.check("DMA write to a page the process never touched (faulted in)", w, w == Ok(true))?;
    let mut buf = [0u8; 5];
    let rd = os.cpu_read(mm, VA, &mut buf);
    r.check("CPU reads what the device wrote", String::from_utf8_lossy(&buf), rd.is_ok() && &buf == b"hello")?;
    let again = os.sva_bind(gpu.id, mm);
    r.check("second bind of the same mm: same bond, 2 users", os.bond_users(&bond), again == Ok(bond))?;

    writeln!(r.out, "munmap while the device holds the translation")?;
    let m = os.munmap(mm, VA, 0x1000);
    r.check("munmap (PASID-IOTLB and device-TLB flushed before the page is freed)", m, m.is_ok())?;
    let w = dma(&unit, &mut os, &mut ep, bond.pasid, VA, b"stale?");
    r.check("DMA to the unmapped page", w, w == Err(HwCode::InvalidRequest))?;

    writeln!(r.out, "per-device PASID space on a 4-PASID device (seed 002)")?;
    for _ in 0..3 {
        let _ = os.global_pasids_mut().alloc(1 << 20);
    }
    let Ok(mm2) = process(&mut os) else { return Ok(r.failed + 1) };
    let g = os.sva_bind(small.id, mm2);
    r.check("global bind once PASIDs 1..3 are taken", g.map(|b| b.pasid), g == Err(Errno::NoSpc))?;
    let Ok(mm3) = process(&mut os) else { return Ok(r.failed + 1) };
    let l = os.sva_bind_device_pasid(small.id, mm3, Pasid::new(1));
    r.check("bind_device_pasid(small, PASID 1)", l.map(|b| b.pasid), l.is_ok())?;
    let mut ep2 = Endpoint::new(small.sid);
    let w = dma(&unit, &mut os, &mut ep2, Pasid::new(1), VA, b"local");
    r.check("DMA through the device-local PASID", w, w.is_ok())?;
    let mixed = os.sva_bind(gpu.id, mm3);
    r.check("global bind of a device-local mm (v2)", mixed.map(|b| b.pasid), mixed == Err(Errno::Busy))?;

    writeln!(r.out, "guest PASID bind (nested over the VM's stage 2)")?;
    let s2 = os.iommu_mut().alloc_paging(PtFormat::SecondStage { levels: 4 }, true);
    let attached = s2.and_then(|s2| os.iommu_mut().attach_rid(s2, nic.id));
    r.check("VM stage 2 on the NIC's RID", attached, attached.is_ok())?;
    let set = os.ioasid_set_alloc(4);
    let hp = set.and_then(|s| os.ioasid_alloc(s));
    let (Ok(set), Ok(hp)) = (set, hp) else { return Ok(r.failed + 1) };
    let data = GpasidBindData {
        argsz: GPASID_BIND_ARGSZ,
        format: FORMAT_INTEL_VTD,
        flags: 0,
        hpasid: hp.raw() as u64,
        gpasid: 0,
        gpgd: Gpa::new(0x20_0000),
        addr_width: 48,
    };
    let b1 = os.bind_gpasid(nic.id, set, &data);
    r.check(&format!("bind_gpasid(nic, host PASID {})", hp.raw()), b1, b1.is_ok())?;
    let b2 = os.bind_gpasid(nic.id, set, &data);
    r.check("second bind of the same device-PASID", b2, b2 == Err(Errno::Busy))?;
    os.iommu_mut().driver_mut().take_log();
    let freed = os.ioasid_free(set, hp);
    let log = os.iommu_mut().driver_mut().take_log();
    let drained =
        log.iter().any(|a| matches!(a, HwAction::Invalidate(InvDescriptor::Wait { drain_page_requests: true, .. })));
    r.check("VMM frees the host PASID before unbinding: torn down and drained first", freed, freed.is_ok() && drained)?;
    let back = !os.global_pasids().is_allocated(hp);
    r.check("value back in the allocator only now", back, back)?;

    writeln!(r.out, "process exit while bound")?;
    os.iommu_mut().driver_mut().take_log();
    let ex = os.exit(mm);
    let log = os.iommu_mut().driver_mut().take_log();
    let ignore = log.contains(&HwAction::PasidEntryFaultIgnore { sid: gpu.sid, pasid: bond.pasid });
    r.check("exit: entry left non-present with FPD, no drain", ex, ex.is_ok() && ignore)?;
    os.sva_unbind(&bond);
    os.sva_unbind(&bond);
    let log = os.iommu_mut().driver_mut().take_log();
    writeln!(r.out, "  the last unbind, as the driver issued it:")?;
    for a in &log {
        writeln!(r.out, "    {a:?}")?;
    }
    let gone = !os.global_pasids().is_allocated(bond.pasid) && !os.mm_exists(mm);
    r.check("PASID freed with the mm's last SVA domain", bond.pasid.raw(), gone)?;
    Ok(r.failed)
}
