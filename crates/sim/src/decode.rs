//! The structure decoder behind `iommu-sim decode KIND HEX`: hex words in,
//! a field-by-field reading of one VT-d or SMMUv3 structure or register out.
//!
//! Every kind is one raw layout of `iommu_format::vtd` or
//! `iommu_format::smmuv3` ([`kinds`] lists them, [`list`] prints the table
//! for `decode --list`); SMMUv3 kinds are named `smmu-*`. [`decode`] reads
//! the field table the format crate declares, flags the reserved bits that
//! are set, and adds the reading of the format crate's typed decoder where
//! one exists. Decoding never panics; bad input is a [`DecodeError`].
//!
//! # Input (HEX)
//!
//! * One or more 64-bit words, separated by whitespace or commas, given
//!   **lowest word first** (the spec's qword 0 first, as the structure sits
//!   in memory).
//! * Each word: an optional `0x`/`0X` prefix and at most 16 hex digits,
//!   upper or lower case. `_` may group digits inside a word
//!   (`0x0000_1000`); it is not a separator, and neither is `:`.
//! * A single token longer than 16 hex digits is one big number written the
//!   way people write a 128-bit entry: most significant digit first. It is
//!   split into words from the low end (its last 16 digits are qword 0).
//!   Leading zeros do not count against the structure's size.
//! * Words not given are zero. More words than the structure holds is an
//!   error.
//!
//! So `decode sm-root "0x2001 0x3001"` and
//! `decode sm-root 0x00000000000030010000000000002001` are the same entry.
//!
//! # Readings that need more than the words
//!
//! * PASID entries are decoded against the capabilities of a full-featured
//!   unit (`VtdConfig::full_featured`), and the output says so: an entry
//!   that is invalid for some other hardware may read as valid here.
//! * Paging entries do not know their level, so they are read at every level
//!   (1 to 5), with the level-dependent reserved bits of a full-featured
//!   unit (VT-d §9.7, §9.8).
//! * Invalidation descriptors claim every bit in the raw layout; the
//!   per-type reserved bits come from the typed decoder, which reports the
//!   first offending qword only (VT-d §6.5.2).
//! * SMMUv3 STEs and CDs are checked with the walker's validity rules
//!   (`iommu_walk::smmuv3::config::decode_ste` and `decode_cd`) against a
//!   full-featured SMMU (`SmmuConfig::full`), and the output says so. Bits
//!   the STE layout leaves unnamed are flagged as reserved although the
//!   model ignores them (SMMUv3 §5.2; see `iommu_format::smmuv3::ste`).
//! * SMMUv3 commands show the field table of their opcode (SMMUv3 §4);
//!   the bits outside it are RES0 (§4.1.5) and flagged. An illegal command
//!   reads as the CERROR_ILL reason.
//! * VMSAv8-64 descriptors (`smmu-s1-desc`, `smmu-s2-desc`) do not know
//!   their level either, so they are read at every level (0 to 3) with a
//!   4 KiB granule.
//!
//! Bit ranges are inclusive `hi:lo`, absolute within the structure (bit 64
//! is bit 0 of qword 1), as in the spec.

use core::fmt;
use std::fmt::Write as _;

use iommu_format::bits::Field;
use iommu_format::smmuv3::cd::{Cd, L1Cd, S1Fmt};
use iommu_format::smmuv3::cmd::{
    self, opcode, AtcInvCmd, CmdRaw, Command, PrefetchCmd, SyncCmd, TlbiCmd, TlbiS2IpaCmd,
};
use iommu_format::smmuv3::desc::{Granule, S1Desc, S2Desc, OA_MASK};
use iommu_format::smmuv3::event::{EventRecord, FaultClass};
use iommu_format::smmuv3::pri::{PageRequest, PriEntry};
use iommu_format::smmuv3::ste::{L1Std, S1Dss, Ste};
use iommu_format::vtd::context::{agaw_levels, levels_width, ContextEntry, ScalableContextEntry, TranslationType};
use iommu_format::vtd::fault::{FaultAccess, FaultReason, FaultRecord};
use iommu_format::vtd::inv_desc::{desc_type, InvDecodeError, InvDesc, InvDescriptor};
use iommu_format::vtd::page_req::PageRequestDesc;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidDirEntry, PasidEntry, Pgtt, SecondStageCfg};
use iommu_format::vtd::pte::{fs_reserved_bits, ss_reserved_bits, FsPte, PteRepr, SsPte, SsRules};
use iommu_format::vtd::regs::{Cap, Caps, Ccmd, Ecap, IotlbReg, Iqa, Iva, Pqa, Rtaddr, TableMode};
use iommu_format::vtd::root::{RootEntry, ScalableRootEntry};
use iommu_hw::smmuv3::SmmuConfig;
use iommu_hw::vtd::VtdConfig;
use iommu_types::PageSize;
use iommu_walk::smmuv3::config::{decode_cd, decode_ste, TableCfg};
use iommu_walk::smmuv3::{ConfigFault, Features};
use serde_json::{json, Value};

/// Most hex digits in one word.
const WORD_DIGITS: usize = 16;

/// Longest token quoted back in an error message, in characters.
const QUOTE_MAX: usize = 40;

/// One structure [`decode`] knows.
pub struct KindInfo {
    /// CLI name (kebab-case).
    pub name: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// One-line description.
    pub description: &'static str,
    /// Spec section the layout follows.
    pub cite: &'static str,
    /// The raw type behind the kind, as a path below `iommu_format`
    /// (`vtd::root::RootEntry`, `smmuv3::ste::Ste`).
    pub structure: &'static str,
    fields: Table,
    reserved: &'static [u64],
    /// Which fields are shown as addresses too.
    addresses: Addresses,
    interpret: fn(&[u64]) -> Typed,
}

/// Where a kind's field table comes from.
#[derive(Clone, Copy)]
enum Table {
    /// One table for every input.
    Fixed(&'static [Field]),
    /// A table chosen by the words (SMMUv3 commands: by opcode).
    ByWords(fn(&[u64]) -> &'static [Field]),
}

/// Which fields of a kind hold addresses (shown in place as well).
#[derive(Clone, Copy)]
enum Addresses {
    /// None (invalidation descriptors, whose raw fields are type-specific
    /// bits).
    None,
    /// Every field starting at bit 12 of a word, at least 20 bits wide: the
    /// 4 KiB-aligned pointers of VT-d.
    Page,
    /// Exactly these fields (SMMUv3 pointers are aligned to 4, 8, 16 or 64
    /// bytes as well as 4 KiB).
    Named(&'static [Field]),
}

impl Addresses {
    fn includes(self, f: &Field) -> bool {
        match self {
            Addresses::None => false,
            Addresses::Page => is_address(f),
            Addresses::Named(list) => list.contains(f),
        }
    }
}

impl KindInfo {
    /// Number of 64-bit words.
    pub const fn words(&self) -> usize {
        self.size / 8
    }
}

impl fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindInfo")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("description", &self.description)
            .field("cite", &self.cite)
            .field("structure", &self.structure)
            .finish_non_exhaustive()
    }
}

/// What a typed decoder adds to the field table.
#[derive(Default)]
struct Typed {
    /// Interpretation lines.
    lines: Vec<String>,
    /// Reserved bits found by the typed decoder: (word, bits).
    reserved: Vec<(usize, u64)>,
}

impl Typed {
    fn lines(lines: Vec<String>) -> Self {
        Self { lines, reserved: Vec::new() }
    }
}

static KINDS: [KindInfo; 29] = [
    KindInfo {
        name: "root",
        size: RootEntry::SIZE,
        description: "legacy-mode root entry",
        cite: "VT-d §9.1",
        structure: "vtd::root::RootEntry",
        fields: Table::Fixed(RootEntry::FIELDS),
        reserved: &RootEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: root,
    },
    KindInfo {
        name: "sm-root",
        size: ScalableRootEntry::SIZE,
        description: "scalable-mode root entry (lower and upper context tables)",
        cite: "VT-d §9.2",
        structure: "vtd::root::ScalableRootEntry",
        fields: Table::Fixed(ScalableRootEntry::FIELDS),
        reserved: &ScalableRootEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: sm_root,
    },
    KindInfo {
        name: "context",
        size: ContextEntry::SIZE,
        description: "legacy-mode context entry",
        cite: "VT-d §9.3",
        structure: "vtd::context::ContextEntry",
        fields: Table::Fixed(ContextEntry::FIELDS),
        reserved: &ContextEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: context,
    },
    KindInfo {
        name: "sm-context",
        size: ScalableContextEntry::SIZE,
        description: "scalable-mode context entry",
        cite: "VT-d §9.4",
        structure: "vtd::context::ScalableContextEntry",
        fields: Table::Fixed(ScalableContextEntry::FIELDS),
        reserved: &ScalableContextEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: sm_context,
    },
    KindInfo {
        name: "pasid-dir",
        size: PasidDirEntry::SIZE,
        description: "scalable-mode PASID directory entry",
        cite: "VT-d §9.5",
        structure: "vtd::pasid::PasidDirEntry",
        fields: Table::Fixed(PasidDirEntry::FIELDS),
        reserved: &PasidDirEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: pasid_dir,
    },
    KindInfo {
        name: "pasid",
        size: PasidEntry::SIZE,
        description: "scalable-mode PASID table entry",
        cite: "VT-d §9.6",
        structure: "vtd::pasid::PasidEntry",
        fields: Table::Fixed(PasidEntry::FIELDS),
        reserved: &PasidEntry::RESERVED,
        addresses: Addresses::Page,
        interpret: pasid,
    },
    KindInfo {
        name: "fs-pte",
        size: FsPte::SIZE,
        description: "first-stage paging entry (PML5E, PML4E, PDPE, PDE, PTE)",
        cite: "VT-d §9.7",
        structure: "vtd::pte::FsPte",
        fields: Table::Fixed(FsPte::FIELDS),
        reserved: &FsPte::RESERVED,
        addresses: Addresses::Page,
        interpret: fs_pte,
    },
    KindInfo {
        name: "ss-pte",
        size: SsPte::SIZE,
        description: "second-stage paging entry",
        cite: "VT-d §9.8",
        structure: "vtd::pte::SsPte",
        fields: Table::Fixed(SsPte::FIELDS),
        reserved: &SsPte::RESERVED,
        addresses: Addresses::Page,
        interpret: ss_pte,
    },
    KindInfo {
        name: "inv-desc",
        size: InvDesc::SIZE,
        description: "invalidation descriptor, 256-bit queue (IQA.DW=1)",
        cite: "VT-d §6.5.2",
        structure: "vtd::inv_desc::InvDesc",
        fields: Table::Fixed(InvDesc::FIELDS),
        reserved: &InvDesc::RESERVED,
        addresses: Addresses::None,
        interpret: inv_desc_256,
    },
    KindInfo {
        name: "inv-desc-128",
        size: 16,
        description: "invalidation descriptor, 128-bit queue (IQA.DW=0)",
        cite: "VT-d §6.5.2",
        structure: "vtd::inv_desc::InvDesc",
        fields: Table::Fixed(InvDesc::FIELDS),
        reserved: &InvDesc::RESERVED,
        addresses: Addresses::None,
        interpret: inv_desc_128,
    },
    KindInfo {
        name: "fault-record",
        size: FaultRecord::SIZE,
        description: "fault recording register",
        cite: "VT-d §11.4.14",
        structure: "vtd::fault::FaultRecord",
        fields: Table::Fixed(FaultRecord::FIELDS),
        reserved: &FaultRecord::RESERVED,
        addresses: Addresses::Page,
        interpret: fault_record,
    },
    KindInfo {
        name: "page-request",
        size: PageRequestDesc::SIZE,
        description: "page request descriptor (page request queue entry)",
        cite: "VT-d §7.5.1",
        structure: "vtd::page_req::PageRequestDesc",
        fields: Table::Fixed(PageRequestDesc::FIELDS),
        reserved: &PageRequestDesc::RESERVED,
        addresses: Addresses::Page,
        interpret: page_request,
    },
    KindInfo {
        name: "cap",
        size: Cap::SIZE,
        description: "capability register (CAP_REG)",
        cite: "VT-d §11.4.2",
        structure: "vtd::regs::Cap",
        fields: Table::Fixed(Cap::FIELDS),
        reserved: &Cap::RESERVED,
        addresses: Addresses::Page,
        interpret: cap,
    },
    KindInfo {
        name: "ecap",
        size: Ecap::SIZE,
        description: "extended capability register (ECAP_REG)",
        cite: "VT-d §11.4.3",
        structure: "vtd::regs::Ecap",
        fields: Table::Fixed(Ecap::FIELDS),
        reserved: &Ecap::RESERVED,
        addresses: Addresses::Page,
        interpret: ecap,
    },
    KindInfo {
        name: "rtaddr",
        size: Rtaddr::SIZE,
        description: "root table address register (RTADDR_REG)",
        cite: "VT-d §11.4.5",
        structure: "vtd::regs::Rtaddr",
        fields: Table::Fixed(Rtaddr::FIELDS),
        reserved: &Rtaddr::RESERVED,
        addresses: Addresses::Page,
        interpret: rtaddr,
    },
    KindInfo {
        name: "ccmd",
        size: Ccmd::SIZE,
        description: "context command register (CCMD_REG)",
        cite: "VT-d §11.4.6",
        structure: "vtd::regs::Ccmd",
        fields: Table::Fixed(Ccmd::FIELDS),
        reserved: &Ccmd::RESERVED,
        addresses: Addresses::Page,
        interpret: ccmd,
    },
    KindInfo {
        name: "iva",
        size: Iva::SIZE,
        description: "invalidate address register (IVA_REG)",
        cite: "VT-d §11.4.8.2",
        structure: "vtd::regs::Iva",
        fields: Table::Fixed(Iva::FIELDS),
        reserved: &Iva::RESERVED,
        addresses: Addresses::Page,
        interpret: iva,
    },
    KindInfo {
        name: "iotlb-reg",
        size: IotlbReg::SIZE,
        description: "IOTLB invalidate register (IOTLB_REG)",
        cite: "VT-d §11.4.8.1",
        structure: "vtd::regs::IotlbReg",
        fields: Table::Fixed(IotlbReg::FIELDS),
        reserved: &IotlbReg::RESERVED,
        addresses: Addresses::Page,
        interpret: iotlb_reg,
    },
    KindInfo {
        name: "iqa",
        size: Iqa::SIZE,
        description: "invalidation queue address register (IQA_REG)",
        cite: "VT-d §11.4.10.3",
        structure: "vtd::regs::Iqa",
        fields: Table::Fixed(Iqa::FIELDS),
        reserved: &Iqa::RESERVED,
        addresses: Addresses::Page,
        interpret: iqa,
    },
    KindInfo {
        name: "pqa",
        size: Pqa::SIZE,
        description: "page request queue address register (PQA_REG)",
        cite: "VT-d §11.4.11.3",
        structure: "vtd::regs::Pqa",
        fields: Table::Fixed(Pqa::FIELDS),
        reserved: &Pqa::RESERVED,
        addresses: Addresses::Page,
        interpret: pqa,
    },
    KindInfo {
        name: "smmu-ste",
        size: Ste::SIZE,
        description: "SMMUv3 stream table entry",
        cite: "SMMUv3 §5.2",
        structure: "smmuv3::ste::Ste",
        fields: Table::Fixed(Ste::FIELDS),
        reserved: &Ste::RESERVED,
        addresses: Addresses::Named(&[Ste::S1CONTEXTPTR, Ste::S2TTB]),
        interpret: smmu_ste,
    },
    KindInfo {
        name: "smmu-l1std",
        size: L1Std::SIZE,
        description: "SMMUv3 level-1 stream table descriptor",
        cite: "SMMUv3 §5.1",
        structure: "smmuv3::ste::L1Std",
        fields: Table::Fixed(L1Std::FIELDS),
        reserved: &L1Std::RESERVED,
        addresses: Addresses::Named(&[L1Std::L2PTR]),
        interpret: smmu_l1std,
    },
    KindInfo {
        name: "smmu-cd",
        size: Cd::SIZE,
        description: "SMMUv3 context descriptor",
        cite: "SMMUv3 §5.4",
        structure: "smmuv3::cd::Cd",
        fields: Table::Fixed(Cd::FIELDS),
        reserved: &Cd::RESERVED,
        addresses: Addresses::Named(&[Cd::TTB0, Cd::TTB1]),
        interpret: smmu_cd,
    },
    KindInfo {
        name: "smmu-l1cd",
        size: L1Cd::SIZE,
        description: "SMMUv3 level-1 context descriptor table entry",
        cite: "SMMUv3 §5.3",
        structure: "smmuv3::cd::L1Cd",
        fields: Table::Fixed(L1Cd::FIELDS),
        reserved: &L1Cd::RESERVED,
        addresses: Addresses::Named(&[L1Cd::L2PTR]),
        interpret: smmu_l1cd,
    },
    KindInfo {
        name: "smmu-cmd",
        size: CmdRaw::SIZE,
        description: "SMMUv3 command queue entry (Non-secure queue)",
        cite: "SMMUv3 §4",
        structure: "smmuv3::cmd::CmdRaw",
        fields: Table::ByWords(smmu_cmd_fields),
        reserved: &[0, 0],
        addresses: Addresses::Named(&[
            PrefetchCmd::ADDR,
            TlbiCmd::ADDR,
            TlbiS2IpaCmd::ADDR,
            AtcInvCmd::ADDR,
            SyncCmd::MSIADDR,
        ]),
        interpret: smmu_cmd,
    },
    KindInfo {
        name: "smmu-event",
        size: EventRecord::SIZE,
        description: "SMMUv3 event queue record",
        cite: "SMMUv3 §7.3",
        structure: "smmuv3::event::EventRecord",
        fields: Table::Fixed(EventRecord::FIELDS),
        reserved: &EventRecord::RESERVED,
        addresses: Addresses::Named(&[EventRecord::ADDR]),
        interpret: smmu_event,
    },
    KindInfo {
        name: "smmu-pri",
        size: PriEntry::SIZE,
        description: "SMMUv3 PRI queue entry (page request)",
        cite: "SMMUv3 §8",
        structure: "smmuv3::pri::PriEntry",
        fields: Table::Fixed(PriEntry::FIELDS),
        reserved: &PriEntry::RESERVED,
        addresses: Addresses::Named(&[PriEntry::ADDR]),
        interpret: smmu_pri,
    },
    KindInfo {
        name: "smmu-s1-desc",
        size: S1Desc::SIZE,
        description: "SMMUv3 stage-1 VMSAv8-64 translation table descriptor",
        cite: "Arm ARM D8.3",
        structure: "smmuv3::desc::S1Desc",
        fields: Table::Fixed(S1Desc::FIELDS),
        reserved: &S1Desc::RESERVED,
        addresses: Addresses::Named(&[S1Desc::OA]),
        interpret: smmu_s1_desc,
    },
    KindInfo {
        name: "smmu-s2-desc",
        size: S2Desc::SIZE,
        description: "SMMUv3 stage-2 VMSAv8-64 translation table descriptor",
        cite: "Arm ARM D8.3",
        structure: "smmuv3::desc::S2Desc",
        fields: Table::Fixed(S2Desc::FIELDS),
        reserved: &S2Desc::RESERVED,
        addresses: Addresses::Named(&[S2Desc::OA]),
        interpret: smmu_s2_desc,
    },
];

/// Every kind [`decode`] knows, in the order `decode --list` prints them.
pub fn kinds() -> &'static [KindInfo] {
    &KINDS
}

/// The kind named `name` (exact CLI name).
pub fn kind(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kinds table as text, for `decode --list`.
pub fn list() -> String {
    let name_w = KINDS.iter().map(|k| k.name.len()).max().unwrap_or(0).max(4);
    let cite_w = KINDS.iter().map(|k| k.cite.chars().count()).max().unwrap_or(0).max(4);
    let mut out = String::new();
    let _ = writeln!(out, "{:<name_w$}  {:>5}  {:<cite_w$}  DESCRIPTION", "KIND", "BYTES", "CITE");
    for k in &KINDS {
        let _ = writeln!(out, "{:<name_w$}  {:>5}  {:<cite_w$}  {}", k.name, k.size, k.cite, k.description);
    }
    out
}

/// Why [`decode`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A character that is not a hex digit (nor `_`) inside a token.
    #[error("bad hex digit {ch:?} at position {position} of token {token}")]
    BadDigit {
        /// The token as written (quoted, shortened when long).
        token: String,
        /// 0-based index of the token in the input.
        index: usize,
        /// The offending character.
        ch: char,
        /// 1-based character position within the token.
        position: usize,
    },
    /// Nothing but separators.
    #[error("no words given: expected hex words, qword 0 first")]
    Empty,
    /// A token with a prefix or `_` but no digit.
    #[error("token {token} has no hex digits")]
    NoDigits {
        /// The token as written (quoted, shortened when long).
        token: String,
        /// 0-based index of the token in the input.
        index: usize,
    },
    /// More words than the structure holds.
    #[error("too many words for {kind}: it holds {holds} 64-bit word(s), {given} given")]
    TooManyWords {
        /// Kind name.
        kind: &'static str,
        /// Words the structure holds.
        holds: usize,
        /// Words given.
        given: usize,
    },
    /// No kind by that name.
    #[error("unknown kind {kind}{}; run `decode --list` to see every kind", suggestion(.nearest))]
    UnknownKind {
        /// The name as given (quoted, shortened when long).
        kind: String,
        /// The nearest kind names, best first (may be empty).
        nearest: Vec<&'static str>,
    },
    /// A word of a word list with more than 16 hex digits.
    #[error(
        "word {index} ({token}) has {digits} hex digits, more than the {WORD_DIGITS} of a 64-bit word \
         (a number longer than one word must be the only token)"
    )]
    WordTooLong {
        /// The token as written (quoted, shortened when long).
        token: String,
        /// 0-based index of the word (its qword number).
        index: usize,
        /// Hex digits in it.
        digits: usize,
    },
}

fn suggestion(nearest: &[&'static str]) -> String {
    if nearest.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", nearest.join(", "))
    }
}

/// `s` quoted, cut to [`QUOTE_MAX`] characters.
fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(QUOTE_MAX).collect();
        format!("{head:?}...")
    }
}

/// Edit distance between two short strings (by characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Whether the characters of `short` appear in order in `long` (`ctx` in
/// `context`).
fn is_subsequence(short: &str, long: &str) -> bool {
    let mut rest = long.chars();
    short.chars().all(|c| rest.any(|l| l == c))
}

/// Up to three kind names close to `name`, best first.
fn nearest(name: &str) -> Vec<&'static str> {
    let name = name.to_ascii_lowercase();
    if name.is_empty() || name.chars().count() > 2 * QUOTE_MAX {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &'static str)> = KINDS
        .iter()
        .filter_map(|k| {
            let d = edit_distance(&name, k.name);
            let close = d <= 2.max(k.name.len() / 3);
            let contains = name.len() >= 3 && (k.name.contains(name.as_str()) || name.contains(k.name));
            let abbreviates = name.len() >= 2 && is_subsequence(&name, k.name);
            (close || contains || abbreviates).then_some((d, k.name))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Reads HEX into exactly `kind.words()` words (see the module docs).
fn parse_words(hex: &str, kind: &'static KindInfo) -> Result<Vec<u64>, DecodeError> {
    let holds = kind.words();
    let tokens: Vec<&str> = hex.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut digit_lists = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        let (prefix, body) = match token.strip_prefix("0x").or_else(|| token.strip_prefix("0X")) {
            Some(rest) => (2, rest),
            None => (0, *token),
        };
        let mut digits = Vec::new();
        for (i, ch) in body.chars().enumerate() {
            if ch == '_' {
                continue;
            }
            match ch.to_digit(16) {
                Some(d) => digits.push(d as u8),
                None => return Err(DecodeError::BadDigit { token: quote(token), index, ch, position: prefix + i + 1 }),
            }
        }
        if digits.is_empty() {
            return Err(DecodeError::NoDigits { token: quote(token), index });
        }
        digit_lists.push(digits);
    }
    let mut words = vec![0u64; holds];
    if let [digits] = digit_lists.as_slice() {
        // One token: a number of any length, most significant digit first.
        let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
        let significant = &digits[first..];
        let given = significant.len().div_ceil(WORD_DIGITS).max(1);
        if given > holds {
            return Err(DecodeError::TooManyWords { kind: kind.name, holds, given });
        }
        for (word, chunk) in words.iter_mut().zip(significant.rchunks(WORD_DIGITS)) {
            *word = chunk.iter().fold(0, |acc, &d| acc << 4 | u64::from(d));
        }
        return Ok(words);
    }
    for (index, (token, digits)) in tokens.iter().zip(&digit_lists).enumerate() {
        if digits.len() > WORD_DIGITS {
            return Err(DecodeError::WordTooLong { token: quote(token), index, digits: digits.len() });
        }
    }
    if digit_lists.len() > holds {
        return Err(DecodeError::TooManyWords { kind: kind.name, holds, given: digit_lists.len() });
    }
    for (word, digits) in words.iter_mut().zip(&digit_lists) {
        *word = digits.iter().fold(0, |acc, &d| acc << 4 | u64::from(d));
    }
    Ok(words)
}

/// One field of a decoded structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldValue {
    /// Spec mnemonic.
    pub name: &'static str,
    /// Highest bit, absolute within the structure.
    pub hi: u16,
    /// Lowest bit, absolute within the structure.
    pub lo: u16,
    /// The field's value shifted down to bit 0.
    pub value: u64,
    /// For an address field (for VT-d kinds, one starting at bit 12 of its
    /// word, at least 20 bits wide; for SMMUv3 kinds, the pointer fields the
    /// kind names, such as STE.S1ContextPtr at bits 55:6), the value in
    /// place: the aligned address.
    pub in_place: Option<u64>,
}

impl FieldValue {
    /// The bit range, `"hi:lo"`.
    pub fn bits(&self) -> String {
        format!("{}:{}", self.hi, self.lo)
    }

    /// Whether the field is a one-bit flag.
    pub const fn is_flag(&self) -> bool {
        self.hi == self.lo
    }

    fn shown(&self) -> String {
        if self.is_flag() {
            if self.value != 0 { "set" } else { "clear" }.to_string()
        } else {
            format!("{:#x}", self.value)
        }
    }
}

/// Whether `f` holds a 4 KiB-aligned address (bits 12 and up of its word).
const fn is_address(f: &Field) -> bool {
    f.lo % 64 == 12 && f.width() >= 20
}

/// Reserved bits that are set in one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedViolation {
    /// Word index (qword number).
    pub word: usize,
    /// The offending bits, at their positions within the word.
    pub bits: u64,
    /// The offending bits as absolute bit numbers, highest first.
    pub bit_numbers: Vec<u16>,
}

impl ReservedViolation {
    fn new(word: usize, bits: u64) -> Self {
        let bit_numbers =
            (0..64u16).rev().filter(|b| bits >> b & 1 != 0).map(|b| (word as u16).saturating_mul(64) + b).collect();
        Self { word, bits, bit_numbers }
    }

    /// The absolute bit numbers as ranges, highest first: `"bits 75:65, 5"`,
    /// or `"bit 5"` for a single bit.
    pub fn ranges(&self) -> String {
        let word = if self.bit_numbers.len() == 1 { "bit" } else { "bits" };
        format!("{word} {}", self.runs())
    }

    fn runs(&self) -> String {
        let mut runs: Vec<(u16, u16)> = Vec::new();
        for &b in &self.bit_numbers {
            match runs.last_mut() {
                Some((_, lo)) if lo.checked_sub(1) == Some(b) => *lo = b,
                _ => runs.push((b, b)),
            }
        }
        runs.iter()
            .map(|&(hi, lo)| if hi == lo { hi.to_string() } else { format!("{hi}:{lo}") })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One decoded structure: the words, every field, the reserved bits that
/// are set, and the typed reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Kind name.
    pub kind: &'static str,
    /// One-line description of the kind.
    pub description: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// Spec section.
    pub cite: &'static str,
    /// The words, qword 0 first (missing words are zero).
    pub words: Vec<u64>,
    /// Every field, in spec order.
    pub fields: Vec<FieldValue>,
    /// Reserved bits that are set, one entry per word.
    pub reserved: Vec<ReservedViolation>,
    /// What the format crate's typed decoder makes of the words.
    pub interpretation: Vec<String>,
}

impl Decoded {
    /// The field named `name`, if the structure has one.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// JSON form; 64-bit values are hex strings (JSON numbers lose bits
    /// above 2^53 in most readers).
    pub fn to_json(&self) -> Value {
        let hex = |v: u64| format!("{v:#x}");
        json!({
            "kind": self.kind,
            "description": self.description,
            "size": self.size,
            "cite": self.cite,
            "words": self.words.iter().map(|&w| format!("{w:#018x}")).collect::<Vec<_>>(),
            "fields": self.fields.iter().map(|f| json!({
                "name": f.name,
                "bits": f.bits(),
                "value": hex(f.value),
                "in_place": f.in_place.map(hex),
            })).collect::<Vec<_>>(),
            "reserved": self.reserved.iter().map(|r| json!({
                "word": r.word,
                "bits": hex(r.bits),
                "bit_numbers": r.bit_numbers,
            })).collect::<Vec<_>>(),
            "interpretation": self.interpretation,
        })
    }
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}, {} bytes, {}", self.kind, self.description, self.size, self.cite)?;
        for (i, w) in self.words.iter().enumerate() {
            writeln!(f, "  qword {i}  {w:#018x}")?;
        }
        let name_w = self.fields.iter().map(|x| x.name.len()).max().unwrap_or(0).max(5);
        let bits_w = self.fields.iter().map(|x| x.bits().len()).max().unwrap_or(0).max(4);
        let vals: Vec<String> = self.fields.iter().map(FieldValue::shown).collect();
        let val_w = vals.iter().map(String::len).max().unwrap_or(0).max(5);
        writeln!(f)?;
        writeln!(f, "  {:<name_w$}  {:<bits_w$}  VALUE", "FIELD", "BITS")?;
        for (field, val) in self.fields.iter().zip(&vals) {
            let bits = field.bits();
            match field.in_place {
                Some(a) => writeln!(f, "  {:<name_w$}  {bits:<bits_w$}  {val:<val_w$}  address {a:#x}", field.name)?,
                None => writeln!(f, "  {:<name_w$}  {bits:<bits_w$}  {val}", field.name)?,
            }
        }
        if !self.reserved.is_empty() {
            writeln!(f)?;
        }
        for r in &self.reserved {
            writeln!(f, "  RESERVED BITS SET in qword {}: {:#x} ({})", r.word, r.bits, r.ranges())?;
        }
        if !self.interpretation.is_empty() {
            writeln!(f)?;
            writeln!(f, "  interpretation:")?;
        }
        for line in &self.interpretation {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Decodes `hex` (see the module docs for the input rules) as the structure
/// `kind_name` names.
///
/// # Examples
/// ```
/// let d = iommu_sim::decode::decode("root", "0x1021").unwrap();
/// assert_eq!(d.interpretation, ["present, context table at 0x1000"]);
/// assert_eq!(d.reserved[0].bit_numbers, [5]); // bits 11:1 are reserved (VT-d §9.1)
/// ```
///
/// # Errors
/// [`DecodeError::UnknownKind`] when `kind_name` is not a name [`kinds`] lists;
/// the other variants when `hex` does not follow the input rules.
pub fn decode(kind_name: &str, hex: &str) -> Result<Decoded, DecodeError> {
    let info = kind(kind_name)
        .ok_or_else(|| DecodeError::UnknownKind { kind: quote(kind_name), nearest: nearest(kind_name) })?;
    let words = parse_words(hex, info)?;
    let n = info.words();
    let table = match info.fields {
        Table::Fixed(t) => t,
        Table::ByWords(choose) => choose(&words),
    };
    let fields = table
        .iter()
        .filter(|fd| fd.word() < n)
        .map(|fd| FieldValue {
            name: fd.name,
            hi: fd.hi,
            lo: fd.lo,
            value: fd.get(&words),
            in_place: info.addresses.includes(fd).then(|| fd.get_in_place(&words)),
        })
        .collect();
    let typed = (info.interpret)(&words);
    let mut bad = vec![0u64; n];
    for (slot, (w, r)) in bad.iter_mut().zip(words.iter().zip(info.reserved)) {
        *slot = w & r;
    }
    for &(word, bits) in &typed.reserved {
        if let Some(slot) = bad.get_mut(word) {
            *slot |= bits;
        }
    }
    let reserved =
        bad.iter().enumerate().filter(|(_, &b)| b != 0).map(|(word, &b)| ReservedViolation::new(word, b)).collect();
    Ok(Decoded {
        kind: info.name,
        description: info.description,
        size: info.size,
        cite: info.cite,
        words,
        fields,
        reserved,
        interpretation: typed.lines,
    })
}

// ---------------------------------------------------------------------------
// Typed readings, one per kind.

/// The first `N` words of `w`, zero-padded.
fn arr<const N: usize>(w: &[u64]) -> [u64; N] {
    let mut out = [0u64; N];
    for (o, v) in out.iter_mut().zip(w) {
        *o = *v;
    }
    out
}

/// The capabilities of the unit every capability-dependent reading assumes.
fn full_caps() -> Caps {
    let cfg = VtdConfig::full_featured();
    Caps::new(cfg.cap, cfg.ecap)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn size_name(s: PageSize) -> &'static str {
    match s {
        PageSize::Size4K => "4 KiB",
        PageSize::Size2M => "2 MiB",
        PageSize::Size1G => "1 GiB",
    }
}

/// VT-d §9.1.
fn root(w: &[u64]) -> Typed {
    let e = RootEntry::from_words(arr(w));
    Typed::lines(vec![if e.present() {
        format!("present, context table at {}", e.ctp())
    } else {
        "not present (P clear)".to_string()
    }])
}

/// VT-d §9.2: the lower half serves devfn 0x00-0x7f, the upper 0x80-0xff.
fn sm_root(w: &[u64]) -> Typed {
    let e = ScalableRootEntry::from_words(arr(w));
    let half = |name: &str, devfn: u8| {
        let (present, table) = e.half_for(devfn);
        if present {
            format!("{name}: present, context table at {table}")
        } else {
            format!("{name}: not present")
        }
    };
    Typed::lines(vec![half("lower half (devfn 0x00-0x7f)", 0), half("upper half (devfn 0x80-0xff)", 0x80)])
}

/// What an AW (AGAW) encoding selects, VT-d §9.3.
fn aw_text(aw: u64) -> String {
    match agaw_levels(aw) {
        Some(l) => format!("AW {aw}: {l}-level second stage, {}-bit input addresses", levels_width(l)),
        None => format!("AW {aw}: not a defined paging mode"),
    }
}

/// VT-d §9.3.
fn context(w: &[u64]) -> Typed {
    let e = ContextEntry::from_words(arr(w));
    let r = match e.decode() {
        Ok(r) => r,
        Err(err) => return Typed::lines(vec![format!("does not decode: {err}")]),
    };
    let tt = match r.tt {
        TranslationType::Untranslated => {
            format!("TT 00b: untranslated requests use the second-stage table at {}; ATS requests blocked", r.slptptr)
        }
        TranslationType::DeviceTlb => {
            format!("TT 01b: untranslated and ATS requests use the second-stage table at {}", r.slptptr)
        }
        TranslationType::PassThrough => "TT 10b: pass-through (output = input; SLPTPTR ignored)".to_string(),
        TranslationType::Reserved => "TT 11b: reserved".to_string(),
    };
    let mut lines = vec![format!("present, domain {}", r.did), tt, aw_text(r.aw.into())];
    if r.fpd {
        lines.push("FPD: qualified faults are not recorded".to_string());
    }
    Typed::lines(lines)
}

/// VT-d §9.4.
fn sm_context(w: &[u64]) -> Typed {
    let e = ScalableContextEntry::from_words(arr(w));
    let r = match e.decode() {
        Ok(r) => r,
        Err(err) => return Typed::lines(vec![format!("does not decode: {err}")]),
    };
    let entries = e.pasid_dir_entries();
    let mut lines = vec![
        format!(
            "present, PASID directory at {} with {entries} entries (PDTS {}: PASIDs below {:#x})",
            r.pasid_dir,
            r.pdts,
            u64::from(entries) * 64
        ),
        format!(
            "ATS translation requests (DTE): {}; requests with PASID (PASIDE): {}; page requests (PRE): {}",
            yes_no(r.dte),
            yes_no(r.paside),
            yes_no(r.pre)
        ),
        format!(
            "requests without PASID use PASID {} ({})",
            r.rid_pasid,
            if r.rid_priv { "privileged" } else { "user" }
        ),
    ];
    if r.fpd {
        lines.push("FPD: qualified faults are not recorded".to_string());
    }
    Typed::lines(lines)
}

/// VT-d §9.5.
fn pasid_dir(w: &[u64]) -> Typed {
    let e = PasidDirEntry::from_words(arr(w));
    let mut lines = vec![if e.present() {
        format!("present, PASID table at {} (64 entries of 512 bits)", e.table())
    } else {
        "not present (P clear)".to_string()
    }];
    if e.get(PasidDirEntry::FPD) != 0 {
        lines.push("FPD: qualified faults are not recorded".to_string());
    }
    Typed::lines(lines)
}

fn first_stage_text(f: &FirstStageCfg) -> String {
    format!(
        "first stage: root {}, {}-level; SRE {}, ERE {}, WPE {}, EAFE {}",
        f.root,
        f.levels,
        yes_no(f.sre),
        yes_no(f.ere),
        yes_no(f.wpe),
        yes_no(f.eafe)
    )
}

fn second_stage_text(s: &SecondStageCfg) -> String {
    format!("second stage: root {}, {}-level; SSADE {}", s.root, s.levels, yes_no(s.ssade))
}

/// VT-d §9.6, decoded against a full-featured unit's capabilities.
fn pasid(w: &[u64]) -> Typed {
    let caps = full_caps();
    let e = PasidEntry::from_words(arr(w));
    let pgtt = match e.pgtt() {
        Pgtt::FirstStage => "first-stage only",
        Pgtt::SecondStage => "second-stage only",
        Pgtt::Nested => "nested (first stage over second stage)",
        Pgtt::PassThrough => "pass-through",
        Pgtt::Reserved(_) => "reserved",
    };
    let mut lines = vec![
        format!(
            "checked against a full-featured unit's capabilities (VtdConfig::full_featured: CAP {:#x}, ECAP {:#x})",
            caps.cap.0[0], caps.ecap.0[0]
        ),
        format!("PGTT {:03b}b: {pgtt}", e.pgtt().bits()),
    ];
    match e.decode(&caps) {
        Ok(r) => {
            lines.push(format!(
                "present, domain {}; FPD {}, PWSNP {}, PGSNP {}",
                r.did,
                yes_no(r.fpd),
                yes_no(r.pwsnp),
                yes_no(r.pgsnp)
            ));
            match &r.config {
                PasidConfig::FirstStage(f) => lines.push(first_stage_text(f)),
                PasidConfig::SecondStage(s) => lines.push(second_stage_text(s)),
                PasidConfig::Nested(f, s) => {
                    lines.push(first_stage_text(f));
                    lines.push(second_stage_text(s));
                }
                PasidConfig::PassThrough => lines.push("pass-through: output = input".to_string()),
            }
        }
        Err(err) => lines.push(format!("does not decode: {err}")),
    }
    Typed::lines(lines)
}

fn pte_text(r: PteRepr, user_matters: bool) -> String {
    let user = |u: bool| {
        if !user_matters {
            ""
        } else if u {
            ", user"
        } else {
            ", supervisor only"
        }
    };
    match r {
        PteRepr::NotPresent => "not present".to_string(),
        PteRepr::Table { next, perm, user: u } => format!("table at {next:#x}, {perm:?}{}", user(u)),
        PteRepr::Leaf { frame, size, perm, user: u } => {
            format!("{} page at {frame:#x}, {perm:?}{}", size_name(size), user(u))
        }
    }
}

fn reserved_text(bits: u64) -> String {
    if bits == 0 {
        String::new()
    } else {
        format!("; RESERVED BITS SET {:#x} ({})", bits, ReservedViolation::new(0, bits).ranges())
    }
}

/// VT-d §9.7 (x86-64 paging entries), read at every level.
fn fs_pte(w: &[u64]) -> Typed {
    let [raw] = arr::<1>(w);
    let e = FsPte::from_words([raw]);
    if e.get(FsPte::P) == 0 {
        return Typed::lines(vec!["not present (P clear)".to_string()]);
    }
    let caps = full_caps();
    let fs1gp = caps.fs_large_page(3);
    let mut lines = vec![format!(
        "reserved bits as a full-featured unit checks them (HAW {}, 1 GiB pages {})",
        caps.haw(),
        yes_no(fs1gp)
    )];
    for (level, name) in [(5, "PML5E"), (4, "PML4E"), (3, "PDPE"), (2, "PDE"), (1, "PTE")] {
        let rsv = fs_reserved_bits(raw, level, caps.haw(), fs1gp);
        lines.push(format!("as {name} (level {level}): {}{}", pte_text(e.decode(level), true), reserved_text(rsv)));
    }
    Typed::lines(lines)
}

/// VT-d §9.8, read at every level, with scalable-mode rules.
fn ss_pte(w: &[u64]) -> Typed {
    let [raw] = arr::<1>(w);
    let e = SsPte::from_words([raw]);
    if e.get(SsPte::R) == 0 && e.get(SsPte::W) == 0 {
        return Typed::lines(vec!["not present (R and W clear)".to_string()]);
    }
    let caps = full_caps();
    let rules = SsRules {
        haw: caps.haw(),
        large_2m: caps.ss_large_page(2),
        large_1g: caps.ss_large_page(3),
        snp_reserved: false,
        tm_reserved: !caps.ecap_has(Ecap::DT),
    };
    let mut lines = vec![format!(
        "reserved bits as a full-featured unit checks them in scalable mode (HAW {}, 2 MiB pages {}, \
         1 GiB pages {}, TM allowed {})",
        rules.haw,
        yes_no(rules.large_2m),
        yes_no(rules.large_1g),
        yes_no(!rules.tm_reserved)
    )];
    for level in (1..=5u8).rev() {
        let rsv = ss_reserved_bits(raw, level, &rules);
        lines.push(format!("as level {level}: {}{}", pte_text(e.decode(level), false), reserved_text(rsv)));
    }
    Typed::lines(lines)
}

/// Descriptor type names, VT-d §6.5.2 (and §7.7.1 for 0x9).
fn inv_type_name(ty: u8) -> &'static str {
    match ty {
        desc_type::CONTEXT_CACHE => "context-cache invalidate",
        desc_type::IOTLB => "IOTLB invalidate",
        desc_type::DEVICE_TLB => "device-TLB invalidate",
        desc_type::IEC => "interrupt entry cache invalidate",
        desc_type::WAIT => "invalidation wait",
        desc_type::PASID_IOTLB => "PASID-based IOTLB invalidate",
        desc_type::PASID_CACHE => "PASID-cache invalidate",
        desc_type::PASID_DEVICE_TLB => "PASID-based device-TLB invalidate",
        desc_type::PAGE_GROUP_RESPONSE => "page group response",
        _ => "not a type this model implements",
    }
}

/// VT-d §6.5.2: the type, then the typed descriptor or the reason hardware
/// would report an invalidation queue error.
fn inv_desc(w: &[u64], wide: bool) -> Typed {
    let raw = InvDesc::from_words(arr(w));
    let ty = raw.desc_type();
    let mut typed = Typed::lines(vec![format!("type {ty:#x}: {}", inv_type_name(ty))]);
    match InvDescriptor::decode(&raw, wide) {
        Ok(d) => typed.lines.push(format!("{d:?}")),
        Err(err) => {
            typed.lines.push(format!("invalid, hardware reports an invalidation queue error (FSTS.IQE): {err}"));
            if let InvDecodeError::Reserved { qword, bits, .. } = err {
                typed.reserved.push((qword, bits));
            }
        }
    }
    typed
}

fn inv_desc_256(w: &[u64]) -> Typed {
    inv_desc(w, true)
}

fn inv_desc_128(w: &[u64]) -> Typed {
    inv_desc(w, false)
}

/// What each fault reason means, paraphrasing VT-d §7.1.3.
fn reason_meaning(r: FaultReason) -> &'static str {
    use FaultReason as R;
    match r {
        R::RootNotPresent => "root entry not present (legacy mode)",
        R::ContextNotPresent => "context entry not present (legacy mode)",
        R::ContextInvalid => {
            "context entry programmed wrongly: TT, AW or an unreadable second-stage root (legacy mode)"
        }
        R::AddressBeyondAgaw => "input address above the address width the context allows (legacy mode)",
        R::WriteDenied => "write to a page without write permission (legacy mode)",
        R::ReadDenied => "read from a page without read permission (legacy mode)",
        R::SsEntryFetch => "second-stage paging entry could not be fetched (legacy mode)",
        R::RootFetch => "root entry could not be fetched (legacy mode)",
        R::ContextFetch => "context entry could not be fetched (legacy mode)",
        R::RootReserved => "reserved bit set in the root entry (legacy mode)",
        R::ContextReserved => "reserved bit set in the context entry (legacy mode)",
        R::SsEntryReserved => "reserved bit set in a second-stage paging entry (legacy mode)",
        R::TranslationTypeBlocked => "request type blocked by the context entry's translation type (legacy mode)",
        R::InterruptAddress => "output address falls in the interrupt range 0xFEEx_xxxx (legacy mode)",
        R::SmRootTableInvalid => "root table address or mode invalid (scalable mode)",
        R::LegacyModePasidRequest => "request with PASID while the root table is in legacy mode",
        R::LegacyModePageRequest => "page request while the root table is in legacy mode",
        R::SmRootFetch => "root entry could not be fetched (scalable mode)",
        R::SmRootNotPresent => "the root entry half for this devfn is not present (scalable mode)",
        R::SmRootReserved => "reserved bit set in the root entry (scalable mode)",
        R::SmContextFetch => "context entry could not be fetched (scalable mode)",
        R::SmContextNotPresent => "context entry not present (scalable mode)",
        R::SmContextReserved => "reserved bit set in the context entry (scalable mode)",
        R::SmContextInvalid => "context entry programmed wrongly (scalable mode)",
        R::SmDteClear => "ATS translation request while the context's DTE is clear",
        R::SmPasidDisabled => "request with PASID while the context's PASIDE is clear",
        R::SmPasidTooLarge => "PASID beyond the directory size the context's PDTS gives",
        R::SmPreClear => "page request while the context's PRE is clear",
        R::SmRidPasidInvalid => "RID_PASID programmed on hardware without ECAP.RPS",
        R::PasidDirFetch => "PASID directory entry could not be fetched",
        R::PasidDirNotPresent => "PASID directory entry not present",
        R::PasidDirReserved => "reserved bit set in the PASID directory entry",
        R::PasidEntryFetch => "PASID table entry could not be fetched",
        R::PasidEntryNotPresent => "PASID table entry not present",
        R::PasidEntryReserved => "reserved bit set in the PASID table entry",
        R::PasidEntryInvalid => "PASID table entry programmed wrongly (PGTT, AW, FSPM, ...)",
        R::EreClear => "execute request while the PASID entry's ERE is clear",
        R::SreClear => "supervisor request while the PASID entry's SRE is clear",
        R::FsEntryFetch => "first-stage paging entry could not be fetched",
        R::FsEntryNotPresent => "first-stage paging entry not present",
        R::FsEntryReserved => "reserved bit set in a first-stage paging entry",
        R::FsRootFetch => "first-stage root (FSPTPTR) could not be fetched",
        R::SmSsEntryFetch => "second-stage paging entry could not be fetched (scalable mode)",
        R::SsNestedPermission => "second stage denied access to a first-stage table (nested translation)",
        R::SmSsEntryReserved => "reserved bit set in a second-stage paging entry (scalable mode)",
        R::SsRootFetch => "second-stage root (SSPTPTR) could not be fetched",
        R::FsNonCanonical => "input address not canonical for the first-stage paging mode",
        R::FsUserDenied => "user request to a supervisor-only page (U/S clear)",
        R::ExecuteDenied => "execute request to a page with XD set",
        R::SmAddressBeyondAgaw => "input address beyond the second stage's address width (scalable mode)",
        R::SsAddressBeyond => "intermediate address beyond the second stage's address width (nested translation)",
        R::SmWriteDenied => "write without write permission (scalable mode)",
        R::SmReadDenied => "read without read permission (scalable mode)",
        R::SmInterruptAddress => "output address falls in the interrupt range (scalable mode)",
        R::FsAdUpdate => "first-stage accessed/dirty update failed",
        R::Unknown(_) => "a code this model does not name (reserved, or from a later revision)",
    }
}

/// VT-d §11.4.14, reasons from §7.1.3.
fn fault_record(w: &[u64]) -> Typed {
    let rec = FaultRecord::from_words(arr(w));
    let Some(info) = rec.decode() else {
        return Typed::lines(vec!["F clear: the register holds no fault".to_string()]);
    };
    let access = match info.access {
        FaultAccess::Read => "read",
        FaultAccess::Write => "write",
    };
    let pasid = info.pasid.map_or_else(|| "no PASID".to_string(), |p| format!("PASID {p}"));
    Typed::lines(vec![
        format!("fault reason {}: {}", info.reason, reason_meaning(info.reason)),
        format!(
            "{access} from {} ({pasid}) at page {}; privileged {}, execute {}",
            info.source_id,
            info.addr,
            yes_no(info.privileged),
            yes_no(info.exec)
        ),
    ])
}

/// VT-d §7.5.1.
fn page_request(w: &[u64]) -> Typed {
    let desc = PageRequestDesc::from_words(arr(w));
    let Some(r) = desc.decode() else {
        return Typed::lines(vec![format!(
            "descriptor type {:#x} is not a page request (type 1)",
            desc.get(PageRequestDesc::TYPE)
        )]);
    };
    let pasid = r.pasid.map_or_else(|| "no PASID".to_string(), |p| format!("PASID {p}"));
    let mut access = String::new();
    for (on, c) in [(r.read, 'r'), (r.write, 'w'), (r.exec, 'x')] {
        access.push(if on { c } else { '-' });
    }
    let mut lines = vec![format!(
        "page request from {} ({pasid}) for page {}, access {access}{}, group {:#x}{}",
        r.rid,
        r.addr,
        if r.privileged { " privileged" } else { "" },
        r.prgi,
        if r.lpig { ", last in group" } else { "" }
    )];
    if r.is_stop_marker() {
        lines.push("stop marker: last in group with neither read nor write".to_string());
    }
    if r.private != [0, 0] {
        lines.push(format!("private data {:#018x} {:#018x}", r.private[0], r.private[1]));
    }
    Typed::lines(lines)
}

/// VT-d §11.4.2.
fn cap(w: &[u64]) -> Typed {
    let [raw] = arr::<1>(w);
    let caps = Caps::new(raw, 0);
    let sagaw: Vec<String> = (3..=5u8).filter(|&l| caps.sagaw_supports(l)).map(|l| format!("{l}-level")).collect();
    let mut large = Vec::new();
    if caps.ss_large_page(2) {
        large.push("2 MiB");
    }
    if caps.ss_large_page(3) {
        large.push("1 GiB");
    }
    let join = |v: &[&str]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    Typed::lines(vec![
        format!("{} domain-ID bits (ND {})", caps.did_bits(), caps.cap.get(Cap::ND)),
        format!(
            "second-stage tables (SAGAW): {}",
            if sagaw.is_empty() { "none".to_string() } else { sagaw.join(", ") }
        ),
        format!("maximum guest address width (MGAW): {} bits", caps.mgaw()),
        format!(
            "{} fault recording register(s) at offset {:#x}",
            caps.fault_record_count(),
            caps.fault_record_offset()
        ),
        format!("second-stage large pages (SLLPS): {}", join(&large)),
        format!(
            "first-stage 1 GiB pages (FS1GP): {}; first-stage 5-level paging (FS5LP): {}",
            yes_no(caps.cap_has(Cap::FS1GP)),
            yes_no(caps.cap_has(Cap::FS5LP))
        ),
        format!(
            "caching mode (CM): {}; page-selective invalidation (PSI): {}, up to 2^{} pages (MAMV)",
            yes_no(caps.cap_has(Cap::CM)),
            yes_no(caps.cap_has(Cap::PSI)),
            caps.cap.get(Cap::MAMV)
        ),
    ])
}

/// VT-d §11.4.3.
fn ecap(w: &[u64]) -> Typed {
    let [raw] = arr::<1>(w);
    let caps = Caps::new(0, raw);
    let named = |list: &[(&'static str, Field)]| {
        let on: Vec<&str> = list.iter().filter(|(_, f)| caps.ecap_has(*f)).map(|(n, _)| *n).collect();
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    };
    let modes = named(&[
        ("scalable mode (SMTS)", Ecap::SMTS),
        ("first stage (FSTS)", Ecap::FSTS),
        ("second stage (SSTS)", Ecap::SSTS),
        ("nested (NEST)", Ecap::NEST),
        ("pass-through (PT)", Ecap::PT),
    ]);
    let requests = named(&[
        ("ATS (DT)", Ecap::DT),
        ("page requests (PRS)", Ecap::PRS),
        ("supervisor requests (SRS)", Ecap::SRS),
        ("execute requests (ERS)", Ecap::ERS),
        ("queued invalidation (QI)", Ecap::QI),
        ("interrupt remapping (IR)", Ecap::IR),
    ]);
    let iro = caps.iotlb_offset();
    let pasid = if caps.ecap_has(Ecap::PASID) {
        format!("PASIDs of {} bits (PSS {})", caps.ecap.get(Ecap::PSS) + 1, caps.ecap.get(Ecap::PSS))
    } else {
        "no PASID support (ECAP.PASID clear)".to_string()
    };
    Typed::lines(vec![
        format!("translation: {modes}"),
        format!("features: {requests}"),
        pasid,
        format!("IVA register at offset {iro:#x}, IOTLB register at {:#x} (IRO {})", iro + 8, iro / 16),
    ])
}

/// VT-d §11.4.5.
fn rtaddr(w: &[u64]) -> Typed {
    let r = Rtaddr::from_words(arr(w));
    let mode = match TableMode::from_bits(r.get(Rtaddr::TTM)) {
        TableMode::Legacy => "TTM 00b: legacy root and context tables",
        TableMode::Scalable => "TTM 01b: scalable-mode root and context tables",
        TableMode::AbortDma => "TTM 10b: abort-DMA mode, untranslated requests are blocked",
        TableMode::Reserved => "TTM 11b: reserved",
    };
    Typed::lines(vec![format!("root table at {:#x}", r.get_in_place(Rtaddr::RTA)), mode.to_string()])
}

/// VT-d §11.4.6.
fn ccmd(w: &[u64]) -> Typed {
    let c = Ccmd::from_words(arr(w));
    let (did, sid, fm) = (c.get(Ccmd::DID), c.get(Ccmd::SID), c.get(Ccmd::FM));
    let gran = |g: u64, zero: &str| match g {
        1 => "global".to_string(),
        2 => format!("domain {did:#x}"),
        3 => format!("device source-id {sid:#06x} in domain {did:#x}, function mask {fm}"),
        _ => zero.to_string(),
    };
    Typed::lines(vec![
        format!(
            "ICC {}",
            if c.get(Ccmd::ICC) != 0 { "set: invalidation requested or in progress" } else { "clear: idle" }
        ),
        format!("requested granularity (CIRG): {}", gran(c.get(Ccmd::CIRG), "reserved (0)")),
        format!("actual granularity (CAIG): {}", gran(c.get(Ccmd::CAIG), "none reported (0)")),
    ])
}

/// VT-d §11.4.8.2.
fn iva(w: &[u64]) -> Typed {
    let v = Iva::from_words(arr(w));
    let am = v.get(Iva::AM);
    let pages = 1u64.checked_shl(am as u32).map_or_else(|| format!("2^{am}"), |p| p.to_string());
    Typed::lines(vec![format!(
        "{pages} page(s) of 4 KiB at {:#x} (AM {am}){}",
        v.get_in_place(Iva::ADDR),
        if v.get(Iva::IH) != 0 { ", leaf entries only (IH)" } else { "" }
    )])
}

/// VT-d §11.4.8.1.
fn iotlb_reg(w: &[u64]) -> Typed {
    let r = IotlbReg::from_words(arr(w));
    let did = r.get(IotlbReg::DID);
    let gran = |g: u64, zero: &str| match g {
        1 => "global".to_string(),
        2 => format!("domain {did:#x}"),
        3 => format!("page-selective in domain {did:#x} (range in the IVA register)"),
        _ => zero.to_string(),
    };
    Typed::lines(vec![
        format!(
            "IVT {}",
            if r.get(IotlbReg::IVT) != 0 { "set: invalidation requested or in progress" } else { "clear: idle" }
        ),
        format!("requested granularity (IIRG): {}", gran(r.get(IotlbReg::IIRG), "reserved (0)")),
        format!("actual granularity (IAIG): {}", gran(r.get(IotlbReg::IAIG), "none reported (0)")),
        format!("drain reads {}, drain writes {}", yes_no(r.get(IotlbReg::DR) != 0), yes_no(r.get(IotlbReg::DW) != 0)),
    ])
}

/// VT-d §11.4.10.3.
fn iqa(w: &[u64]) -> Typed {
    let q = Iqa::from_words(arr(w));
    let qs = q.get(Iqa::QS);
    let wide = q.get(Iqa::DW) != 0;
    let bytes = 4096u64 << qs;
    let entries = bytes / if wide { 32 } else { 16 };
    Typed::lines(vec![format!(
        "invalidation queue at {:#x}: 2^{qs} page(s), {entries} descriptors of {} bits",
        q.get_in_place(Iqa::IQA),
        if wide { 256 } else { 128 }
    )])
}

/// VT-d §11.4.11.3.
fn pqa(w: &[u64]) -> Typed {
    let q = Pqa::from_words(arr(w));
    let qs = q.get(Pqa::PQS);
    Typed::lines(vec![format!(
        "page request queue at {:#x}: 2^{qs} page(s), {} descriptors of 256 bits",
        q.get_in_place(Pqa::PQA),
        (4096u64 << qs) / 32
    )])
}

// ---------------------------------------------------------------------------
// SMMUv3 readings.

/// The features every SMMUv3 validity reading assumes.
fn full_smmu() -> Features {
    SmmuConfig::full().features()
}

/// The first line of the STE and CD readings: what they were checked against.
fn smmu_features_text(f: &Features) -> String {
    format!(
        "checked against a full-featured SMMU's features (SmmuConfig::full: stage 1 {}, stage 2 {}, {}-bit OAS, \
         {}-bit SubstreamIDs, 2-level CD tables {}, ATS {}, stalls {}, HTTU access flag {}, dirty {})",
        yes_no(f.s1p),
        yes_no(f.s2p),
        f.oas_bits,
        f.ssid_bits,
        yes_no(f.cd2l),
        yes_no(f.ats),
        yes_no(f.stall),
        yes_no(f.httu_af),
        yes_no(f.httu_dirty)
    )
}

fn granule_name(g: Granule) -> &'static str {
    match g {
        Granule::G4K => "4 KiB",
        Granule::G16K => "16 KiB",
        Granule::G64K => "64 KiB",
    }
}

/// 2^`shift` bytes in the largest whole binary unit.
fn size_text(shift: u32) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let unit = ((shift / 10) as usize).min(units.len() - 1);
    format!("{} {}", 1u64 << (shift - 10 * unit as u32), units[unit])
}

/// A translation table tree as the walker sees it.
fn table_text(t: &TableCfg) -> String {
    let extra = t.root_bits.saturating_sub(t.granule.stride());
    let concat = if extra > 0 { format!(" ({} concatenated tables)", 1u64 << extra) } else { String::new() };
    format!(
        "tables at {:#x}: {} granule, {}-bit input, start level {}{concat}, {}-bit output",
        t.base,
        granule_name(t.granule),
        t.input_bits,
        t.start_level,
        t.out_bits
    )
}

/// STE.Config, SMMUv3 §5.2.
fn ste_config_text(raw: u64) -> String {
    let what = match raw & 7 {
        0 => "abort: every transaction is terminated, no event is recorded",
        1..=3 => "reserved, behaves as abort",
        4 => "bypass: both stages bypassed",
        5 => "stage 1 translates, stage 2 bypassed",
        6 => "stage 1 bypassed, stage 2 translates",
        _ => "both stages translate (nested)",
    };
    format!("Config {:03b}b: {what}", raw & 7)
}

fn s1fmt_text(fmt: S1Fmt) -> &'static str {
    match fmt {
        S1Fmt::Linear => "linear",
        S1Fmt::TwoLevel4K => "2-level with 4 KiB leaf tables of 64 CDs",
        S1Fmt::TwoLevel64K => "2-level with 64 KiB leaf tables of 1024 CDs",
    }
}

fn s1dss_text(dss: S1Dss) -> &'static str {
    match dss {
        S1Dss::Terminate => "terminated (F_STREAM_DISABLED)",
        S1Dss::Bypass => "stage 1 bypassed",
        S1Dss::Substream0 => "use CD 0 (SubstreamID 0 itself is then C_BAD_SUBSTREAMID)",
        S1Dss::Reserved => "reserved",
    }
}

/// SMMUv3 §5.2, checked as a full-featured SMMU would.
fn smmu_ste(w: &[u64]) -> Typed {
    let f = full_smmu();
    let ste = Ste::from_words(arr(w));
    let mut lines = vec![smmu_features_text(&f)];
    if ste.get(Ste::V) == 0 {
        lines.push("V clear: not valid, a transaction on this stream records C_BAD_STE".to_string());
    } else {
        lines.push(ste_config_text(ste.get(Ste::CONFIG)));
        match decode_ste(&ste, &f) {
            Ok(cfg) => {
                if let Some(s1) = cfg.s1 {
                    let ipa = if cfg.config.stage2() { " (an IPA, translated by stage 2)" } else { "" };
                    lines.push(if s1.cdmax == 0 {
                        format!("stage 1: a single CD at {:#x}{ipa}", s1.context_ptr)
                    } else {
                        format!(
                            "stage 1: CD table at {:#x}{ipa}, {}, 2^{} CDs; transactions without a SubstreamID: {}",
                            s1.context_ptr,
                            s1fmt_text(s1.fmt),
                            s1.cdmax,
                            s1dss_text(s1.dss)
                        )
                    });
                }
                if let Some(s2) = cfg.s2 {
                    lines.push(format!(
                        "stage 2: VMID {:#x}, {}; S2AFFD {}, record faults (S2R) {}, stall faults (S2S) {}",
                        cfg.vmid,
                        table_text(&s2.tables),
                        yes_no(s2.affd),
                        yes_no(s2.record),
                        yes_no(s2.stall)
                    ));
                }
                lines.push(format!("ATS translation requests (EATS): {}", yes_no(cfg.eats)));
                if cfg.s1.is_some() && cfg.s1_stall_disabled {
                    lines.push("S1STALLD: stage-1 faults never stall".to_string());
                }
                if let Some(p) = cfg.priv_override {
                    lines.push(format!(
                        "PRIVCFG: every transaction is {}",
                        if p { "privileged" } else { "unprivileged" }
                    ));
                }
                if let Some(i) = cfg.inst_override {
                    lines.push(format!(
                        "INSTCFG: every transaction is {}",
                        if i { "an instruction fetch" } else { "a data access" }
                    ));
                }
            }
            Err(ConfigFault::SteAbort) => {}
            Err(_) => lines.push("ILLEGAL for this SMMU: a transaction on this stream records C_BAD_STE".to_string()),
        }
    }
    if ste.has_reserved_bits() {
        lines.push(
            "bits no field names are flagged as reserved, but the model ignores them \
             (Secure, IMPLEMENTATION DEFINED and later-extension fields)"
                .to_string(),
        );
    }
    Typed::lines(lines)
}

/// SMMUv3 §5.1.
fn smmu_l1std(w: &[u64]) -> Typed {
    let d = L1Std::from_words(arr(w));
    let span = d.get(L1Std::SPAN);
    Typed::lines(vec![if span == 0 {
        "invalid (Span 0): the StreamIDs it covers are C_BAD_STREAMID".to_string()
    } else {
        format!(
            "level-2 array of {} STE(s) at {:#x} (Span {span}; a Span above STRTAB_BASE_CFG.SPLIT + 1 is \
             treated as invalid)",
            1u64 << (span - 1),
            d.get_in_place(L1Std::L2PTR)
        )
    }])
}

/// SMMUv3 §5.4, checked as a full-featured SMMU would.
fn smmu_cd(w: &[u64]) -> Typed {
    let f = full_smmu();
    let cd = Cd::from_words(arr(w));
    let mut lines = vec![smmu_features_text(&f)];
    if cd.get(Cd::V) == 0 {
        lines.push("V clear: not valid, a transaction using this CD records C_BAD_CD".to_string());
        return Typed::lines(lines);
    }
    let c = match decode_cd(&cd, &f) {
        Ok(c) => c,
        Err(_) => {
            lines.push("ILLEGAL for this SMMU: a transaction using this CD records C_BAD_CD".to_string());
            return Typed::lines(lines);
        }
    };
    lines.push(format!(
        "valid, ASID {:#x}{}",
        c.asid,
        if cd.get(Cd::ASET) != 0 { " (ASET: not shared with the PE's TLB invalidations)" } else { "" }
    ));
    for (half, t) in c.tt.iter().enumerate() {
        let name = ["TTB0 (VA[55] clear)", "TTB1 (VA[55] set)"][half];
        lines.push(match t {
            Some(t) => format!(
                "{name}: {}{}{}",
                table_text(t),
                if c.tbi[half] { ", top byte ignored (TBI)" } else { "" },
                if c.had[half] { ", hierarchical attributes disabled (HAD)" } else { "" }
            ),
            None => format!("{name}: walks disabled (EPD{half}), addresses in this half take a translation fault"),
        });
    }
    lines.push(format!(
        "AFFD {}, WXN {}, UWXN {}, PAN {}; record faults (R) {}, stall faults (S) {}",
        yes_no(c.affd),
        yes_no(c.wxn),
        yes_no(c.uwxn),
        yes_no(c.pan),
        yes_no(c.record),
        yes_no(c.stall)
    ));
    let mair = cd.get(Cd::MAIR0).to_le_bytes().iter().map(|b| format!("{b:#04x}")).collect::<Vec<_>>().join(" ");
    lines.push(format!("MAIR0 attributes 0-7: {mair}"));
    Typed::lines(lines)
}

/// SMMUv3 §5.3.
fn smmu_l1cd(w: &[u64]) -> Typed {
    let d = L1Cd::from_words(arr(w));
    Typed::lines(vec![if d.get(L1Cd::V) != 0 {
        format!("valid, leaf CD table at {:#x}", d.get_in_place(L1Cd::L2PTR))
    } else {
        "not valid (V clear): the SubstreamIDs it covers are C_BAD_SUBSTREAMID".to_string()
    }])
}

/// The field table of a command's opcode (SMMUv3 §4); just the opcode for
/// one this model does not know.
fn smmu_cmd_fields(w: &[u64]) -> &'static [Field] {
    cmd::fields(CmdRaw::from_words(arr(w)).opcode()).unwrap_or(CmdRaw::FIELDS)
}

/// Command mnemonics and their sections, SMMUv3 §4.
fn smmu_opcode_name(op: u8) -> Option<(&'static str, &'static str)> {
    Some(match op {
        opcode::PREFETCH_CONFIG => ("CMD_PREFETCH_CONFIG", "§4.2.1"),
        opcode::PREFETCH_ADDR => ("CMD_PREFETCH_ADDR", "§4.2.2"),
        opcode::CFGI_STE => ("CMD_CFGI_STE", "§4.3.1"),
        opcode::CFGI_STE_RANGE => ("CMD_CFGI_STE_RANGE", "§4.3.2"),
        opcode::CFGI_CD => ("CMD_CFGI_CD", "§4.3.3"),
        opcode::CFGI_CD_ALL => ("CMD_CFGI_CD_ALL", "§4.3.4"),
        opcode::CFGI_VMS_PIDM => ("CMD_CFGI_VMS_PIDM", "§4.3.5"),
        opcode::TLBI_NH_ALL => ("CMD_TLBI_NH_ALL", "§4.4.2.1"),
        opcode::TLBI_NH_ASID => ("CMD_TLBI_NH_ASID", "§4.4.2.2"),
        opcode::TLBI_NH_VA => ("CMD_TLBI_NH_VA", "§4.4.2.4"),
        opcode::TLBI_NH_VAA => ("CMD_TLBI_NH_VAA", "§4.4.2.3"),
        opcode::TLBI_EL3_ALL => ("CMD_TLBI_EL3_ALL", "§4.4.2.5"),
        opcode::TLBI_EL3_VA => ("CMD_TLBI_EL3_VA", "§4.4.2.6"),
        opcode::TLBI_EL2_ALL => ("CMD_TLBI_EL2_ALL", "§4.4.2.7"),
        opcode::TLBI_EL2_ASID => ("CMD_TLBI_EL2_ASID", "§4.4.2.10"),
        opcode::TLBI_EL2_VA => ("CMD_TLBI_EL2_VA", "§4.4.2.8"),
        opcode::TLBI_EL2_VAA => ("CMD_TLBI_EL2_VAA", "§4.4.2.9"),
        opcode::TLBI_S12_VMALL => ("CMD_TLBI_S12_VMALL", "§4.4.3.2"),
        opcode::TLBI_S2_IPA => ("CMD_TLBI_S2_IPA", "§4.4.3.1"),
        opcode::TLBI_NSNH_ALL => ("CMD_TLBI_NSNH_ALL", "§4.4.4.1"),
        opcode::ATC_INV => ("CMD_ATC_INV", "§4.5.1"),
        opcode::PRI_RESP => ("CMD_PRI_RESP", "§4.5.2"),
        opcode::RESUME => ("CMD_RESUME", "§4.7.1"),
        opcode::STALL_TERM => ("CMD_STALL_TERM", "§4.7.2"),
        opcode::CMD_SYNC => ("CMD_SYNC", "§4.7.3"),
        _ => return None,
    })
}

/// SMMUv3 §4: the command as the Non-secure queue decodes it, or the
/// CERROR_ILL reason; RES0 bits (§4.1.5) are flagged.
fn smmu_cmd(w: &[u64]) -> Typed {
    let words = arr::<2>(w);
    let op = CmdRaw::from_words(words).opcode();
    let mut typed = Typed::lines(vec![match smmu_opcode_name(op) {
        Some((name, section)) => format!("opcode {op:#04x}: {name} (SMMUv3 {section})"),
        None => format!("opcode {op:#04x}: not a Non-secure command this model knows"),
    }]);
    match Command::decode(words) {
        Ok(c) => {
            typed.lines.push(hex_debug(&c));
            if c.is_cfgi_all() {
                typed.lines.push("Range 31: CMD_CFGI_ALL, every StreamID (SMMUv3 §4.3.6)".to_string());
            }
        }
        Err(err) => typed.lines.push(format!("illegal, the SMMU reports CERROR_ILL: {err}")),
    }
    if let Some(res0) = cmd::reserved_bits(words).filter(|r| *r != [0, 0]) {
        typed.lines.push(
            "RES0 bits are set: an SMMU may ignore them (this model does) or reject the command with \
             CERROR_ILL (SMMUv3 §4.1.5)"
                .to_string(),
        );
        typed.reserved.extend(res0.iter().enumerate().filter(|(_, b)| **b != 0).map(|(i, b)| (i, *b)));
    }
    typed
}

/// `v`'s Debug form on one line, with every integer in hex.
fn hex_debug(v: &impl fmt::Debug) -> String {
    let pretty = format!("{v:#x?}");
    let joined = pretty.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    joined.replace(", }", " }").replace(", )", ")").replace("( ", "(")
}

/// Event CLASS, SMMUv3 §7.3.
fn class_text(c: FaultClass) -> &'static str {
    match c {
        FaultClass::Cd => "a CD fetch",
        FaultClass::Tt => "a stage-1 table walk access",
        FaultClass::In => "the input address",
    }
}

/// SMMUv3 §7.3: the fields the event number defines.
fn smmu_event(w: &[u64]) -> Typed {
    let rec = EventRecord::from_words(arr(w));
    let Some(e) = rec.decode() else {
        return Typed::lines(vec![format!(
            "event number {:#04x} is not one this model knows (SMMUv3 §7.3)",
            rec.get(EventRecord::EVENTID)
        )]);
    };
    let defined = e.id.fields();
    let ssid = match (defined.ssid, e.ssid) {
        (false, _) => String::new(),
        (true, Some(s)) => format!(", SubstreamID {:#x}", s.raw()),
        (true, None) => ", no SubstreamID".to_string(),
    };
    let mut lines = vec![format!("{} (event {:#04x}) for StreamID {:#x}{ssid}", e.id.name(), e.id as u8, e.sid.0)];
    let rw = if e.read { "read" } else { "write" };
    if defined.attrs {
        lines.push(format!(
            "{rw}, {}, {} transaction{}",
            if e.privileged { "privileged" } else { "unprivileged" },
            if e.instruction { "instruction" } else { "data" },
            if e.stall { format!(", stalled with STAG {:#x}", e.stag) } else { String::new() }
        ));
        if defined.ipa || defined.fetch_addr {
            lines.push(format!("fault at stage {} on {}", if e.s2 { 2 } else { 1 }, class_text(e.class)));
        }
    }
    if defined.rnw_only {
        lines.push(format!("{rw} transaction"));
    }
    if defined.ttrnw && e.class != FaultClass::In {
        lines.push(format!(
            "the table access that faulted was {}",
            if e.ttrnw { "a read" } else { "a write (hardware update)" }
        ));
    }
    if defined.input_addr {
        lines.push(format!("input address {:#x}", e.input_addr));
    }
    if defined.ipa && e.s2 {
        lines.push(format!("IPA {:#x}", e.ipa));
    }
    if defined.fetch_addr {
        lines.push(format!("fetch address {:#x}", e.fetch_addr));
    }
    Typed::lines(lines)
}

/// SMMUv3 §8.
fn smmu_pri(w: &[u64]) -> Typed {
    let r = PageRequest::decode(&PriEntry::from_words(arr(w)));
    let pasid = r.ssid.map_or_else(|| "no PASID".to_string(), |s| format!("PASID {:#x}", s.raw()));
    let mut access = String::new();
    for (on, c) in [(r.read, 'r'), (r.write, 'w'), (r.exec, 'x')] {
        access.push(if on { c } else { '-' });
    }
    let mut lines = vec![format!(
        "page request from StreamID {:#x} ({pasid}) for page {:#x}, access {access}{}, group {:#x}{}",
        r.sid.0,
        r.addr,
        if r.privileged { " privileged" } else { "" },
        r.grpid,
        if r.last { ", last in group" } else { "" }
    )];
    if r.is_stop_marker() {
        lines.push("stop marker: last in group with a PASID and neither read nor write".to_string());
    }
    Typed::lines(lines)
}

/// What a VMSAv8-64 descriptor is at one level of a 4 KiB-granule walk
/// with 48-bit output addresses (Arm ARM D8.3).
enum VmsaEntry {
    /// A table descriptor: the next table's address.
    Table(u64),
    /// A block or page: its output address and log2 size.
    Leaf(u64, u32),
    /// Not usable at this level: why the walk faults.
    Fault(&'static str),
}

fn vmsa_entry(desc: u64, level: u8) -> VmsaEntry {
    let g = Granule::G4K;
    let table_bit = desc & 2 != 0;
    if level < 3 && table_bit {
        VmsaEntry::Table(desc & OA_MASK)
    } else if level == 3 && !table_bit {
        VmsaEntry::Fault("reserved encoding (bit 1 clear at level 3): translation fault")
    } else if level < 3 && !g.block_allowed(level) {
        VmsaEntry::Fault("no block at this level with a 4 KiB granule and 48-bit output: translation fault")
    } else {
        let shift = g.level_shift(level);
        VmsaEntry::Leaf(desc & OA_MASK & !((1u64 << shift) - 1), shift)
    }
}

/// The readings of `desc` at levels 0 to 3, `table` and `leaf` describing
/// the two kinds of usable descriptor.
fn vmsa_levels(desc: u64, table: impl Fn(u64) -> String, leaf: impl Fn(u64, u32, u8) -> String) -> Typed {
    if desc & 1 == 0 {
        return Typed::lines(vec!["not valid (bit 0 clear): translation fault at any level".to_string()]);
    }
    let mut lines = vec!["read at every level of a 4 KiB-granule walk with 48-bit output addresses".to_string()];
    for level in 0..=3u8 {
        let what = match vmsa_entry(desc, level) {
            VmsaEntry::Table(next) => table(next),
            VmsaEntry::Leaf(oa, shift) => leaf(oa, shift, level),
            VmsaEntry::Fault(why) => why.to_string(),
        };
        lines.push(format!("as level {level}: {what}"));
    }
    Typed::lines(lines)
}

/// Stage-1 AP[2:1], Arm ARM D8.4.
fn s1_ap_text(ap: u64) -> &'static str {
    match ap & 3 {
        0 => "EL1 read/write, EL0 no access",
        1 => "EL1 and EL0 read/write",
        2 => "EL1 read-only, EL0 no access",
        _ => "EL1 and EL0 read-only",
    }
}

/// Arm ARM D8.3, as an SMMUv3 stage 1 walks it (SMMUv3 §3.4).
fn smmu_s1_desc(w: &[u64]) -> Typed {
    let d = S1Desc::from_words(arr(w));
    let flag = |f: Field, name: &'static str| if d.get(f) != 0 { name } else { "" };
    let table = |next: u64| {
        let limits: Vec<String> = [
            (d.get(S1Desc::APTABLE) != 0).then(|| format!("APTable {:02b}b", d.get(S1Desc::APTABLE))),
            (d.get(S1Desc::XNTABLE) != 0).then(|| "XNTable".to_string()),
            (d.get(S1Desc::PXNTABLE) != 0).then(|| "PXNTable".to_string()),
            (d.get(S1Desc::NSTABLE) != 0).then(|| "NSTable".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let limits = if limits.is_empty() { String::new() } else { format!(", limits below: {}", limits.join(", ")) };
        format!("table at {next:#x}{limits}")
    };
    let leaf = |oa: u64, shift: u32, level: u8| {
        let xn: Vec<&str> = [flag(S1Desc::UXN, "EL0 execute-never"), flag(S1Desc::PXN, "EL1 execute-never")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        format!(
            "{} {} at {oa:#x}, {}{}{}, AttrIndx {}, {}{}",
            size_text(shift),
            if level == 3 { "page" } else { "block" },
            s1_ap_text(d.get(S1Desc::AP)),
            if xn.is_empty() { String::new() } else { format!(", {}", xn.join(", ")) },
            if d.get(S1Desc::AF) == 0 { ", AF clear" } else { "" },
            d.get(S1Desc::ATTRINDX),
            if d.get(S1Desc::NG) != 0 { "non-global" } else { "global" },
            flag(S1Desc::DBM, ", DBM")
        )
    };
    vmsa_levels(d.0[0], table, leaf)
}

/// Arm ARM D8.3, as an SMMUv3 stage 2 walks it (SMMUv3 §3.4).
fn smmu_s2_desc(w: &[u64]) -> Typed {
    let d = S2Desc::from_words(arr(w));
    let leaf = |oa: u64, shift: u32, level: u8| {
        let access = match d.get(S2Desc::S2AP) {
            0 => "no access",
            1 => "read-only",
            2 => "write-only",
            _ => "read/write",
        };
        let xn = d.get(S2Desc::XN);
        format!(
            "{} {} at {oa:#x}, {access}{}{}, MemAttr {:#x}{}",
            size_text(shift),
            if level == 3 { "page" } else { "block" },
            if xn != 0 { format!(", XN {xn:02b}b") } else { String::new() },
            if d.get(S2Desc::AF) == 0 { ", AF clear" } else { "" },
            d.get(S2Desc::MEMATTR),
            if d.get(S2Desc::DBM) != 0 { ", DBM" } else { "" }
        )
    };
    vmsa_levels(d.0[0], |next| format!("table at {next:#x}"), leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_size_is_a_whole_number_of_words_within_its_layout() {
        for k in kinds() {
            assert!(k.size % 8 == 0 && k.words() >= 1, "{}", k.name);
            assert!(k.reserved.len() >= k.words(), "{}", k.name);
        }
    }

    #[test]
    fn kind_names_are_unique() {
        for (i, k) in kinds().iter().enumerate() {
            assert!(kinds()[..i].iter().all(|o| o.name != k.name), "{}", k.name);
        }
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("smroot", "sm-root"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("pasid", "pasid"), 0);
    }
}
