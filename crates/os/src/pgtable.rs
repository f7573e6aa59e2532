//! I/O page tables built by the OS, in the two VT-d formats and the two
//! Arm VMSAv8-64 formats an SMMUv3 walks:
//!
//! * VT-d first stage: VT-d §9.7, which is the x86-64 4- and 5-level
//!   paging format (Intel SDM Vol 3 §4.5), so a process's CPU page tables
//!   can be used as is (see [`crate::mm`]);
//! * VT-d second stage: VT-d §9.8, 3, 4 or 5 levels;
//! * Arm stage 1 ([`PtFormat::ArmS1`]): VMSAv8-64 stage-1 descriptors with
//!   the 4 KiB granule (SMMUv3 §3.4, Arm ARM D8.3), 3 or 4 levels, a TTB0
//!   tree; also the format of an Arm process's page tables;
//! * Arm stage 2 ([`PtFormat::ArmS2`]): VMSAv8-64 stage-2 descriptors with
//!   the 4 KiB granule, 3 or 4 levels, no concatenated start tables.
//!
//! Conventions: ranges are half-open `[start, end)`; level 1 is the table
//! of 4 KiB leaves, level 2 holds 2 MiB leaves and level 3 1 GiB leaves.
//! The Arm ARM numbers its levels the other way round: our level `L` is
//! Arm level `4 - L` (our level 1 is Arm level 3, our level 4 Arm level 0).
//!
//! Every format maps with 4 KiB tables of 512 eight-byte entries, so the
//! geometry (index bits per level, leaf sizes) is the same for all four;
//! only the entry encoding and the address limits differ.
//!
//! # Publication order (map)
//!
//! A map is planned and built before anything the IOMMU can reach
//! changes:
//!
//! 1. the range is checked against the existing tables (a present entry in
//!    the way is [`Errno::Exist`]);
//! 2. every missing table page is allocated and filled (leaves and links)
//!    while nothing points at it yet;
//! 3. only then are the new leaves and subtrees linked into the existing
//!    tables, one entry write each.
//!
//! An error in steps 1–2 (including [`Errno::NoMem`] from the frame
//! allocator) frees the new pages and leaves the table exactly as it was:
//! no IOMMU walk can have seen them, so no invalidation is needed.
//!
//! # Unmap and the invalidation obligation
//!
//! 1. [`IoPageTable::unmap`] checks the whole range first (a large leaf only
//!    partly inside it is [`Errno::Inval`] and nothing changes);
//! 2. it clears the leaves and unlinks table pages that became empty, and
//!    returns an [`IotlbGather`];
//! 3. the caller invalidates the IOTLB (and paging-structure caches, and
//!    device TLBs) for [`IotlbGather::start`]..[`IotlbGather::end`] — a
//!    leaf-only invalidation when [`IotlbGather::leaf_only`] — and waits
//!    for completion (VT-d §6.5: software must invalidate after removing a
//!    translation);
//! 4. then [`IotlbGather::complete`] returns the unlinked table pages to the
//!    allocator. Until then the IOMMU may still hold them in its
//!    paging-structure caches, so they must not be reused.

use iommu_format::smmuv3::desc::{S1Desc, S2Desc, OA_MASK};
use iommu_format::vtd::pte::{FsPte, PteRepr, SsPte};
use iommu_types::{Hpa, Iova, PageSize, Perm, PhysMem};

use crate::frames::FrameAllocator;
use crate::Errno;

/// Size of a table page and of the smallest leaf.
const PAGE: u64 = 4096;
/// Entries in a table page.
const ENTRIES: u64 = 512;
/// Bytes per entry.
const ENTRY_BYTES: u64 = 8;
/// Exclusive end of the addresses the ADDR field (bits 51:12) of both
/// VT-d formats can hold (VT-d §9.7, §9.8).
const ADDR_END: u64 = 1 << 52;
/// Exclusive end of the addresses the OA field (bits 47:12) of a
/// VMSAv8-64 descriptor holds without the 52-bit extensions (Arm ARM D8.3;
/// LPA/LPA2 are not modelled).
const ARM_ADDR_END: u64 = 1 << 48;

/// The entry format and depth of an I/O page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PtFormat {
    /// VT-d first stage (§9.7; x86-64 paging, Intel SDM Vol 3 §4.5).
    FirstStage {
        /// 4 or 5 (5 needs CAP.FS5LP in the IOMMU).
        levels: u8,
    },
    /// VT-d second stage (§9.8).
    SecondStage {
        /// 3, 4 or 5 (must be one of the IOMMU's CAP.SAGAW widths).
        levels: u8,
    },
    /// Arm VMSAv8-64 stage 1 with the 4 KiB granule (SMMUv3 §3.4, Arm ARM
    /// D8.3), as a TTB0 tree: inputs from 0 to `2^input_bits`
    /// (CD.T0SZ = 64 − input bits; start level 0 for 4 levels, 1 for 3).
    ArmS1 {
        /// 3 (39-bit input) or 4 (48-bit input).
        levels: u8,
    },
    /// Arm VMSAv8-64 stage 2 with the 4 KiB granule (SMMUv3 §3.4, Arm ARM
    /// D8.3), one start table (no concatenation).
    ArmS2 {
        /// 3 (39-bit input, STE.S2SL0 = 1) or 4 (48-bit input,
        /// STE.S2SL0 = 2).
        levels: u8,
    },
}

impl PtFormat {
    /// Number of paging levels.
    pub const fn levels(self) -> u8 {
        match self {
            PtFormat::FirstStage { levels }
            | PtFormat::SecondStage { levels }
            | PtFormat::ArmS1 { levels }
            | PtFormat::ArmS2 { levels } => levels,
        }
    }

    /// Whether the level count is one the format has: 4 or 5 for the first
    /// stage (VT-d §3.6), 3, 4 or 5 for the second stage (VT-d §3.7), 3 or
    /// 4 for both Arm stages (4 KiB granule without LPA2: start level 0 or
    /// 1, Arm ARM D8.2).
    pub const fn is_valid(self) -> bool {
        match self {
            PtFormat::FirstStage { levels } => levels == 4 || levels == 5,
            PtFormat::SecondStage { levels } => levels >= 3 && levels <= 5,
            PtFormat::ArmS1 { levels } | PtFormat::ArmS2 { levels } => levels == 3 || levels == 4,
        }
    }

    /// Whether the format is one of the Arm VMSAv8-64 formats.
    pub const fn is_arm(self) -> bool {
        matches!(self, PtFormat::ArmS1 { .. } | PtFormat::ArmS2 { .. })
    }

    /// Exclusive end of the output (and table) addresses an entry can
    /// hold: 2^52 for VT-d (ADDR is bits 51:12), 2^48 for Arm (OA is bits
    /// 47:12 without LPA, Arm ARM D8.3).
    pub const fn addr_end(self) -> u64 {
        if self.is_arm() {
            ARM_ADDR_END
        } else {
            ADDR_END
        }
    }

    /// Width of the input address the tables translate: 12 + 9 × levels
    /// (39, 48 or 57 bits).
    pub const fn input_bits(self) -> u32 {
        12 + 9 * self.levels() as u32
    }

    /// Exclusive end of the inputs this table maps. Second stage: the whole
    /// input width. First stage: the lower canonical half only (bit
    /// `input_bits - 1` clear), as Linux limits first-stage I/O domains;
    /// the upper half belongs to a kernel, which an I/O page table (and
    /// a process's address space) never maps. Arm stage 1: the whole
    /// TTB0 range (the upper half is a separate TTB1 tree, never built
    /// here); Arm stage 2: the whole input width.
    const fn input_end(self) -> u64 {
        let bits = match self {
            PtFormat::FirstStage { .. } => self.input_bits().saturating_sub(1),
            PtFormat::SecondStage { .. } | PtFormat::ArmS1 { .. } | PtFormat::ArmS2 { .. } => self.input_bits(),
        };
        match 1u64.checked_shl(bits) {
            Some(end) => end,
            None => u64::MAX,
        }
    }

    fn encode(self, r: &PteRepr) -> u64 {
        match self {
            PtFormat::FirstStage { .. } => FsPte::encode(r).words()[0],
            PtFormat::SecondStage { .. } => SsPte::encode(r).words()[0],
            PtFormat::ArmS1 { .. } => arm_s1_encode(r),
            PtFormat::ArmS2 { .. } => arm_s2_encode(r),
        }
    }

    const fn decode(self, entry: u64, level: u8) -> PteRepr {
        match self {
            PtFormat::FirstStage { .. } => FsPte::from_words([entry]).decode(level),
            PtFormat::SecondStage { .. } => SsPte::from_words([entry]).decode(level),
            PtFormat::ArmS1 { .. } => arm_s1_decode(entry, level),
            PtFormat::ArmS2 { .. } => arm_s2_decode(entry, level),
        }
    }

    /// Whether a leaf with `perm` can be expressed: a present first-stage
    /// entry is always readable (VT-d §9.7 has no read bit), so a mapping
    /// must grant read; a second-stage entry with neither R nor W is not
    /// present (VT-d §9.8). Arm stage 1 has no read-permission bit either
    /// (AP[2:1] only choose read-only and EL0 access, Arm ARM D8.4), so it
    /// needs read; Arm stage 2 needs read or write, as the VT-d second
    /// stage.
    const fn leaf_perm_ok(self, perm: Perm) -> bool {
        match self {
            PtFormat::FirstStage { .. } | PtFormat::ArmS1 { .. } => perm.read,
            PtFormat::SecondStage { .. } | PtFormat::ArmS2 { .. } => perm.read || perm.write,
        }
    }
}

// ---- VMSAv8-64 descriptors, 4 KiB granule (Arm ARM D8.3) ----
//
// Descriptor type, bits 1:0: 0bx0 invalid; 0b11 table at Arm levels 0–2
// and page at Arm level 3; 0b01 block at Arm levels 1–2 (a block at level
// 0 needs LPA2, and 0b01 at level 3 is reserved: both fault, so they
// decode as not present here).

/// Stage-1 AP[1]: EL0 (unprivileged) access.
const AP_EL0: u64 = 0b01;
/// Stage-1 AP[2]: read-only.
const AP_RO: u64 = 0b10;
/// Stage-1 APTable bit 0: no EL0 access below; bit 1: no write below.
const APTABLE_NO_EL0: u64 = 0b01;
const APTABLE_NO_WRITE: u64 = 0b10;
/// Stage-2 S2AP: read (bit 6), write (bit 7).
const S2AP_R: u64 = 0b01;
const S2AP_W: u64 = 0b10;
/// Stage-2 XN[1:0] = 0b10: execute-never at both ELs (0b00: executable).
const S2_XN_NONE: u64 = 0b10;
/// Stage-2 MemAttr 0b1111: normal memory, inner and outer write-back.
const S2_MEMATTR_WB: u64 = 0b1111;
/// Inner shareable.
const SH_INNER: u64 = 0b11;

/// The leaf size a valid Arm descriptor at our `level` maps, or `None`
/// when its type is invalid there: page (0b11) at level 1, block (0b01)
/// at levels 2 and 3. A table type at level 1 is a page; elsewhere it is
/// not a leaf (the caller handles tables first).
const fn arm_leaf_size(entry: u64, level: u8) -> Option<PageSize> {
    let table_or_page = entry & 0b10 != 0;
    match level {
        1 if table_or_page => Some(PageSize::Size4K),
        2 if !table_or_page => Some(PageSize::Size2M),
        3 if !table_or_page => Some(PageSize::Size1G),
        _ => None,
    }
}

/// The output address of a leaf of `size` (OA bits below the size are
/// RES0 and ignored, as the walker does).
const fn arm_leaf_frame(entry: u64, size: PageSize) -> u64 {
    entry & OA_MASK & !(size.bytes() - 1)
}

/// Decodes a stage-1 descriptor at our `level` (Arm level `4 - level`).
const fn arm_s1_decode(entry: u64, level: u8) -> PteRepr {
    let d = S1Desc::from_words([entry]);
    if d.get(S1Desc::VALID) == 0 {
        return PteRepr::NotPresent;
    }
    if level > 1 && d.get(S1Desc::TYPE) == 1 {
        // APTable/XNTable/PXNTable limit everything below (Arm ARM D8.4.2).
        let ap_table = d.get(S1Desc::APTABLE);
        let perm = Perm {
            read: true,
            write: ap_table & APTABLE_NO_WRITE == 0,
            exec: d.get(S1Desc::XNTABLE) == 0 && d.get(S1Desc::PXNTABLE) == 0,
        };
        return PteRepr::Table { next: entry & OA_MASK, perm, user: ap_table & APTABLE_NO_EL0 == 0 };
    }
    let Some(size) = arm_leaf_size(entry, level) else {
        return PteRepr::NotPresent;
    };
    let ap = d.get(S1Desc::AP);
    let user = ap & AP_EL0 != 0;
    let exec = if user { d.get(S1Desc::UXN) == 0 } else { d.get(S1Desc::PXN) == 0 };
    let perm = Perm { read: true, write: ap & AP_RO == 0, exec };
    PteRepr::Leaf { frame: arm_leaf_frame(entry, size), size, perm, user }
}

/// Decodes a stage-2 descriptor at our `level`. A leaf with S2AP = 0 is
/// valid (it occupies its slot; accesses take permission faults).
const fn arm_s2_decode(entry: u64, level: u8) -> PteRepr {
    let d = S2Desc::from_words([entry]);
    if d.get(S2Desc::VALID) == 0 {
        return PteRepr::NotPresent;
    }
    if level > 1 && d.get(S2Desc::TYPE) == 1 {
        // Stage-2 table descriptors carry no hierarchical attributes.
        return PteRepr::Table { next: entry & OA_MASK, perm: Perm::ALL, user: true };
    }
    let Some(size) = arm_leaf_size(entry, level) else {
        return PteRepr::NotPresent;
    };
    let s2ap = d.get(S2Desc::S2AP);
    let perm = Perm { read: s2ap & S2AP_R != 0, write: s2ap & S2AP_W != 0, exec: d.get(S2Desc::XN) == 0 };
    PteRepr::Leaf { frame: arm_leaf_frame(entry, size), size, perm, user: true }
}

/// Encodes a stage-1 descriptor the way an OS builds its tables (the
/// choices of Linux's io-pgtable-arm for stage 1).
///
/// * Table: valid + table type and the next table; APTable, XNTable and
///   PXNTable only narrow what `perm`/`user` deny (all 0 for
///   [`TABLE_PERM`]: the leaf decides); NSTable 0.
/// * Leaf: page type at level 1, block above; AttrIndx 0 (the driver
///   programs MAIR attribute 0 as normal write-back memory); inner
///   shareable; AF set (no access-flag faults); nG set (every mapping is
///   ASID-tagged); AP[1] = `user`; AP[2] = read-only unless `perm.write`;
///   UXN unless executable by EL0; PXN unless executable by EL1 (a user
///   page is never privileged-executable).
fn arm_s1_encode(r: &PteRepr) -> u64 {
    match *r {
        PteRepr::NotPresent => 0,
        PteRepr::Table { next, perm, user } => {
            let no_write = if perm.write { 0 } else { APTABLE_NO_WRITE };
            let no_el0 = if user { 0 } else { APTABLE_NO_EL0 };
            let ap_table = no_write | no_el0;
            S1Desc::table(next)
                .with(S1Desc::APTABLE, ap_table)
                .with(S1Desc::XNTABLE, !perm.exec as u64)
                .with(S1Desc::PXNTABLE, !perm.exec as u64)
                .words()[0]
        }
        PteRepr::Leaf { frame, size, perm, user } => {
            let el0 = if user { AP_EL0 } else { 0 };
            let ro = if perm.write { 0 } else { AP_RO };
            let ap = el0 | ro;
            let el0_exec = perm.exec && user;
            let el1_exec = perm.exec && !user;
            S1Desc::leaf(frame, size == PageSize::Size4K, ap)
                .with(S1Desc::ATTRINDX, 0)
                .with(S1Desc::SH, SH_INNER)
                .with(S1Desc::UXN, !el0_exec as u64)
                .with(S1Desc::PXN, !el1_exec as u64)
                .words()[0]
        }
    }
}

/// Encodes a stage-2 descriptor.
///
/// * Table: valid + table type and the next table (stage 2 has no
///   hierarchical attributes).
/// * Leaf: page type at level 1, block above; MemAttr normal write-back;
///   inner shareable; AF set; S2AP from read and write; XN 0b00 when
///   executable, else 0b10 (execute-never at every EL).
fn arm_s2_encode(r: &PteRepr) -> u64 {
    match *r {
        PteRepr::NotPresent => 0,
        PteRepr::Table { next, .. } => S2Desc::table(next).words()[0],
        PteRepr::Leaf { frame, size, perm, .. } => {
            let read = if perm.read { S2AP_R } else { 0 };
            let write = if perm.write { S2AP_W } else { 0 };
            let s2ap = read | write;
            S2Desc::leaf(frame, size == PageSize::Size4K, s2ap)
                .with(S2Desc::MEMATTR, S2_MEMATTR_WB)
                .with(S2Desc::SH, SH_INNER)
                .with(S2Desc::XN, if perm.exec { 0 } else { S2_XN_NONE })
                .words()[0]
        }
    }
}

/// log2 of the span one entry at `level` covers.
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (level.saturating_sub(1) as u32)
}

/// Index of `input`'s entry in its table at `level`.
const fn level_index(input: u64, level: u8) -> u64 {
    match input.checked_shr(level_shift(level)) {
        Some(v) => v & (ENTRIES - 1),
        None => 0,
    }
}

/// Address of entry `index` of `table`.
fn entry_addr(table: Hpa, index: u64) -> Result<Hpa, Errno> {
    table.checked_add(index * ENTRY_BYTES).ok_or(Errno::Fault)
}

fn read_entry(mem: &dyn PhysMem, addr: Hpa) -> Result<u64, Errno> {
    mem.read_u64(addr).map_err(|_| Errno::Fault)
}

fn write_entry(mem: &dyn PhysMem, addr: Hpa, value: u64) -> Result<(), Errno> {
    mem.write_u64(addr, value).map_err(|_| Errno::Fault)
}

/// The part of `[first, last]` (inclusive) that the entry holding `cur` at
/// `level` covers: the entry's base, its last byte, and the last byte of
/// the range inside it.
const fn entry_span(cur: u64, last: u64, level: u8) -> (u64, u64, u64) {
    let mask = match 1u64.checked_shl(level_shift(level)) {
        Some(span) => span - 1,
        None => u64::MAX,
    };
    let base = cur & !mask;
    let entry_last = base | mask;
    let chunk_last = if entry_last < last { entry_last } else { last };
    (base, entry_last, chunk_last)
}

/// Table entries that link to a next-level table grant everything: the
/// leaf decides (first stage: P, R/W=1, U/S=1, XD=0; second stage:
/// R=W=X=1; Arm stage 1: APTable, XNTable, PXNTable all 0).
const TABLE_PERM: Perm = Perm::ALL;

/// A multi-level I/O page table in simulated memory, owned by the OS.
///
/// It owns its table pages (the root and every intermediate table), never
/// the data frames it maps.
#[derive(Debug)]
pub struct IoPageTable {
    root: Hpa,
    format: PtFormat,
    max_leaf: PageSize,
    /// Table pages owned: the root, every linked table and `quarantine`.
    tables: usize,
    /// Table pages unlinked by an operation that then failed on a memory
    /// error: the IOMMU may have cached them, so they are kept until
    /// [`IoPageTable::destroy`].
    quarantine: Vec<Hpa>,
}

/// What one map call builds before publishing it.
struct MapPlan {
    /// `map`: the one leaf size; `map_range`: `None`, pick the largest fit.
    fixed: Option<PageSize>,
    max_leaf: PageSize,
    perm: Perm,
    user: bool,
    /// Output address of input `iova0` (the range's start).
    iova0: u64,
    pa0: u64,
    /// Table pages allocated by this call (unreachable until published).
    new_tables: Vec<Hpa>,
    /// Writes into existing tables: (entry, old value, new value).
    publish: Vec<(Hpa, u64, u64)>,
}

impl MapPlan {
    fn pa_of(&self, iova: u64) -> Result<u64, Errno> {
        iova.checked_sub(self.iova0).and_then(|d| self.pa0.checked_add(d)).ok_or(Errno::Overflow)
    }
}

/// What one unmap has removed so far.
struct Removal {
    first: u64,
    last: u64,
    leaves: u64,
    tables: Vec<Hpa>,
    /// Inclusive bounds of what was removed.
    covered: Option<(u64, u64)>,
}

impl Removal {
    fn cover(&mut self, lo: u64, hi: u64) {
        let lo = lo.max(self.first);
        let hi = hi.min(self.last);
        self.covered = Some(match self.covered {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
}

impl IoPageTable {
    /// An empty table: one zeroed root page.
    ///
    /// # Errors
    /// * [`Errno::Inval`]: a level count the format does not have;
    /// * [`Errno::NoMem`]: no frame for the root (or one beyond
    ///   [`PtFormat::addr_end`]).
    pub fn new(mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, format: PtFormat) -> Result<Self, Errno> {
        if !format.is_valid() {
            return Err(Errno::Inval);
        }
        let root = frames.alloc_frame(mem)?;
        if root.raw() >= format.addr_end() {
            frames.free_frame(root);
            return Err(Errno::NoMem);
        }
        Ok(Self { root, format, max_leaf: PageSize::Size1G, tables: 1, quarantine: Vec::new() })
    }

    /// The root table (first stage: FSPTPTR / CR3's page-map base; second
    /// stage: SSPTPTR; Arm stage 1: CD.TTB0 / TTBR0; Arm stage 2:
    /// STE.S2TTB).
    pub fn root(&self) -> Hpa {
        self.root
    }

    /// The format.
    pub fn format(&self) -> PtFormat {
        self.format
    }

    /// Table pages this table owns (the root included).
    pub fn table_pages(&self) -> usize {
        self.tables
    }

    /// Width of the input address: 39, 48 or 57 bits.
    pub fn input_bits(&self) -> u32 {
        self.format.input_bits()
    }

    /// Exclusive end of the inputs this table accepts: `2^input_bits` for
    /// the second stages and Arm stage 1 (a TTB0 tree), the end of the
    /// lower canonical half (`2^(input_bits-1)`) for the VT-d first stage.
    pub fn input_end(&self) -> Iova {
        Iova::new(self.format.input_end())
    }

    /// The largest leaf [`IoPageTable::map_range`] uses and
    /// [`IoPageTable::map`] accepts.
    pub fn max_leaf(&self) -> PageSize {
        self.max_leaf
    }

    /// Limits the leaf sizes to the IOMMU's capabilities: 1 GiB first-stage
    /// leaves need CAP.FS1GP (VT-d §9.7), second-stage large leaves need the
    /// matching CAP.SLLPS bit (VT-d §9.8); the Arm 4 KiB-granule formats
    /// always have 2 MiB and 1 GiB blocks (Arm ARM D8.3). The default is
    /// 1 GiB.
    pub fn set_max_leaf(&mut self, size: PageSize) {
        self.max_leaf = size;
    }

    /// Maps one page of `size`: `iova` → `pa` with `perm`; `user` sets U/S in
    /// a first-stage leaf and AP[1] (EL0 access) in an Arm stage-1 leaf
    /// (ignored by both second stages).
    ///
    /// # Errors
    /// * [`Errno::Inval`]: `iova` or `pa` not aligned to `size`; `size` above
    ///   [`IoPageTable::max_leaf`]; the page not below
    ///   [`IoPageTable::input_end`] or `pa` beyond what the entries hold
    ///   ([`PtFormat::addr_end`]: 52 bits for VT-d, 48 bits for Arm); a
    ///   permission the format cannot express (first stage and Arm stage 1
    ///   without read, second stages without read or write);
    /// * [`Errno::Overflow`]: the page's end overflows 64 bits;
    /// * [`Errno::Exist`]: any part of the page is already mapped;
    /// * [`Errno::NoMem`]: a table page could not be allocated (or lies
    ///   beyond [`PtFormat::addr_end`]);
    /// * [`Errno::Fault`]: a table entry could not be read or written.
    ///
    /// On every error the table is as before and every page this call
    /// allocated is freed again.
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        iova: Iova,
        pa: Hpa,
        size: PageSize,
        perm: Perm,
        user: bool,
    ) -> Result<(), Errno> {
        if size > self.max_leaf || iova.page_offset(size) != 0 || pa.page_offset(size) != 0 {
            return Err(Errno::Inval);
        }
        self.map_checked(mem, frames, iova, pa, size.bytes(), Some(size), perm, user)
    }

    /// Maps `[iova, iova+len)` to `[pa, pa+len)`, with the largest leaves
    /// (up to [`IoPageTable::max_leaf`]) whose alignment both addresses and
    /// the remaining length allow, 4 KiB otherwise. All or nothing.
    ///
    /// # Errors
    /// As [`IoPageTable::map`], with: [`Errno::Inval`] for `len` 0 or
    /// `iova`, `pa` or `len` not 4 KiB aligned; [`Errno::Overflow`] when
    /// either range overflows 64 bits. On every error nothing is mapped and
    /// every page this call allocated is freed again.
    #[allow(clippy::too_many_arguments)]
    pub fn map_range(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        iova: Iova,
        pa: Hpa,
        len: u64,
        perm: Perm,
        user: bool,
    ) -> Result<(), Errno> {
        if len == 0 || len % PAGE != 0 || iova.raw() % PAGE != 0 || pa.raw() % PAGE != 0 {
            return Err(Errno::Inval);
        }
        self.map_checked(mem, frames, iova, pa, len, None, perm, user)
    }

    /// Checks the bounds shared by `map` and `map_range`, then plans,
    /// builds and publishes.
    #[allow(clippy::too_many_arguments)]
    fn map_checked(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        iova: Iova,
        pa: Hpa,
        len: u64,
        fixed: Option<PageSize>,
        perm: Perm,
        user: bool,
    ) -> Result<(), Errno> {
        if !self.format.leaf_perm_ok(perm) {
            return Err(Errno::Inval);
        }
        let iova_end = iova.raw().checked_add(len).ok_or(Errno::Overflow)?;
        let pa_end = pa.raw().checked_add(len).ok_or(Errno::Overflow)?;
        if iova_end > self.format.input_end() || pa_end > self.format.addr_end() {
            return Err(Errno::Inval);
        }
        let last = iova_end.checked_sub(1).ok_or(Errno::Inval)?;
        let mut plan = MapPlan {
            fixed,
            max_leaf: self.max_leaf,
            perm,
            user,
            iova0: iova.raw(),
            pa0: pa.raw(),
            new_tables: Vec::new(),
            publish: Vec::new(),
        };
        let built = self.build(mem, frames, &mut plan, self.root, true, self.format.levels(), iova.raw(), last);
        if let Err(e) = built {
            // Nothing was published: the new pages were never reachable.
            for t in plan.new_tables.into_iter().rev() {
                frames.free_frame(t);
            }
            return Err(e);
        }
        for (i, &(addr, _, new)) in plan.publish.iter().enumerate() {
            if write_entry(mem, addr, new).is_err() {
                // Memory that reads but does not write: undo what was
                // published; the new pages may have been walked, so they
                // are kept until destroy rather than reused.
                for &(addr, old, _) in plan.publish.iter().take(i) {
                    let _ = write_entry(mem, addr, old);
                }
                self.tables = self.tables.saturating_add(plan.new_tables.len());
                self.quarantine.extend(plan.new_tables);
                return Err(Errno::Fault);
            }
        }
        self.tables = self.tables.saturating_add(plan.new_tables.len());
        Ok(())
    }

    /// Plans and builds the part `[first, last]` (inclusive) of the mapping
    /// inside `table` at `level`. `existing`: the table is reachable by the
    /// IOMMU, so writes into it are deferred to `plan.publish`; otherwise it
    /// is a page of this call and is written at once.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        plan: &mut MapPlan,
        table: Hpa,
        existing: bool,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<(), Errno> {
        let mut cur = first;
        loop {
            let (base, entry_last, chunk_last) = entry_span(cur, last, level);
            let addr = entry_addr(table, level_index(cur, level))?;
            let old = read_entry(mem, addr)?;
            let repr = self.format.decode(old, level);
            let pa = plan.pa_of(cur)?;
            let leaf_size = match plan.fixed {
                Some(size) => (size.level() == level).then_some(size),
                None => PageSize::from_level(level).filter(|size| {
                    *size <= plan.max_leaf && cur == base && chunk_last == entry_last && pa % size.bytes() == 0
                }),
            };
            let new = match (repr, leaf_size) {
                // Descend into an existing table: above the one leaf's level
                // (map), or anywhere (map_range, even where a large leaf
                // would fit: what is under it decides).
                (PteRepr::Table { next, .. }, leaf) if level > 1 && (plan.fixed.is_none() || leaf.is_none()) => {
                    self.build(mem, frames, plan, Hpa::new(next), existing, level - 1, cur, chunk_last)?;
                    None
                }
                (PteRepr::NotPresent, Some(size)) => {
                    let leaf = PteRepr::Leaf { frame: pa, size, perm: plan.perm, user: plan.user };
                    Some(self.format.encode(&leaf))
                }
                (PteRepr::NotPresent, None) if level > 1 => {
                    let next = frames.alloc_frame(mem)?;
                    plan.new_tables.push(next);
                    // A table page the entry format cannot point at (Arm:
                    // beyond the 48-bit OA field) is as good as none.
                    if next.raw() >= self.format.addr_end() {
                        return Err(Errno::NoMem);
                    }
                    self.build(mem, frames, plan, next, false, level - 1, cur, chunk_last)?;
                    let link = PteRepr::Table { next: next.raw(), perm: TABLE_PERM, user: true };
                    Some(self.format.encode(&link))
                }
                // A leaf in the way, or a table where the one leaf goes.
                (PteRepr::Leaf { .. } | PteRepr::Table { .. }, _) => return Err(Errno::Exist),
                // Level 1 without a leaf size cannot happen (every size is
                // at least 4 KiB aligned); refuse rather than recurse.
                (PteRepr::NotPresent, None) => return Err(Errno::Inval),
            };
            if let Some(new) = new {
                if existing {
                    plan.publish.push((addr, old, new));
                } else {
                    write_entry(mem, addr, new)?;
                }
            }
            if chunk_last >= last {
                return Ok(());
            }
            cur = chunk_last + 1;
        }
    }

    /// Unmaps every leaf inside `[iova, iova+len)` and unlinks the table
    /// pages that become empty (never the root).
    ///
    /// The removed translations may still be cached by the IOMMU: the
    /// returned gather says what to invalidate and holds the unlinked table
    /// pages until [`IotlbGather::complete`] (see the module docs).
    ///
    /// # Errors
    /// * [`Errno::Inval`]: `len` 0; `iova` or `len` not 4 KiB aligned; the
    ///   range not below [`IoPageTable::input_end`]; a large leaf only
    ///   partly inside the range (checked before anything changes);
    /// * [`Errno::Overflow`]: the range overflows 64 bits;
    /// * [`Errno::Fault`]: a table entry could not be read or written.
    ///   During the checks nothing has changed yet; after them the unmap
    ///   may be partial, and the table pages it had unlinked are kept until
    ///   [`IoPageTable::destroy`] so none is reused while cached.
    pub fn unmap(&mut self, mem: &dyn PhysMem, iova: Iova, len: u64) -> Result<IotlbGather, Errno> {
        if len == 0 || len % PAGE != 0 || iova.raw() % PAGE != 0 {
            return Err(Errno::Inval);
        }
        let end = iova.raw().checked_add(len).ok_or(Errno::Overflow)?;
        if end > self.format.input_end() {
            return Err(Errno::Inval);
        }
        let last = end - 1;
        let levels = self.format.levels();
        self.check_unmap(mem, self.root, levels, iova.raw(), last)?;
        let mut r = Removal { first: iova.raw(), last, leaves: 0, tables: Vec::new(), covered: None };
        if let Err(e) = self.clear(mem, &mut r, self.root, levels, iova.raw(), last) {
            // The unlinked pages stay counted in `tables`.
            self.quarantine.extend(r.tables);
            return Err(e);
        }
        self.tables = self.tables.saturating_sub(r.tables.len());
        let (start, end) = match r.covered {
            Some((lo, hi)) => (lo, hi.saturating_add(1)),
            None => (iova.raw(), iova.raw()),
        };
        Ok(IotlbGather { start: Iova::new(start), end: Iova::new(end), leaves: r.leaves, tables: r.tables })
    }

    /// Refuses a range that cuts a large leaf; changes nothing.
    fn check_unmap(&self, mem: &dyn PhysMem, table: Hpa, level: u8, first: u64, last: u64) -> Result<(), Errno> {
        let mut cur = first;
        loop {
            let (base, entry_last, chunk_last) = entry_span(cur, last, level);
            let e = read_entry(mem, entry_addr(table, level_index(cur, level))?)?;
            match self.format.decode(e, level) {
                PteRepr::Leaf { .. } if cur != base || chunk_last != entry_last => return Err(Errno::Inval),
                PteRepr::Table { next, .. } if level > 1 => {
                    self.check_unmap(mem, Hpa::new(next), level - 1, cur, chunk_last)?;
                }
                _ => {}
            }
            if chunk_last >= last {
                return Ok(());
            }
            cur = chunk_last + 1;
        }
    }

    /// Clears the leaves of `[first, last]` under `table` and unlinks the
    /// child tables that become empty.
    fn clear(
        &self,
        mem: &dyn PhysMem,
        r: &mut Removal,
        table: Hpa,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<(), Errno> {
        let mut cur = first;
        loop {
            let (base, entry_last, chunk_last) = entry_span(cur, last, level);
            let addr = entry_addr(table, level_index(cur, level))?;
            let e = read_entry(mem, addr)?;
            match self.format.decode(e, level) {
                PteRepr::NotPresent => {}
                PteRepr::Leaf { .. } => {
                    write_entry(mem, addr, 0)?;
                    r.leaves = r.leaves.saturating_add(1);
                    r.cover(base, entry_last);
                }
                PteRepr::Table { next, .. } => {
                    let next = Hpa::new(next);
                    if level > 1 {
                        self.clear(mem, r, next, level - 1, cur, chunk_last)?;
                    }
                    let whole = cur == base && chunk_last == entry_last;
                    if level > 1 && (whole || self.is_empty_table(mem, next, level - 1)?) {
                        write_entry(mem, addr, 0)?;
                        r.tables.push(next);
                        r.cover(base, entry_last);
                    }
                }
            }
            if chunk_last >= last {
                return Ok(());
            }
            cur = chunk_last + 1;
        }
    }

    /// Whether no entry of `table` (at `level`) is present. Judged by the
    /// present bits, not by zero: an IOMMU may have set A/D bits.
    fn is_empty_table(&self, mem: &dyn PhysMem, table: Hpa, level: u8) -> Result<bool, Errno> {
        for i in 0..ENTRIES {
            let e = read_entry(mem, entry_addr(table, i)?)?;
            if self.format.decode(e, level) != PteRepr::NotPresent {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Software walk of `iova`: the translated address (offset included),
    /// the leaf size and the permissions the path grants. `None` when not
    /// mapped, outside the input range, or a table cannot be read.
    pub fn lookup(&self, mem: &dyn PhysMem, iova: Iova) -> Option<(Hpa, PageSize, Perm)> {
        if iova.raw() >= self.format.input_end() {
            return None;
        }
        let mut table = self.root;
        let mut perm = Perm::ALL;
        for level in (1..=self.format.levels()).rev() {
            let e = read_entry(mem, entry_addr(table, level_index(iova.raw(), level)).ok()?).ok()?;
            match self.format.decode(e, level) {
                PteRepr::NotPresent => return None,
                PteRepr::Table { next, perm: p, .. } => {
                    perm = perm.and(p);
                    table = Hpa::new(next);
                }
                PteRepr::Leaf { frame, size, perm: p, .. } => {
                    let out = frame.checked_add(iova.page_offset(size))?;
                    return Some((Hpa::new(out), size, perm.and(p)));
                }
            }
        }
        None
    }

    /// Address of the leaf entry that maps `iova`, if it is mapped (for
    /// debugging tools and fault injection, which write it behind the
    /// OS's back).
    pub fn leaf_entry(&self, mem: &dyn PhysMem, iova: Iova) -> Option<Hpa> {
        if iova.raw() >= self.format.input_end() {
            return None;
        }
        let mut table = self.root;
        for level in (1..=self.format.levels()).rev() {
            let at = entry_addr(table, level_index(iova.raw(), level)).ok()?;
            match self.format.decode(read_entry(mem, at).ok()?, level) {
                PteRepr::NotPresent => return None,
                PteRepr::Table { next, .. } => table = Hpa::new(next),
                PteRepr::Leaf { .. } => return Some(at),
            }
        }
        None
    }

    /// Frees every table page. The caller has already made the table
    /// unreachable (no PASID or context entry points at it) and invalidated
    /// the IOMMU's caches. Data frames are not touched.
    pub fn destroy(self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator) {
        self.free_tree(mem, frames, self.root, self.format.levels());
        for t in self.quarantine {
            frames.free_frame(t);
        }
    }

    fn free_tree(&self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, table: Hpa, level: u8) {
        if level > 1 {
            for i in 0..ENTRIES {
                let Ok(addr) = entry_addr(table, i) else { continue };
                let Ok(e) = read_entry(mem, addr) else { continue };
                if let PteRepr::Table { next, .. } = self.format.decode(e, level) {
                    self.free_tree(mem, frames, Hpa::new(next), level - 1);
                }
            }
        }
        frames.free_frame(table);
    }
}

/// The invalidation an unmap obliges its caller to perform, and the table
/// pages to free once it has completed (VT-d §6.5).
///
/// Dropping it without [`IotlbGather::complete`] leaks the table pages
/// (safe, never a use-after-free).
#[must_use = "an unmap is complete only after the IOTLB for its range is invalidated; call complete()"]
#[derive(Debug, PartialEq, Eq)]
pub struct IotlbGather {
    start: Iova,
    end: Iova,
    leaves: u64,
    tables: Vec<Hpa>,
}

impl IotlbGather {
    /// A gather that removed nothing (an empty range at `at`).
    pub(crate) fn empty(at: Iova) -> Self {
        Self { start: at, end: at, leaves: 0, tables: Vec::new() }
    }

    /// Start of the range to invalidate: the first byte of the first leaf
    /// removed (or of a freed table's span inside the unmapped range).
    pub fn start(&self) -> Iova {
        self.start
    }

    /// Exclusive end of the range to invalidate.
    pub fn end(&self) -> Iova {
        self.end
    }

    /// Leaves (of any size) removed.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Table pages unlinked, freed by [`IotlbGather::complete`].
    pub fn freed_tables(&self) -> usize {
        self.tables.len()
    }

    /// Nothing was removed: no invalidation is needed.
    pub fn is_empty(&self) -> bool {
        self.leaves == 0 && self.tables.is_empty()
    }

    /// Only leaves were removed, no table page: an invalidation that keeps
    /// the paging-structure caches (VT-d invalidation hint, IH=1) suffices.
    pub fn leaf_only(&self) -> bool {
        self.tables.is_empty()
    }

    /// Takes over `other`'s obligation (batching): the range becomes the
    /// smallest one covering both, counts and table pages add up. An empty
    /// gather changes nothing.
    pub fn merge(&mut self, other: IotlbGather) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other;
            return;
        }
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.leaves = self.leaves.saturating_add(other.leaves);
        self.tables.extend(other.tables);
    }

    /// The caller's invalidation of [`IotlbGather::start`]..
    /// [`IotlbGather::end`] has completed: frees the table pages.
    pub fn complete(self, frames: &mut dyn FrameAllocator) {
        for t in self.tables {
            frames.free_frame(t);
        }
    }
}

#[cfg(test)]
mod tests;
