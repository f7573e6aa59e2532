//! Every raw SMMUv3 structure decoder over arbitrary words (SMMUv3 §4
//! commands, §5 STEs, CDs and level-1 descriptors, §6 registers, §7.3
//! event records, §8 PRI queue entries; VMSAv8-64 descriptors).
//!
//! Input: any bytes, read as little-endian u64 words (the last one
//! zero-padded). Each decoder is applied to the words starting at each of
//! the first four word offsets. The STE and CD validity checks run with the
//! features of the model's profiles and with features derived from ID
//! register values taken from the input (word 0 → IDR0, word 1 → IDR1,
//! word 2 → IDR3 and IDR5).
//!
//! Properties (beyond "nothing panics" and formatting every view):
//! * a decoded STE's stages match its Config, its S1CDMax fits SSIDSIZE,
//!   its stage-2 tables start at an aligned base with 1..=stride+4 index
//!   bits, an input size within the IAS and an output size within the OAS;
//! * a decoded CD's halves have input sizes 25..=48, the start level the
//!   input size implies, aligned bases and output sizes within the OAS;
//! * a command that decodes re-encodes to words that decode to it, and the
//!   RES0 bits reported are bits that are set;
//! * decoding an event record or PRI entry and encoding it again is stable;
//! * the stream-table configuration decoder caps LOG2SIZE to SIDSIZE and
//!   yields only SPLIT 6, 8 or 10.
#![no_main]

use std::fmt::Write;

use iommu_format::smmuv3::cd::{Cd, L1Cd, S1Fmt};
use iommu_format::smmuv3::cmd::{reserved_bits, CmdRaw, Command};
use iommu_format::smmuv3::desc::{pa_bits, Granule, S1Desc, S2Desc};
use iommu_format::smmuv3::event::EventRecord;
use iommu_format::smmuv3::pri::{PageRequest, PriEntry};
use iommu_format::smmuv3::regs::{
    effective_split, oas_bits, queue_empty, queue_full, Aidr, CmdqError, Cr0, Cr1, Cr2, Gbpa, Gerror, Idr0, Idr1, Idr3,
    Idr5, Iidr, IrqCtrl, QueueBase, QueueIndex, StallModel, StrtabBase, StrtabBaseCfg, StrtabFmt, Ttf,
};
use iommu_format::smmuv3::ste::{L1Std, S1Dss, Ste, SteConfig};
use iommu_fuzz::words;
use iommu_hw::smmuv3::{QemuStages, SmmuConfig};
use iommu_walk::smmuv3::config::{decode_cd, decode_ste, s2_geometry, TableCfg};
use iommu_walk::smmuv3::strtab::StrtabCfg;
use iommu_walk::smmuv3::Features;
use libfuzzer_sys::fuzz_target;

fn show<T: std::fmt::Display + std::fmt::Debug>(s: &mut String, v: &T) {
    let _ = write!(s, "{v} {v:?}");
}

fn dbg<T: std::fmt::Debug>(s: &mut String, v: &T) {
    let _ = write!(s, "{v:?}");
}

fn window<const N: usize>(w: &[u64], start: usize) -> [u64; N] {
    core::array::from_fn(|i| w.get(start + i).copied().unwrap_or(0))
}

/// The tables of a decoded STE or CD half are well formed.
fn check_tables(t: &TableCfg, f: &Features, what: &str) {
    let g = t.granule;
    assert!(f.granule(g), "{what}: unsupported granule {g:?} accepted");
    assert!((1..=g.stride() + 4).contains(&t.root_bits), "{what}: {t:?} resolves a bad number of index bits");
    assert_eq!(t.input_bits, g.level_shift(t.start_level) + t.root_bits, "{what}: {t:?} inconsistent");
    assert_eq!(t.base % t.root_size().max(64), 0, "{what}: unaligned base {t:?}");
    assert!(t.out_bits <= f.oas_bits, "{what}: output size beyond the OAS {t:?}");
    assert_eq!(t.base >> t.out_bits, 0, "{what}: base beyond the output size {t:?}");
}

fn check_ste(s: &mut String, ste: &Ste, f: &Features) {
    match decode_ste(ste, f) {
        Ok(c) => {
            dbg(s, &c);
            assert_ne!(c.config, SteConfig::Abort);
            assert_eq!(c.s1.is_some(), c.config.stage1(), "stage 1 present iff Config enables it");
            assert_eq!(c.s2.is_some(), c.config.stage2(), "stage 2 present iff Config enables it");
            if let Some(s1) = c.s1 {
                assert!(f.s1p, "stage-1 STE accepted without S1P");
                assert!(s1.cdmax <= f.ssid_bits, "S1CDMax {} above SSIDSIZE {}", s1.cdmax, f.ssid_bits);
                assert!(s1.cdmax != 0 || s1.fmt == S1Fmt::Linear, "single CD with a 2-level format");
                assert!(s1.cdmax == 0 || s1.dss != S1Dss::Reserved, "reserved S1DSS accepted");
                assert_eq!(s1.context_ptr >> f.oas_bits, 0, "S1ContextPtr beyond the OAS");
            }
            if let Some(s2) = c.s2 {
                assert!(f.s2p, "stage-2 STE accepted without S2P");
                check_tables(&s2.tables, f, "STE stage 2");
                assert!(s2.tables.input_bits <= f.ias_bits(), "stage-2 input size beyond the IAS");
                assert!(s2.tables.input_bits >= 25, "stage-2 input size below 25 bits");
            }
        }
        Err(e) => dbg(s, &e),
    }
}

fn check_cd(s: &mut String, cd: &Cd, f: &Features) {
    match decode_cd(cd, f) {
        Ok(c) => {
            dbg(s, &c);
            for (half, t) in c.tt.iter().enumerate() {
                let Some(t) = t else { continue };
                let what = if half == 0 { "CD TTB0" } else { "CD TTB1" };
                check_tables(t, f, what);
                assert!((25..=48).contains(&t.input_bits), "{what}: input size {}", t.input_bits);
                assert_eq!(t.start_level, t.granule.start_level(t.input_bits), "{what}: start level");
                assert!(t.root_bits <= t.granule.stride(), "{what}: concatenated stage-1 start table");
            }
            if !f.asid16 {
                assert!(c.asid <= 0xFF, "16-bit ASID without ASID16");
            }
        }
        Err(e) => dbg(s, &e),
    }
}

fn check_command(s: &mut String, w: [u64; 2]) {
    show(s, &CmdRaw::from_words(w));
    if let Some(r) = reserved_bits(w) {
        assert_eq!(r[0] & !w[0], 0);
        assert_eq!(r[1] & !w[1], 0);
    }
    match Command::decode(w) {
        Ok(c) => {
            dbg(s, &c);
            let enc = c.encode();
            assert_eq!(Command::decode(enc), Ok(c), "command round trip {w:x?} -> {enc:x?}");
            assert_eq!(c.opcode(), (w[0] & 0xFF) as u8);
            show(s, &c.to_raw());
            let _ = c.is_cfgi_all();
        }
        Err(e) => show(s, &e),
    }
}

fn check_registers(s: &mut String, v: u64) {
    show(s, &Idr0([v]));
    show(s, &Idr1([v]));
    show(s, &Idr3([v]));
    show(s, &Idr5([v]));
    show(s, &Iidr([v]));
    show(s, &Aidr([v]));
    show(s, &Cr0([v]));
    show(s, &Cr1([v]));
    show(s, &Cr2([v]));
    show(s, &Gbpa([v]));
    show(s, &IrqCtrl([v]));
    show(s, &Gerror([v]));
    show(s, &StrtabBase([v]));
    show(s, &StrtabBaseCfg([v]));
    show(s, &QueueBase([v]));
    dbg(s, &(StrtabFmt::from_bits(v), StrtabFmt::effective(v), effective_split(v)));
    dbg(s, &(StallModel::from_bits(v), Ttf::from_bits(v), oas_bits(v & 7), CmdqError::from_bits(v)));
    let q = QueueIndex([v]);
    show(s, &q);
    let other = QueueIndex([v.rotate_left(17)]);
    for log2 in [0, 1, 5, 19, 20, 31, (v >> 59) as u32] {
        let (i, wrap, p) = (q.index(log2), q.wrap(log2), q.pointer(log2));
        let qs = log2.min(19);
        assert!(i < 1 << qs);
        assert_eq!(p, i | (wrap as u32) << qs);
        let n = q.incremented(log2);
        assert_eq!(n.pointer(log2), (p + 1) & ((2 << qs) - 1), "increment wraps within the pointer");
        assert_eq!(n.get(QueueIndex::ERR), q.get(QueueIndex::ERR), "increment keeps ERR");
        assert_eq!(q.with_pointer(log2, i, wrap).pointer(log2), p);
        assert!(!(queue_empty(q, other, log2) && queue_full(q, other, log2)), "empty and full at once");
    }
}

fn check_window(w: &[u64], start: usize, features: &[Features]) {
    let mut s = String::new();

    // STEs and level-1 stream table descriptors (§5.1, §5.2).
    let ste = Ste::from_words(window(w, start));
    show(&mut s, &ste);
    dbg(&mut s, &(ste.config(), ste.s1_context_ptr(), ste.s2ttb(), S1Dss::from_bits(ste.get(Ste::S1DSS))));
    assert_eq!(SteConfig::from_bits(ste.config().bits()), ste.config());
    for f in features {
        check_ste(&mut s, &ste, f);
        let g = s2_geometry(ste.get(Ste::S2TG), ste.get(Ste::S2T0SZ), ste.get(Ste::S2SL0), f);
        if let Some((gran, input, start_level, rb)) = g {
            assert!(input <= f.ias_bits() && input >= 25, "s2_geometry input size {input}");
            assert!((1..=gran.stride() + 4).contains(&rb), "s2_geometry root bits {rb}");
            assert_eq!(gran.level_shift(start_level) + rb, input);
        }
    }
    let l1 = L1Std::from_words(window(w, start));
    show(&mut s, &l1);
    let re = L1Std::new(l1.get_in_place(L1Std::L2PTR), l1.get(L1Std::SPAN) as u8);
    assert_eq!(re.get(L1Std::SPAN), l1.get(L1Std::SPAN));
    assert_eq!(re.get_in_place(L1Std::L2PTR), l1.get_in_place(L1Std::L2PTR));

    // CDs and level-1 CD descriptors (§5.3, §5.4).
    let cd = Cd::from_words(window(w, start));
    show(&mut s, &cd);
    dbg(&mut s, &(cd.ttb0(), cd.ttb1(), S1Fmt::from_bits(w[start]).map(S1Fmt::split)));
    for f in features {
        check_cd(&mut s, &cd, f);
    }
    let l1cd = L1Cd::from_words(window(w, start));
    show(&mut s, &l1cd);
    assert_eq!(L1Cd::new(l1cd.get_in_place(L1Cd::L2PTR)).get_in_place(L1Cd::L2PTR), l1cd.get_in_place(L1Cd::L2PTR));

    // Translation table descriptors and granule fields.
    let v = window::<1>(w, start)[0];
    show(&mut s, &S1Desc::from_words([v]));
    show(&mut s, &S2Desc::from_words([v]));
    dbg(&mut s, &(Granule::from_tg0(v), Granule::from_tg1(v), pa_bits(v)));
    for g in [Granule::G4K, Granule::G16K, Granule::G64K] {
        assert_eq!(Granule::from_tg0(g.tg0()), Some(g));
        for level in 0..4 {
            let _ = (g.level_shift(level), g.block_allowed(level));
        }
        for bits in 25..=48 {
            assert!(g.start_level(bits) <= 3);
        }
    }

    // Commands (§4).
    check_command(&mut s, window(w, start));

    // Event records (§7.3): decode → encode → decode is stable.
    let rec = EventRecord::from_words(window(w, start));
    show(&mut s, &rec);
    if let Some(e) = rec.decode() {
        dbg(&mut s, &(e, e.id.name(), e.id.fields()));
        let enc = e.encode();
        let again = enc.decode().expect("an encoded event decodes");
        assert_eq!(again.encode(), enc, "event re-encoding is not stable for {rec:?}");
        assert_eq!(again.id, e.id);
        assert_eq!(again.sid, e.sid);
    }

    // PRI queue entries (§8).
    let pri = PriEntry::from_words(window(w, start));
    show(&mut s, &pri);
    let r = PageRequest::decode(&pri);
    dbg(&mut s, &(r, r.is_stop_marker()));
    assert_eq!(PageRequest::decode(&r.encode()), r, "PRI entry re-encoding is not stable");

    // Registers (§6).
    check_registers(&mut s, v);

    std::hint::black_box(s);
}

/// Features from ID register values (what an SMMU with those registers
/// implements, whatever the values).
fn features_from(idr0: u64, idr1: u64, idr35: u64) -> Features {
    let mut c = SmmuConfig::full();
    c.idr[0] = idr0 as u32;
    c.idr[1] = idr1 as u32;
    c.idr[3] = idr35 as u32;
    c.idr[5] = (idr35 >> 32) as u32;
    c.features()
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let w = words(data);
    let at = |i: usize| w.get(i).copied().unwrap_or(0);
    let mut features = vec![
        SmmuConfig::full().features(),
        SmmuConfig::full().with_ssid_bits(3).features(),
        SmmuConfig::qemu(QemuStages::Nested).features(),
        SmmuConfig::qemu(QemuStages::S1Only).features(),
        SmmuConfig::qemu(QemuStages::S2Only).features(),
    ];
    features.push(features_from(at(0), at(1), at(2)));
    // Every bit of every ID register set.
    features.push(features_from(u64::MAX, u64::MAX, u64::MAX));

    // The stream-table configuration decoder (§6.3.24, §6.3.25).
    for f in &features {
        for two_level in [false, true] {
            let t = StrtabCfg::decode(at(0), at(1), f.sid_bits, two_level);
            assert!(t.log2size <= f.sid_bits, "LOG2SIZE {} above SIDSIZE {}", t.log2size, f.sid_bits);
            assert!(t.split.is_none_or(|s| matches!(s, 6 | 8 | 10)), "SPLIT {:?}", t.split);
            assert!(two_level || t.split.is_none());
        }
    }
    for start in 0..w.len().min(4) {
        check_window(&w, start, &features);
    }
});
