//! The SMMUv3 register file (SMMUv3 §6) under arbitrary MMIO traffic of
//! both widths, interleaved with translations and DMA of arbitrary
//! requests, over memory holding arbitrary bytes.
//!
//! Input format:
//! ```text
//! byte 0      bits 1:0: SMMU profile (0 full, 1 QEMU nested, 2 QEMU stage 1
//!             only, 3 QEMU stage 2 only)
//! bytes 1-2   tile length L (u16 LE, at most 8192)
//! L bytes     tile T: the first 4 MiB of the 16 MiB memory hold T repeated
//!             (byte a = T[a % L]; see `TiledMemory`), the rest is zero
//! then        operations until the input ends (at most 256), each a kind
//!             byte followed by its arguments (little-endian):
//!   kind % 5 = 0  read          off:u32
//!              1  write         off:u32 value:u64
//!              2  translate     sid:u32 ssid:u32 addr:u64 access:u8
//!              3  DMA           sid:u32 ssid:u32 addr:u64 len:u8 (kind bit 3: write)
//!              4  memory write  addr:u32 value:u64 (8-byte aligned, modulo 16 MiB)
//!   reads and writes: kind bit 3 selects a 64-bit access (else 32-bit), bit
//!   4 aligns the offset to the width, bit 5 picks `off` from the list of
//!   defined registers (bit 6 then adds 4: the upper half of a 64-bit
//!   register, or the next register), else `off % 0x20100`.
//!   translate and DMA: kind bit 4 reduces the StreamID modulo 16; ssid bit
//!   31 = present, bits 19:0 = value; access bits r, w, x, priv; a DMA moves
//!   len × 33 bytes.
//! ```
//!
//! Properties: nothing panics; an access is refused exactly when it is
//! misaligned or leaves the 128 KiB window; a 32-bit read fits in 32 bits;
//! the ID registers (IDR0–IDR5, IIDR, AIDR) read the same values all along,
//! at both widths.
#![no_main]

use iommu_format::smmuv3::regs::offset as o;
use iommu_fuzz::{access, Input, TiledMemory};
use iommu_hw::smmuv3::{QemuStages, Request, Smmu, SmmuConfig, REGISTER_WINDOW};
use iommu_types::{Hpa, NullInterrupts, PhysMem, RegisterBus, StreamId, SubstreamId, Width};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 16 << 20;
const TILE: u64 = 4 << 20;

/// Every register the model defines (SMMUv3 §6.2).
const NAMED: [u64; 44] = [
    o::IDR0,
    o::IDR1,
    o::IDR2,
    o::IDR3,
    o::IDR4,
    o::IDR5,
    o::IIDR,
    o::AIDR,
    o::CR0,
    o::CR0ACK,
    o::CR1,
    o::CR2,
    o::STATUSR,
    o::GBPA,
    o::AGBPA,
    o::IRQ_CTRL,
    o::IRQ_CTRLACK,
    o::GERROR,
    o::GERRORN,
    o::GERROR_IRQ_CFG0,
    o::GERROR_IRQ_CFG1,
    o::GERROR_IRQ_CFG2,
    o::STRTAB_BASE,
    o::STRTAB_BASE_CFG,
    o::CMDQ_BASE,
    o::CMDQ_PROD,
    o::CMDQ_CONS,
    o::EVENTQ_BASE,
    o::EVENTQ_PROD,
    o::EVENTQ_CONS,
    o::EVENTQ_PROD_PAGE0_ALIAS,
    o::EVENTQ_CONS_PAGE0_ALIAS,
    o::EVENTQ_IRQ_CFG0,
    o::EVENTQ_IRQ_CFG1,
    o::EVENTQ_IRQ_CFG2,
    o::PRIQ_BASE,
    o::PRIQ_PROD,
    o::PRIQ_CONS,
    o::PRIQ_PROD_PAGE0_ALIAS,
    o::PRIQ_CONS_PAGE0_ALIAS,
    o::PRIQ_IRQ_CFG0,
    o::PRIQ_IRQ_CFG1,
    o::PRIQ_IRQ_CFG2,
    REGISTER_WINDOW - 8,
];

/// The ID registers and their offsets.
const ID_REGS: [u64; 8] = [o::IDR0, o::IDR1, o::IDR2, o::IDR3, o::IDR4, o::IDR5, o::IIDR, o::AIDR];

fn profile(sel: u8) -> SmmuConfig {
    match sel & 3 {
        0 => SmmuConfig::full(),
        1 => SmmuConfig::qemu(QemuStages::Nested),
        2 => SmmuConfig::qemu(QemuStages::S1Only),
        _ => SmmuConfig::qemu(QemuStages::S2Only),
    }
}

fn offset(kind: u8, raw: u32, width: Width) -> u64 {
    let mut off = if kind & 0x20 != 0 {
        NAMED[raw as usize % NAMED.len()] + if kind & 0x40 != 0 { 4 } else { 0 }
    } else {
        raw as u64 % 0x2_0100
    };
    if kind & 0x10 != 0 {
        off &= !(width.bytes() - 1);
    }
    off
}

fn refused(off: u64, width: Width) -> bool {
    !off.is_multiple_of(width.bytes()) || off + width.bytes() > REGISTER_WINDOW
}

fn request(inp: &mut Input<'_>, kind: u8) -> (StreamId, Option<SubstreamId>, u64) {
    let sid = inp.u32();
    let sid = StreamId(if kind & 0x10 != 0 { sid % 16 } else { sid });
    let ssid = inp.u32();
    let ssid = (ssid >> 31 != 0).then(|| SubstreamId::try_new(ssid & 0xF_FFFF).unwrap_or_default());
    (sid, ssid, inp.u64())
}

fn id_values<B: RegisterBus>(u: &B) -> [u64; 8] {
    ID_REGS.map(|off| u.read(off, Width::W32).expect("ID register read"))
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg = profile(inp.u8());
    let tile_len = (inp.u16() as usize).min(8192);
    let tile = inp.bytes(tile_len);
    let unit = Smmu::new(cfg, TiledMemory::new(MEM, tile, TILE), NullInterrupts);
    let ids = id_values(&unit);
    let want = [
        cfg.idr[0] as u64,
        cfg.idr[1] as u64,
        cfg.idr[2] as u64,
        cfg.idr[3] as u64,
        cfg.idr[4] as u64,
        cfg.idr[5] as u64,
        cfg.iidr as u64,
        cfg.aidr as u64,
    ];
    assert_eq!(ids, want, "ID registers at reset");
    let mut buf = vec![0u8; 255 * 33];
    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        let kind = inp.u8();
        let width = if kind & 8 != 0 { Width::W64 } else { Width::W32 };
        match kind % 5 {
            0 => {
                let off = offset(kind, inp.u32(), width);
                let r = unit.read(off, width);
                assert_eq!(r.is_err(), refused(off, width), "read {off:#x} {width:?}: {r:?}");
                if let Ok(v) = r {
                    assert_eq!(v & !width.mask(), 0, "read {off:#x} {width:?} returned {v:#x}");
                }
            }
            1 => {
                let off = offset(kind, inp.u32(), width);
                let value = inp.u64();
                let r = unit.write(off, width, value);
                assert_eq!(r.is_err(), refused(off, width), "write {off:#x} {width:?}: {r:?}");
            }
            2 => {
                let (sid, ssid, addr) = request(&mut inp, kind);
                let req = Request { sid, ssid, addr, access: access(inp.u8()) };
                let _ = std::hint::black_box(unit.translate(&req));
            }
            3 => {
                let (sid, ssid, addr) = request(&mut inp, kind);
                let len = inp.u8() as usize * 33;
                let r = if kind & 8 != 0 {
                    unit.dma_write(sid, ssid, addr, &buf[..len])
                } else {
                    unit.dma_read(sid, ssid, addr, &mut buf[..len])
                };
                let _ = std::hint::black_box(r);
            }
            _ => {
                let addr = (inp.u32() as u64 % MEM) & !7;
                unit.mem().write_u64(Hpa::new(addr), inp.u64()).expect("aligned write inside memory");
            }
        }
        assert_eq!(id_values(&unit), want, "ID registers changed after operation kind {kind:#x}");
    }
    for pair in [o::IDR0, o::IDR2, o::IDR4, o::IIDR] {
        let v = unit.read(pair, Width::W64).expect("64-bit ID register pair read");
        let i = ID_REGS.iter().position(|&r| r == pair).unwrap_or(0);
        assert_eq!(v, want[i] | want[i + 1] << 32, "64-bit read of the ID pair at {pair:#x}");
    }
});
