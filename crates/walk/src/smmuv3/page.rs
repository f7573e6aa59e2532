//! VMSAv8-64 stage-1, stage-2 and nested walks as an SMMUv3 performs them
//! (SMMUv3 §3.4; Arm ARM D8.2 translation process, D8.3 descriptors, D8.4
//! memory access control, D8.5 fault priorities).
//!
//! Checks per level, in the architecture's priority order: the entry fetch
//! (external abort), validity and type (translation fault: invalid entry,
//! a block where this granule has none, a reserved level-3 type), the
//! output address against the stage's output size (address size fault,
//! for table and leaf addresses alike), the access flag (access fault,
//! unless AFFD). Permissions are returned as [`Perms`] and checked by the
//! caller, so that a cached entry is checked exactly like a walk.
//!
//! In a nested walk every stage-1 table address (TTB and each next-level
//! pointer) is an IPA: it is translated by stage 2 and must be readable
//! there; a fault doing so is a stage-2 fault of class TT. The walk counts
//! its memory references: at most (n+1)(m+1)−1 for n and m levels.

use iommu_format::smmuv3::desc::{S1Desc, S2Desc, OA_MASK};
use iommu_format::smmuv3::event::FaultClass;
use iommu_types::{Access, Hpa, PhysMem};

use super::config::{CdCfg, S2Cfg, TableCfg};

/// The kind of a translation-stage fault (one event number each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransFaultKind {
    /// F_TRANSLATION: invalid descriptor, address outside the tables.
    Translation,
    /// F_ADDR_SIZE: an output (table or leaf) beyond the stage's output size,
    /// or an input beyond the IAS/OAS when a stage is bypassed.
    AddrSize,
    /// F_ACCESS: access flag clear.
    Access,
    /// F_PERMISSION.
    Permission,
    /// F_WALK_EABT: a descriptor fetch aborted.
    WalkEabt,
}

/// A fault of a translation stage, with what its event record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransFault {
    /// Kind.
    pub kind: TransFaultKind,
    /// Found at stage 2.
    pub s2: bool,
    /// What the faulting access was for.
    pub class: FaultClass,
    /// The IPA being translated by stage 2 (page-aligned; 0 for stage 1).
    pub ipa: u64,
    /// The descriptor address whose fetch aborted (F_WALK_EABT).
    pub fetch_addr: u64,
    /// The faulting access was a table read (F_PERMISSION of class TT/CD).
    pub ttrnw: bool,
}

impl TransFault {
    /// A stage-1 fault on the input address.
    pub const fn s1(kind: TransFaultKind) -> Self {
        Self { kind, s2: false, class: FaultClass::In, ipa: 0, fetch_addr: 0, ttrnw: false }
    }
    /// A stage-2 fault translating `ipa` for an access of `class`.
    pub const fn s2(kind: TransFaultKind, class: FaultClass, ipa: u64) -> Self {
        Self { kind, s2: true, class, ipa: ipa & !0xFFF, fetch_addr: 0, ttrnw: false }
    }
}

/// Permissions a translation grants, per privilege (SMMUv3 §3.4 with the
/// Arm ARM D8.4 rules for EL1&0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// Unprivileged read.
    pub const UR: u8 = 1;
    /// Unprivileged write.
    pub const UW: u8 = 2;
    /// Unprivileged execute.
    pub const UX: u8 = 4;
    /// Privileged read.
    pub const PR: u8 = 8;
    /// Privileged write.
    pub const PW: u8 = 16;
    /// Privileged execute.
    pub const PX: u8 = 32;
    /// Everything.
    pub const ALL: Perms = Perms(63);

    /// From raw flag bits.
    pub const fn from_bits(b: u8) -> Self {
        Self(b & 63)
    }
    /// The flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether `a` is allowed.
    pub const fn allows(self, a: Access) -> bool {
        let (r, w, x) = if a.privileged { (Self::PR, Self::PW, Self::PX) } else { (Self::UR, Self::UW, Self::UX) };
        (!a.read || self.0 & r != 0) && (!a.write || self.0 & w != 0) && (!a.exec || self.0 & x != 0)
    }
}

/// A stage-1 leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S1Out {
    /// Output (IPA, or PA without stage 2) of the leaf's page or block base.
    pub oa: u64,
    /// log2 of the leaf size.
    pub shift: u32,
    /// Permissions.
    pub perms: Perms,
    /// nG = 0: the entry is not tagged with the ASID.
    pub global: bool,
}

/// A stage-2 leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S2Out {
    /// PA of the leaf's base.
    pub pa: u64,
    /// log2 of the leaf size.
    pub shift: u32,
    /// Permissions (the same for both privileges, except execute).
    pub perms: Perms,
}

/// Which stage a generic walk serves: decides the fault attribution and
/// how table addresses reach memory.
enum Walker<'a, M: ?Sized> {
    S1 { s2: Option<&'a S2Cfg>, mem: &'a M },
    S2 { class: FaultClass, ipa: u64 },
}

struct Leaf {
    desc: u64,
    level: u8,
    oa: u64,
    /// APTable/XNTable/PXNTable accumulated over the table descriptors.
    table_bits: u64,
}

fn walk<M: PhysMem + ?Sized>(
    mem: &M,
    t: &TableCfg,
    input: u64,
    stage: &Walker<'_, M>,
    refs: &mut u32,
) -> Result<Leaf, TransFault> {
    let fault = |kind| match stage {
        Walker::S1 { .. } => TransFault::s1(kind),
        Walker::S2 { class, ipa } => TransFault::s2(kind, *class, *ipa),
    };
    let g = t.granule;
    let mut table = t.base;
    let mut table_bits = 0u64;
    let mut level = t.start_level;
    loop {
        let bits = if level == t.start_level { t.root_bits } else { g.stride() };
        let idx = (input >> g.level_shift(level)) & ((1u64 << bits) - 1);
        let entry = table.wrapping_add(idx * 8);
        let entry_pa = match stage {
            Walker::S1 { s2: Some(s2), mem: m } => s2_translate(*m, s2, entry, Access::READ, FaultClass::Tt, refs)
                .map_err(|f| TransFault { ttrnw: f.kind == TransFaultKind::Permission, ..f })?,
            _ => entry,
        };
        *refs += 1;
        // A stage-1 table fetch abort is of class TT; a stage-2 one keeps
        // the class of the access being translated.
        let desc = mem.read_u64(Hpa::new(entry_pa)).map_err(|_| {
            let f = fault(TransFaultKind::WalkEabt);
            let class = if f.s2 { f.class } else { FaultClass::Tt };
            TransFault { fetch_addr: entry_pa, class, ..f }
        })?;
        if desc & 1 == 0 {
            return Err(fault(TransFaultKind::Translation));
        }
        let is_table = desc & 2 != 0;
        if level < 3 && is_table {
            let next = desc & OA_MASK & !((1u64 << g.shift()) - 1);
            if next >> t.out_bits != 0 {
                return Err(fault(TransFaultKind::AddrSize));
            }
            table_bits |= desc & (0x1F << 59);
            table = next;
            level += 1;
            continue;
        }
        if (level == 3 && !is_table) || (level < 3 && !g.block_allowed(level)) {
            return Err(fault(TransFaultKind::Translation));
        }
        let shift = g.level_shift(level);
        let oa = desc & OA_MASK & !((1u64 << shift) - 1);
        if oa >> t.out_bits != 0 {
            return Err(fault(TransFaultKind::AddrSize));
        }
        return Ok(Leaf { desc, level, oa, table_bits });
    }
}

/// Stage-2 walk of `ipa` for an access of `class` (permissions not checked).
///
/// # Errors
/// The stage-2 [`TransFault`].
pub fn s2_walk<M: PhysMem + ?Sized>(
    mem: &M,
    s2: &S2Cfg,
    ipa: u64,
    class: FaultClass,
    refs: &mut u32,
) -> Result<S2Out, TransFault> {
    let t = &s2.tables;
    if t.input_bits < 64 && ipa >> t.input_bits != 0 {
        return Err(TransFault::s2(TransFaultKind::Translation, class, ipa));
    }
    let leaf = walk::<M>(mem, t, ipa, &Walker::S2 { class, ipa }, refs)?;
    if leaf.desc & (1 << 10) == 0 && !s2.affd {
        return Err(TransFault::s2(TransFaultKind::Access, class, ipa));
    }
    let d = S2Desc::from_words([leaf.desc]);
    let s2ap = d.get(S2Desc::S2AP);
    let (r, w) = (s2ap & 1 != 0, s2ap & 2 != 0);
    // XN[1:0] with the XNX extension: 0b00 both execute, 0b01 EL1 may
    // not, 0b10 neither, 0b11 EL0 may not.
    let xn = d.get(S2Desc::XN);
    let (ux, px) = (xn == 0 || xn == 1, xn == 0 || xn == 3);
    let mut p = 0;
    if r {
        p |= Perms::UR | Perms::PR;
    }
    if w {
        p |= Perms::UW | Perms::PW;
    }
    if ux {
        p |= Perms::UX;
    }
    if px {
        p |= Perms::PX;
    }
    Ok(S2Out { pa: leaf.oa, shift: t.granule.level_shift(leaf.level), perms: Perms(p) })
}

/// Stage-2 translation of one address for an access, permissions checked.
///
/// # Errors
/// The stage-2 [`TransFault`].
pub fn s2_translate<M: PhysMem + ?Sized>(
    mem: &M,
    s2: &S2Cfg,
    ipa: u64,
    access: Access,
    class: FaultClass,
    refs: &mut u32,
) -> Result<u64, TransFault> {
    let o = s2_walk(mem, s2, ipa, class, refs)?;
    if !o.perms.allows(access) {
        return Err(TransFault::s2(TransFaultKind::Permission, class, ipa));
    }
    Ok(o.pa | (ipa & ((1u64 << o.shift) - 1)))
}

/// Selects the TTB half for `va` (VA[55]) and checks the address against
/// that half's range, with top-byte-ignore (Arm ARM D8.2.1, D8.8).
/// Returns the half index and its tables.
///
/// # Errors
/// A stage-1 translation fault: the half's walks are disabled (EPDx), or
/// the upper bits are not all equal to VA[55].
pub fn select_half(cd: &CdCfg, va: u64) -> Result<(usize, TableCfg), TransFault> {
    let half = ((va >> 55) & 1) as usize;
    let t = cd.tt[half].ok_or(TransFault::s1(TransFaultKind::Translation))?;
    let top = if cd.tbi[half] { 56 } else { 64 };
    let n = top - t.input_bits;
    let upper = (va >> t.input_bits) & ((1u64 << n) - 1);
    let want = if half == 1 { (1u64 << n) - 1 } else { 0 };
    if upper != want {
        return Err(TransFault::s1(TransFaultKind::Translation));
    }
    Ok((half, t))
}

/// Stage-1 walk of `va` in `half` of the CD's regime; `s2` set for nested
/// walks. Permissions are computed, not checked.
///
/// # Errors
/// The stage-1 [`TransFault`], or a stage-2 one of class TT (nested).
pub fn s1_walk<M: PhysMem + ?Sized>(
    mem: &M,
    cd: &CdCfg,
    half: usize,
    t: &TableCfg,
    va: u64,
    s2: Option<&S2Cfg>,
    refs: &mut u32,
) -> Result<S1Out, TransFault> {
    let leaf = walk(mem, t, va, &Walker::S1 { s2, mem }, refs)?;
    if leaf.desc & (1 << 10) == 0 && !cd.affd {
        return Err(TransFault::s1(TransFaultKind::Access));
    }
    let d = S1Desc::from_words([leaf.desc]);
    let tb = if cd.had[half] { 0 } else { leaf.table_bits };
    let ap = d.get(S1Desc::AP);
    let no_el0 = tb & (1 << 61) != 0;
    let no_write = tb & (1 << 62) != 0;
    let el0 = ap & 1 != 0 && !no_el0;
    let ro = ap & 2 != 0 || no_write;
    let mut p = Perms::PR;
    if !ro {
        p |= Perms::PW;
    }
    if el0 {
        p |= Perms::UR;
        if !ro {
            p |= Perms::UW;
        }
    }
    // Execute: UXN/XNTable for EL0, PXN/PXNTable for EL1; memory writable
    // at EL0 is never executable at EL1; WXN makes writable memory XN,
    // UWXN makes EL0-writable memory XN at EL1.
    let uw = p & Perms::UW != 0;
    let pw = p & Perms::PW != 0;
    let ux = d.get(S1Desc::UXN) == 0 && tb & (1 << 60) == 0 && !(cd.wxn && uw);
    let px = d.get(S1Desc::PXN) == 0 && tb & (1 << 59) == 0 && !uw && !(cd.wxn && pw) && !(cd.uwxn && uw);
    if ux {
        p |= Perms::UX;
    }
    if px {
        p |= Perms::PX;
    }
    // PAN: privileged data accesses to EL0-accessible memory fault.
    if cd.pan && el0 {
        p &= !(Perms::PR | Perms::PW);
    }
    Ok(S1Out { oa: leaf.oa, shift: t.granule.level_shift(leaf.level), perms: Perms(p), global: d.get(S1Desc::NG) == 0 })
}
