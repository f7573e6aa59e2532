//! Every raw VT-d structure decoder over arbitrary words.
//!
//! Input: any bytes, read as little-endian u64 words (the last one
//! zero-padded). The decoders are applied to the words starting at each of
//! the first four word offsets, so one input exercises several alignments.
//!
//! Properties (beyond "nothing panics"):
//! * typed → raw → typed is the identity for everything that decoded
//!   (ContextRepr, ScalableContextRepr, PasidEntryRepr, FaultInfo,
//!   PageRequest, InvDescriptor, and the PTE `PteRepr`s);
//! * a descriptor legal in a 128-bit queue is legal, and the same, in a
//!   256-bit queue;
//! * reserved-bit helpers only report bits that are set in the entry;
//! * constructors of root / directory entries reproduce the fields read.
#![no_main]

use std::fmt::Write;

use iommu_format::vtd::context::{ContextEntry, ScalableContextEntry, TranslationType};
use iommu_format::vtd::fault::{FaultReason, FaultRecord};
use iommu_format::vtd::inv_desc::{InvDesc, InvDescriptor};
use iommu_format::vtd::page_req::PageRequestDesc;
use iommu_format::vtd::pasid::{PasidDirEntry, PasidEntry, Pgtt};
use iommu_format::vtd::pte::{
    fs_is_leaf, fs_reserved_bits, leaf_frame, ss_is_leaf, ss_reserved_bits, table_addr, FsPte, PteRepr, SsPte, SsRules,
};
use iommu_format::vtd::regs::{Cap, Caps, Ccmd, Ecap, IotlbReg, Iqa, Iva, Pqa, Rtaddr, TableMode};
use iommu_format::vtd::root::{RootEntry, ScalableRootEntry};
use iommu_fuzz::{config, words};
use iommu_types::PageSize;
use libfuzzer_sys::fuzz_target;

/// Formats `v` with Display and Debug into `s` (the output is discarded;
/// formatting must not panic).
fn show<T: std::fmt::Display + std::fmt::Debug>(s: &mut String, v: &T) {
    let _ = write!(s, "{v} {v:?}");
}

fn dbg<T: std::fmt::Debug>(s: &mut String, v: &T) {
    let _ = write!(s, "{v:?}");
}

fn window<const N: usize>(w: &[u64], start: usize) -> [u64; N] {
    core::array::from_fn(|i| w.get(start + i).copied().unwrap_or(0))
}

fn check_caps(s: &mut String, c: &Caps) {
    dbg(s, c);
    for l in 0..=6 {
        let _ = (c.sagaw_supports(l), c.ss_large_page(l), c.fs_large_page(l));
    }
    let _ = (c.mgaw(), c.haw(), c.fault_record_offset(), c.fault_record_count(), c.iotlb_offset(), c.did_bits());
    show(s, &c.cap);
    show(s, &c.ecap);
}

fn check_pte(s: &mut String, e: u64, caps: &Caps, extra_level: u8) {
    let fs = FsPte::from_words([e]);
    let ss = SsPte::from_words([e]);
    show(s, &fs);
    show(s, &ss);
    for level in (1..=5).chain([extra_level]) {
        let f = fs.decode(level);
        let g = ss.decode(level);
        dbg(s, &f);
        dbg(s, &g);
        let _ = (fs_is_leaf(e, level), ss_is_leaf(e, level));
        if (1..=5).contains(&level) {
            assert_eq!(FsPte::encode(&f).decode(level), f, "FsPte {e:#x} level {level}");
            assert_eq!(SsPte::encode(&g).decode(level), g, "SsPte {e:#x} level {level}");
            if let PteRepr::Leaf { frame, size, .. } = f {
                assert_eq!(frame & (size.bytes() - 1), 0, "unaligned first-stage frame");
            }
            if let PteRepr::Leaf { frame, size, .. } = g {
                assert_eq!(frame & (size.bytes() - 1), 0, "unaligned second-stage frame");
            }
        }
        for haw in [0, 12, 39, 48, 51, 52, 57, 64, caps.haw()] {
            for fs1gp in [false, true] {
                let r = fs_reserved_bits(e, level, haw, fs1gp);
                assert_eq!(r & !e, 0, "fs_reserved_bits reports bits that are not set");
            }
        }
        for bits in 0..32u8 {
            let rules = SsRules {
                haw: [39, 48, 57, caps.haw()][(bits & 3) as usize],
                large_2m: bits & 4 != 0,
                large_1g: bits & 8 != 0,
                snp_reserved: bits & 16 != 0,
                tm_reserved: bits & 1 != 0,
            };
            let r = ss_reserved_bits(e, level, &rules);
            assert_eq!(r & !e, 0, "ss_reserved_bits reports bits that are not set");
        }
    }
    for size in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
        assert_eq!(leaf_frame(e, size) & (size.bytes() - 1), 0);
    }
    assert_eq!(table_addr(e) & 0xFFF, 0);
}

fn check_inv(s: &mut String, w: [u64; 4]) {
    let raw = InvDesc::from_words(w);
    show(s, &raw);
    let _ = raw.desc_type();
    let narrow_raw = InvDesc::from_words([w[0], w[1], 0, 0]);
    let wide = InvDescriptor::decode(&raw, true);
    for (r, is_wide) in [(&raw, true), (&raw, false), (&narrow_raw, false)] {
        match InvDescriptor::decode(r, is_wide) {
            Ok(d) => {
                dbg(s, &d);
                let enc = d.encode();
                show(s, &enc);
                assert_eq!(InvDescriptor::decode(&enc, is_wide), Ok(d), "InvDescriptor round trip (wide={is_wide})");
                if !is_wide {
                    // Legal in a 128-bit queue ⇒ legal and the same in a 256-bit one.
                    assert_eq!(InvDescriptor::decode(&enc, true), Ok(d), "narrow descriptor rejected when wide");
                    if r == &raw {
                        assert_eq!(wide, Ok(d), "narrow-legal raw descriptor decodes differently when wide");
                    }
                }
            }
            Err(e) => show(s, &e),
        }
    }
}

fn check_window(w: &[u64], start: usize, caps_list: &[Caps], extra_level: u8) {
    let mut s = String::new();

    // Root entries (§9.1, §9.2).
    let re = RootEntry::from_words(window(w, start));
    show(&mut s, &re);
    if re.present() && !re.has_reserved_bits() {
        assert_eq!(RootEntry::new_present(re.ctp()), re, "legacy root entry rebuild");
    }
    assert_eq!(RootEntry::from_bytes(&re.to_bytes()), re);
    let sre = ScalableRootEntry::from_words(window(w, start));
    show(&mut s, &sre);
    let (lp, lctp) = sre.half_for(0);
    let (up, uctp) = sre.half_for(0x80);
    let rebuilt = ScalableRootEntry::new(lp.then_some(lctp), up.then_some(uctp));
    for devfn in [0u8, 0x7F, 0x80, 0xFF] {
        let (p, t) = sre.half_for(devfn);
        let (rp, rt) = rebuilt.half_for(devfn);
        assert_eq!(p, rp, "scalable root present bit rebuild");
        if p {
            assert_eq!(t, rt, "scalable root table pointer rebuild");
        }
    }

    // Context entries (§9.3, §9.4).
    let ce = ContextEntry::from_words(window(w, start));
    show(&mut s, &ce);
    match ce.decode() {
        Ok(c) => {
            dbg(&mut s, &c);
            assert_ne!(c.tt, TranslationType::Reserved);
            assert_eq!(c.encode().decode(), Ok(c), "ContextRepr round trip");
        }
        Err(e) => show(&mut s, &e),
    }
    let sce = ScalableContextEntry::from_words(window(w, start));
    show(&mut s, &sce);
    let _ = sce.pasid_dir_entries();
    match sce.decode() {
        Ok(c) => {
            dbg(&mut s, &c);
            assert_eq!(c.encode().decode(), Ok(c), "ScalableContextRepr round trip");
        }
        Err(e) => show(&mut s, &e),
    }

    // PASID directory and table entries (§9.5, §9.6).
    let pde = PasidDirEntry::from_words(window(w, start));
    show(&mut s, &pde);
    let rebuilt = PasidDirEntry::new_present(pde.table());
    assert!(rebuilt.present());
    assert_eq!(rebuilt.table(), pde.table());
    let pe = PasidEntry::from_words(window(w, start));
    show(&mut s, &pe);
    let pgtt = pe.pgtt();
    assert_eq!(Pgtt::from_bits(pgtt.bits()), pgtt);
    for caps in caps_list {
        match pe.decode(caps) {
            Ok(r) => {
                dbg(&mut s, &r);
                let enc = r.encode();
                show(&mut s, &enc);
                assert_eq!(enc.decode(caps), Ok(r), "PasidEntryRepr round trip with {caps:?}");
            }
            Err(e) => show(&mut s, &e),
        }
    }

    // Paging entries (§9.7, §9.8).
    for i in 0..2 {
        check_pte(&mut s, window::<1>(w, start + i)[0], &caps_list[caps_list.len() - 1], extra_level);
    }

    // Fault records (§11.4.14) and reasons (§7.1.3).
    let fr = FaultRecord::from_words(window(w, start));
    show(&mut s, &fr);
    match fr.decode() {
        Some(info) => {
            dbg(&mut s, &info);
            show(&mut s, &info.reason);
            assert_eq!(info.encode().decode(), Some(info), "FaultInfo round trip");
        }
        None => assert!(!fr.valid()),
    }
    let code = (window::<1>(w, start)[0] >> 32) as u8;
    let reason = FaultReason::from(code);
    show(&mut s, &reason);
    assert_eq!(u8::from(reason), code, "fault reason code round trip");

    // Invalidation descriptors (§6.5.2).
    check_inv(&mut s, window(w, start));

    // Page request descriptors (§7.5.1).
    let prd = PageRequestDesc::from_words(window(w, start));
    show(&mut s, &prd);
    if let Some(r) = prd.decode() {
        dbg(&mut s, &r);
        let _ = r.is_stop_marker();
        assert_eq!(r.encode().decode(), Some(r), "PageRequest round trip");
    }

    // Registers (chapter 11).
    let v = window::<1>(w, start)[0];
    show(&mut s, &Rtaddr::from_words([v]));
    show(&mut s, &Ccmd::from_words([v]));
    show(&mut s, &IotlbReg::from_words([v]));
    show(&mut s, &Iva::from_words([v]));
    show(&mut s, &Iqa::from_words([v]));
    show(&mut s, &Pqa::from_words([v]));
    show(&mut s, &Cap::from_words([v]));
    show(&mut s, &Ecap::from_words([v]));
    dbg(&mut s, &TableMode::from_bits(v >> 10));

    std::hint::black_box(s);
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let w = words(data);
    let extra_level = data[0];
    // Capabilities: the model's profiles, none, everything, and the
    // fuzzed words themselves (the last entry is used for PTE checks).
    let mut caps_list: Vec<Caps> = (0..4).map(config).map(|c| Caps::new(c.cap, c.ecap)).collect();
    caps_list.push(Caps::new(0, 0));
    caps_list.push(Caps::new(u64::MAX, u64::MAX));
    caps_list.push(Caps::new(w[0], w.get(1).copied().unwrap_or(0)));
    let mut s = String::new();
    for c in &caps_list {
        check_caps(&mut s, c);
    }
    std::hint::black_box(s);
    for start in 0..w.len().min(4) {
        check_window(&w, start, &caps_list, extra_level);
    }
});
