//! First-stage (VT-d §3.6), second-stage (§3.7) and nested (§3.8) walks.
//!
//! Entry fetches are counted (`mem_refs`); A/D updates are atomic
//! compare-exchanges and are not counted as references. A nested walk
//! translates every first-stage table pointer and the final intermediate
//! address through the second stage, so an n-level first stage over an
//! m-level second stage makes at most (n+1)(m+1)−1 entry fetches.

use iommu_format::vtd::pte::{
    fs_is_leaf, fs_reserved_bits, leaf_frame, ss_is_leaf, ss_reserved_bits, table_addr, SsRules,
};
use iommu_types::{Access, Gpa, Hpa, PageSize, Perm, PhysMem};

use crate::{PermFault, Stage, Translation, WalkFault};

/// Parameters of a second-stage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SsWalk {
    /// Root table (SSPTPTR / SLPTPTR).
    pub root: Hpa,
    /// Paging levels (3, 4 or 5).
    pub levels: u8,
    /// Input width in bits: min(AGAW width, MGAW).
    pub width: u32,
    /// Reserved-bit rules.
    pub rules: SsRules,
    /// X bits are honoured (SSEE); otherwise execute is allowed by R.
    pub exec_enable: bool,
    /// Accessed/dirty flags are maintained (SSADE).
    pub ad: bool,
}

/// Parameters of a first-stage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FsWalk {
    /// Root table (FSPTPTR), an intermediate address.
    pub root: Gpa,
    /// Paging levels (4 or 5).
    pub levels: u8,
    /// Host address width for reserved-bit checks.
    pub haw: u32,
    /// 1 GiB leaves allowed (CAP.FS1GP).
    pub fs1gp: bool,
    /// Supervisor writes honour R/W (WPE).
    pub wpe: bool,
    /// Set the extended-accessed flag as well as A (EAFE).
    pub eafe: bool,
}

/// The first stage's result, before any second stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FsOutcome {
    /// Intermediate frame.
    pub frame: Gpa,
    /// Page size.
    pub size: PageSize,
    /// Effective permissions.
    pub perm: Perm,
    /// User requests allowed.
    pub user: bool,
    /// The leaf's D bit is set.
    pub dirty: bool,
}

const A_FS: u64 = 1 << 5;
const D_FS: u64 = 1 << 6;
const EA_FS: u64 = 1 << 10;
const A_SS: u64 = 1 << 8;
const D_SS: u64 = 1 << 9;
/// Bound on compare-exchange retries of one A/D update under contention.
const AD_RETRIES: u32 = 16;

const fn index(input: u64, level: u8) -> u64 {
    (input >> (12 + 9 * (level as u32 - 1))) & 0x1FF
}

/// Atomically ORs `bits` into the entry at `addr` whose last read value was `seen`.
fn set_bits<M: PhysMem + ?Sized>(mem: &M, addr: Hpa, mut seen: u64, bits: u64) -> Result<(), ()> {
    for _ in 0..AD_RETRIES {
        if seen & bits == bits {
            return Ok(());
        }
        match mem.compare_exchange_u64(addr, seen, seen | bits) {
            Ok(Ok(_)) => return Ok(()),
            // Software rewrote the entry under the walk (cleared it, or
            // pointed it elsewhere): the flags belong to the entry the walk
            // used, so they are not set on the new one.
            Ok(Err(actual)) if actual & !bits != seen & !bits => return Ok(()),
            Ok(Err(actual)) => seen = actual,
            Err(_) => return Err(()),
        }
    }
    Err(())
}

/// Whether `input` is canonical for a `levels`-level first stage (bits
/// 63:47 equal for 4-level, 63:56 for 5-level).
pub const fn is_canonical(input: u64, levels: u8) -> bool {
    let va_bits = 12 + 9 * levels as u32;
    let top = (input as i64) >> (va_bits - 1);
    top == 0 || top == -1
}

/// Second-stage walk of `input` (VT-d §3.7). Checks, per level: entry
/// readable, present (R or W), reserved bits, then the access against the
/// entry's R/W/X; sets A/D when `w.ad`.
///
/// # Errors
/// The [`WalkFault`] that stopped the walk.
pub fn ss_walk<M: PhysMem + ?Sized>(mem: &M, w: &SsWalk, input: u64, access: Access) -> Result<Translation, WalkFault> {
    let mut refs = 0;
    let r = ss_walk_counted(mem, w, input, access, &mut refs)?;
    Ok(Translation { mem_refs: refs, ..r })
}

fn ss_walk_counted<M: PhysMem + ?Sized>(
    mem: &M,
    w: &SsWalk,
    input: u64,
    access: Access,
    refs: &mut u32,
) -> Result<Translation, WalkFault> {
    const S: Stage = Stage::Second;
    if w.width < 64 && input >> w.width != 0 {
        return Err(WalkFault::AddressBeyond { stage: S });
    }
    let mut table = w.root.raw();
    let mut perm = Perm::ALL;
    for level in (1..=w.levels).rev() {
        let ea = Hpa::new(table.wrapping_add(8 * index(input, level)));
        let e = mem.read_u64(ea).map_err(|_| WalkFault::TableFetch {
            stage: S,
            level,
            root: level == w.levels,
            addr: ea,
        })?;
        *refs += 1;
        if e & 3 == 0 {
            return Err(WalkFault::NotPresent { stage: S, level });
        }
        if ss_reserved_bits(e, level, &w.rules) != 0 {
            return Err(WalkFault::Reserved { stage: S, level });
        }
        let x = if w.exec_enable { e & 4 != 0 } else { e & 1 != 0 };
        perm = perm.and(Perm { read: e & 1 != 0, write: e & 2 != 0, exec: x });
        check_perm(perm, access, S, level)?;
        let leaf = ss_is_leaf(e, level);
        if w.ad {
            let bits = A_SS | if leaf && access.write { D_SS } else { 0 };
            set_bits(mem, ea, e, bits).map_err(|_| WalkFault::AdUpdate { stage: S, level })?;
        }
        if leaf {
            let size = PageSize::from_level(level).unwrap_or(PageSize::Size4K);
            return Ok(Translation {
                frame: Hpa::new(leaf_frame(e, size)),
                size,
                perm,
                user: true,
                dirty: true,
                mem_refs: *refs,
            });
        }
        table = table_addr(e);
    }
    // Unreachable for levels >= 1: level 1 is always a leaf. A zero-level
    // walk (a programming error of the caller) reports not-present.
    Err(WalkFault::NotPresent { stage: S, level: 0 })
}

fn check_perm(perm: Perm, access: Access, stage: Stage, level: u8) -> Result<(), WalkFault> {
    let lacking = if access.write && !perm.write {
        PermFault::Write
    } else if access.read && !perm.read {
        PermFault::Read
    } else if access.exec && !perm.exec {
        PermFault::Exec
    } else {
        return Ok(());
    };
    Err(WalkFault::Permission { stage, level, lacking })
}

/// First-stage walk of `input` (VT-d §3.6, x86-64 4/5-level paging).
/// `table_to_hpa` turns each table address (intermediate) into the address
/// to read: the identity for first-stage-only, a second-stage walk when
/// nested; it adds the references it makes to `refs`.
///
/// Checks, per level: entry readable, P, reserved bits, then U/S for user
/// requests, R/W for user writes and (with WPE) supervisor writes, XD for
/// execute requests; then A (and EA with EAFE) is set on the entry, and D on
/// a leaf for writes.
///
/// # Errors
/// The [`WalkFault`] that stopped the walk (second-stage faults from
/// `table_to_hpa` pass through).
pub fn fs_walk<M, F>(
    mem: &M,
    w: &FsWalk,
    input: u64,
    access: Access,
    refs: &mut u32,
    mut table_to_hpa: F,
) -> Result<FsOutcome, WalkFault>
where
    M: PhysMem + ?Sized,
    F: FnMut(Gpa, &mut u32) -> Result<Hpa, WalkFault>,
{
    const S: Stage = Stage::First;
    if !is_canonical(input, w.levels) {
        return Err(WalkFault::NonCanonical);
    }
    let mut table = w.root;
    let mut writable = true;
    let mut user = true;
    let mut exec = true;
    for level in (1..=w.levels).rev() {
        let ea_gpa = Gpa::new(table.raw().wrapping_add(8 * index(input, level)));
        let ea = table_to_hpa(ea_gpa, refs)?;
        let e = mem.read_u64(ea).map_err(|_| WalkFault::TableFetch {
            stage: S,
            level,
            root: level == w.levels,
            addr: ea,
        })?;
        *refs += 1;
        if e & 1 == 0 {
            return Err(WalkFault::NotPresent { stage: S, level });
        }
        if fs_reserved_bits(e, level, w.haw, w.fs1gp) != 0 {
            return Err(WalkFault::Reserved { stage: S, level });
        }
        writable &= e & 2 != 0;
        user &= e & 4 != 0;
        exec &= e >> 63 == 0;
        let lacking = if !access.privileged && !user {
            Some(PermFault::User)
        } else if access.write && !writable && (!access.privileged || w.wpe) {
            Some(PermFault::Write)
        } else if access.exec && !exec {
            Some(PermFault::Exec)
        } else {
            None
        };
        if let Some(lacking) = lacking {
            return Err(WalkFault::Permission { stage: S, level, lacking });
        }
        let leaf = fs_is_leaf(e, level);
        let bits = A_FS | if w.eafe { EA_FS } else { 0 } | if leaf && access.write { D_FS } else { 0 };
        set_bits(mem, ea, e, bits).map_err(|_| WalkFault::AdUpdate { stage: S, level })?;
        if leaf {
            let size = PageSize::from_level(level).unwrap_or(PageSize::Size4K);
            let write_ok = writable || (access.privileged && !w.wpe);
            return Ok(FsOutcome {
                frame: Gpa::new(leaf_frame(e, size)),
                size,
                perm: Perm { read: true, write: write_ok, exec },
                user,
                dirty: e & D_FS != 0 || access.write,
            });
        }
        table = Gpa::new(table_addr(e));
    }
    Err(WalkFault::NotPresent { stage: S, level: 0 })
}

/// First-stage-only translation (PGTT=001b): intermediate addresses are
/// output addresses.
///
/// # Errors
/// As [`fs_walk`].
pub fn fs_only<M: PhysMem + ?Sized>(mem: &M, w: &FsWalk, input: u64, access: Access) -> Result<Translation, WalkFault> {
    let mut refs = 0;
    let o = fs_walk(mem, w, input, access, &mut refs, |g, _| Ok(g.as_hpa()))?;
    Ok(Translation {
        frame: o.frame.as_hpa(),
        size: o.size,
        perm: o.perm,
        user: o.user,
        dirty: o.dirty,
        mem_refs: refs,
    })
}

/// Nested translation (PGTT=011b, VT-d §3.8): the first stage's table
/// pointers and final output are intermediate addresses translated by the
/// second stage. Table fetches need second-stage read permission; the final
/// address needs the request's own access.
///
/// # Errors
/// The first- or second-stage [`WalkFault`].
pub fn nested<M: PhysMem + ?Sized>(
    mem: &M,
    fs: &FsWalk,
    ss: &SsWalk,
    input: u64,
    access: Access,
) -> Result<Translation, WalkFault> {
    let mut refs = 0;
    let o = fs_walk(mem, fs, input, access, &mut refs, |gpa, refs| {
        let t = ss_walk_counted(mem, ss, gpa.raw(), Access::READ, refs)?;
        Ok(t.output(gpa.raw()))
    })?;
    let gpa = o.frame.raw() | (input & (o.size.bytes() - 1));
    let s = ss_walk_counted(mem, ss, gpa, Access { privileged: false, ..access }, &mut refs)?;
    let size = if s.size < o.size { s.size } else { o.size };
    Ok(Translation {
        frame: s.output(gpa).align_down(size),
        size,
        perm: o.perm.and(s.perm),
        user: o.user,
        dirty: o.dirty,
        mem_refs: refs,
    })
}

#[cfg(test)]
mod tests;
