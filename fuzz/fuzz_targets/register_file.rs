//! The register file (VT-d chapter 11) under arbitrary MMIO traffic,
//! interleaved with DMA, page requests and ATS translation requests.
//!
//! Input format:
//! ```text
//! byte 0   unit configuration (bits 2:0, see `iommu_fuzz::config`)
//! then     operations until the input ends (at most 256), each a kind byte
//!          followed by its arguments (little-endian):
//!   kind % 8 = 0  read   off:u16
//!              1  write  off:u16 value:u64
//!              2  translate           sid:u16 pasid:u32 addr:u64 access:u8
//!              3  page_request        rid:u16 pasid:u32 addr:u64 bits:u8 prgi:u16
//!              4  ats_translate       sid:u16 pasid:u32 addr:u64 access:u8
//!              5  memory write        addr:u32 value:u64 (8-byte aligned, below 16 MiB)
//!              6  dma_read/dma_write  sid:u16 pasid:u32 addr:u64 len:u8 (kind bit 3: write)
//!              7  take_responses / device_tlb_lookup  sid:u16 pasid:u32 addr:u64 access:u8
//!                 (kind bit 4: also mark `sid` as an ATS endpoint that answers
//!                 device-TLB invalidations when kind bit 5 is set, else not)
//!   for reads and writes: kind bit 3 selects a 64-bit access (else 32-bit),
//!   bit 4 aligns the offset to the width, bit 5 picks `off` from a list of
//!   the registers with side effects (else `off % 0x1100`).
//! ```
//! pasid: bit 31 = present, bits 19:0 = value. access: bits r, w, x, priv.
//!
//! Properties: nothing panics; a register access is refused exactly when it
//! is misaligned or leaves the 4 KiB window; a 32-bit read fits in 32 bits.
#![no_main]

use iommu_format::vtd::regs::offset as o;
use iommu_fuzz::{access, config, page_request, request_ids, Input};
use iommu_hw::vtd::{Request, VtdUnit, REGISTER_WINDOW};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, PhysMem, RegisterBus, SourceId, Width};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 16 << 20;

/// Registers with side effects or state (the IOTLB pair at IRO×16 = 0xF0
/// and the first fault recording registers at FRO×16 = 0x220).
const NAMED: [u64; 32] = [
    o::VER,
    o::CAP,
    o::ECAP,
    o::GCMD,
    o::GSTS,
    o::RTADDR,
    o::CCMD,
    o::FSTS,
    o::FECTL,
    o::FEDATA,
    o::FEADDR,
    o::IQH,
    o::IQT,
    o::IQA,
    o::ICS,
    o::IECTL,
    o::IQERCD,
    o::PQH,
    o::PQT,
    o::PQA,
    o::PRS,
    o::PECTL,
    0xF0,
    0xF8,
    0x220,
    0x228,
    0x230,
    0x238,
    0x290,
    0x298,
    o::RTADDR + 4,
    o::IQT + 4,
];

fn offset(kind: u8, raw: u16, width: Width) -> u64 {
    let mut off = if kind & 0x20 != 0 { NAMED[raw as usize % NAMED.len()] } else { raw as u64 % 0x1100 };
    if kind & 0x10 != 0 {
        off &= !(width.bytes() - 1);
    }
    off
}

fn refused(off: u64, width: Width) -> bool {
    !off.is_multiple_of(width.bytes()) || off + width.bytes() > REGISTER_WINDOW
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let unit = VtdUnit::new(config(inp.u8()), PagedMemory::new(MEM), NullInterrupts);
    let mut buf = vec![0u8; 255 * 33];
    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let kind = inp.u8();
        let width = if kind & 8 != 0 { Width::W64 } else { Width::W32 };
        match kind % 8 {
            0 => {
                let off = offset(kind, inp.u16(), width);
                let r = unit.read(off, width);
                assert_eq!(r.is_err(), refused(off, width), "read {off:#x} {width:?}: {r:?}");
                if let Ok(v) = r {
                    assert_eq!(v & !width.mask(), 0, "read {off:#x} {width:?} returned {v:#x}");
                }
            }
            1 => {
                let off = offset(kind, inp.u16(), width);
                let value = inp.u64();
                let r = unit.write(off, width, value);
                assert_eq!(r.is_err(), refused(off, width), "write {off:#x} {width:?}: {r:?}");
            }
            2 => {
                let (sid, pasid, addr) = request_ids(&mut inp);
                let req = Request { sid, pasid, addr, access: access(inp.u8()) };
                let _ = std::hint::black_box(unit.translate(&req));
            }
            3 => {
                let (rid, pasid, addr) = request_ids(&mut inp);
                let req = page_request(&mut inp, rid, pasid, addr);
                let _ = std::hint::black_box(unit.page_request(&req));
            }
            4 => {
                let (sid, pasid, addr) = request_ids(&mut inp);
                let _ = std::hint::black_box(unit.ats_translate(sid, pasid, addr, access(inp.u8())));
            }
            5 => {
                let addr = (inp.u32() as u64 % MEM) & !7;
                unit.mem().write_u64(Hpa::new(addr), inp.u64()).expect("aligned write inside memory");
            }
            6 => {
                let (sid, pasid, addr) = request_ids(&mut inp);
                let len = inp.u8() as usize * 33;
                let r = if kind & 8 != 0 {
                    unit.dma_write(sid, pasid, addr, &buf[..len])
                } else {
                    unit.dma_read(sid, pasid, addr, &mut buf[..len])
                };
                let _ = std::hint::black_box(r);
            }
            _ => {
                let (sid, pasid, addr) = request_ids(&mut inp);
                let acc = access(inp.u8());
                if kind & 0x10 != 0 {
                    unit.set_ats_responsive(sid, kind & 0x20 != 0);
                }
                let _ = std::hint::black_box(unit.device_tlb_lookup(sid, pasid, addr, acc));
                let _ = std::hint::black_box(unit.take_responses(SourceId::new(sid.raw())));
            }
        }
    }
});
