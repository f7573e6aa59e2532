//! Queued invalidation (VT-d §6.5.2) with guest-controlled queue contents.
//!
//! Input format:
//! ```text
//! byte 0      IQA: bits 2:0 QS, bit 3 DW (256-bit descriptors),
//!             bits 5:4 base (0: 0x10000, 1: 0x20000, 2: 16 MiB - 4 KiB, i.e.
//!             a queue running off the end of memory, 3: 1 GiB, unbacked),
//!             bit 6: IQE restart choice OnClear (else OnTailWrite),
//!             bit 7: unmask the invalidation event interrupt (IECTL.IM = 0)
//! byte 1      number of operations k (at most 64)
//! 3·k bytes   operations: kind byte, 16-bit little-endian argument
//! rest        queue contents, written at the queue base
//! ```
//! Operations (kind % 11): 0 IQT = arg << 4 (64-bit write); 1 IQT low half
//! (32-bit write of arg << 4); 2 FSTS write (clears IQE and ITE; arg bit 0
//! set: write the argument's low byte instead); 3 IQH read (64-bit); 4 IQH
//! read (32-bit); 5 GCMD = 0 (QIE off); 6 GCMD = QIE; 7 IQA = base | arg's
//! QS/DW bits (only takes effect while QIE is off); 8 IQT = IQH + (arg % 16)
//! descriptors; 9 ICS / IECTL writes; 10 mark source-id `arg` as an ATS
//! endpoint that answers device-TLB invalidations (kind bit 7 set) or not.
//!
//! Properties: nothing panics; while QIE is enabled (GSTS.QIES) IQH is inside
//! the queue and aligned to the descriptor size; right after an IQT write
//! that leaves FSTS.IQE and FSTS.ITE clear, the queue is drained (IQH ==
//! IQT), and with the OnClear restart choice and no unresponsive endpoint
//! it is drained whenever IQE is clear.
#![no_main]

use iommu_format::vtd::regs::{fsts, gcmd, offset as o, Iqa};
use iommu_fuzz::Input;
use iommu_hw::vtd::{IqeRestart, VtdConfig, VtdUnit};
use iommu_types::{Hpa, NullInterrupts, PagedMemory, PhysMem, RegisterBus, SourceId, Width};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 16 << 20;
const BASES: [u64; 4] = [0x1_0000, 0x2_0000, MEM - 0x1000, 1 << 30];

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

fn rd(u: &Unit, off: u64) -> u64 {
    u.read(off, Width::W64).expect("aligned in-window read")
}

fn wr(u: &Unit, off: u64, w: Width, v: u64) {
    u.write(off, w, v).expect("aligned in-window write");
}

/// Checks the queue invariants that hold whenever queued invalidation is
/// on; with `on_clear` (IQE restart on clear, and no device-TLB time-out
/// possible: clearing ITE does not restart the queue) also that the queue
/// is drained whenever IQE is clear.
fn check(u: &Unit, on_clear: bool) {
    let gsts = u.read(o::GSTS, Width::W32).expect("GSTS") as u32;
    if gsts & gcmd::QIE == 0 {
        return;
    }
    let iqa = Iqa::from_words([rd(u, o::IQA)]);
    let size = 4096u64 << iqa.get(Iqa::QS);
    let desc = if iqa.get(Iqa::DW) != 0 { 32 } else { 16 };
    let iqh = rd(u, o::IQH);
    assert!(iqh < size, "IQH {iqh:#x} outside a queue of {size:#x} bytes (IQA {:#x})", iqa.0[0]);
    assert_eq!(iqh % desc, 0, "IQH {iqh:#x} not aligned to {desc}-byte descriptors");
    let iqh32 = u.read(o::IQH, Width::W32).expect("IQH low half");
    assert_eq!(iqh32, iqh & 0xFFFF_FFFF, "32-bit IQH read disagrees with 64-bit read");
    if on_clear {
        check_drained(u);
    }
}

/// After an IQT write: either the queue stopped with IQE or ITE, or it is drained.
fn check_drained(u: &Unit) {
    let gsts = u.read(o::GSTS, Width::W32).expect("GSTS") as u32;
    let fsts_v = u.read(o::FSTS, Width::W32).expect("FSTS") as u32;
    if gsts & gcmd::QIE != 0 && fsts_v & (fsts::IQE | fsts::ITE) == 0 {
        assert_eq!(rd(u, o::IQH), rd(u, o::IQT), "IQT written, no IQE, but the queue was not drained");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let cfg_byte = inp.u8();
    let k = (inp.u8() as usize).min(64);
    let ops = inp.bytes(3 * k);
    let contents = inp.rest();

    let mut cfg = VtdConfig::full_featured();
    let on_clear = cfg_byte & 0x40 != 0;
    if on_clear {
        cfg.choices.iqe_restart = IqeRestart::OnClear;
    }
    let unit = VtdUnit::new(cfg, PagedMemory::new(MEM), NullInterrupts);
    let base = BASES[((cfg_byte >> 4) & 3) as usize];
    if !contents.is_empty() {
        // The queue may run off the end of memory: write what fits.
        let fit = (MEM.saturating_sub(base) as usize).min(contents.len());
        if fit > 0 {
            unit.mem().write(Hpa::new(base), &contents[..fit]).expect("queue contents inside memory");
        }
    }
    let iqa_low = (cfg_byte & 7) as u64 | ((cfg_byte as u64 >> 3) & 1) << 11;
    wr(&unit, o::IQA, Width::W64, base | iqa_low);
    if cfg_byte & 0x80 != 0 {
        wr(&unit, o::IECTL, Width::W32, 0);
    }
    wr(&unit, o::GCMD, Width::W32, gcmd::QIE as u64);
    check(&unit, on_clear);

    let mut timeouts_possible = false;
    for op in ops.chunks_exact(3) {
        let arg = u16::from_le_bytes([op[1], op[2]]) as u64;
        match op[0] % 11 {
            0 => {
                wr(&unit, o::IQT, Width::W64, arg << 4);
                check_drained(&unit);
            }
            1 => {
                wr(&unit, o::IQT, Width::W32, arg << 4);
                check_drained(&unit);
            }
            2 => {
                let v = if arg & 1 != 0 { arg & 0xFF } else { (fsts::IQE | fsts::ITE) as u64 };
                wr(&unit, o::FSTS, Width::W32, v);
            }
            3 => {
                let _ = rd(&unit, o::IQH);
            }
            4 => {
                let _ = unit.read(o::IQH, Width::W32).expect("IQH low half");
            }
            5 => wr(&unit, o::GCMD, Width::W32, 0),
            6 => wr(&unit, o::GCMD, Width::W32, gcmd::QIE as u64),
            7 => wr(&unit, o::IQA, Width::W64, base | (arg & 7) | (arg & 0x800)),
            8 => {
                let iqa = Iqa::from_words([rd(&unit, o::IQA)]);
                let size = 4096u64 << iqa.get(Iqa::QS);
                let desc = if iqa.get(Iqa::DW) != 0 { 32 } else { 16 };
                let tail = (rd(&unit, o::IQH) + (arg % 16) * desc) % size;
                wr(&unit, o::IQT, Width::W64, tail);
                check_drained(&unit);
            }
            9 => {
                wr(&unit, o::ICS, Width::W32, arg & 1);
                wr(&unit, o::IECTL, Width::W32, (arg & 0x8000) << 16);
            }
            _ => {
                let responsive = op[0] & 0x80 != 0;
                timeouts_possible |= !responsive;
                unit.set_ats_responsive(SourceId::new(arg as u16), responsive);
            }
        }
        check(&unit, on_clear && !timeouts_possible);
    }
});
