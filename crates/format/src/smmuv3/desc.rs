//! VMSAv8-64 translation table descriptors as an SMMUv3 walks them
//! (SMMUv3 §3.4 defers to the Arm ARM, chapter D8 "The AArch64 Virtual
//! Memory System Architecture": D8.3 descriptor formats, D8.4 memory
//! access control), and the translation granules.
//!
//! Only the 48-bit output formats are modelled (no LPA/LPA2, which need a
//! 52-bit OAS): output addresses are bits 47:g of a descriptor.

/// A translation granule (Arm ARM D8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages, 512 entries per table.
    G4K,
    /// 16 KiB pages, 2048 entries per table.
    G16K,
    /// 64 KiB pages, 8192 entries per table.
    G64K,
}

impl Granule {
    /// log2 of the page size.
    pub const fn shift(self) -> u32 {
        match self {
            Granule::G4K => 12,
            Granule::G16K => 14,
            Granule::G64K => 16,
        }
    }
    /// Index bits resolved per level (log2 of the entries per table).
    pub const fn stride(self) -> u32 {
        self.shift() - 3
    }
    /// log2 of the size a leaf at `level` (0–3) maps.
    pub const fn level_shift(self, level: u8) -> u32 {
        self.shift() + (3 - level as u32) * self.stride()
    }
    /// Whether a block descriptor is allowed at `level` with a 48-bit
    /// output address: levels 1 and 2 for 4K, level 2 only for 16K and 64K
    /// (level-0 4K blocks and level-1 16K/64K blocks need LPA2/LPA).
    pub const fn block_allowed(self, level: u8) -> bool {
        match self {
            Granule::G4K => level == 1 || level == 2,
            Granule::G16K | Granule::G64K => level == 2,
        }
    }
    /// The stage-1 starting level for an input size (Arm ARM D8.2.6): the
    /// highest level whose index bits are still needed.
    pub const fn start_level(self, input_bits: u32) -> u8 {
        let s = self.stride();
        let levels = (input_bits - self.shift()).div_ceil(s);
        (4 - levels) as u8
    }
    /// Decodes CD.TG0 / STE.S2TG (0b00 4K, 0b01 64K, 0b10 16K; 0b11 reserved).
    pub const fn from_tg0(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(Granule::G4K),
            1 => Some(Granule::G64K),
            2 => Some(Granule::G16K),
            _ => None,
        }
    }
    /// Decodes CD.TG1 (0b01 16K, 0b10 4K, 0b11 64K; 0b00 reserved).
    pub const fn from_tg1(v: u64) -> Option<Self> {
        match v & 3 {
            1 => Some(Granule::G16K),
            2 => Some(Granule::G4K),
            3 => Some(Granule::G64K),
            _ => None,
        }
    }
    /// The TG0 / S2TG encoding.
    pub const fn tg0(self) -> u64 {
        match self {
            Granule::G4K => 0,
            Granule::G64K => 1,
            Granule::G16K => 2,
        }
    }
}

/// Decodes an IPS / S2PS / OAS field to a size in bits (SMMUv3 §5.2,
/// §5.4, §6.3.6): 32, 36, 40, 42, 44, 48, and 52 for 0b110; 0b111 is
/// reserved and reads as 52 here so that callers cap it to the OAS.
pub const fn pa_bits(v: u64) -> u32 {
    match super::regs::oas_bits(v & 7) {
        Some(b) => b,
        None => 52,
    }
}

/// Output-address bits of a descriptor (47:12; the low part below the
/// granule or block size is RES0 and masked by the walker).
pub const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;

crate::layout! {
    /// A stage-1 VMSAv8-64 descriptor (Arm ARM D8.3.1, D8.3.2): table,
    /// block or page. Table descriptors use bits 63:59 (the hierarchical
    /// attributes); block and page descriptors use the lower and upper
    /// attributes.
    pub struct S1Desc([u64; 1]);
    /// Valid.
    VALID: 0, 0;
    /// Table (or page, at level 3) rather than block.
    TYPE: 1, 1;
    /// Index into MAIR.
    ATTRINDX: 4, 2;
    /// Non-secure output.
    NS: 5, 5;
    /// Access permissions AP[2:1]: AP[1] grants EL0 (unprivileged)
    /// access, AP[2] makes the page read-only.
    AP: 7, 6;
    /// Shareability.
    SH: 9, 8;
    /// Access flag.
    AF: 10, 10;
    /// Not global: the entry is tagged with the ASID.
    NG: 11, 11;
    /// Output address (next table, block or page).
    OA: 47, 12;
    /// Dirty bit modifier.
    DBM: 51, 51;
    /// Contiguous hint.
    CONTIGUOUS: 52, 52;
    /// Privileged execute-never.
    PXN: 53, 53;
    /// Unprivileged execute-never (XN).
    UXN: 54, 54;
    /// Software use.
    SW: 58, 55;
    /// Privileged execute-never for everything below (table descriptors).
    PXNTABLE: 59, 59;
    /// Execute-never for everything below (table descriptors).
    XNTABLE: 60, 60;
    /// Access-permission limits for everything below: bit 0 removes EL0
    /// access, bit 1 removes write access (table descriptors).
    APTABLE: 62, 61;
    /// Non-secure tables below (table descriptors).
    NSTABLE: 63, 63;
}

crate::layout! {
    /// A stage-2 VMSAv8-64 descriptor (Arm ARM D8.3.1, D8.3.2): table,
    /// block or page.
    pub struct S2Desc([u64; 1]);
    /// Valid.
    VALID: 0, 0;
    /// Table (or page, at level 3) rather than block.
    TYPE: 1, 1;
    /// Stage-2 memory attributes.
    MEMATTR: 5, 2;
    /// Stage-2 access permissions: bit 0 read, bit 1 write.
    S2AP: 7, 6;
    /// Shareability.
    SH: 9, 8;
    /// Access flag.
    AF: 10, 10;
    /// Output address (next table, block or page).
    OA: 47, 12;
    /// Dirty bit modifier.
    DBM: 51, 51;
    /// Contiguous hint.
    CONTIGUOUS: 52, 52;
    /// Execute-never controls XN[1:0].
    XN: 54, 53;
    /// Software use.
    SW: 58, 55;
}

impl S1Desc {
    /// A table descriptor pointing at `next`.
    pub fn table(next: u64) -> Self {
        Self::default().with(Self::VALID, 1).with(Self::TYPE, 1).with_in_place(Self::OA, next)
    }
    /// A leaf (block when `page` is false) at `out` with AP[2:1] = `ap`,
    /// AF set, non-global, inner-shareable, attribute index 0.
    pub fn leaf(out: u64, page: bool, ap: u64) -> Self {
        Self::default()
            .with(Self::VALID, 1)
            .with(Self::TYPE, page as u64)
            .with(Self::AP, ap)
            .with(Self::SH, 3)
            .with(Self::AF, 1)
            .with(Self::NG, 1)
            .with_in_place(Self::OA, out)
    }
}

impl S2Desc {
    /// A table descriptor pointing at `next`.
    pub fn table(next: u64) -> Self {
        Self::default().with(Self::VALID, 1).with(Self::TYPE, 1).with_in_place(Self::OA, next)
    }
    /// A leaf (block when `page` is false) at `out` with S2AP = `s2ap`,
    /// AF set, inner-shareable, normal write-back memory.
    pub fn leaf(out: u64, page: bool, s2ap: u64) -> Self {
        Self::default()
            .with(Self::VALID, 1)
            .with(Self::TYPE, page as u64)
            .with(Self::MEMATTR, 0xF)
            .with(Self::S2AP, s2ap)
            .with(Self::SH, 3)
            .with(Self::AF, 1)
            .with_in_place(Self::OA, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_levels_follow_input_size() {
        assert_eq!(Granule::G4K.start_level(48), 0);
        assert_eq!(Granule::G4K.start_level(39), 1);
        assert_eq!(Granule::G4K.start_level(40), 0);
        assert_eq!(Granule::G4K.start_level(25), 2);
        assert_eq!(Granule::G64K.start_level(42), 2);
        assert_eq!(Granule::G64K.start_level(48), 1);
        assert_eq!(Granule::G16K.start_level(47), 1);
        assert_eq!(Granule::G16K.start_level(48), 0);
    }

    #[test]
    fn level_shifts_per_granule() {
        assert_eq!(Granule::G4K.level_shift(1), 30);
        assert_eq!(Granule::G16K.level_shift(2), 25);
        assert_eq!(Granule::G64K.level_shift(2), 29);
    }

    /// Golden bytes, Arm ARM D8.3: a 4K page at 0x4410_3000, AP = 0b01 (RW
    /// at EL0 and EL1), inner-shareable, AF, nG, valid page: 0x44103F43.
    #[test]
    fn s1_page_golden_bytes() {
        let d = S1Desc::leaf(0x4410_3000, true, 1);
        assert_eq!(d.words()[0], 0x4410_3F43);
        assert_eq!(d.to_bytes(), [0x43, 0x3F, 0x10, 0x44, 0, 0, 0, 0]);
    }

    /// Golden bytes: a stage-2 page with S2AP read/write, MemAttr 0xF,
    /// inner-shareable, AF: 0x441037FF.
    #[test]
    fn s2_page_golden_bytes() {
        let d = S2Desc::leaf(0x4410_3000, true, 3);
        assert_eq!(d.words()[0], 0x4410_37FF);
    }
}
