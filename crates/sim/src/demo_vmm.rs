//! The VMM half of the default scenario (issue 4): a guest kernel — the
//! project's own `os` code — runs SVA on a VT-d vIOMMU; the VMM turns its
//! PASID entries into nested attachments on the host's VT-d through the
//! host's iommufd-shaped API. Two guest processes share one assigned
//! device with different PASIDs; a guest page fault travels host PRQ →
//! VMM → guest PRQ → guest answer → host → device; a guest `munmap` plus
//! its invalidation leaves the device unable to reach the old page; the
//! host's state is compared before the VM and after its destruction.

use std::io::Write;
use std::sync::Arc;

use iommu_format::vtd::inv_desc::ResponseCode as HwCode;
use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_types::{Access, Hpa, Iova, NullInterrupts, PagedMemory, Perm, SourceId};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::{DmaFailure, PasidMode, Vm, VmConfig, VmError};

use crate::demo_os::Report;

type Mem = Arc<PagedMemory>;
type Unit = VtdUnit<Mem, NullInterrupts>;
type Host = Kernel<VtdDriver<Arc<Unit>>, Mem, RangeFrames>;

const RW: Perm = Perm { read: true, write: true, exec: false };
const VA: u64 = 0x4000_0000;

fn host() -> Result<(Mem, Arc<Unit>, Host), iommu_os::Errno> {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x800_0000));
    let driver = VtdDriver::probe(unit.clone(), &*mem, &mut frames)?;
    let kernel = Kernel::new(Iommu::new(0, driver, mem.clone(), frames), LocalPolicy::V2);
    Ok((mem, unit, kernel))
}

/// Runs the VMM scenario; returns how many expectations failed.
///
/// # Errors
/// An I/O error writing the report.
pub fn run(out: &mut impl Write) -> std::io::Result<u32> {
    let mut r = Report { out, failed: 0 };
    for mode in [PasidMode::Identity, PasidMode::Translated] {
        if let Err(e) = guest_sva(&mut r, mode) {
            r.check("scenario ran to its end", e, false)?;
        }
    }
    writeln!(r.out, "guest SVA: {} expectation(s) failed", r.failed)?;
    Ok(r.failed)
}

fn guest_sva<W: Write>(r: &mut Report<'_, W>, mode: PasidMode) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    writeln!(r.out, "== guest SVA through a vIOMMU, {mode:?} PASIDs ==").map_err(io)?;
    let (mem, unit, mut host) = host().map_err(|e| e.to_string())?;
    let sid = SourceId::from_bdf(0, 1, 0);
    let info = DeviceInfo { id: DeviceId(1), sid, max_pasids: 1 << 20, ats: true, pri: true, pci: true };
    host.add_device(info, GroupId(1)).map_err(|e| e.to_string())?;
    if mode == PasidMode::Translated {
        // Other host users already hold global PASIDs 1 and 2, so the
        // guest's PASIDs 1 and 2 must map elsewhere.
        for _ in 0..2 {
            host.global_pasids_mut().alloc(1 << 20).map_err(|e| format!("{e:?}"))?;
        }
    }
    let before = HostSnapshot::take(&host);

    let mut vm =
        Vm::create(&mut host, mem, VmConfig { pasid_mode: mode, ..VmConfig::default() }).map_err(|e| e.to_string())?;
    let dev = vm.assign_device(&mut host, DeviceId(1), SourceId::from_bdf(0, 3, 0)).map_err(|e| e.to_string())?;
    let gdev = vm.devices()[dev].guest;
    let mut bonds = Vec::new();
    for tag in [b"guest-proc-1", b"guest-proc-2"] {
        let (mm, bond) = vm
            .run_guest(&mut host, |g| {
                let mm = g.create_process()?;
                g.mmap(mm, Some(VA), 0x2000, RW)?;
                g.cpu_write(mm, VA, tag)?;
                Ok::<_, iommu_os::Errno>((mm, g.sva_bind(gdev, mm)?))
            })
            .map_err(|e| e.to_string())?;
        bonds.push((mm, bond));
    }
    let bindings = vm.bindings();
    r.check(
        "guest binds become nested host attachments (device, guest PASID, host PASID, nested)",
        &bindings,
        bindings.len() == 2
            && bindings.iter().all(|b| b.3)
            && bindings.iter().all(|b| (b.1 == b.2) == (mode == PasidMode::Identity)),
    )
    .map_err(io)?;

    for (i, (_, bond)) in bonds.iter().enumerate() {
        let got = vm.dma_read(&mut host, &unit, dev, Some(bond.pasid), VA, 12);
        let want = if i == 0 { b"guest-proc-1" } else { b"guest-proc-2" };
        let ok = got.as_deref() == Ok(&want[..]);
        let host_pasid = vm.host_pasid(dev, bond.pasid).map(|p| p.raw());
        let shown = got.map(|b| String::from_utf8_lossy(&b).into_owned());
        let what =
            format!("DMA with guest PASID {} (host {host_pasid:?}) reads process {} page", bond.pasid.raw(), i + 1);
        r.check(&what, &shown, ok).map_err(io)?;
    }

    let (mm1, b1) = bonds[0];
    let w = vm.dma_write(&mut host, &unit, dev, Some(b1.pasid), VA + 0x1000, b"fault-in");
    let mut buf = [0u8; 8];
    let read = vm.run_guest(&mut host, |g| g.cpu_read(mm1, VA + 0x1000, &mut buf));
    r.check(
        "DMA to a page not yet present: guest page request answered, retried, lands",
        (&w, String::from_utf8_lossy(&buf)),
        w.is_ok() && read.is_ok() && &buf == b"fault-in",
    )
    .map_err(io)?;
    r.check("page requests forwarded to the guest", vm.stats.faults_forwarded, vm.stats.faults_forwarded == 1)
        .map_err(io)?;

    let hpasid = vm.host_pasid(dev, b1.pasid);
    let m = vm.run_guest(&mut host, |g| g.munmap(mm1, VA, 0x1000));
    let cached = hpasid.and_then(|h| unit.device_tlb_lookup(sid, Some(h), Iova::new(VA), Access::READ));
    let again = vm.dma_read(&mut host, &unit, dev, Some(b1.pasid), VA, 4);
    r.check(
        "guest munmap + its invalidation: device TLB entry gone, DMA to the old page refused",
        (&m, cached, &again),
        m.is_ok() && cached.is_none() && again == Err(VmError::Dma(DmaFailure::Answered(HwCode::InvalidRequest))),
    )
    .map_err(io)?;

    writeln!(r.out, "  VMM: {:?}, {} MMIO exits", vm.stats, vm.exits()).map_err(io)?;
    vm.destroy(&mut host);
    let leaks = HostSnapshot::take(&host).leaks_since(&before);
    r.check("VM destroyed with live bindings: host holds nothing of it", &leaks, leaks.is_empty()).map_err(io)?;
    let mut b = [0u8; 4];
    let stale = hpasid.map(|h| unit.dma_read(sid, Some(h), Iova::new(VA + 0x1000), &mut b).is_ok());
    r.check("no DMA with the VM's former PASID reaches memory", stale, stale == Some(false)).map_err(io)?;
    Ok(())
}
