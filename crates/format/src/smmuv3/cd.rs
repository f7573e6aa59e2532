//! Context descriptors (SMMUv3 §5.4) and level-1 CD table descriptors
//! (§5.3).
//!
//! The CD holds the stage-1 translation regime of one SubstreamID: the two
//! VMSAv8-64 table bases and their TCR-like controls, the ASID and the
//! MAIR. Fields the model does not use (MAIR beyond its storage, AMAIR,
//! IMPLEMENTATION DEFINED words) are still named where they are whole words.

crate::layout! {
    /// Context descriptor, SMMUv3 §5.4. 512 bits.
    ///
    /// ```text
    ///  qw0: ASID[63:48] ASET A R S HA HD AA64 PAN TBI[39:38] UWXN WXN AFFD IPS[34:32]
    ///       V[31] EPD1 SH1 OR1 IR1 TG1 T1SZ ENDI EPD0 SH0 OR0 IR0 TG0 T0SZ[5:0]
    ///  qw1: TTB0[51:4] .. HAD0 NSCFG0
    ///  qw2: TTB1[51:4] .. HAD1 NSCFG1
    ///  qw3: MAIR0   qw4: MAIR1   qw5: AMAIR0   qw6: AMAIR1   qw7: IMPLEMENTATION DEFINED
    /// ```
    pub struct Cd([u64; 8]);
    /// TTB0 input size is 2^(64 - T0SZ).
    T0SZ: 5, 0;
    /// TTB0 granule: 0b00 4K, 0b01 64K, 0b10 16K.
    TG0: 7, 6;
    /// Inner cacheability of TTB0 walks.
    IR0: 9, 8;
    /// Outer cacheability of TTB0 walks.
    OR0: 11, 10;
    /// Shareability of TTB0 walks.
    SH0: 13, 12;
    /// TTB0 walks disabled: a miss in that half is a translation fault.
    EPD0: 14, 14;
    /// Big-endian tables.
    ENDI: 15, 15;
    /// TTB1 input size is 2^(64 - T1SZ).
    T1SZ: 21, 16;
    /// TTB1 granule: 0b01 16K, 0b10 4K, 0b11 64K.
    TG1: 23, 22;
    /// Inner cacheability of TTB1 walks.
    IR1: 25, 24;
    /// Outer cacheability of TTB1 walks.
    OR1: 27, 26;
    /// Shareability of TTB1 walks.
    SH1: 29, 28;
    /// TTB1 walks disabled.
    EPD1: 30, 30;
    /// Valid.
    V: 31, 31;
    /// Intermediate physical address size (output size of stage 1).
    IPS: 34, 32;
    /// Access flag fault disable.
    AFFD: 35, 35;
    /// Write implies execute-never.
    WXN: 36, 36;
    /// Unprivileged write implies privileged execute-never.
    UWXN: 37, 37;
    /// Top byte ignore: bit 0 for TTB0 addresses, bit 1 for TTB1 addresses.
    TBI: 39, 38;
    /// Privileged access never.
    PAN: 40, 40;
    /// VMSAv8-64 (1) or VMSAv8-32 LPAE (0) tables.
    AA64: 41, 41;
    /// Hardware dirty-state update.
    HD: 42, 42;
    /// Hardware access-flag update.
    HA: 43, 43;
    /// Stall stage-1 faults.
    S: 44, 44;
    /// Record stage-1 faults.
    R: 45, 45;
    /// Abort (rather than RAZ/WI) terminated transactions.
    A: 46, 46;
    /// ASID set: shared with the PE's TLBI broadcasts (0) or not (1).
    ASET: 47, 47;
    /// Address space identifier.
    ASID: 63, 48;
    /// Non-secure TTB0 walks.
    NSCFG0: 64, 64;
    /// Hierarchical attribute disable for TTB0 walks (APTable/XNTable ignored).
    HAD0: 65, 65;
    /// TTB0 table base.
    TTB0: 115, 68;
    /// Non-secure TTB1 walks.
    NSCFG1: 128, 128;
    /// Hierarchical attribute disable for TTB1 walks.
    HAD1: 129, 129;
    /// TTB1 table base.
    TTB1: 179, 132;
    /// Memory attribute indirection, attributes 0–7.
    MAIR0: 255, 192;
    /// Memory attribute indirection, upper half (VMSAv8-32 only).
    MAIR1: 319, 256;
    /// Auxiliary memory attributes.
    AMAIR0: 383, 320;
    /// Auxiliary memory attributes, upper half.
    AMAIR1: 447, 384;
    /// IMPLEMENTATION DEFINED.
    IMPDEF: 511, 448;
}

impl Cd {
    /// TTB0 (bits 51:4 in place).
    pub const fn ttb0(&self) -> u64 {
        self.get_in_place(Self::TTB0)
    }
    /// TTB1 (bits 51:4 in place).
    pub const fn ttb1(&self) -> u64 {
        self.get_in_place(Self::TTB1)
    }
    /// Returns a copy with TTB0 set to `addr` (bits 51:4 in place; the other
    /// bits of `addr` are dropped).
    #[must_use]
    pub fn with_ttb0(self, addr: u64) -> Self {
        self.with_in_place(Self::TTB0, addr)
    }
    /// Returns a copy with TTB1 set to `addr` (bits 51:4 in place; the other
    /// bits of `addr` are dropped).
    #[must_use]
    pub fn with_ttb1(self, addr: u64) -> Self {
        self.with_in_place(Self::TTB1, addr)
    }
}

/// CD table formats (STE.S1Fmt), SMMUv3 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S1Fmt {
    /// 0b00: a linear table of 2^S1CDMax CDs.
    Linear,
    /// 0b01: a level-1 table of L1CDs, each pointing at 4 KiB of 64 CDs.
    TwoLevel4K,
    /// 0b10: a level-1 table of L1CDs, each pointing at 64 KiB of 1024 CDs.
    TwoLevel64K,
}

impl S1Fmt {
    /// Decodes the field; 0b11 is reserved.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(S1Fmt::Linear),
            1 => Some(S1Fmt::TwoLevel4K),
            2 => Some(S1Fmt::TwoLevel64K),
            _ => None,
        }
    }
    /// The 2-bit STE.S1Fmt encoding.
    pub const fn bits(self) -> u64 {
        match self {
            S1Fmt::Linear => 0,
            S1Fmt::TwoLevel4K => 1,
            S1Fmt::TwoLevel64K => 2,
        }
    }
    /// log2 of the number of CDs per leaf table (`None` for linear).
    pub const fn split(self) -> Option<u32> {
        match self {
            S1Fmt::Linear => None,
            S1Fmt::TwoLevel4K => Some(6),
            S1Fmt::TwoLevel64K => Some(10),
        }
    }
}

crate::layout! {
    /// Level-1 CD table descriptor, SMMUv3 §5.3. 64 bits.
    ///
    /// ```text
    ///  63      52 51                       12 11        1  0
    /// +----------+---------------------------+-----------+---+
    /// | reserved |          L2Ptr            | reserved  | V |
    /// +----------+---------------------------+-----------+---+
    /// ```
    pub struct L1Cd([u64; 1]);
    /// Valid.
    V: 0, 0;
    /// Address of the leaf CD table.
    L2PTR: 51, 12;
}

impl L1Cd {
    /// A valid descriptor pointing at `l2`.
    pub fn new(l2: u64) -> Self {
        Self::default().with(Self::V, 1).with_in_place(Self::L2PTR, l2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes, SMMUv3 §5.4: T0SZ 16, TG0 4K, IR0/OR0 WB, SH0 inner,
    /// EPD1, V, IPS 44 bits, AA64, R, A, ASET, ASID 0xBEEF, TTB0 0x40104000,
    /// MAIR0 0x44FF (as the oracle's encoder writes by default).
    #[test]
    fn cd_golden_bytes() {
        let cd = Cd::default()
            .with(Cd::T0SZ, 16)
            .with(Cd::IR0, 1)
            .with(Cd::OR0, 1)
            .with(Cd::SH0, 3)
            .with(Cd::EPD1, 1)
            .with(Cd::V, 1)
            .with(Cd::IPS, 4)
            .with(Cd::AA64, 1)
            .with(Cd::R, 1)
            .with(Cd::A, 1)
            .with(Cd::ASET, 1)
            .with(Cd::ASID, 0xBEEF)
            .with_in_place(Cd::TTB0, 0x4010_4000)
            .with(Cd::MAIR0, 0x44FF);
        let b = cd.to_bytes();
        assert_eq!(&b[0..8], &[0x10, 0x35, 0x00, 0xC0, 0x04, 0xE2, 0xEF, 0xBE]);
        assert_eq!(&b[8..16], &[0x00, 0x40, 0x10, 0x40, 0, 0, 0, 0]);
        assert_eq!(&b[24..32], &[0xFF, 0x44, 0, 0, 0, 0, 0, 0]);
        assert_eq!(cd.ttb0(), 0x4010_4000);
        assert_eq!(Cd::from_bytes(&b), cd);
    }

    #[test]
    fn s1fmt_decodes_and_reserved_is_none() {
        assert_eq!(S1Fmt::from_bits(1).and_then(S1Fmt::split), Some(6));
        assert_eq!(S1Fmt::from_bits(2).and_then(S1Fmt::split), Some(10));
        assert_eq!(S1Fmt::from_bits(3), None);
    }

    /// Golden bytes, SMMUv3 §5.3: V, L2Ptr 0x40110000.
    #[test]
    fn l1cd_golden_bytes() {
        assert_eq!(L1Cd::new(0x4011_0000).to_bytes(), [0x01, 0, 0x11, 0x40, 0, 0, 0, 0]);
    }
}

/// Property tests: the raw views keep every bit, every field (and every
/// typed accessor) writes only its own bits, and the typed decoders of CD
/// fields accept any raw value (SMMUv3 §5.3, §5.4).
#[cfg(test)]
mod props {
    use super::*;
    use crate::bits::Field;
    use crate::smmuv3::desc::Granule;
    use crate::smmuv3::props::{legal_value, max_value, same_outside, Legal};
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Legal values of every CD field, SMMUv3 §5.4, for VMSAv8-64 tables
    /// with a 48-bit OAS and no VAX or TTST: TxSZ 16–39, IPS up to 48 bits,
    /// TG0 without 0b11 and TG1 without 0b00, and no reserved shareability
    /// (0b01) in SH0/SH1.
    const CD_LEGAL: &[(Field, Legal)] = &[
        (Cd::T0SZ, Legal::Range(16, 39)),
        (Cd::TG0, Legal::Range(0, 2)),
        (Cd::IR0, Legal::Range(0, 3)),
        (Cd::OR0, Legal::Range(0, 3)),
        (Cd::SH0, Legal::OneOf(&[0, 2, 3])),
        (Cd::EPD0, Legal::Range(0, 1)),
        (Cd::ENDI, Legal::Range(0, 1)),
        (Cd::T1SZ, Legal::Range(16, 39)),
        (Cd::TG1, Legal::Range(1, 3)),
        (Cd::IR1, Legal::Range(0, 3)),
        (Cd::OR1, Legal::Range(0, 3)),
        (Cd::SH1, Legal::OneOf(&[0, 2, 3])),
        (Cd::EPD1, Legal::Range(0, 1)),
        (Cd::V, Legal::Range(0, 1)),
        (Cd::IPS, Legal::Range(0, 5)),
        (Cd::AFFD, Legal::Range(0, 1)),
        (Cd::WXN, Legal::Range(0, 1)),
        (Cd::UWXN, Legal::Range(0, 1)),
        (Cd::TBI, Legal::Range(0, 3)),
        (Cd::PAN, Legal::Range(0, 1)),
        (Cd::AA64, Legal::Range(0, 1)),
        (Cd::HD, Legal::Range(0, 1)),
        (Cd::HA, Legal::Range(0, 1)),
        (Cd::S, Legal::Range(0, 1)),
        (Cd::R, Legal::Range(0, 1)),
        (Cd::A, Legal::Range(0, 1)),
        (Cd::ASET, Legal::Range(0, 1)),
        (Cd::ASID, Legal::Any),
        (Cd::NSCFG0, Legal::Range(0, 1)),
        (Cd::HAD0, Legal::Range(0, 1)),
        (Cd::NSCFG1, Legal::Range(0, 1)),
        (Cd::HAD1, Legal::Range(0, 1)),
        (Cd::MAIR0, Legal::Any),
        (Cd::MAIR1, Legal::Any),
        (Cd::AMAIR0, Legal::Any),
        (Cd::AMAIR1, Legal::Any),
        (Cd::IMPDEF, Legal::Any),
    ];

    fn any_cd() -> impl Strategy<Value = Cd> {
        proptest::array::uniform8(any::<u64>()).prop_map(Cd)
    }

    fn any_granule() -> impl Strategy<Value = Granule> {
        select(&[Granule::G4K, Granule::G16K, Granule::G64K][..])
    }

    proptest! {
        #[test]
        fn cd_words_survive_a_bytes_round_trip(cd in any_cd()) {
            prop_assert_eq!(Cd::from_bytes(&cd.to_bytes()), cd);
        }

        #[test]
        fn cd_bytes_survive_a_raw_round_trip(bytes in proptest::collection::vec(any::<u8>(), Cd::SIZE)) {
            let mut b = [0u8; Cd::SIZE];
            b.copy_from_slice(&bytes);
            prop_assert_eq!(Cd::from_bytes(&b).to_bytes(), b);
        }

        #[test]
        fn l1cd_words_survive_a_bytes_round_trip(w: u64) {
            let d = L1Cd::from_words([w]);
            prop_assert_eq!(L1Cd::from_bytes(&d.to_bytes()), d);
        }

        #[test]
        fn cd_field_set_reads_back_the_value_truncated_to_its_width(
            cd in any_cd(), f in select(Cd::FIELDS), v: u64,
        ) {
            prop_assert_eq!(cd.with(f, v).get(f), v & max_value(f));
        }

        #[test]
        fn cd_field_set_leaves_other_bits_unchanged(cd in any_cd(), f in select(Cd::FIELDS), v: u64) {
            prop_assert!(same_outside(cd.0, cd.with(f, v).0, f), "{}", f.name);
        }

        #[test]
        fn cd_legal_field_value_reads_back_exactly(cd in any_cd(), (f, v) in legal_value(CD_LEGAL)) {
            prop_assert_eq!(cd.with(f, v).get(f), v, "{}", f.name);
        }

        #[test]
        fn cd_ttb0_set_reads_back_the_address(cd in any_cd(), a in 0u64..1 << 52) {
            let a = a & !0xF;
            prop_assert_eq!(cd.with_ttb0(a).ttb0(), a);
        }

        #[test]
        fn cd_ttb0_set_leaves_other_bits_unchanged(cd in any_cd(), a: u64) {
            prop_assert!(same_outside(cd.0, cd.with_ttb0(a).0, Cd::TTB0));
        }

        #[test]
        fn cd_ttb1_set_reads_back_the_address(cd in any_cd(), a in 0u64..1 << 52) {
            let a = a & !0xF;
            prop_assert_eq!(cd.with_ttb1(a).ttb1(), a);
        }

        #[test]
        fn cd_ttb1_set_leaves_other_bits_unchanged(cd in any_cd(), a: u64) {
            prop_assert!(same_outside(cd.0, cd.with_ttb1(a).0, Cd::TTB1));
        }

        #[test]
        fn cd_tg0_set_reads_back_the_granule(cd in any_cd(), g in any_granule()) {
            prop_assert_eq!(Granule::from_tg0(cd.with(Cd::TG0, g.tg0()).get(Cd::TG0)), Some(g));
        }

        #[test]
        fn cd_legal_tg1_set_reads_back_as_a_granule(cd in any_cd(), tg1 in 1u64..=3) {
            prop_assert!(Granule::from_tg1(cd.with(Cd::TG1, tg1).get(Cd::TG1)).is_some());
        }

        /// TG0 0b11 is reserved (§5.4); every other value names a granule.
        #[test]
        fn cd_tg0_decodes_every_raw_value_reserved_only_for_0b11(cd in any_cd()) {
            let raw = cd.get(Cd::TG0);
            prop_assert_eq!(Granule::from_tg0(raw).is_none(), raw == 3);
        }

        /// TG1 0b00 is reserved (§5.4); every other value names a granule.
        #[test]
        fn cd_tg1_decodes_every_raw_value_reserved_only_for_0b00(cd in any_cd()) {
            let raw = cd.get(Cd::TG1);
            prop_assert_eq!(Granule::from_tg1(raw).is_none(), raw == 0);
        }

        /// STE.S1Fmt 0b11 is reserved (§5.2); the others round-trip.
        #[test]
        fn s1fmt_decodes_every_raw_value_reserved_only_for_0b11(v: u64) {
            match S1Fmt::from_bits(v) {
                Some(fmt) => prop_assert_eq!(fmt.bits(), v & 3),
                None => prop_assert_eq!(v & 3, 3),
            }
        }

        #[test]
        fn l1cd_new_reads_back_valid_and_pointer(l2 in 0u64..1 << 52) {
            let l2 = l2 & !0xFFF;
            let d = L1Cd::new(l2);
            prop_assert_eq!((d.get(L1Cd::V), d.get_in_place(L1Cd::L2PTR)), (1, l2));
        }

        #[test]
        fn l1cd_new_sets_no_reserved_bits(l2: u64) {
            prop_assert!(!L1Cd::new(l2).has_reserved_bits());
        }

        #[test]
        fn l1cd_field_set_reads_back_the_value_truncated_to_its_width(
            w: u64, f in select(L1Cd::FIELDS), v: u64,
        ) {
            prop_assert_eq!(L1Cd::from_words([w]).with(f, v).get(f), v & max_value(f));
        }

        #[test]
        fn l1cd_field_set_leaves_other_bits_unchanged(w: u64, f in select(L1Cd::FIELDS), v: u64) {
            let d = L1Cd::from_words([w]);
            prop_assert!(same_outside(d.0, d.with(f, v).0, f), "{}", f.name);
        }
    }
}
