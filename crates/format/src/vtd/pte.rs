//! Paging-structure entries: first-stage (VT-d §9.7, the x86-64 IA-32e
//! format) and second-stage (VT-d §9.8).
//!
//! Every bit is declared in the field tables (so the derived reserved mask is
//! empty): which bits are reserved depends on the level, on whether the entry
//! is a leaf, and on the hardware's address width and capabilities, so the
//! reserved rules are the pure functions [`fs_reserved_bits`] and
//! [`ss_reserved_bits`].

use iommu_types::{PageSize, Perm};

crate::layout! {
    /// First-stage paging entry (PML5E, PML4E, PDPE, PDE, PTE), VT-d §9.7.
    pub struct FsPte([u64; 1]);
    /// Present.
    P: 0, 0;
    /// Read/write: writes allowed when set.
    RW: 1, 1;
    /// User/supervisor: user requests allowed when set.
    US: 2, 2;
    /// Page-level write-through.
    PWT: 3, 3;
    /// Page-level cache disable.
    PCD: 4, 4;
    /// Accessed.
    A: 5, 5;
    /// Dirty (leaves only; ignored in table entries).
    D: 6, 6;
    /// Page size (PDPE, PDE); PAT in a 4 KiB PTE; reserved in PML4E/PML5E.
    PS: 7, 7;
    /// Global (leaves only).
    G: 8, 8;
    /// Ignored.
    IGN9: 9, 9;
    /// Extended accessed (with EAFE).
    EA: 10, 10;
    /// Ignored.
    IGN11: 11, 11;
    /// Address of the next table or page frame (PAT at bit 12 in large leaves).
    ADDR: 51, 12;
    /// Ignored.
    IGN52: 62, 52;
    /// Execute disable.
    XD: 63, 63;
}

crate::layout! {
    /// Second-stage paging entry, VT-d §9.8. There is no present bit: an
    /// entry is present when R or W is set.
    pub struct SsPte([u64; 1]);
    /// Read.
    R: 0, 0;
    /// Write.
    W: 1, 1;
    /// Execute (with SSEE).
    X: 2, 2;
    /// Extended memory type (leaves).
    EMT: 5, 3;
    /// Ignore PAT (leaves).
    IPAT: 6, 6;
    /// Page size; reserved at levels 4 and 5.
    PS: 7, 7;
    /// Accessed (with SSADE).
    A: 8, 8;
    /// Dirty (with SSADE, leaves).
    D: 9, 9;
    /// Ignored.
    IGN10: 10, 10;
    /// Snoop (leaves, legacy mode with ECAP.SC).
    SNP: 11, 11;
    /// Address of the next table or page frame.
    ADDR: 51, 12;
    /// Ignored.
    IGN52: 61, 52;
    /// Transient mapping (with ECAP.DT).
    TM: 62, 62;
    /// Ignored.
    IGN63: 63, 63;
}

/// Mask of bits `hi..=lo`.
const fn bits(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// Bits of the address field at or above the host address width `haw`.
const fn above_haw(haw: u32) -> u64 {
    if haw >= 52 {
        0
    } else {
        bits(51, haw)
    }
}

/// Whether a first-stage entry at `level` with PS set is a leaf.
pub const fn fs_is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || ((level == 2 || level == 3) && entry & (1 << 7) != 0)
}

/// The reserved bits set in a present first-stage entry at `level` (1 = PTE),
/// VT-d §9.7: address bits at or above `haw`; PS in PML4E/PML5E; PS in a PDPE
/// without 1 GiB page support (`fs1gp`); the frame bits below the page size
/// in a large leaf (20:13 for 2 MiB, 29:13 for 1 GiB; bit 12 is PAT).
pub const fn fs_reserved_bits(entry: u64, level: u8, haw: u32, fs1gp: bool) -> u64 {
    let mut r = above_haw(haw);
    let ps = entry & (1 << 7) != 0;
    match level {
        4 | 5 => r |= 1 << 7,
        3 if ps && !fs1gp => r |= 1 << 7,
        3 if ps => r |= bits(29, 13),
        2 if ps => r |= bits(20, 13),
        _ => {}
    }
    entry & r
}

/// The rules that decide second-stage reserved bits (VT-d §9.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SsRules {
    /// Host address width: address bits at or above it are reserved.
    pub haw: u32,
    /// 2 MiB leaves allowed (CAP.SLLPS bit 0).
    pub large_2m: bool,
    /// 1 GiB leaves allowed (CAP.SLLPS bit 1).
    pub large_1g: bool,
    /// SNP (bit 11) is reserved: legacy mode without ECAP.SC. Scalable mode
    /// ignores it (snooping comes from the PASID entry).
    pub snp_reserved: bool,
    /// TM (bit 62) is reserved in leaves: without ECAP.DT. In non-leaf
    /// entries bit 62 is always reserved.
    pub tm_reserved: bool,
}

/// Whether a second-stage entry at `level` is a leaf (PS at levels 2 and 3).
pub const fn ss_is_leaf(entry: u64, level: u8) -> bool {
    level == 1 || ((level == 2 || level == 3) && entry & (1 << 7) != 0)
}

/// The reserved bits set in a present second-stage entry at `level`, VT-d
/// §9.8: address bits at or above HAW; PS at levels 4–5 and where the large
/// page size is not supported; the frame bits below a large page (20:12 for
/// 2 MiB, 29:12 for 1 GiB); bit 62 in non-leaf entries; SNP and TM (bit 62
/// of a leaf) as [`SsRules`] says.
pub const fn ss_reserved_bits(entry: u64, level: u8, rules: &SsRules) -> u64 {
    let mut r = above_haw(rules.haw);
    let ps = entry & (1 << 7) != 0;
    let leaf = ss_is_leaf(entry, level);
    match level {
        4 | 5 => r |= 1 << 7,
        3 if ps && !rules.large_1g => r |= 1 << 7,
        2 if ps && !rules.large_2m => r |= 1 << 7,
        3 if ps => r |= bits(29, 12),
        2 if ps => r |= bits(20, 12),
        _ => {}
    }
    if rules.snp_reserved {
        r |= 1 << 11;
    }
    if !leaf || rules.tm_reserved {
        r |= 1 << 62;
    }
    entry & r
}

/// The frame address of a leaf of `size` (bits below the page size cleared).
pub const fn leaf_frame(entry: u64, size: PageSize) -> u64 {
    entry & bits(51, size.shift())
}

/// The next-table address of a non-leaf entry.
pub const fn table_addr(entry: u64) -> u64 {
    entry & bits(51, 12)
}

/// A typed paging entry: what an entry means once its level is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PteRepr {
    /// Not present (first stage P=0; second stage R=W=0).
    NotPresent,
    /// Points at the next-level table.
    Table {
        /// Next table (4 KiB aligned).
        next: u64,
        /// Permissions this level grants.
        perm: Perm,
        /// User access allowed (first stage only; second stage: true).
        user: bool,
    },
    /// Maps a page.
    Leaf {
        /// Page frame (aligned to `size`).
        frame: u64,
        /// Page size.
        size: PageSize,
        /// Permissions.
        perm: Perm,
        /// User access allowed (first stage only; second stage: true).
        user: bool,
    },
}

impl FsPte {
    /// Decodes the entry at `level` (reserved bits are not checked here).
    pub const fn decode(&self, level: u8) -> PteRepr {
        let e = self.0[0];
        if e & 1 == 0 {
            return PteRepr::NotPresent;
        }
        let perm = Perm { read: true, write: e & 2 != 0, exec: e >> 63 == 0 };
        let user = e & 4 != 0;
        if fs_is_leaf(e, level) {
            let size = match PageSize::from_level(level) {
                Some(s) => s,
                None => PageSize::Size4K,
            };
            PteRepr::Leaf { frame: leaf_frame(e, size), size, perm, user }
        } else {
            PteRepr::Table { next: table_addr(e), perm, user }
        }
    }

    /// Encodes a typed entry the way an OS builds its tables: P, R/W, U/S,
    /// XD from `perm.exec`, PS for large leaves.
    pub fn encode(r: &PteRepr) -> FsPte {
        match *r {
            PteRepr::NotPresent => FsPte::default(),
            PteRepr::Table { next, perm, user } => FsPte::default()
                .with(FsPte::P, 1)
                .with(FsPte::RW, perm.write as u64)
                .with(FsPte::US, user as u64)
                .with(FsPte::XD, !perm.exec as u64)
                .with_in_place(FsPte::ADDR, next),
            PteRepr::Leaf { frame, size, perm, user } => FsPte::default()
                .with(FsPte::P, 1)
                .with(FsPte::RW, perm.write as u64)
                .with(FsPte::US, user as u64)
                .with(FsPte::XD, !perm.exec as u64)
                .with(FsPte::PS, (size != PageSize::Size4K) as u64)
                .with_in_place(FsPte::ADDR, frame),
        }
    }
}

impl SsPte {
    /// Decodes the entry at `level` (reserved bits are not checked here).
    pub const fn decode(&self, level: u8) -> PteRepr {
        let e = self.0[0];
        if e & 3 == 0 {
            return PteRepr::NotPresent;
        }
        let perm = Perm { read: e & 1 != 0, write: e & 2 != 0, exec: e & 4 != 0 };
        if ss_is_leaf(e, level) {
            let size = match PageSize::from_level(level) {
                Some(s) => s,
                None => PageSize::Size4K,
            };
            PteRepr::Leaf { frame: leaf_frame(e, size), size, perm, user: true }
        } else {
            PteRepr::Table { next: table_addr(e), perm, user: true }
        }
    }

    /// Encodes a typed entry: R, W, X, PS for large leaves.
    pub fn encode(r: &PteRepr) -> SsPte {
        let perm_bits = |p: Perm| (p.read as u64) | (p.write as u64) << 1 | (p.exec as u64) << 2;
        match *r {
            PteRepr::NotPresent => SsPte::default(),
            PteRepr::Table { next, perm, .. } => SsPte([perm_bits(perm)]).with_in_place(SsPte::ADDR, next),
            PteRepr::Leaf { frame, size, perm, .. } => SsPte([perm_bits(perm)])
                .with(SsPte::PS, (size != PageSize::Size4K) as u64)
                .with_in_place(SsPte::ADDR, frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: SsRules = SsRules { haw: 48, large_2m: true, large_1g: true, snp_reserved: false, tm_reserved: true };

    /// Golden bytes, VT-d §9.7: a 2 MiB first-stage leaf at 0x4020_0000:
    /// P (0), RW (1), US (2), PS (7), ADDR=0x4020_0000, XD clear.
    #[test]
    fn fs_large_leaf_golden_bytes() {
        let r = PteRepr::Leaf { frame: 0x4020_0000, size: PageSize::Size2M, perm: Perm::ALL, user: true };
        let bytes = [0x87, 0x00, 0x20, 0x40, 0, 0, 0, 0];
        assert_eq!(FsPte::encode(&r).to_bytes(), bytes);
        assert_eq!(FsPte::from_bytes(&bytes).decode(2), r);
    }

    /// Golden bytes, VT-d §9.8: a read-only 4 KiB second-stage leaf at 0x5000:
    /// R (0), ADDR=0x5000.
    #[test]
    fn ss_leaf_golden_bytes() {
        let perm = Perm { read: true, write: false, exec: false };
        let r = PteRepr::Leaf { frame: 0x5000, size: PageSize::Size4K, perm, user: true };
        assert_eq!(SsPte::encode(&r).to_bytes(), [0x01, 0x50, 0, 0, 0, 0, 0, 0]);
        assert_eq!(SsPte::from_words([0x5001]).decode(1), r);
    }

    #[test]
    fn ss_entry_with_neither_r_nor_w_is_not_present() {
        assert_eq!(SsPte::from_words([0x5004]).decode(1), PteRepr::NotPresent);
    }

    #[test]
    fn fs_ps_in_pml4e_is_reserved() {
        assert_eq!(fs_reserved_bits(0x1000 | 0x87, 4, 48, true), 0x80);
    }

    #[test]
    fn fs_1g_leaf_without_fs1gp_is_reserved() {
        assert_eq!(fs_reserved_bits(0x4000_0087, 3, 48, false), 0x80);
    }

    #[test]
    fn fs_2m_leaf_frame_bit_14_is_reserved_but_pat_bit_12_is_not() {
        assert_eq!(fs_reserved_bits(0x20_0087 | 1 << 14 | 1 << 12, 2, 48, true), 1 << 14);
    }

    #[test]
    fn fs_address_above_haw_is_reserved() {
        assert_eq!(fs_reserved_bits(1 << 48 | 1, 1, 48, true), 1 << 48);
        assert_eq!(fs_reserved_bits(1 << 48 | 1, 1, 52, true), 0);
    }

    #[test]
    fn ss_tm_bit_62_is_reserved_without_dt() {
        assert_eq!(ss_reserved_bits(1 << 62 | 3, 1, &RULES), 1 << 62);
    }

    /// Found by replaying unseen oracle cases: bit 62 of a non-leaf entry
    /// is reserved whatever ECAP.DT says.
    #[test]
    fn ss_bit_62_in_a_non_leaf_entry_is_reserved_even_with_tm_allowed() {
        let rules = SsRules { tm_reserved: false, ..RULES };
        assert_eq!(ss_reserved_bits(0x1000 | 1 << 62 | 3, 3, &rules), 1 << 62);
        assert_eq!(ss_reserved_bits(0x1000 | 1 << 62 | 3, 1, &rules), 0);
    }

    #[test]
    fn ss_snp_is_reserved_only_when_rules_say_so() {
        assert_eq!(ss_reserved_bits(1 << 11 | 3, 1, &RULES), 0);
        assert_eq!(ss_reserved_bits(1 << 11 | 3, 1, &SsRules { snp_reserved: true, ..RULES }), 1 << 11);
    }

    #[test]
    fn ss_1g_leaf_frame_bits_are_reserved() {
        assert_eq!(ss_reserved_bits(0x4000_0083 | 1 << 13, 3, &RULES), 1 << 13);
    }
}
