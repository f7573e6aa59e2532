//! The built-in default scenario: `iommu-sim` with no arguments.
//!
//! A full-featured VT-d unit in scalable mode, one PRI/ATS-capable device
//! with five PASIDs (first-stage 4- and 5-level, second-stage, nested 4×4,
//! pass-through), programmed through memory and registers only. It DMAs
//! through each PASID, shows a fault being recorded and decoded, shows the
//! IOTLB serving a stale translation until a PASID-based invalidation, and
//! resolves a not-present page through a page request and a page group
//! response. Everything is deterministic.

use std::io::Write;

use iommu_format::vtd::fault::FaultRecord;
use iommu_format::vtd::inv_desc::{InvDescriptor, PasidIotlbScope, ResponseCode};
use iommu_format::vtd::page_req::{PageRequest, PageRequestDesc};
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::regs::{gcmd, offset};
use iommu_hw::vtd::{AtsCompletion, Request, VtdConfig, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{
    Access, DomainId, Gpa, Hpa, Iova, NullInterrupts, PageSize, PagedMemory, Pasid, Perm, PhysMem, RegisterBus,
    SourceId, Width,
};

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

const RW: Perm = Perm { read: true, write: true, exec: false };
const DEV: SourceId = SourceId::from_bdf(0, 2, 0);
const IQ: u64 = 0x0F00_0000;
const PRQ: u64 = 0x0F10_0000;
const STATUS: u64 = 0x0F20_0000;

struct Queue {
    tail: u64,
}

impl Queue {
    /// Submits descriptors followed by a wait with status write, and checks
    /// the status word (VT-d §6.5.2.8).
    fn submit(&mut self, u: &Unit, descs: &[InvDescriptor]) -> bool {
        let wait = InvDescriptor::Wait {
            interrupt: false,
            status: Some((Hpa::new(STATUS), 1)),
            fence: true,
            drain_page_requests: false,
        };
        let _ = u.mem().write_u64(Hpa::new(STATUS), 0);
        for d in descs.iter().chain([&wait]) {
            let _ = u.mem().write(Hpa::new(IQ + self.tail), &d.encode().to_bytes());
            self.tail = (self.tail + 32) % 4096;
        }
        let _ = RegisterBus::write(u, offset::IQT, Width::W64, self.tail);
        u.mem().read_u64(Hpa::new(STATUS)).is_ok_and(|v| v == 1)
    }
}

fn entry(did: u16, config: PasidConfig) -> PasidEntryRepr {
    PasidEntryRepr { fpd: false, did: DomainId::new(did), pwsnp: true, pgsnp: false, config }
}

fn fs(root: Hpa, levels: u8) -> FirstStageCfg {
    FirstStageCfg { root: Gpa::new(root.raw()), levels, sre: false, ere: false, wpe: false, eafe: false }
}

/// Runs the default scenario and writes its report.
///
/// # Errors
/// An I/O error writing the report.
pub fn run(out: &mut impl Write) -> std::io::Result<()> {
    let u: Unit = VtdUnit::new(VtdConfig::full_featured(), PagedMemory::new(512 << 20), NullInterrupts);
    let mem = u.mem();
    let mut alloc = PageAlloc::new(0x10_0000, 0x0E00_0000);
    let mut setup = VtdSetup::new(&mut alloc, true);
    setup.scalable_device(mem, &mut alloc, DEV, true, true);

    // PASID 1: first stage, 4-level (an SVA-style process address space).
    let mut fs4 = PageTable::new(Format::FirstStage, 4, &mut alloc);
    fs4.map(mem, &mut alloc, 0x7f00_1234_5000, 0x1000_0000, PageSize::Size4K, RW);
    setup.pasid_entry(mem, &mut alloc, DEV, Pasid::new(1), &entry(1, PasidConfig::FirstStage(fs(fs4.root, 4))));
    // PASID 2: second stage, 4-level, with a 2 MiB page.
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    ss.map(mem, &mut alloc, 0x4000_0000, 0x1020_0000, PageSize::Size2M, RW);
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    setup.pasid_entry(mem, &mut alloc, DEV, Pasid::new(2), &entry(2, PasidConfig::SecondStage(ss_cfg)));
    // PASID 3: nested, a guest first stage over the second stage above.
    let mut gfs = PageTable::new(Format::FirstStage, 4, &mut alloc);
    gfs.map(mem, &mut alloc, 0x5555_0000, 0x4000_3000, PageSize::Size4K, RW);
    for l in 1..=4 {
        if let Some(a) = gfs.entry_addr(0x5555_0000, l) {
            let page = a.raw() & !0xFFF;
            ss.map(mem, &mut alloc, page, page, PageSize::Size4K, RW);
        }
    }
    setup.pasid_entry(mem, &mut alloc, DEV, Pasid::new(3), &entry(2, PasidConfig::Nested(fs(gfs.root, 4), ss_cfg)));
    // PASID 4: pass-through. PASID 5: first stage, 5-level.
    setup.pasid_entry(mem, &mut alloc, DEV, Pasid::new(4), &entry(1, PasidConfig::PassThrough));
    let mut fs5 = PageTable::new(Format::FirstStage, 5, &mut alloc);
    fs5.map(mem, &mut alloc, 0x00ab_cdef_0000_0000, 0x1100_0000, PageSize::Size4K, RW);
    setup.pasid_entry(mem, &mut alloc, DEV, Pasid::new(5), &entry(1, PasidConfig::FirstStage(fs(fs5.root, 5))));

    setup.enable(&u);
    let _ = RegisterBus::write(&u, offset::IQA, Width::W64, IQ | 1 << 11);
    let _ = RegisterBus::write(&u, offset::PQA, Width::W64, PRQ);
    let _ = RegisterBus::write(&u, offset::GCMD, Width::W32, (gcmd::TE | gcmd::QIE) as u64);
    let mut q = Queue { tail: 0 };

    writeln!(
        out,
        "iommu-sim: VT-d scalable mode, device {DEV}, {} fault recording registers",
        u.caps().fault_record_count()
    )?;
    writeln!(out)?;
    let header = ["PASID", "translation", "IOVA", "output", "page", "IOTLB"];
    writeln!(
        out,
        "{:<6} {:<22} {:<20} {:<20} {:<6} {}",
        header[0], header[1], header[2], header[3], header[4], header[5]
    )?;
    let probes: [(u32, &str, u64); 5] = [
        (1, "first-stage 4-level", 0x7f00_1234_5678),
        (2, "second-stage 2M", 0x4012_3456),
        (3, "nested 4x4", 0x5555_0abc),
        (4, "pass-through", 0x0123_4000),
        (5, "first-stage 5-level", 0x00ab_cdef_0000_0010),
    ];
    for (p, what, iova) in probes {
        for _ in 0..2 {
            let req = Request { sid: DEV, pasid: Some(Pasid::new(p)), addr: Iova::new(iova), access: Access::WRITE };
            match u.translate(&req) {
                Ok(t) => writeln!(
                    out,
                    "{p:<6} {what:<22} {:<20} {:<20} {:<6} {}",
                    format!("{iova:#x}"),
                    t.addr.to_string(),
                    format!("{:?}", t.size).trim_start_matches("Size"),
                    match (t.cached, p) {
                        (_, 4) => "not cached (pass-through)",
                        (true, _) => "hit",
                        (false, _) => "miss (walked)",
                    }
                )?,
                Err(f) => writeln!(out, "{p:<6} {what:<22} {iova:#x} fault {}", f.reason)?,
            }
        }
    }

    writeln!(out)?;
    let bad = Request { sid: DEV, pasid: Some(Pasid::new(1)), addr: Iova::new(0x7f00_dead_0000), access: Access::READ };
    let f = u.translate(&bad).err();
    let fro = u.caps().fault_record_offset();
    let lo = RegisterBus::read(&u, fro, Width::W64).unwrap_or(0);
    let hi = RegisterBus::read(&u, fro + 8, Width::W64).unwrap_or(0);
    writeln!(out, "unmapped read through PASID 1: {:?}", f.map(|f| f.reason))?;
    writeln!(out, "  fault record {:#018x}_{:#018x}", hi, lo)?;
    if let Some(info) = FaultRecord::from_words([lo, hi]).decode() {
        writeln!(
            out,
            "  decoded: reason {} sid {} addr {} pasid {:?} {:?}",
            info.reason, info.source_id, info.addr, info.pasid, info.access
        )?;
    }
    let _ = RegisterBus::write(&u, fro + 8, Width::W64, 1 << 63);

    writeln!(out)?;
    writeln!(out, "remap PASID 1's page to 0x12000000 without invalidating:")?;
    fs4.map(mem, &mut alloc, 0x7f00_1234_5000, 0x1200_0000, PageSize::Size4K, RW);
    let req = Request { sid: DEV, pasid: Some(Pasid::new(1)), addr: Iova::new(0x7f00_1234_5000), access: Access::READ };
    writeln!(out, "  translate -> {:?} (stale, from the IOTLB)", u.translate(&req).map(|t| t.addr))?;
    let inv = InvDescriptor::PasidIotlb {
        did: DomainId::new(1),
        pasid: Pasid::new(1),
        scope: PasidIotlbScope::Page { addr: Iova::new(0x7f00_1234_5000), am: 0, ih: false },
    };
    let ok = q.submit(&u, &[inv]);
    writeln!(out, "  PASID-based IOTLB invalidation + wait (status written: {ok})")?;
    writeln!(out, "  translate -> {:?}", u.translate(&req).map(|t| t.addr))?;

    writeln!(out)?;
    let iova = Iova::new(0x7f00_4000_0000);
    let ats = u.ats_translate(DEV, Some(Pasid::new(1)), iova, Access::WRITE);
    writeln!(out, "ATS translation request for {iova} (not mapped): {ats:?}")?;
    let pr = PageRequest {
        rid: DEV,
        pasid: Some(Pasid::new(1)),
        addr: iova,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        lpig: true,
        prgi: 7,
        private: [0, 0],
    };
    writeln!(out, "page request: {:?}", u.page_request(&pr))?;
    let pqt = RegisterBus::read(&u, offset::PQT, Width::W64).unwrap_or(0);
    let mut words = [0u64; 4];
    for (i, w) in words.iter_mut().enumerate() {
        *w = mem.read_u64(Hpa::new(PRQ + 8 * i as u64)).unwrap_or(0);
    }
    writeln!(out, "  PRQ tail {pqt:#x}, entry: {:?}", PageRequestDesc::from_words(words).decode())?;
    fs4.map(mem, &mut alloc, iova.raw(), 0x1300_0000, PageSize::Size4K, RW);
    let _ = RegisterBus::write(&u, offset::PQH, Width::W64, pqt);
    let resp = InvDescriptor::PageGroupResponse {
        rid: DEV,
        pasid: Some(Pasid::new(1)),
        code: ResponseCode::Success,
        lpig: true,
        prgi: 7,
        private: None,
    };
    q.submit(&u, &[resp]);
    writeln!(out, "  software maps the page and responds: {:?}", u.take_responses(DEV))?;
    let retry = u.ats_translate(DEV, Some(Pasid::new(1)), iova, Access::WRITE);
    writeln!(out, "  ATS retry: {retry:?}")?;
    if let AtsCompletion::Translated { .. } = retry {
        writeln!(
            out,
            "  device TLB now holds {:?}",
            u.device_tlb_lookup(DEV, Some(Pasid::new(1)), iova, Access::WRITE)
        )?;
    }

    writeln!(out)?;
    let c = u.iotlb().cache();
    let s = c.stats();
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    writeln!(
        out,
        "IOTLB: {} entries capacity, {} hits, {} misses, {} fills; faults recorded {}",
        c.capacity(),
        s.hits,
        s.misses,
        s.fills,
        ld(&u.stats.faults_recorded)
    )?;
    Ok(())
}
