//! Root table entries (VT-d §9.1 legacy, §9.2 scalable mode).
//!
//! The root table is one 4 KiB page of 256 × 128-bit entries indexed by the
//! bus number of the request's source-id. `RTADDR_REG.TTM` selects which of
//! the two formats below applies to the whole table.

use iommu_types::Hpa;

crate::layout! {
    /// Legacy-mode root entry, VT-d §9.1. 128 bits.
    ///
    /// ```text
    ///  127                      64 63                 12 11      1  0
    /// +--------------------------+---------------------+---------+---+
    /// |        reserved          |        CTP          |reserved | P |
    /// +--------------------------+---------------------+---------+---+
    /// ```
    pub struct RootEntry([u64; 2]);
    /// Present: the context table pointer is valid.
    P: 0, 0;
    /// Context-table pointer (4 KiB aligned, 256 × 128-bit context entries).
    CTP: 63, 12;
}

impl RootEntry {
    /// Present bit.
    pub const fn present(&self) -> bool {
        self.get(Self::P) != 0
    }
    /// Context-table pointer.
    pub const fn ctp(&self) -> Hpa {
        Hpa::new(self.get_in_place(Self::CTP))
    }
    /// A present entry pointing at `ctp` (low 12 bits of `ctp` dropped).
    pub fn new_present(ctp: Hpa) -> Self {
        Self::default().with(Self::P, 1).with_in_place(Self::CTP, ctp.raw())
    }
}

crate::layout! {
    /// Scalable-mode root entry, VT-d §9.2. 128 bits: a lower context table
    /// for devfn 0x00–0x7F and an upper one for devfn 0x80–0xFF, each holding
    /// 128 × 256-bit scalable-mode context entries.
    ///
    /// ```text
    ///  127                 76 75    65 64  63                12 11      1  0
    /// +---------------------+--------+----+--------------------+---------+----+
    /// |        UCTP         |reserved| UP |       LCTP         |reserved | LP |
    /// +---------------------+--------+----+--------------------+---------+----+
    /// ```
    pub struct ScalableRootEntry([u64; 2]);
    /// Lower present: LCTP is valid.
    LP: 0, 0;
    /// Lower context-table pointer (devfn 0x00–0x7F).
    LCTP: 63, 12;
    /// Upper present: UCTP is valid.
    UP: 64, 64;
    /// Upper context-table pointer (devfn 0x80–0xFF).
    UCTP: 127, 76;
}

impl ScalableRootEntry {
    /// For `devfn`, whether its half is present and the half's table pointer.
    pub const fn half_for(&self, devfn: u8) -> (bool, Hpa) {
        if devfn < 0x80 {
            (self.get(Self::LP) != 0, Hpa::new(self.get_in_place(Self::LCTP)))
        } else {
            (self.get(Self::UP) != 0, Hpa::new(self.get_in_place(Self::UCTP)))
        }
    }

    /// An entry with the given halves present.
    pub fn new(lower: Option<Hpa>, upper: Option<Hpa>) -> Self {
        let mut e = Self::default();
        if let Some(l) = lower {
            e = e.with(Self::LP, 1).with_in_place(Self::LCTP, l.raw());
        }
        if let Some(u) = upper {
            e = e.with(Self::UP, 1).with_in_place(Self::UCTP, u.raw());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes, VT-d §9.1: P (bit 0) = 1, CTP (63:12) = 0x12345000.
    #[test]
    fn legacy_root_entry_golden_bytes() {
        let bytes: [u8; 16] = [
            0x01, 0x50, 0x34, 0x12, 0, 0, 0, 0, // P=1 | CTP=0x12345000
            0, 0, 0, 0, 0, 0, 0, 0, // 127:64 reserved
        ];
        let e = RootEntry::from_bytes(&bytes);
        assert!(e.present());
        assert_eq!(e.ctp(), Hpa::new(0x1234_5000));
        assert_eq!(RootEntry::new_present(Hpa::new(0x1234_5000)).to_bytes(), bytes);
    }

    #[test]
    fn legacy_root_reserved_bit_3_is_reported() {
        let e = RootEntry::from_words([0x1009, 0]);
        assert!(e.has_reserved_bits());
    }

    /// Golden bytes, VT-d §9.2: LP=1, LCTP=0x2000, UP (bit 64)=1, UCTP (127:76)=0x3000.
    #[test]
    fn scalable_root_entry_golden_bytes() {
        let bytes: [u8; 16] = [
            0x01, 0x20, 0, 0, 0, 0, 0, 0, // LP=1 | LCTP=0x2000
            0x01, 0x30, 0, 0, 0, 0, 0, 0, // UP=1 | UCTP=0x3000 (bits 76+ = qw1 bits 12+)
        ];
        let e = ScalableRootEntry::new(Some(Hpa::new(0x2000)), Some(Hpa::new(0x3000)));
        assert_eq!(e.to_bytes(), bytes);
        assert_eq!(e.half_for(0x7F), (true, Hpa::new(0x2000)));
        assert_eq!(e.half_for(0x80), (true, Hpa::new(0x3000)));
        assert!(!e.has_reserved_bits());
    }
}
