//! Context entries (VT-d §9.3 legacy, §9.4 scalable mode).
//!
//! A context table is indexed by the devfn of the request's source-id: 256
//! legacy 128-bit entries, or (scalable mode) 128 × 256-bit entries per half
//! selected by the scalable root entry.

use iommu_types::{DomainId, Hpa, Pasid};

crate::layout! {
    /// Legacy-mode context entry, VT-d §9.3. 128 bits.
    ///
    /// ```text
    ///  127     88 87     72 71 70  67 66  64 63          12 11    4 3  2 1   0
    /// +---------+---------+--+------+------+--------------+-------+----+---+---+
    /// |reserved |   DID   |R | AVL  |  AW  |   SLPTPTR    |  rsvd | TT |FPD| P |
    /// +---------+---------+--+------+------+--------------+-------+----+---+---+
    /// ```
    pub struct ContextEntry([u64; 2]);
    /// Present.
    P: 0, 0;
    /// Fault processing disable: suppress recording of qualified faults.
    FPD: 1, 1;
    /// Translation type (see [`TranslationType`]).
    TT: 3, 2;
    /// Second-stage page-table pointer (ignored for pass-through).
    SLPTPTR: 63, 12;
    /// Address width: adjusted guest address width (see [`agaw_levels`]).
    AW: 66, 64;
    /// Available to software, ignored by hardware.
    AVL: 70, 67;
    /// Domain identifier.
    DID: 87, 72;
}

/// Legacy context-entry translation type, VT-d §9.3 (TT field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TranslationType {
    /// 00b: untranslated requests translated through second-stage tables;
    /// translation requests blocked.
    Untranslated,
    /// 01b: as 00b, plus ATS translation requests (needs ECAP.DT).
    DeviceTlb,
    /// 10b: pass-through, output = input (needs ECAP.PT).
    PassThrough,
    /// 11b: reserved.
    Reserved,
}

impl TranslationType {
    /// Decodes the 2-bit TT field.
    pub const fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => Self::Untranslated,
            1 => Self::DeviceTlb,
            2 => Self::PassThrough,
            _ => Self::Reserved,
        }
    }
    /// The 2-bit encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Untranslated => 0,
            Self::DeviceTlb => 1,
            Self::PassThrough => 2,
            Self::Reserved => 3,
        }
    }
}

/// Number of second-stage paging levels an AW (AGAW) encoding selects,
/// VT-d §9.3: 1 → 3-level (39-bit), 2 → 4-level (48-bit), 3 → 5-level
/// (57-bit). Other encodings are not paging modes (0 was 2-level, 30-bit, in
/// early revisions and is no longer defined).
pub const fn agaw_levels(aw: u64) -> Option<u8> {
    match aw {
        1 => Some(3),
        2 => Some(4),
        3 => Some(5),
        _ => None,
    }
}

/// Input-address width in bits of an `levels`-level second-stage table.
pub const fn levels_width(levels: u8) -> u32 {
    12 + 9 * levels as u32
}

/// A legal, present legacy context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextRepr {
    /// Fault processing disable.
    pub fpd: bool,
    /// Translation type (never [`TranslationType::Reserved`]).
    pub tt: TranslationType,
    /// Second-stage root (ignored by hardware for pass-through).
    pub slptptr: Hpa,
    /// AW encoding (see [`agaw_levels`]).
    pub aw: u8,
    /// Domain ID.
    pub did: DomainId,
}

/// Why a raw legacy context entry does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContextDecodeError {
    /// P is clear.
    #[error("context entry not present")]
    NotPresent,
    /// A reserved bit is set.
    #[error("reserved bits set in context entry")]
    Reserved,
    /// TT is the reserved encoding.
    #[error("reserved translation type")]
    ReservedTt,
}

impl ContextEntry {
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.get(Self::P) != 0
    }

    /// Decodes a present, reserved-clean entry (capability checks on TT and
    /// AW are the model's business, see the walker).
    ///
    /// # Errors
    /// See [`ContextDecodeError`].
    pub fn decode(&self) -> Result<ContextRepr, ContextDecodeError> {
        if !self.present() {
            return Err(ContextDecodeError::NotPresent);
        }
        if self.has_reserved_bits() {
            return Err(ContextDecodeError::Reserved);
        }
        let tt = TranslationType::from_bits(self.get(Self::TT));
        if tt == TranslationType::Reserved {
            return Err(ContextDecodeError::ReservedTt);
        }
        Ok(ContextRepr {
            fpd: self.get(Self::FPD) != 0,
            tt,
            slptptr: Hpa::new(self.get_in_place(Self::SLPTPTR)),
            aw: self.get(Self::AW) as u8,
            did: DomainId::new(self.get(Self::DID) as u16),
        })
    }
}

impl ContextRepr {
    /// Encodes a present entry; reserved bits are zero.
    pub fn encode(&self) -> ContextEntry {
        ContextEntry::default()
            .with(ContextEntry::P, 1)
            .with(ContextEntry::FPD, self.fpd as u64)
            .with(ContextEntry::TT, self.tt.bits())
            .with_in_place(ContextEntry::SLPTPTR, self.slptptr.raw())
            .with(ContextEntry::AW, self.aw as u64)
            .with(ContextEntry::DID, self.did.raw() as u64)
    }
}

crate::layout! {
    /// Scalable-mode context entry, VT-d §9.4. 256 bits.
    ///
    /// ```text
    ///  63            12 11   9 8    5  4    3     2    1   0
    /// +----------------+------+------+----+------+----+---+---+   qword 0
    /// |  PASIDDIRPTR   | PDTS | rsvd |PRE |PASIDE|DTE |FPD| P |
    /// +----------------+------+------+----+------+----+---+---+
    ///  127          85  84        83            64
    /// +---------------+--------+------------------+               qword 1
    /// |   reserved    |RID_PRIV|    RID_PASID     |
    /// +---------------+--------+------------------+
    ///  255 .. 128: reserved                                       qwords 2-3
    /// ```
    pub struct ScalableContextEntry([u64; 4]);
    /// Present.
    P: 0, 0;
    /// Fault processing disable.
    FPD: 1, 1;
    /// Device-TLB enable: ATS translation requests are allowed.
    DTE: 2, 2;
    /// PASID enable: requests with PASID are allowed.
    PASIDE: 3, 3;
    /// Page request enable.
    PRE: 4, 4;
    /// PASID directory size: the directory has 2^(PDTS+7) entries.
    PDTS: 11, 9;
    /// PASID directory pointer.
    PASIDDIRPTR: 63, 12;
    /// PASID used for requests without PASID (needs ECAP.RPS).
    RID_PASID: 83, 64;
    /// Privilege of requests without PASID (needs ECAP.RPRIVS).
    RID_PRIV: 84, 84;
}

/// A legal, present scalable-mode context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalableContextRepr {
    /// Fault processing disable.
    pub fpd: bool,
    /// Device-TLB (ATS) enable.
    pub dte: bool,
    /// PASID enable.
    pub paside: bool,
    /// Page request enable.
    pub pre: bool,
    /// PASID directory size encoding (0..=7).
    pub pdts: u8,
    /// PASID directory base.
    pub pasid_dir: Hpa,
    /// PASID for requests without PASID.
    pub rid_pasid: Pasid,
    /// Requests without PASID are privileged.
    pub rid_priv: bool,
}

impl ScalableContextEntry {
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.get(Self::P) != 0
    }

    /// Number of PASID directory entries (2^(PDTS+7)).
    pub const fn pasid_dir_entries(&self) -> u32 {
        1 << (self.get(Self::PDTS) + 7)
    }

    /// Decodes a present, reserved-clean entry.
    ///
    /// # Errors
    /// [`ContextDecodeError::NotPresent`] or [`ContextDecodeError::Reserved`].
    pub fn decode(&self) -> Result<ScalableContextRepr, ContextDecodeError> {
        if !self.present() {
            return Err(ContextDecodeError::NotPresent);
        }
        if self.has_reserved_bits() {
            return Err(ContextDecodeError::Reserved);
        }
        Ok(ScalableContextRepr {
            fpd: self.get(Self::FPD) != 0,
            dte: self.get(Self::DTE) != 0,
            paside: self.get(Self::PASIDE) != 0,
            pre: self.get(Self::PRE) != 0,
            pdts: self.get(Self::PDTS) as u8,
            pasid_dir: Hpa::new(self.get_in_place(Self::PASIDDIRPTR)),
            rid_pasid: Pasid::new_truncate(self.get(Self::RID_PASID)),
            rid_priv: self.get(Self::RID_PRIV) != 0,
        })
    }
}

impl ScalableContextRepr {
    /// Encodes a present entry; reserved bits are zero.
    pub fn encode(&self) -> ScalableContextEntry {
        ScalableContextEntry::default()
            .with(ScalableContextEntry::P, 1)
            .with(ScalableContextEntry::FPD, self.fpd as u64)
            .with(ScalableContextEntry::DTE, self.dte as u64)
            .with(ScalableContextEntry::PASIDE, self.paside as u64)
            .with(ScalableContextEntry::PRE, self.pre as u64)
            .with(ScalableContextEntry::PDTS, self.pdts as u64)
            .with_in_place(ScalableContextEntry::PASIDDIRPTR, self.pasid_dir.raw())
            .with(ScalableContextEntry::RID_PASID, self.rid_pasid.raw() as u64)
            .with(ScalableContextEntry::RID_PRIV, self.rid_priv as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden bytes, VT-d §9.3: P=1, TT=10b (pass-through, bits 3:2 → 0x8),
    /// SLPTPTR=0xABC000, AW=2 (bits 66:64), DID=0x1234 (bits 87:72).
    #[test]
    fn legacy_context_golden_bytes() {
        let bytes: [u8; 16] = [
            0x09, 0xC0, 0xAB, 0, 0, 0, 0, 0, // P | TT=2<<2 | SLPTPTR
            0x02, 0x34, 0x12, 0, 0, 0, 0, 0, // AW=2 | DID=0x1234 << 8
        ];
        let repr = ContextRepr {
            fpd: false,
            tt: TranslationType::PassThrough,
            slptptr: Hpa::new(0xAB_C000),
            aw: 2,
            did: DomainId::new(0x1234),
        };
        assert_eq!(repr.encode().to_bytes(), bytes);
        assert_eq!(ContextEntry::from_bytes(&bytes).decode(), Ok(repr));
    }

    #[test]
    fn legacy_context_reserved_bit_71_is_rejected() {
        let e = ContextEntry::from_words([1, 1 << 7]);
        assert_eq!(e.decode(), Err(ContextDecodeError::Reserved));
    }

    #[test]
    fn legacy_context_avl_bits_are_not_reserved() {
        let e = ContextEntry::from_words([1, 0xF << 3 | 2]);
        assert!(e.decode().is_ok());
    }

    /// Golden bytes, VT-d §9.4: P=1, DTE (bit 2), PASIDE (bit 3), PDTS=7
    /// (bits 11:9 → 0xE00), PASIDDIRPTR=0x55000, RID_PASID=0xABCDE (83:64).
    #[test]
    fn scalable_context_golden_bytes() {
        let bytes: [u8; 32] = [
            0x0D, 0x5E, 0x05, 0, 0, 0, 0, 0, // P|DTE|PASIDE | PDTS=7 | PASIDDIRPTR=0x55000
            0xDE, 0xBC, 0x0A, 0, 0, 0, 0, 0, // RID_PASID=0xABCDE
            0, 0, 0, 0, 0, 0, 0, 0, // reserved
            0, 0, 0, 0, 0, 0, 0, 0, // reserved
        ];
        let repr = ScalableContextRepr {
            fpd: false,
            dte: true,
            paside: true,
            pre: false,
            pdts: 7,
            pasid_dir: Hpa::new(0x55000),
            rid_pasid: Pasid::new(0xABCDE),
            rid_priv: false,
        };
        assert_eq!(repr.encode().to_bytes(), bytes);
        assert_eq!(ScalableContextEntry::from_bytes(&bytes).decode(), Ok(repr));
        assert_eq!(repr.encode().pasid_dir_entries(), 1 << 14);
    }

    #[test]
    fn scalable_context_reserved_bit_in_qword_2_is_rejected() {
        let e = ScalableContextEntry::from_words([1, 0, 1 << 17, 0]);
        assert_eq!(e.decode(), Err(ContextDecodeError::Reserved));
    }

    proptest! {
        #[test]
        fn legacy_context_decode_encode_round_trips(fpd: bool, tt in 0u64..3, ptr in 0u64..(1 << 52), aw in 0u8..8, did: u16) {
            let r = ContextRepr { fpd, tt: TranslationType::from_bits(tt), slptptr: Hpa::new(ptr << 12), aw, did: DomainId::new(did) };
            prop_assert_eq!(r.encode().decode(), Ok(r));
        }

        #[test]
        fn scalable_context_decode_encode_round_trips(fpd: bool, dte: bool, paside: bool, pre: bool, pdts in 0u8..8, ptr in 0u64..(1 << 52), rp in 0u32..(1 << 20), priv_: bool) {
            let r = ScalableContextRepr { fpd, dte, paside, pre, pdts, pasid_dir: Hpa::new(ptr << 12), rid_pasid: Pasid::new(rp), rid_priv: priv_ };
            prop_assert_eq!(r.encode().decode(), Ok(r));
        }

        #[test]
        fn any_bits_decode_without_panic(w0: u64, w1: u64, w2: u64, w3: u64) {
            let _ = ContextEntry::from_words([w0, w1]).decode();
            let _ = ScalableContextEntry::from_words([w0, w1, w2, w3]).decode();
            let _ = ScalableContextEntry::from_words([w0, w1, w2, w3]).to_string();
        }
    }
}
