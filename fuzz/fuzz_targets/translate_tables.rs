//! Translation through guest-controlled tables (VT-d §3.4–§3.8): root,
//! context, PASID directory / table and paging structures are all fuzz bytes.
//!
//! Input format (a fixed 132-byte header, then the table bytes):
//! ```text
//! byte 0       bit 0: scalable mode (TTM = 01b), else legacy (00b);
//!              bit 1: use bits 3:2 as TTM instead (covers abort-DMA and reserved);
//!              bits 5:4: unit configuration (see `iommu_fuzz::config`);
//!              bit 6: root page taken as is (may be unbacked), else modulo
//!              1024 (inside the tiled 4 MiB); bit 7: caching mode (CAP.CM)
//! bytes 1-2    root table page number (u16 LE): RTADDR.RTA = page << 12
//! byte 3       number of requests (% 9)
//! bytes 4-131  8 request records of 16 bytes:
//!                sid:u16 pasid:u32 (bit 31 present, 19:0 value) addr:u64
//!                flags:u8 (bits 3:0 r/w/x/priv; 4 dma_read; 5 dma_write;
//!                          6 ats_translate; 7 translate twice)
//!                len:u8 (bits 5:0: DMA length = · 129 bytes; bits 7:6: addr
//!                        mode 0 as is, 1 addr % 4 MiB (inside the tables),
//!                        2 0xFEE0_0000 + addr % 1 MiB (the interrupt
//!                        window), 3 addr | 0xFFFF_8000_0000_0000)
//! byte 132..   table bytes T, tiled over the first 4 MiB of a 16 MiB memory
//!              (byte a of memory = T[a % T.len()]; see `TiledMemory`)
//! ```
//!
//! Properties: nothing panics; no translation (nor ATS completion) puts the
//! request's address inside the interrupt range 0xFEE0_0000..0xFEF0_0000;
//! a translation's frame is aligned to its size, holds the output address,
//! keeps the input's offset within the page and grants the access.
#![no_main]

use iommu_format::vtd::regs::{gcmd, offset as o};
use iommu_fuzz::{access, config, pasid, Input, TiledMemory, INTR};
use iommu_hw::vtd::{AtsCompletion, Request, Translated, VtdUnit};
use iommu_types::{Iova, NullInterrupts, RegisterBus, SourceId, Width};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 16 << 20;
const TILE: u64 = 4 << 20;

fn check_translation(req: &Request, t: &Translated) {
    let out = t.addr.raw();
    let size = t.size.bytes();
    assert!(
        !INTR.contains(&out) && !INTR.contains(&(out & !0xFFF)),
        "{req:?} translated into the interrupt range: {t:?}"
    );
    assert_eq!(t.frame.raw() & (size - 1), 0, "{req:?}: frame not aligned to its size: {t:?}");
    assert_eq!(out & !(size - 1), t.frame.raw(), "{req:?}: output outside its frame: {t:?}");
    assert_eq!(out & (size - 1), req.addr.raw() & (size - 1), "{req:?}: page offset not kept: {t:?}");
    assert!(t.perm.allows(req.access), "{req:?}: translation does not grant the access: {t:?}");
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let rt_page = if flags & 0x40 != 0 { inp.u16() as u64 } else { inp.u16() as u64 % 1024 };
    let n = inp.u8() as usize % 9;
    let records = inp.bytes(8 * 16);
    let tables = inp.rest();

    // Memory whose first 4 MiB hold the table bytes, repeated.
    let unit =
        VtdUnit::new(config((flags >> 4) & 3 | (flags >> 5) & 4), TiledMemory::new(MEM, tables, TILE), NullInterrupts);

    let ttm = if flags & 2 != 0 { ((flags >> 2) & 3) as u64 } else { (flags & 1) as u64 };
    unit.write(o::RTADDR, Width::W64, rt_page << 12 | ttm << 10).expect("RTADDR");
    unit.write(o::GCMD, Width::W32, gcmd::SRTP as u64).expect("GCMD.SRTP");
    unit.write(o::GCMD, Width::W32, gcmd::TE as u64).expect("GCMD.TE");
    let gsts = unit.read(o::GSTS, Width::W32).expect("GSTS") as u32;
    assert_eq!(gsts & (gcmd::TE | gcmd::SRTP), gcmd::TE | gcmd::SRTP, "GSTS after SRTP and TE: {gsts:#x}");

    let mut rec = Input::new(records);
    let mut buf = vec![0u8; 63 * 129];
    for _ in 0..n {
        let sid = SourceId::new(rec.u16());
        let pasid = pasid(rec.u32());
        let raw_addr = rec.u64();
        let fl = rec.u8();
        let lb = rec.u8();
        let len = (lb & 0x3F) as usize * 129;
        let addr = Iova::new(match lb >> 6 {
            0 => raw_addr,
            1 => raw_addr % TILE,
            2 => INTR.start + raw_addr % (INTR.end - INTR.start),
            _ => raw_addr | 0xFFFF_8000_0000_0000,
        });
        let req = Request { sid, pasid, addr, access: access(fl) };

        let times = if fl & 0x80 != 0 { 2 } else { 1 };
        for _ in 0..times {
            if let Ok(t) = unit.translate(&req) {
                check_translation(&req, &t);
            }
        }
        if fl & 0x40 != 0 {
            if let AtsCompletion::Translated { frame, size, perm } = unit.ats_translate(sid, pasid, addr, req.access) {
                let out = frame.raw() | (addr.raw() & (size.bytes() - 1));
                assert!(!INTR.contains(&out), "ATS {req:?} completed into the interrupt range: {frame:?} {size:?}");
                assert_eq!(frame.raw() & (size.bytes() - 1), 0, "ATS frame not aligned: {frame:?} {size:?}");
                assert!(perm.allows(req.access), "ATS completion does not grant the access: {perm:?}");
            }
        }
        if fl & 0x10 != 0 {
            let _ = unit.dma_read(sid, pasid, addr, &mut buf[..len]);
        }
        if fl & 0x20 != 0 {
            let src = &tables[..len.min(tables.len())];
            let _ = unit.dma_write(sid, pasid, addr, src);
        }
    }
});
