//! The structure decoder behind `iommu-sim decode KIND HEX`: hex words in,
//! a field-by-field reading of one VT-d structure or register out.
//!
//! Every kind is one raw layout of `iommu_format::vtd` ([`kinds`] lists
//! them, [`list`] prints the table for `decode --list`). [`decode`] reads the
//! field table the format crate declares, flags the reserved bits that are
//! set, and adds the reading of the format crate's typed decoder where one
//! exists. Decoding never panics; bad input is a [`DecodeError`].
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
//!
//! Bit ranges are inclusive `hi:lo`, absolute within the structure (bit 64
//! is bit 0 of qword 1), as in the spec.

use core::fmt;
use std::fmt::Write as _;

use iommu_format::bits::Field;
use iommu_format::vtd::context::{agaw_levels, levels_width, ContextEntry, ScalableContextEntry, TranslationType};
use iommu_format::vtd::fault::{FaultAccess, FaultReason, FaultRecord};
use iommu_format::vtd::inv_desc::{desc_type, InvDecodeError, InvDesc, InvDescriptor};
use iommu_format::vtd::page_req::PageRequestDesc;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidDirEntry, PasidEntry, Pgtt, SecondStageCfg};
use iommu_format::vtd::pte::{fs_reserved_bits, ss_reserved_bits, FsPte, PteRepr, SsPte, SsRules};
use iommu_format::vtd::regs::{Cap, Caps, Ccmd, Ecap, IotlbReg, Iqa, Iva, Pqa, Rtaddr, TableMode};
use iommu_format::vtd::root::{RootEntry, ScalableRootEntry};
use iommu_hw::vtd::VtdConfig;
use iommu_types::PageSize;
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
    /// The `iommu_format::vtd` raw type behind the kind.
    pub structure: &'static str,
    fields: &'static [Field],
    reserved: &'static [u64],
    /// Whether fields starting at bit 12 of a word are addresses (not for
    /// invalidation descriptors, whose raw fields are type-specific bits).
    addresses: bool,
    interpret: fn(&[u64]) -> Typed,
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

static KINDS: [KindInfo; 20] = [
    KindInfo {
        name: "root",
        size: RootEntry::SIZE,
        description: "legacy-mode root entry",
        cite: "VT-d §9.1",
        structure: "root::RootEntry",
        fields: RootEntry::FIELDS,
        reserved: &RootEntry::RESERVED,
        addresses: true,
        interpret: root,
    },
    KindInfo {
        name: "sm-root",
        size: ScalableRootEntry::SIZE,
        description: "scalable-mode root entry (lower and upper context tables)",
        cite: "VT-d §9.2",
        structure: "root::ScalableRootEntry",
        fields: ScalableRootEntry::FIELDS,
        reserved: &ScalableRootEntry::RESERVED,
        addresses: true,
        interpret: sm_root,
    },
    KindInfo {
        name: "context",
        size: ContextEntry::SIZE,
        description: "legacy-mode context entry",
        cite: "VT-d §9.3",
        structure: "context::ContextEntry",
        fields: ContextEntry::FIELDS,
        reserved: &ContextEntry::RESERVED,
        addresses: true,
        interpret: context,
    },
    KindInfo {
        name: "sm-context",
        size: ScalableContextEntry::SIZE,
        description: "scalable-mode context entry",
        cite: "VT-d §9.4",
        structure: "context::ScalableContextEntry",
        fields: ScalableContextEntry::FIELDS,
        reserved: &ScalableContextEntry::RESERVED,
        addresses: true,
        interpret: sm_context,
    },
    KindInfo {
        name: "pasid-dir",
        size: PasidDirEntry::SIZE,
        description: "scalable-mode PASID directory entry",
        cite: "VT-d §9.5",
        structure: "pasid::PasidDirEntry",
        fields: PasidDirEntry::FIELDS,
        reserved: &PasidDirEntry::RESERVED,
        addresses: true,
        interpret: pasid_dir,
    },
    KindInfo {
        name: "pasid",
        size: PasidEntry::SIZE,
        description: "scalable-mode PASID table entry",
        cite: "VT-d §9.6",
        structure: "pasid::PasidEntry",
        fields: PasidEntry::FIELDS,
        reserved: &PasidEntry::RESERVED,
        addresses: true,
        interpret: pasid,
    },
    KindInfo {
        name: "fs-pte",
        size: FsPte::SIZE,
        description: "first-stage paging entry (PML5E, PML4E, PDPE, PDE, PTE)",
        cite: "VT-d §9.7",
        structure: "pte::FsPte",
        fields: FsPte::FIELDS,
        reserved: &FsPte::RESERVED,
        addresses: true,
        interpret: fs_pte,
    },
    KindInfo {
        name: "ss-pte",
        size: SsPte::SIZE,
        description: "second-stage paging entry",
        cite: "VT-d §9.8",
        structure: "pte::SsPte",
        fields: SsPte::FIELDS,
        reserved: &SsPte::RESERVED,
        addresses: true,
        interpret: ss_pte,
    },
    KindInfo {
        name: "inv-desc",
        size: InvDesc::SIZE,
        description: "invalidation descriptor, 256-bit queue (IQA.DW=1)",
        cite: "VT-d §6.5.2",
        structure: "inv_desc::InvDesc",
        fields: InvDesc::FIELDS,
        reserved: &InvDesc::RESERVED,
        addresses: false,
        interpret: inv_desc_256,
    },
    KindInfo {
        name: "inv-desc-128",
        size: 16,
        description: "invalidation descriptor, 128-bit queue (IQA.DW=0)",
        cite: "VT-d §6.5.2",
        structure: "inv_desc::InvDesc",
        fields: InvDesc::FIELDS,
        reserved: &InvDesc::RESERVED,
        addresses: false,
        interpret: inv_desc_128,
    },
    KindInfo {
        name: "fault-record",
        size: FaultRecord::SIZE,
        description: "fault recording register",
        cite: "VT-d §11.4.14",
        structure: "fault::FaultRecord",
        fields: FaultRecord::FIELDS,
        reserved: &FaultRecord::RESERVED,
        addresses: true,
        interpret: fault_record,
    },
    KindInfo {
        name: "page-request",
        size: PageRequestDesc::SIZE,
        description: "page request descriptor (page request queue entry)",
        cite: "VT-d §7.5.1",
        structure: "page_req::PageRequestDesc",
        fields: PageRequestDesc::FIELDS,
        reserved: &PageRequestDesc::RESERVED,
        addresses: true,
        interpret: page_request,
    },
    KindInfo {
        name: "cap",
        size: Cap::SIZE,
        description: "capability register (CAP_REG)",
        cite: "VT-d §11.4.2",
        structure: "regs::Cap",
        fields: Cap::FIELDS,
        reserved: &Cap::RESERVED,
        addresses: true,
        interpret: cap,
    },
    KindInfo {
        name: "ecap",
        size: Ecap::SIZE,
        description: "extended capability register (ECAP_REG)",
        cite: "VT-d §11.4.3",
        structure: "regs::Ecap",
        fields: Ecap::FIELDS,
        reserved: &Ecap::RESERVED,
        addresses: true,
        interpret: ecap,
    },
    KindInfo {
        name: "rtaddr",
        size: Rtaddr::SIZE,
        description: "root table address register (RTADDR_REG)",
        cite: "VT-d §11.4.5",
        structure: "regs::Rtaddr",
        fields: Rtaddr::FIELDS,
        reserved: &Rtaddr::RESERVED,
        addresses: true,
        interpret: rtaddr,
    },
    KindInfo {
        name: "ccmd",
        size: Ccmd::SIZE,
        description: "context command register (CCMD_REG)",
        cite: "VT-d §11.4.6",
        structure: "regs::Ccmd",
        fields: Ccmd::FIELDS,
        reserved: &Ccmd::RESERVED,
        addresses: true,
        interpret: ccmd,
    },
    KindInfo {
        name: "iva",
        size: Iva::SIZE,
        description: "invalidate address register (IVA_REG)",
        cite: "VT-d §11.4.8.2",
        structure: "regs::Iva",
        fields: Iva::FIELDS,
        reserved: &Iva::RESERVED,
        addresses: true,
        interpret: iva,
    },
    KindInfo {
        name: "iotlb-reg",
        size: IotlbReg::SIZE,
        description: "IOTLB invalidate register (IOTLB_REG)",
        cite: "VT-d §11.4.8.1",
        structure: "regs::IotlbReg",
        fields: IotlbReg::FIELDS,
        reserved: &IotlbReg::RESERVED,
        addresses: true,
        interpret: iotlb_reg,
    },
    KindInfo {
        name: "iqa",
        size: Iqa::SIZE,
        description: "invalidation queue address register (IQA_REG)",
        cite: "VT-d §11.4.10.3",
        structure: "regs::Iqa",
        fields: Iqa::FIELDS,
        reserved: &Iqa::RESERVED,
        addresses: true,
        interpret: iqa,
    },
    KindInfo {
        name: "pqa",
        size: Pqa::SIZE,
        description: "page request queue address register (PQA_REG)",
        cite: "VT-d §11.4.11.3",
        structure: "regs::Pqa",
        fields: Pqa::FIELDS,
        reserved: &Pqa::RESERVED,
        addresses: true,
        interpret: pqa,
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
    /// For an address field (one starting at bit 12 of its word, at least
    /// 20 bits wide), the value in place: the 4 KiB-aligned address.
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
    let fields = info
        .fields
        .iter()
        .filter(|fd| fd.word() < n)
        .map(|fd| FieldValue {
            name: fd.name,
            hi: fd.hi,
            lo: fd.lo,
            value: fd.get(&words),
            in_place: (info.addresses && is_address(fd)).then(|| fd.get_in_place(&words)),
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
