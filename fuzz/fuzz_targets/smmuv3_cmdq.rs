//! The SMMUv3 command queue (SMMUv3 §4, §7.1) with arbitrary contents.
//!
//! Input format:
//! ```text
//! byte 0      bits 1:0: SMMU profile (0 full, 1 QEMU nested, 2 QEMU
//!             stage 1 only, 3 QEMU stage 2 only); bits 3:2: queue base
//!             (0: 0x10000; 1: 64 KiB below the end of memory, aligned down
//!             by the SMMU to the queue size; 2: unbacked, so the first
//!             fetch aborts; 3: 0x20020, unaligned for any queue of more
//!             than two entries)
//! byte 1      CMDQ_BASE.LOG2SIZE (5 bits, capped by the SMMU to IDR1.CMDQS)
//! bytes 2-5   initial CMDQ_CONS (written while the queue is disabled)
//! byte 6      number of rounds k (at most 16)
//! 4·k bytes   rounds: a u32 CMDQ_PROD value; bit 31 (RES0 in the register)
//!             set: acknowledge GERROR through GERRORN first; bit 30 set:
//!             toggle CMDQEN off and on first
//! rest        queue contents, written at the queue base (what fits)
//! ```
//!
//! Properties: nothing panics; a write (PROD, CR0, GERRORN) never moves
//! CONS past PROD (consumption advances CONS by at most the PROD − CONS
//! distance before the write); while the queue is enabled and no error is
//! active, a PROD at most one queue ahead of CONS before the write is
//! drained by it (CONS = PROD); a PROD further ahead (an invalid state) is
//! only bounded, not required to drain; while GERROR.CMDQ_ERR is active
//! CMDQ_CONS.ERR is non-zero; register reads are masked to the queue's
//! index bits.
#![no_main]

use iommu_format::smmuv3::regs::offset as o;
use iommu_fuzz::Input;
use iommu_hw::smmuv3::{QemuStages, Smmu, SmmuConfig};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, PhysMem, RegisterBus, Width};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 16 << 20;
const BASES: [u64; 4] = [0x1_0000, MEM - 0x1_0000, 1 << 40, 0x2_0020];
const CMDQEN: u64 = 1 << 3;

type Unit = Smmu<PagedMemory, NullInterrupts>;

fn rd(u: &Unit, off: u64) -> u32 {
    u.read(off, Width::W32).expect("aligned in-window read") as u32
}

fn wr(u: &Unit, off: u64, w: Width, v: u64) {
    u.write(off, w, v).expect("aligned in-window write");
}

fn profile(sel: u8) -> SmmuConfig {
    match sel & 3 {
        0 => SmmuConfig::full(),
        1 => SmmuConfig::qemu(QemuStages::Nested),
        2 => SmmuConfig::qemu(QemuStages::S1Only),
        _ => SmmuConfig::qemu(QemuStages::S2Only),
    }
}

fn error_active(u: &Unit) -> bool {
    (rd(u, o::GERROR) ^ rd(u, o::GERRORN)) & 1 != 0
}

/// Checks the state after a write that may have consumed commands, given
/// CONS before it and the log2 size in effect.
fn check(u: &Unit, cons_before: u32, log2: u32) {
    let wmask = (2u32 << log2) - 1;
    let prod = rd(u, o::CMDQ_PROD);
    let cons = rd(u, o::CMDQ_CONS);
    assert_eq!(prod & !wmask, 0, "CMDQ_PROD {prod:#x} has bits beyond the wrap flag (LOG2SIZE {log2})");
    assert_eq!(cons & !(wmask | 0x7F << 24), 0, "CMDQ_CONS {cons:#x} has bits beyond RD and ERR");
    let ahead = prod.wrapping_sub(cons_before) & wmask;
    let moved = cons.wrapping_sub(cons_before) & wmask;
    assert!(moved <= ahead, "CONS moved {moved} entries but PROD was {ahead} ahead (PROD {prod:#x} CONS {cons:#x})");
    let active = error_active(u);
    if active {
        assert_ne!(cons >> 24 & 0x7F, 0, "GERROR.CMDQ_ERR active with CMDQ_CONS.ERR = 0 ({cons:#x})");
    }
    let enabled = rd(u, o::CR0) as u64 & CMDQEN != 0;
    if enabled && !active && ahead <= 1 << log2 {
        assert_eq!(cons & wmask, prod, "queue enabled, no error, but not drained");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg_byte = inp.u8();
    let log2_raw = inp.u8() as u64 & 0x1F;
    let cons0 = inp.u32();
    let k = (inp.u8() as usize).min(16);
    let rounds = inp.bytes(4 * k);
    let contents = inp.rest();

    let cfg = profile(cfg_byte);
    let log2 = (log2_raw as u32).min(cfg.cmdq_max());
    let unit = Smmu::new(cfg, PagedMemory::new(MEM), NullInterrupts);
    let base = BASES[((cfg_byte >> 2) & 3) as usize];
    // The SMMU aligns the base down to the queue size.
    let aligned = base & !((16u64 << log2).max(32) - 1);
    let fit = (MEM.saturating_sub(aligned) as usize).min(contents.len());
    if fit > 0 {
        unit.mem().write(Hpa::new(aligned), &contents[..fit]).expect("queue contents inside memory");
    }
    wr(&unit, o::CMDQ_BASE, Width::W64, base | log2_raw);
    wr(&unit, o::CMDQ_CONS, Width::W32, cons0 as u64);
    let before = rd(&unit, o::CMDQ_CONS);
    wr(&unit, o::CR0, Width::W32, CMDQEN);
    assert_eq!(rd(&unit, o::CR0ACK) as u64 & CMDQEN, CMDQEN, "CR0ACK.CMDQEN");
    check(&unit, before, log2);

    for r in rounds.chunks_exact(4) {
        let v = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        if v & 1 << 30 != 0 {
            let before = rd(&unit, o::CMDQ_CONS);
            wr(&unit, o::CR0, Width::W32, 0);
            wr(&unit, o::CR0, Width::W32, CMDQEN);
            check(&unit, before, log2);
        }
        if v & 1 << 31 != 0 {
            let before = rd(&unit, o::CMDQ_CONS);
            wr(&unit, o::GERRORN, Width::W32, rd(&unit, o::GERROR) as u64);
            check(&unit, before, log2);
        }
        let before = rd(&unit, o::CMDQ_CONS);
        wr(&unit, o::CMDQ_PROD, Width::W32, (v & 0x3FFF_FFFF) as u64);
        check(&unit, before, log2);
    }
});
