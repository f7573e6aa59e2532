//! Stream table entries (SMMUv3 §5.2) and level-1 stream table descriptors
//! (§5.1).
//!
//! The raw views name the fields this model uses; bits they leave unnamed
//! (IMPLEMENTATION DEFINED, Secure-only and later-extension fields) are
//! ignored by the model, as a v3.1 Non-secure implementation without those
//! extensions does, so the derived reserved mask is informative only.

crate::layout! {
    /// Stream table entry, SMMUv3 §5.2. 512 bits.
    ///
    /// ```text
    ///  qw0: S1CDMax[63:59] S1ContextPtr[55:6] S1Fmt[5:4] Config[3:1] V[0]
    ///  qw1: INSTCFG PRIVCFG NSCFG SHCFG ALLOCCFG MTCFG MemAttr STRW EATS S1STALLD .. S1CSH S1COR S1CIR S1DSS
    ///  qw2: S2R S2S S2HA S2HD S2PTW S2AFFD S2ENDI S2AA64 S2PS S2TG S2SH0 S2OR0 S2IR0 S2SL0 S2T0SZ .. S2VMID
    ///  qw3: S2TTB[51:4]
    /// ```
    pub struct Ste([u64; 8]);
    /// Valid.
    V: 0, 0;
    /// Config: 0b000 abort, 0b100 bypass, 0b101 stage 1, 0b110 stage 2, 0b111 both.
    CONFIG: 3, 1;
    /// Format of the CD table S1ContextPtr points at (linear, 2-level 4K or 64K leaves).
    S1FMT: 5, 4;
    /// Address of the CD or CD table (an IPA when stage 2 is enabled).
    S1CONTEXTPTR: 55, 6;
    /// log2 of the number of CDs (SubstreamIDs) the table holds.
    S1CDMAX: 63, 59;
    /// Default substream: what stage 1 does with transactions that carry no SubstreamID.
    S1DSS: 65, 64;
    /// Inner cacheability of CD and CD-table fetches.
    S1CIR: 67, 66;
    /// Outer cacheability of CD and CD-table fetches.
    S1COR: 69, 68;
    /// Shareability of CD and CD-table fetches.
    S1CSH: 71, 70;
    /// Stall disable for stage-1 faults.
    S1STALLD: 91, 91;
    /// Enable ATS translation requests.
    EATS: 93, 92;
    /// StreamWorld (translation regime) of stage 1.
    STRW: 95, 94;
    /// Memory attribute override.
    MEMATTR: 99, 96;
    /// Memory type override enable.
    MTCFG: 100, 100;
    /// Allocation hint override.
    ALLOCCFG: 104, 101;
    /// Shareability override.
    SHCFG: 109, 108;
    /// Security override.
    NSCFG: 111, 110;
    /// Privilege override: 0b00 incoming, 0b10 unprivileged, 0b11 privileged.
    PRIVCFG: 113, 112;
    /// Instruction/data override: 0b00 incoming, 0b10 data, 0b11 instruction.
    INSTCFG: 115, 114;
    /// Stage-2 VMID.
    S2VMID: 143, 128;
    /// Stage-2 input size is 2^(64 - S2T0SZ).
    S2T0SZ: 165, 160;
    /// Stage-2 starting level (meaning depends on S2TG).
    S2SL0: 167, 166;
    /// Inner cacheability of stage-2 table walks.
    S2IR0: 169, 168;
    /// Outer cacheability of stage-2 table walks.
    S2OR0: 171, 170;
    /// Shareability of stage-2 table walks.
    S2SH0: 173, 172;
    /// Stage-2 granule: 0b00 4K, 0b01 64K, 0b10 16K.
    S2TG: 175, 174;
    /// Stage-2 physical address size (IPS encoding).
    S2PS: 178, 176;
    /// Stage-2 tables are VMSAv8-64 (1) or VMSAv8-32 LPAE (0).
    S2AA64: 179, 179;
    /// Stage-2 tables are big-endian.
    S2ENDI: 180, 180;
    /// Stage-2 access flag fault disable.
    S2AFFD: 181, 181;
    /// Protected table walk.
    S2PTW: 182, 182;
    /// Stage-2 hardware dirty-state update.
    S2HD: 183, 183;
    /// Stage-2 hardware access-flag update.
    S2HA: 184, 184;
    /// Stall stage-2 faults.
    S2S: 185, 185;
    /// Record stage-2 faults.
    S2R: 186, 186;
    /// Stage-2 translation table base.
    S2TTB: 243, 196;
}

/// STE.Config values, SMMUv3 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SteConfig {
    /// 0b000, and the reserved 0b001–0b011 which behave the same: abort
    /// every transaction without recording an event.
    Abort,
    /// 0b100: both stages bypassed.
    Bypass,
    /// 0b101: stage 1 translates, stage 2 bypassed.
    S1,
    /// 0b110: stage 1 bypassed, stage 2 translates.
    S2,
    /// 0b111: both stages translate (nested).
    Nested,
}

impl SteConfig {
    /// Decodes the 3-bit Config field.
    pub const fn from_bits(v: u64) -> Self {
        match v & 7 {
            4 => SteConfig::Bypass,
            5 => SteConfig::S1,
            6 => SteConfig::S2,
            7 => SteConfig::Nested,
            _ => SteConfig::Abort,
        }
    }
    /// The field encoding (Abort encodes as 0b000).
    pub const fn bits(self) -> u64 {
        match self {
            SteConfig::Abort => 0,
            SteConfig::Bypass => 4,
            SteConfig::S1 => 5,
            SteConfig::S2 => 6,
            SteConfig::Nested => 7,
        }
    }
    /// Stage 1 translates.
    pub const fn stage1(self) -> bool {
        matches!(self, SteConfig::S1 | SteConfig::Nested)
    }
    /// Stage 2 translates.
    pub const fn stage2(self) -> bool {
        matches!(self, SteConfig::S2 | SteConfig::Nested)
    }
}

/// STE.S1DSS: stage-1 handling of transactions without a SubstreamID when
/// the CD table has more than one entry, SMMUv3 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S1Dss {
    /// 0b00: terminate them (F_STREAM_DISABLED).
    Terminate,
    /// 0b01: bypass stage 1 for them.
    Bypass,
    /// 0b10: use CD 0 for them; transactions tagged with SubstreamID 0 are
    /// then C_BAD_SUBSTREAMID.
    Substream0,
    /// 0b11: reserved.
    Reserved,
}

impl S1Dss {
    /// Decodes the 2-bit field.
    pub const fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => S1Dss::Terminate,
            1 => S1Dss::Bypass,
            2 => S1Dss::Substream0,
            _ => S1Dss::Reserved,
        }
    }
    /// The 2-bit field encoding (`Reserved` encodes as 0b11).
    pub const fn bits(self) -> u64 {
        match self {
            S1Dss::Terminate => 0,
            S1Dss::Bypass => 1,
            S1Dss::Substream0 => 2,
            S1Dss::Reserved => 3,
        }
    }
}

impl Ste {
    /// The Config field, decoded.
    pub const fn config(&self) -> SteConfig {
        SteConfig::from_bits(self.get(Self::CONFIG))
    }
    /// S1ContextPtr (bits 55:6 in place).
    pub const fn s1_context_ptr(&self) -> u64 {
        self.get_in_place(Self::S1CONTEXTPTR)
    }
    /// S2TTB (bits 51:4 in place).
    pub const fn s2ttb(&self) -> u64 {
        self.get_in_place(Self::S2TTB)
    }
    /// Returns a copy with the Config field set to `c` ([`SteConfig::bits`];
    /// `Abort` writes 0b000).
    #[must_use]
    pub fn with_config(self, c: SteConfig) -> Self {
        self.with(Self::CONFIG, c.bits())
    }
    /// Returns a copy with S1ContextPtr set to `addr` (bits 55:6 in place;
    /// the other bits of `addr` are dropped).
    #[must_use]
    pub fn with_s1_context_ptr(self, addr: u64) -> Self {
        self.with_in_place(Self::S1CONTEXTPTR, addr)
    }
    /// Returns a copy with S2TTB set to `addr` (bits 51:4 in place; the
    /// other bits of `addr` are dropped).
    #[must_use]
    pub fn with_s2ttb(self, addr: u64) -> Self {
        self.with_in_place(Self::S2TTB, addr)
    }
}

crate::layout! {
    /// Level-1 stream table descriptor, SMMUv3 §5.1. 64 bits.
    ///
    /// ```text
    ///  63      52 51                        6 5    5 4      0
    /// +----------+---------------------------+------+--------+
    /// | reserved |          L2Ptr            | rsvd |  Span  |
    /// +----------+---------------------------+------+--------+
    /// ```
    pub struct L1Std([u64; 1]);
    /// log2 of the number of STEs in the level-2 array, plus one; 0 = invalid.
    SPAN: 4, 0;
    /// Address of the level-2 array of STEs.
    L2PTR: 51, 6;
}

impl L1Std {
    /// A descriptor pointing at `l2` with `span`.
    pub fn new(l2: u64, span: u8) -> Self {
        Self::default().with(Self::SPAN, span as u64).with_in_place(Self::L2PTR, l2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes, SMMUv3 §5.2: V, Config = stage 1 (0b101),
    /// S1ContextPtr 0x40102000, S1CDMax 3, S1DSS = substream 0, EATS 1,
    /// S2VMID 0x1234, S2T0SZ 24, S2SL0 1, S2TG 4K, S2PS 44 bits, S2AA64,
    /// S2R, S2TTB 0x40200000.
    #[test]
    fn ste_golden_bytes() {
        let q0: u64 = 1 | 5 << 1 | 0x4010_2000 | 3 << 59;
        let q1: u64 = 2 | 1 << 28;
        let q2: u64 = 0x1234 | 24 << 32 | 1 << 38 | 4 << 48 | 1 << 51 | 1 << 58;
        let q3: u64 = 0x4020_0000;
        let ste = Ste::from_words([q0, q1, q2, q3, 0, 0, 0, 0]);
        assert_eq!(ste.get(Ste::V), 1);
        assert_eq!(ste.config(), SteConfig::S1);
        assert_eq!(ste.s1_context_ptr(), 0x4010_2000);
        assert_eq!(ste.get(Ste::S1CDMAX), 3);
        assert_eq!(S1Dss::from_bits(ste.get(Ste::S1DSS)), S1Dss::Substream0);
        assert_eq!(ste.get(Ste::EATS), 1);
        assert_eq!(ste.get(Ste::S2VMID), 0x1234);
        assert_eq!(ste.get(Ste::S2T0SZ), 24);
        assert_eq!(ste.get(Ste::S2SL0), 1);
        assert_eq!(ste.get(Ste::S2PS), 4);
        assert_eq!(ste.get(Ste::S2AA64), 1);
        assert_eq!(ste.get(Ste::S2R), 1);
        assert_eq!(ste.s2ttb(), 0x4020_0000);
        let bytes = ste.to_bytes();
        assert_eq!(&bytes[0..8], &[0x0B, 0x20, 0x10, 0x40, 0, 0, 0, 0x18]);
        assert_eq!(Ste::from_bytes(&bytes), ste);
    }

    #[test]
    fn reserved_config_values_abort() {
        for v in 0..4 {
            assert_eq!(SteConfig::from_bits(v), SteConfig::Abort);
        }
        for c in [SteConfig::Bypass, SteConfig::S1, SteConfig::S2, SteConfig::Nested] {
            assert_eq!(SteConfig::from_bits(c.bits()), c);
        }
    }

    /// Golden bytes, SMMUv3 §5.1: Span 7, L2Ptr 0x40101000.
    #[test]
    fn l1std_golden_bytes() {
        let d = L1Std::new(0x4010_1000, 7);
        assert_eq!(d.to_bytes(), [0x07, 0x10, 0x10, 0x40, 0, 0, 0, 0]);
        assert_eq!(d.get_in_place(L1Std::L2PTR), 0x4010_1000);
    }
}

/// Property tests: the raw views keep every bit, every field (and every
/// typed accessor) writes only its own bits, and the typed decoders accept
/// any raw value (SMMUv3 §5.1, §5.2).
#[cfg(test)]
mod props {
    use super::*;
    use crate::bits::Field;
    use crate::smmuv3::cd::S1Fmt;
    use crate::smmuv3::desc::Granule;
    use crate::smmuv3::props::{legal_value, max_value, same_outside, Legal};
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Legal values of every STE field, SMMUv3 §5.2, as a Non-secure SMMUv3.1
    /// with 20-bit SubstreamIDs and a 48-bit OAS accepts them (0b01, the
    /// reserved shareability, is left out of the SH fields; S1CDMax stops at
    /// SSIDSIZE; S2T0SZ and S2PS stay within a 48-bit IAS and OAS).
    const STE_LEGAL: &[(Field, Legal)] = &[
        (Ste::V, Legal::Range(0, 1)),
        (Ste::S1FMT, Legal::Range(0, 2)),
        (Ste::S1CDMAX, Legal::Range(0, 20)),
        (Ste::S1DSS, Legal::Range(0, 2)),
        (Ste::S1CIR, Legal::Range(0, 3)),
        (Ste::S1COR, Legal::Range(0, 3)),
        (Ste::S1CSH, Legal::OneOf(&[0, 2, 3])),
        (Ste::S1STALLD, Legal::Range(0, 1)),
        (Ste::EATS, Legal::Range(0, 2)),
        (Ste::STRW, Legal::OneOf(&[0, 2])),
        (Ste::MEMATTR, Legal::Any),
        (Ste::MTCFG, Legal::Range(0, 1)),
        (Ste::ALLOCCFG, Legal::Any),
        (Ste::SHCFG, Legal::Range(0, 3)),
        (Ste::NSCFG, Legal::Range(0, 3)),
        (Ste::PRIVCFG, Legal::OneOf(&[0, 2, 3])),
        (Ste::INSTCFG, Legal::OneOf(&[0, 2, 3])),
        (Ste::S2VMID, Legal::Any),
        (Ste::S2T0SZ, Legal::Range(16, 39)),
        (Ste::S2SL0, Legal::Range(0, 2)),
        (Ste::S2IR0, Legal::Range(0, 3)),
        (Ste::S2OR0, Legal::Range(0, 3)),
        (Ste::S2SH0, Legal::OneOf(&[0, 2, 3])),
        (Ste::S2TG, Legal::Range(0, 2)),
        (Ste::S2PS, Legal::Range(0, 5)),
        (Ste::S2AA64, Legal::Range(0, 1)),
        (Ste::S2ENDI, Legal::Range(0, 1)),
        (Ste::S2AFFD, Legal::Range(0, 1)),
        (Ste::S2PTW, Legal::Range(0, 1)),
        (Ste::S2HD, Legal::Range(0, 1)),
        (Ste::S2HA, Legal::Range(0, 1)),
        (Ste::S2S, Legal::Range(0, 1)),
        (Ste::S2R, Legal::Range(0, 1)),
    ];

    fn any_ste() -> impl Strategy<Value = Ste> {
        proptest::array::uniform8(any::<u64>()).prop_map(Ste)
    }

    fn any_config() -> impl Strategy<Value = SteConfig> {
        select(&[SteConfig::Abort, SteConfig::Bypass, SteConfig::S1, SteConfig::S2, SteConfig::Nested][..])
    }

    proptest! {
        #[test]
        fn ste_words_survive_a_bytes_round_trip(ste in any_ste()) {
            prop_assert_eq!(Ste::from_bytes(&ste.to_bytes()), ste);
        }

        #[test]
        fn ste_bytes_survive_a_raw_round_trip(bytes in proptest::collection::vec(any::<u8>(), Ste::SIZE)) {
            let mut b = [0u8; Ste::SIZE];
            b.copy_from_slice(&bytes);
            prop_assert_eq!(Ste::from_bytes(&b).to_bytes(), b);
        }

        #[test]
        fn l1std_words_survive_a_bytes_round_trip(w: u64) {
            let d = L1Std::from_words([w]);
            prop_assert_eq!(L1Std::from_bytes(&d.to_bytes()), d);
        }

        #[test]
        fn ste_field_set_reads_back_the_value_truncated_to_its_width(
            ste in any_ste(), f in select(Ste::FIELDS), v: u64,
        ) {
            prop_assert_eq!(ste.with(f, v).get(f), v & max_value(f));
        }

        #[test]
        fn ste_field_set_leaves_other_bits_unchanged(ste in any_ste(), f in select(Ste::FIELDS), v: u64) {
            prop_assert!(same_outside(ste.0, ste.with(f, v).0, f), "{}", f.name);
        }

        #[test]
        fn ste_legal_field_value_reads_back_exactly(ste in any_ste(), (f, v) in legal_value(STE_LEGAL)) {
            prop_assert_eq!(ste.with(f, v).get(f), v, "{}", f.name);
        }

        #[test]
        fn ste_config_set_reads_back_the_config(ste in any_ste(), c in any_config()) {
            prop_assert_eq!(ste.with_config(c).config(), c);
        }

        #[test]
        fn ste_config_set_leaves_other_bits_unchanged(ste in any_ste(), c in any_config()) {
            prop_assert!(same_outside(ste.0, ste.with_config(c).0, Ste::CONFIG));
        }

        #[test]
        fn ste_s1_context_ptr_set_reads_back_the_address(ste in any_ste(), a in 0u64..1 << 56) {
            let a = a & !0x3F;
            prop_assert_eq!(ste.with_s1_context_ptr(a).s1_context_ptr(), a);
        }

        #[test]
        fn ste_s1_context_ptr_set_leaves_other_bits_unchanged(ste in any_ste(), a: u64) {
            prop_assert!(same_outside(ste.0, ste.with_s1_context_ptr(a).0, Ste::S1CONTEXTPTR));
        }

        #[test]
        fn ste_s2ttb_set_reads_back_the_address(ste in any_ste(), a in 0u64..1 << 52) {
            let a = a & !0xF;
            prop_assert_eq!(ste.with_s2ttb(a).s2ttb(), a);
        }

        #[test]
        fn ste_s2ttb_set_leaves_other_bits_unchanged(ste in any_ste(), a: u64) {
            prop_assert!(same_outside(ste.0, ste.with_s2ttb(a).0, Ste::S2TTB));
        }

        #[test]
        fn ste_s1dss_set_reads_back_the_mode(
            ste in any_ste(),
            d in select(&[S1Dss::Terminate, S1Dss::Bypass, S1Dss::Substream0][..]),
        ) {
            prop_assert_eq!(S1Dss::from_bits(ste.with(Ste::S1DSS, d.bits()).get(Ste::S1DSS)), d);
        }

        #[test]
        fn ste_s1fmt_set_reads_back_the_format(
            ste in any_ste(),
            fmt in select(&[S1Fmt::Linear, S1Fmt::TwoLevel4K, S1Fmt::TwoLevel64K][..]),
        ) {
            prop_assert_eq!(S1Fmt::from_bits(ste.with(Ste::S1FMT, fmt.bits()).get(Ste::S1FMT)), Some(fmt));
        }

        #[test]
        fn ste_s2tg_set_reads_back_the_granule(
            ste in any_ste(),
            g in select(&[Granule::G4K, Granule::G16K, Granule::G64K][..]),
        ) {
            prop_assert_eq!(Granule::from_tg0(ste.with(Ste::S2TG, g.tg0()).get(Ste::S2TG)), Some(g));
        }

        /// Config 0b001–0b011 are reserved and behave as abort (§5.2);
        /// every other value names its own configuration.
        #[test]
        fn ste_config_decodes_every_raw_value_reserved_as_abort(ste in any_ste()) {
            let raw = ste.get(Ste::CONFIG);
            let c = ste.config();
            if (1..=3).contains(&raw) {
                prop_assert_eq!(c, SteConfig::Abort);
            } else {
                prop_assert_eq!(c.bits(), raw);
            }
        }

        #[test]
        fn s1dss_decodes_every_raw_value_and_only_0b11_is_reserved(v: u64) {
            let d = S1Dss::from_bits(v);
            prop_assert_eq!(d.bits(), v & 3);
            prop_assert_eq!(d == S1Dss::Reserved, v & 3 == 3);
        }

        #[test]
        fn l1std_new_reads_back_span_and_pointer(l2 in 0u64..1 << 52, span in 0u8..32) {
            let l2 = l2 & !0x3F;
            let d = L1Std::new(l2, span);
            prop_assert_eq!((d.get(L1Std::SPAN), d.get_in_place(L1Std::L2PTR)), (u64::from(span), l2));
        }

        #[test]
        fn l1std_new_sets_no_reserved_bits(l2: u64, span: u8) {
            prop_assert!(!L1Std::new(l2, span).has_reserved_bits());
        }

        #[test]
        fn l1std_field_set_reads_back_the_value_truncated_to_its_width(
            w: u64, f in select(L1Std::FIELDS), v: u64,
        ) {
            prop_assert_eq!(L1Std::from_words([w]).with(f, v).get(f), v & max_value(f));
        }

        #[test]
        fn l1std_field_set_leaves_other_bits_unchanged(w: u64, f in select(L1Std::FIELDS), v: u64) {
            let d = L1Std::from_words([w]);
            prop_assert!(same_outside(d.0, d.with(f, v).0, f), "{}", f.name);
        }
    }
}
