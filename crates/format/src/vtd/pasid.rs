//! PASID directory and PASID table entries (VT-d §9.5, §9.6).
//!
//! The PASID directory (from the scalable context entry) is indexed by
//! PASID[19:6]; each present directory entry points at a 4 KiB PASID table
//! of 64 × 512-bit entries indexed by PASID[5:0].

use iommu_types::{DomainId, Gpa, Hpa, Pasid};

use super::context::agaw_levels;
use super::regs::{Caps, Ecap};

/// Byte offset of `pasid`'s directory entry in the PASID directory.
pub const fn dir_offset(pasid: Pasid) -> u64 {
    (pasid.raw() as u64 >> 6) * 8
}

/// Byte offset of `pasid`'s entry in its PASID table.
pub const fn table_offset(pasid: Pasid) -> u64 {
    (pasid.raw() as u64 & 0x3F) * 64
}

crate::layout! {
    /// Scalable-mode PASID directory entry, VT-d §9.5. 64 bits.
    pub struct PasidDirEntry([u64; 1]);
    /// Present.
    P: 0, 0;
    /// Fault processing disable.
    FPD: 1, 1;
    /// Scalable-mode PASID table pointer.
    SMPTBLPTR: 63, 12;
}

impl PasidDirEntry {
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.get(Self::P) != 0
    }
    /// PASID table base.
    pub const fn table(&self) -> Hpa {
        Hpa::new(self.get_in_place(Self::SMPTBLPTR))
    }
    /// A present entry pointing at `table`.
    pub fn new_present(table: Hpa) -> Self {
        Self::default().with(Self::P, 1).with_in_place(Self::SMPTBLPTR, table.raw())
    }
}

crate::layout! {
    /// Scalable-mode PASID table entry, VT-d §9.6. 512 bits.
    ///
    /// ```text
    /// qword 0: 63 SSPTPTR 12 | 11:10 rsvd | 9 SSADE | 8:6 PGTT | 5 SSEE | 4:2 AW | 1 FPD | 0 P
    /// qword 1: 127:96 PAT | 95 PCD | 94 PWT | 93:91 EMT | 90 EMTE | 89 CD | 88 PGSNP | 87 PWSNP | 86:80 rsvd | 79:64 DID
    /// qword 2: 191 FSPTPTR 140 | 139:136 rsvd | 135 EAFE | 134 SMEP | 133 NXE | 132 WPE | 131:130 FSPM | 129 ERE | 128 SRE
    /// qwords 3-7: reserved
    /// ```
    pub struct PasidEntry([u64; 8]);
    /// Present.
    P: 0, 0;
    /// Fault processing disable.
    FPD: 1, 1;
    /// Address width of the second stage (AGAW encoding, as the context AW).
    AW: 4, 2;
    /// Second-stage execute enable.
    SSEE: 5, 5;
    /// PASID-granular translation type (see [`Pgtt`]).
    PGTT: 8, 6;
    /// Second-stage accessed/dirty enable.
    SSADE: 9, 9;
    /// Second-stage page-table pointer.
    SSPTPTR: 63, 12;
    /// Domain identifier.
    DID: 79, 64;
    /// Page-walk snoop.
    PWSNP: 87, 87;
    /// Page snoop.
    PGSNP: 88, 88;
    /// Cache disable.
    CD: 89, 89;
    /// Extended memory type enable.
    EMTE: 90, 90;
    /// Extended memory type.
    EMT: 93, 91;
    /// Page-level write-through (first-stage root).
    PWT: 94, 94;
    /// Page-level cache disable (first-stage root).
    PCD: 95, 95;
    /// Page attribute table.
    PAT: 127, 96;
    /// Supervisor request enable.
    SRE: 128, 128;
    /// Execute request enable.
    ERE: 129, 129;
    /// First-stage paging mode: 0 = 4-level, 1 = 5-level.
    FSPM: 131, 130;
    /// Write-protect enable (supervisor writes honour R/W).
    WPE: 132, 132;
    /// No-execute enable.
    NXE: 133, 133;
    /// Supervisor-mode execute prevention.
    SMEP: 134, 134;
    /// Extended accessed flag enable.
    EAFE: 135, 135;
    /// First-stage page-table pointer.
    FSPTPTR: 191, 140;
}

/// PASID-granular translation type, VT-d §9.6 (PGTT). An open enum: every
/// 3-bit value decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pgtt {
    /// 001b: first-stage translation only.
    FirstStage,
    /// 010b: second-stage translation only.
    SecondStage,
    /// 011b: nested (first stage over second stage).
    Nested,
    /// 100b: pass-through.
    PassThrough,
    /// 000b, 101b–111b: reserved.
    Reserved(u8),
}

impl Pgtt {
    /// Decodes the 3-bit field.
    pub const fn from_bits(v: u64) -> Self {
        match v & 7 {
            1 => Self::FirstStage,
            2 => Self::SecondStage,
            3 => Self::Nested,
            4 => Self::PassThrough,
            r => Self::Reserved(r as u8),
        }
    }
    /// The 3-bit encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::FirstStage => 1,
            Self::SecondStage => 2,
            Self::Nested => 3,
            Self::PassThrough => 4,
            Self::Reserved(r) => r as u64 & 7,
        }
    }
}

/// First-stage configuration of a PASID entry (PGTT 001b or 011b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FirstStageCfg {
    /// First-stage root (FSPTPTR). An intermediate address: translated by
    /// the second stage when nested, used as is otherwise.
    pub root: Gpa,
    /// Paging levels: 4 or 5 (FSPM).
    pub levels: u8,
    /// Supervisor requests allowed.
    pub sre: bool,
    /// Execute requests allowed.
    pub ere: bool,
    /// Supervisor writes honour R/W.
    pub wpe: bool,
    /// Extended accessed flag enable.
    pub eafe: bool,
}

/// Second-stage configuration of a PASID entry (PGTT 010b or 011b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecondStageCfg {
    /// Second-stage root (SSPTPTR).
    pub root: Hpa,
    /// Paging levels: 3, 4 or 5 (AW).
    pub levels: u8,
    /// Second-stage A/D enable.
    pub ssade: bool,
}

/// What a PASID entry translates through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasidConfig {
    /// First stage only.
    FirstStage(FirstStageCfg),
    /// Second stage only.
    SecondStage(SecondStageCfg),
    /// First stage nested over second stage.
    Nested(FirstStageCfg, SecondStageCfg),
    /// Output = input.
    PassThrough,
}

/// A legal, present PASID entry, valid for the capabilities it was decoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PasidEntryRepr {
    /// Fault processing disable.
    pub fpd: bool,
    /// Domain ID.
    pub did: DomainId,
    /// Page-walk snoop.
    pub pwsnp: bool,
    /// Page snoop.
    pub pgsnp: bool,
    /// Translation.
    pub config: PasidConfig,
}

/// Why a raw PASID entry does not decode (VT-d §7.1.3: 0x59, 0x5A, 0x5B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasidEntryError {
    /// P is clear (fault 0x59).
    #[error("pasid entry not present")]
    NotPresent,
    /// A reserved bit is set (fault 0x5A).
    #[error("reserved bits set in pasid entry")]
    Reserved,
    /// A field is not legal for the hardware's capabilities (fault 0x5B).
    #[error("invalid pasid entry: {0}")]
    Invalid(&'static str),
}

impl PasidEntry {
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.get(Self::P) != 0
    }

    /// Translation type.
    pub const fn pgtt(&self) -> Pgtt {
        Pgtt::from_bits(self.get(Self::PGTT))
    }

    fn first_stage(&self, caps: &Caps) -> Result<FirstStageCfg, PasidEntryError> {
        let levels = match self.get(Self::FSPM) {
            0 => 4,
            1 if caps.cap_has(super::regs::Cap::FS5LP) => 5,
            _ => return Err(PasidEntryError::Invalid("first-stage paging mode not supported")),
        };
        let sre = self.get(Self::SRE) != 0;
        if sre && !caps.ecap_has(Ecap::SRS) {
            return Err(PasidEntryError::Invalid("SRE without ECAP.SRS"));
        }
        let ere = self.get(Self::ERE) != 0;
        if ere && !caps.ecap_has(Ecap::ERS) {
            return Err(PasidEntryError::Invalid("ERE without ECAP.ERS"));
        }
        let eafe = self.get(Self::EAFE) != 0;
        if eafe && !caps.ecap_has(Ecap::EAFS) {
            return Err(PasidEntryError::Invalid("EAFE without ECAP.EAFS"));
        }
        Ok(FirstStageCfg {
            root: Gpa::new(self.get_in_place(Self::FSPTPTR)),
            levels,
            sre,
            ere,
            wpe: self.get(Self::WPE) != 0,
            eafe,
        })
    }

    fn second_stage(&self, caps: &Caps) -> Result<SecondStageCfg, PasidEntryError> {
        let levels = match agaw_levels(self.get(Self::AW)) {
            Some(l) if caps.sagaw_supports(l) => l,
            _ => return Err(PasidEntryError::Invalid("AW not supported by CAP.SAGAW")),
        };
        let ssade = self.get(Self::SSADE) != 0;
        if ssade && !caps.ecap_has(Ecap::SSADS) {
            return Err(PasidEntryError::Invalid("SSADE without ECAP.SSADS"));
        }
        Ok(SecondStageCfg { root: Hpa::new(self.get_in_place(Self::SSPTPTR)), levels, ssade })
    }

    /// Decodes a present entry with the checks VT-d §9.6 makes against the
    /// hardware's capabilities: PGTT must be a supported type (ECAP.FSTS,
    /// SSTS, NEST, PT), AW must be in CAP.SAGAW where a second stage is
    /// used, FSPM=1 needs CAP.FS5LP, SRE/ERE/EAFE/SSADE need their ECAP bits.
    ///
    /// # Errors
    /// See [`PasidEntryError`].
    pub fn decode(&self, caps: &Caps) -> Result<PasidEntryRepr, PasidEntryError> {
        if !self.present() {
            return Err(PasidEntryError::NotPresent);
        }
        if self.has_reserved_bits() {
            return Err(PasidEntryError::Reserved);
        }
        let config = match self.pgtt() {
            Pgtt::FirstStage if caps.ecap_has(Ecap::FSTS) => PasidConfig::FirstStage(self.first_stage(caps)?),
            Pgtt::SecondStage if caps.ecap_has(Ecap::SSTS) => PasidConfig::SecondStage(self.second_stage(caps)?),
            Pgtt::Nested if caps.ecap_has(Ecap::NEST) => {
                PasidConfig::Nested(self.first_stage(caps)?, self.second_stage(caps)?)
            }
            Pgtt::PassThrough if caps.ecap_has(Ecap::PT) => PasidConfig::PassThrough,
            Pgtt::Reserved(_) => return Err(PasidEntryError::Invalid("reserved PGTT")),
            _ => return Err(PasidEntryError::Invalid("PGTT not supported by ECAP")),
        };
        Ok(PasidEntryRepr {
            fpd: self.get(Self::FPD) != 0,
            did: DomainId::new(self.get(Self::DID) as u16),
            pwsnp: self.get(Self::PWSNP) != 0,
            pgsnp: self.get(Self::PGSNP) != 0,
            config,
        })
    }
}

impl PasidEntryRepr {
    /// Encodes a present entry; fields the type does not use are zero.
    pub fn encode(&self) -> PasidEntry {
        let mut e = PasidEntry::default()
            .with(PasidEntry::P, 1)
            .with(PasidEntry::FPD, self.fpd as u64)
            .with(PasidEntry::DID, self.did.raw() as u64)
            .with(PasidEntry::PWSNP, self.pwsnp as u64)
            .with(PasidEntry::PGSNP, self.pgsnp as u64);
        let fs = |e: PasidEntry, f: &FirstStageCfg| {
            e.with_in_place(PasidEntry::FSPTPTR, f.root.raw())
                .with(PasidEntry::FSPM, (f.levels == 5) as u64)
                .with(PasidEntry::SRE, f.sre as u64)
                .with(PasidEntry::ERE, f.ere as u64)
                .with(PasidEntry::WPE, f.wpe as u64)
                .with(PasidEntry::EAFE, f.eafe as u64)
        };
        let ss = |e: PasidEntry, s: &SecondStageCfg| {
            e.with_in_place(PasidEntry::SSPTPTR, s.root.raw())
                .with(PasidEntry::AW, s.levels.saturating_sub(2) as u64)
                .with(PasidEntry::SSADE, s.ssade as u64)
        };
        e = match &self.config {
            PasidConfig::FirstStage(f) => fs(e.with(PasidEntry::PGTT, 1), f),
            PasidConfig::SecondStage(s) => ss(e.with(PasidEntry::PGTT, 2), s),
            PasidConfig::Nested(f, s) => ss(fs(e.with(PasidEntry::PGTT, 3), f), s),
            PasidConfig::PassThrough => e.with(PasidEntry::PGTT, 4),
        };
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vtd::regs::{Cap, Ecap};
    use proptest::prelude::*;

    fn full_caps() -> Caps {
        let cap = Cap::default().with(Cap::SAGAW, 0b1110).with(Cap::FS5LP, 1).0[0];
        let ecap = Ecap::default()
            .with(Ecap::FSTS, 1)
            .with(Ecap::SSTS, 1)
            .with(Ecap::NEST, 1)
            .with(Ecap::PT, 1)
            .with(Ecap::SRS, 1)
            .with(Ecap::ERS, 1)
            .with(Ecap::EAFS, 1)
            .with(Ecap::SSADS, 1)
            .0[0];
        Caps::new(cap, ecap)
    }

    /// Golden bytes, VT-d §9.5: P (bit 0), FPD (bit 1), SMPTBLPTR
    /// (63:12) = 0xABCD_E000.
    #[test]
    fn pasid_directory_entry_golden_bytes() {
        let bytes = [0x03, 0xE0, 0xCD, 0xAB, 0, 0, 0, 0];
        let e = PasidDirEntry::new_present(Hpa::new(0xABCD_E000)).with(PasidDirEntry::FPD, 1);
        assert_eq!(e.to_bytes(), bytes);
        assert_eq!(PasidDirEntry::from_bytes(&bytes).table(), Hpa::new(0xABCD_E000));
        assert!(!e.has_reserved_bits());
    }

    #[test]
    fn pasid_directory_entry_reserved_bits_11_2_are_reported() {
        assert!(PasidDirEntry::from_words([0x1000 | 1 << 5 | 1]).has_reserved_bits());
    }

    #[test]
    fn index_split_uses_pasid_19_6_and_5_0() {
        let p = Pasid::new(0xABCDE);
        assert_eq!(dir_offset(p), (0xABCDE >> 6) * 8);
        assert_eq!(table_offset(p), 0x1E * 64);
    }

    /// Golden bytes, VT-d §9.6, a nested entry: P, AW=2 (4:2 → 0x8),
    /// PGTT=011b (8:6 → 0xC0), SSPTPTR=0x7000, DID=0x42, PWSNP (bit 87 →
    /// qw1 bit 23), SRE (bit 128), FSPM=1 (131:130 → qw2 0x4),
    /// FSPTPTR=0x1234_5000 (191:140 → qw2 bits 63:12).
    #[test]
    fn nested_pasid_entry_golden_bytes() {
        let r = PasidEntryRepr {
            fpd: false,
            did: DomainId::new(0x42),
            pwsnp: true,
            pgsnp: false,
            config: PasidConfig::Nested(
                FirstStageCfg {
                    root: Gpa::new(0x1234_5000),
                    levels: 5,
                    sre: true,
                    ere: false,
                    wpe: false,
                    eafe: false,
                },
                SecondStageCfg { root: Hpa::new(0x7000), levels: 4, ssade: false },
            ),
        };
        let words = [
            0x7000 | 0xC0 | 0x8 | 0x1, // SSPTPTR | PGTT=3 | AW=2 | P
            0x80_0042,                 // PWSNP (qw1 bit 23) | DID
            0x1234_5000 | 0x4 | 0x1,   // FSPTPTR | FSPM=1 | SRE
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(r.encode().words(), words);
        assert_eq!(PasidEntry::from_words(words).decode(&full_caps()), Ok(r));
    }

    #[test]
    fn reserved_pgtt_is_invalid() {
        let e = PasidEntry::default().with(PasidEntry::P, 1).with(PasidEntry::PGTT, 5);
        assert_eq!(e.decode(&full_caps()), Err(PasidEntryError::Invalid("reserved PGTT")));
    }

    #[test]
    fn second_stage_without_ssts_is_invalid() {
        let caps = Caps::new(full_caps().cap.0[0], full_caps().ecap.with(Ecap::SSTS, 0).0[0]);
        let e = PasidEntry::default().with(PasidEntry::P, 1).with(PasidEntry::PGTT, 2).with(PasidEntry::AW, 2);
        assert_eq!(e.decode(&caps), Err(PasidEntryError::Invalid("PGTT not supported by ECAP")));
    }

    #[test]
    fn reserved_bit_in_qword_5_is_reported() {
        let mut w = [0u64; 8];
        w[0] = 1 | 4 << 6;
        w[5] = 1;
        assert_eq!(PasidEntry::from_words(w).decode(&full_caps()), Err(PasidEntryError::Reserved));
    }

    proptest! {
        #[test]
        fn pasid_entry_round_trips(fpd: bool, did: u16, pw: bool, pg: bool, kind in 0u8..4, fr in 0u64..(1 << 52), sr in 0u64..(1 << 52), fl in 4u8..6, sl in 3u8..6, sre: bool, ere: bool, wpe: bool, eafe: bool, ssade: bool) {
            let f = FirstStageCfg { root: Gpa::new(fr << 12), levels: fl, sre, ere, wpe, eafe };
            let s = SecondStageCfg { root: Hpa::new(sr << 12), levels: sl, ssade };
            let config = match kind { 0 => PasidConfig::FirstStage(f), 1 => PasidConfig::SecondStage(s), 2 => PasidConfig::Nested(f, s), _ => PasidConfig::PassThrough };
            let r = PasidEntryRepr { fpd, did: DomainId::new(did), pwsnp: pw, pgsnp: pg, config };
            prop_assert_eq!(r.encode().decode(&full_caps()), Ok(r));
        }

        #[test]
        fn any_pasid_entry_bits_decode_without_panic(w in proptest::array::uniform8(any::<u64>())) {
            let e = PasidEntry::from_words(w);
            let _ = e.decode(&full_caps());
            let _ = e.to_string();
        }
    }
}
