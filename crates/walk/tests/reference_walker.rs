//! Every VT-d walker agrees with a deliberately simple reference walker.
//!
//! The reference is a sorted map from each mapping's input base to its leaf
//! (page size, output frame, permissions), written without looking at the
//! walkers: a lookup is "the mapping whose base is the greatest one at or
//! below the address, if the address falls inside it", and the level at
//! which an unmapped address faults is the top-most level whose entry region
//! (2^(12+9(level-1)) bytes around the address) holds no mapping at all.
//! Random mappings are built into real tables with `iommu_testkit`, then
//! random probes (inside mappings, inside large pages, just outside mappings,
//! anywhere in the input space and beyond it) are walked and compared.

use std::collections::{BTreeMap, BTreeSet};

use iommu_format::vtd::pte::SsRules;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{Access, Gpa, PageSize, PagedMemory, Perm, PhysMem};
use iommu_walk::vtd::page::{fs_only, nested, ss_walk, FsWalk, SsWalk};
use iommu_walk::{PermFault, Stage, Translation, WalkFault};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Backed memory; every table page lives in `TABLES`.
const MEM: u64 = 256 << 20;
/// Table pages are allocated here. In nested worlds this range is also the
/// intermediate-address range of the first-stage tables (identity-mapped by
/// the second stage), so data clusters start at `1 << CLUSTER_SHIFT`.
const TABLES: (u64, u64) = (0x10_0000, 0x400_0000);
/// Mappings are placed in 4 GiB clusters.
const CLUSTER_SHIFT: u32 = 32;
/// Leaf frames must stay below the host address width.
const HAW: u32 = 48;

const RULES: SsRules = SsRules { haw: HAW, large_2m: true, large_1g: true, snp_reserved: false, tm_reserved: true };

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// One mapping's leaf. First-stage leaves are always readable; `user` is
/// meaningless for the second stage.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    size: PageSize,
    out: u64,
    read: bool,
    write: bool,
    exec: bool,
    user: bool,
}

#[derive(Debug, Default)]
struct RefMap {
    map: BTreeMap<u64, Leaf>,
}

impl RefMap {
    /// Whether any mapping intersects `[start, start + len)`.
    fn overlaps(&self, start: u64, len: u64) -> bool {
        let last = start + (len - 1);
        if self.map.range(start..=last).next().is_some() {
            return true;
        }
        self.map.range(..start).next_back().is_some_and(|(&b, l)| b + (l.size.bytes() - 1) >= start)
    }

    /// Adds a mapping unless it would overlap an existing one.
    fn insert(&mut self, base: u64, leaf: Leaf) -> bool {
        if self.overlaps(base, leaf.size.bytes()) {
            return false;
        }
        self.map.insert(base, leaf);
        true
    }

    /// The mapping containing `addr`, with its base.
    fn lookup(&self, addr: u64) -> Option<(u64, Leaf)> {
        let (&base, &leaf) = self.map.range(..=addr).next_back()?;
        (addr - base < leaf.size.bytes()).then_some((base, leaf))
    }

    /// The top-most level of a `levels`-level table whose entry for `addr`
    /// covers no mapping (the level a walk of an unmapped `addr` stops at).
    fn hole_level(&self, addr: u64, levels: u8) -> u8 {
        (1..=levels)
            .rev()
            .find(|&l| {
                let len = 1u64 << (12 + 9 * (l as u32 - 1));
                !self.overlaps(addr & !(len - 1), len)
            })
            .unwrap_or(0)
    }

    fn nth(&self, pick: u64) -> Option<(u64, Leaf)> {
        if self.map.is_empty() {
            return None;
        }
        self.map.iter().nth((pick % self.map.len() as u64) as usize).map(|(&b, &l)| (b, l))
    }
}

/// What the reference says a walk must return.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Ok {
        output: u64,
        size: PageSize,
        perm: Perm,
        user: bool,
        refs: u32,
    },
    Fault(WalkFault),
    /// A permission fault at `level` naming any one of `lacking`.
    Denied {
        stage: Stage,
        level: u8,
        lacking: Vec<PermFault>,
    },
}

/// A leaf the reference resolved: output address, leaf, effective permission.
type Resolved = (u64, Leaf, Perm);

/// Second stage (VT-d §3.7, §9.8): present iff R or W; X is honoured only
/// with `exec_enable`, otherwise execute follows R.
fn ss_resolve(model: &RefMap, levels: u8, exec_enable: bool, input: u64, access: Access) -> Result<Resolved, Expected> {
    let width = 12 + 9 * levels as u32;
    if input >> width != 0 {
        return Err(Expected::Fault(WalkFault::AddressBeyond { stage: Stage::Second }));
    }
    let Some((base, leaf)) = model.lookup(input) else {
        let level = model.hole_level(input, levels);
        return Err(Expected::Fault(WalkFault::NotPresent { stage: Stage::Second, level }));
    };
    let perm = Perm { read: leaf.read, write: leaf.write, exec: if exec_enable { leaf.exec } else { leaf.read } };
    let mut lacking = Vec::new();
    if access.read && !perm.read {
        lacking.push(PermFault::Read);
    }
    if access.write && !perm.write {
        lacking.push(PermFault::Write);
    }
    if access.exec && !perm.exec {
        lacking.push(PermFault::Exec);
    }
    if !lacking.is_empty() {
        return Err(Expected::Denied { stage: Stage::Second, level: leaf.size.level(), lacking });
    }
    Ok((leaf.out + (input - base), leaf, perm))
}

/// Canonical for x86-64 paging with `levels` levels: bits 63..va-1 all equal.
fn canonical(input: u64, levels: u8) -> bool {
    let va = 12 + 9 * levels as u32;
    let top = input >> (va - 1);
    top == 0 || top == u64::MAX >> (va - 1)
}

/// First stage (VT-d §3.6, §9.7) with WPE=0: reads always allowed; user
/// requests need U/S; user writes need R/W (supervisor writes ignore it);
/// instruction fetches need XD clear.
fn fs_resolve(model: &RefMap, levels: u8, input: u64, access: Access) -> Result<Resolved, Expected> {
    if !canonical(input, levels) {
        return Err(Expected::Fault(WalkFault::NonCanonical));
    }
    let Some((base, leaf)) = model.lookup(input) else {
        let level = model.hole_level(input, levels);
        return Err(Expected::Fault(WalkFault::NotPresent { stage: Stage::First, level }));
    };
    let mut lacking = Vec::new();
    if !access.privileged && !leaf.user {
        lacking.push(PermFault::User);
    }
    if access.write && !access.privileged && !leaf.write {
        lacking.push(PermFault::Write);
    }
    if access.exec && !leaf.exec {
        lacking.push(PermFault::Exec);
    }
    if !lacking.is_empty() {
        return Err(Expected::Denied { stage: Stage::First, level: leaf.size.level(), lacking });
    }
    let perm = Perm { read: true, write: leaf.write || access.privileged, exec: leaf.exec };
    Ok((leaf.out + (input - base), leaf, perm))
}

fn entries_read(levels: u8, size: PageSize) -> u32 {
    (levels - size.level() + 1) as u32
}

fn expect_ss(model: &RefMap, levels: u8, exec_enable: bool, input: u64, access: Access) -> Expected {
    match ss_resolve(model, levels, exec_enable, input, access) {
        Ok((output, leaf, perm)) => {
            Expected::Ok { output, size: leaf.size, perm, user: true, refs: entries_read(levels, leaf.size) }
        }
        Err(e) => e,
    }
}

fn expect_fs(model: &RefMap, levels: u8, input: u64, access: Access) -> Expected {
    match fs_resolve(model, levels, input, access) {
        Ok((output, leaf, perm)) => {
            Expected::Ok { output, size: leaf.size, perm, user: leaf.user, refs: entries_read(levels, leaf.size) }
        }
        Err(e) => e,
    }
}

/// Nested (VT-d §3.8): the composition of the two maps. Every first-stage
/// entry fetch costs a full second-stage walk (table pages are mapped with
/// 4 KiB pages) plus the fetch itself; the final address costs one more
/// second-stage walk, made as a user request.
fn expect_nested(fs: &RefMap, n: u8, ss: &RefMap, m: u8, exec_enable: bool, input: u64, access: Access) -> Expected {
    let (gpa, fs_leaf, fs_perm) = match fs_resolve(fs, n, input, access) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let (output, ss_leaf, ss_perm) = match ss_resolve(ss, m, exec_enable, gpa, Access { privileged: false, ..access }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    Expected::Ok {
        output,
        size: fs_leaf.size.min(ss_leaf.size),
        perm: fs_perm.and(ss_perm),
        user: fs_leaf.user,
        refs: entries_read(n, fs_leaf.size) * (m as u32 + 1) + entries_read(m, ss_leaf.size),
    }
}

fn check(
    actual: Result<Translation, WalkFault>,
    expected: &Expected,
    input: u64,
    access: Access,
) -> Result<(), TestCaseError> {
    let ctx = format!("input {input:#x} {access:?}: walker {actual:?}, reference {expected:?}");
    match (actual, expected) {
        (Ok(t), Expected::Ok { output, size, perm, user, refs }) => {
            prop_assert_eq!(t.output(input).raw(), *output, "{}", ctx);
            prop_assert_eq!(t.size, *size, "{}", ctx);
            prop_assert_eq!(t.frame.raw() & (size.bytes() - 1), 0, "{}", ctx);
            prop_assert_eq!(t.perm, *perm, "{}", ctx);
            prop_assert_eq!(t.user, *user, "{}", ctx);
            prop_assert_eq!(t.mem_refs, *refs, "{}", ctx);
            prop_assert!(!access.write || t.dirty, "{}", ctx);
            Ok(())
        }
        (
            Err(WalkFault::Permission { stage, level, lacking }),
            Expected::Denied { stage: s, level: l, lacking: ls },
        ) => {
            prop_assert_eq!((stage, level), (*s, *l), "{}", ctx);
            prop_assert!(ls.contains(&lacking), "{}", ctx);
            Ok(())
        }
        (Err(f), Expected::Fault(g)) => {
            prop_assert_eq!(f, *g, "{}", ctx);
            Ok(())
        }
        _ => Err(TestCaseError::fail(ctx)),
    }
}

// ---------------------------------------------------------------------------
// Random worlds.
// ---------------------------------------------------------------------------

/// An input address space: `bits` wide, sign-extended (first stage) or not.
#[derive(Debug, Clone, Copy)]
struct Space {
    bits: u32,
    signed: bool,
}

impl Space {
    fn extend(self, a: u64) -> u64 {
        let a = a & (u64::MAX >> (64 - self.bits));
        if self.signed {
            (((a << (64 - self.bits)) as i64) >> (64 - self.bits)) as u64
        } else {
            a
        }
    }

    /// A cluster base, often at an edge of the space (index 0, the top, and
    /// either side of the middle, i.e. of the canonical hole).
    fn cluster(self, (sel, raw): (u8, u64)) -> u64 {
        let n = 1u64 << (self.bits - CLUSTER_SHIFT);
        let idx = match sel % 8 {
            0 => 0,
            1 => n - 1,
            2 => n / 2 - 1,
            3 => n / 2,
            _ => raw % n,
        };
        self.extend(idx << CLUSTER_SHIFT)
    }

    fn anywhere(self, raw: u64) -> u64 {
        self.extend(raw)
    }

    /// An address outside the space: beyond the width, or non-canonical.
    fn outside(self, raw: u64) -> u64 {
        if self.signed {
            (raw & (u64::MAX >> (65 - self.bits))) | 1 << 63
        } else {
            (raw & (u64::MAX >> (64 - self.bits))) | 1 << (self.bits as u64 + (raw >> 58) % (64 - self.bits as u64))
        }
    }
}

#[derive(Debug, Clone)]
struct RawMap {
    cluster: u8,
    size: u8,
    place: u64,
    out: u64,
    perm: u8,
}

#[derive(Debug, Clone)]
struct RawProbe {
    kind: u8,
    pick: u64,
    offset: u64,
    access: u8,
}

fn clusters() -> impl Strategy<Value = Vec<(u8, u64)>> {
    prop::collection::vec((any::<u8>(), any::<u64>()), 1..4)
}

fn raw_maps() -> impl Strategy<Value = Vec<RawMap>> {
    prop::collection::vec(
        (any::<u8>(), any::<u8>(), any::<u64>(), any::<u64>(), any::<u8>())
            .prop_map(|(cluster, size, place, out, perm)| RawMap { cluster, size, place, out, perm }),
        1..40,
    )
}

fn probes() -> impl Strategy<Value = Vec<RawProbe>> {
    prop::collection::vec(
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<u8>()).prop_map(|(kind, pick, offset, access)| RawProbe {
            kind,
            pick,
            offset,
            access,
        }),
        1..64,
    )
}

fn page_size(sel: u8) -> PageSize {
    match sel % 8 {
        0..=4 => PageSize::Size4K,
        5 | 6 => PageSize::Size2M,
        _ => PageSize::Size1G,
    }
}

/// A size-aligned base inside one of the clusters: one of four 1 GiB slots,
/// 2 MiB slot 0–6 or 511, 4 KiB slot 0–30 or 511, so that mappings share
/// tables and reach the last entry of a table. Overlaps are rejected by
/// [`RefMap::insert`].
fn place(clusters: &[u64], m: &RawMap, size: PageSize) -> u64 {
    let cluster = clusters[m.cluster as usize % clusters.len()];
    let p = m.place;
    let g = p & 3;
    let s2 = match (p >> 2) & 7 {
        7 => 511,
        v => v,
    };
    let s4 = match (p >> 5) & 31 {
        31 => 511,
        v => v,
    };
    (cluster + (g << 30) + (s2 << 21) + (s4 << 12)) & !(size.bytes() - 1)
}

/// An output frame below 2^HAW, aligned to `size`; no memory behind it.
fn frame(raw: u64, size: PageSize) -> u64 {
    raw & (u64::MAX >> (64 - HAW)) & !(size.bytes() - 1)
}

/// Second-stage leaf permissions: each of R, W, X granted 3 times in 4, and
/// never neither R nor W (that would be a not-present entry).
fn ss_leaf(size: PageSize, out: u64, p: u8) -> Leaf {
    let (read, write, exec) = (p & 3 != 0, p & 0xC != 0, p & 0x30 != 0);
    Leaf { size, out, read: read || !write, write, exec, user: true }
}

/// First-stage leaf permissions: always readable; W, U, X granted 3 times in 4.
fn fs_leaf(size: PageSize, out: u64, p: u8) -> Leaf {
    Leaf { size, out, read: true, write: p & 3 != 0, exec: p & 0x30 != 0, user: p & 0xC != 0 }
}

fn access(a: u8) -> Access {
    Access { read: a & 1 != 0, write: a & 2 != 0, exec: a & 4 != 0, privileged: a & 8 != 0 }
}

/// A probe address: inside a mapping (anywhere in a large page), just
/// outside one, anywhere in a cluster, anywhere in the space, or outside it.
fn probe_addr(space: Space, clusters: &[u64], model: &RefMap, p: &RawProbe) -> u64 {
    let picked = model.nth(p.pick);
    match (p.kind % 8, picked) {
        (0..=2, Some((base, leaf))) => base + p.offset % leaf.size.bytes(),
        (3, Some((base, leaf))) if p.offset & 1 == 0 => base.wrapping_add(leaf.size.bytes() + (p.offset >> 1) % 4096),
        (3, Some((base, _))) => base.wrapping_sub(1 + (p.offset >> 1) % 4096),
        (4 | 5, _) => clusters[(p.pick % clusters.len() as u64) as usize] + p.offset % (1 << CLUSTER_SHIFT),
        (7, _) => space.outside(p.offset),
        _ => space.anywhere(p.offset),
    }
}

/// Every probe of the case, plus the last byte of every mapping with an
/// access that needs no permission (so every case translates every leaf).
fn all_probes(space: Space, clusters: &[u64], model: &RefMap, probes: &[RawProbe]) -> Vec<(u64, Access)> {
    let none = Access { read: false, write: false, exec: false, privileged: true };
    let mut v: Vec<(u64, Access)> = model.map.iter().map(|(&b, l)| (b + (l.size.bytes() - 1), none)).collect();
    v.extend(probes.iter().map(|p| (probe_addr(space, clusters, model, p), access(p.access))));
    v
}

fn new_world() -> (PagedMemory, PageAlloc) {
    (PagedMemory::new(MEM), PageAlloc::new(TABLES.0, TABLES.1))
}

fn build_ss(mem: &PagedMemory, alloc: &mut PageAlloc, levels: u8, model: &RefMap) -> PageTable {
    let mut pt = PageTable::new(Format::SecondStage, levels, alloc);
    for (&base, l) in &model.map {
        pt.map(mem, alloc, base, l.out, l.size, Perm { read: l.read, write: l.write, exec: l.exec });
    }
    pt
}

/// First-stage tables: the testkit builds the path, then the leaf is
/// rewritten by hand (P, R/W, U/S, PS, address, XD) to vary U/S.
fn build_fs(mem: &PagedMemory, alloc: &mut PageAlloc, levels: u8, model: &RefMap) -> PageTable {
    let mut pt = PageTable::new(Format::FirstStage, levels, alloc);
    for (&base, l) in &model.map {
        pt.map(mem, alloc, base, l.out, l.size, Perm::ALL);
        let entry = l.out
            | 1
            | (u64::from(l.write) << 1)
            | (u64::from(l.user) << 2)
            | (u64::from(l.size != PageSize::Size4K) << 7)
            | (u64::from(!l.exec) << 63);
        let ea = pt.entry_addr(base, l.size.level()).expect("leaf path is built");
        mem.write_u64(ea, entry).expect("table memory is backed");
    }
    pt
}

fn ss_params(pt: &PageTable, exec_enable: bool, ad: bool) -> SsWalk {
    SsWalk { root: pt.root, levels: pt.levels, width: 12 + 9 * pt.levels as u32, rules: RULES, exec_enable, ad }
}

fn fs_params(pt: &PageTable) -> FsWalk {
    FsWalk { root: Gpa::new(pt.root.raw()), levels: pt.levels, haw: HAW, fs1gp: true, wpe: false, eafe: false }
}

// ---------------------------------------------------------------------------
// The properties.
// ---------------------------------------------------------------------------

fn ss_case(
    levels: u8,
    exec_enable: bool,
    ad: bool,
    clusters: &[(u8, u64)],
    maps: &[RawMap],
    probes: &[RawProbe],
) -> Result<(), TestCaseError> {
    let space = Space { bits: 12 + 9 * levels as u32, signed: false };
    let bases: Vec<u64> = clusters.iter().map(|&c| space.cluster(c)).collect();
    let mut model = RefMap::default();
    for m in maps {
        let size = page_size(m.size);
        model.insert(place(&bases, m, size), ss_leaf(size, frame(m.out, size), m.perm));
    }
    let (mem, mut alloc) = new_world();
    let pt = build_ss(&mem, &mut alloc, levels, &model);
    let w = ss_params(&pt, exec_enable, ad);
    for (input, access) in all_probes(space, &bases, &model, probes) {
        let expected = expect_ss(&model, levels, exec_enable, input, access);
        check(ss_walk(&mem, &w, input, access), &expected, input, access)?;
    }
    Ok(())
}

fn fs_case(levels: u8, clusters: &[(u8, u64)], maps: &[RawMap], probes: &[RawProbe]) -> Result<(), TestCaseError> {
    let space = Space { bits: 12 + 9 * levels as u32, signed: true };
    let bases: Vec<u64> = clusters.iter().map(|&c| space.cluster(c)).collect();
    let mut model = RefMap::default();
    for m in maps {
        let size = page_size(m.size);
        model.insert(place(&bases, m, size), fs_leaf(size, frame(m.out, size), m.perm));
    }
    let (mem, mut alloc) = new_world();
    let pt = build_fs(&mem, &mut alloc, levels, &model);
    let w = fs_params(&pt);
    for (input, access) in all_probes(space, &bases, &model, probes) {
        let expected = expect_fs(&model, levels, input, access);
        check(fs_only(&mem, &w, input, access), &expected, input, access)?;
    }
    Ok(())
}

/// The first stage's output: usually inside (or around, for a larger
/// first-stage page) a second-stage data mapping, else anywhere in a
/// second-stage data cluster.
fn gpa_target(raw: u64, size: PageSize, data: &[(u64, Leaf)], clusters: &[u64]) -> u64 {
    let gpa = if raw & 3 != 0 && !data.is_empty() {
        let (b, l) = data[((raw >> 2) % data.len() as u64) as usize];
        b + (raw >> 16) % l.size.bytes()
    } else {
        clusters[((raw >> 2) % clusters.len() as u64) as usize] + (raw >> 16) % (1 << CLUSTER_SHIFT)
    };
    gpa & !(size.bytes() - 1)
}

#[derive(Debug, Clone)]
struct NestedSpec {
    n: u8,
    m: u8,
    exec_enable: bool,
    ss_clusters: Vec<(u8, u64)>,
    ss_maps: Vec<RawMap>,
    fs_clusters: Vec<(u8, u64)>,
    fs_maps: Vec<RawMap>,
    probes: Vec<RawProbe>,
}

fn nested_spec() -> impl Strategy<Value = NestedSpec> {
    (4u8..=5, 3u8..=5, any::<bool>(), clusters(), raw_maps(), clusters(), raw_maps(), probes()).prop_map(
        |(n, m, exec_enable, ss_clusters, ss_maps, fs_clusters, fs_maps, probes)| NestedSpec {
            n,
            m,
            exec_enable,
            ss_clusters,
            ss_maps,
            fs_clusters,
            fs_maps,
            probes,
        },
    )
}

fn nested_case(s: &NestedSpec) -> Result<(), TestCaseError> {
    // Second-stage data mappings: intermediate addresses below 2^HAW (a
    // first-stage leaf cannot point higher) and outside cluster 0, which
    // holds the first-stage tables.
    let ss_space = Space { bits: (12 + 9 * s.m as u32).min(HAW), signed: false };
    let ss_bases: Vec<u64> = s.ss_clusters.iter().map(|&c| ss_space.cluster(c).max(1 << CLUSTER_SHIFT)).collect();
    let mut ss_model = RefMap::default();
    for m in &s.ss_maps {
        let size = page_size(m.size);
        ss_model.insert(place(&ss_bases, m, size), ss_leaf(size, frame(m.out, size), m.perm));
    }
    let data: Vec<(u64, Leaf)> = ss_model.map.iter().map(|(&b, &l)| (b, l)).collect();

    let fs_space = Space { bits: 12 + 9 * s.n as u32, signed: true };
    let fs_bases: Vec<u64> = s.fs_clusters.iter().map(|&c| fs_space.cluster(c)).collect();
    let mut fs_model = RefMap::default();
    for m in &s.fs_maps {
        let size = page_size(m.size);
        let out = gpa_target(m.out, size, &data, &ss_bases);
        fs_model.insert(place(&fs_bases, m, size), fs_leaf(size, out, m.perm));
    }

    let (mem, mut alloc) = new_world();
    let fs_pt = build_fs(&mem, &mut alloc, s.n, &fs_model);
    // The second stage maps every first-stage table page, identity, 4 KiB,
    // read/write.
    let mut table_pages = BTreeSet::new();
    for (&base, l) in &fs_model.map {
        for level in l.size.level()..=s.n {
            let ea = fs_pt.entry_addr(base, level).expect("leaf path is built");
            table_pages.insert(ea.raw() & !0xFFF);
        }
    }
    for p in table_pages {
        let leaf = Leaf { size: PageSize::Size4K, out: p, read: true, write: true, exec: false, user: true };
        prop_assert!(ss_model.insert(p, leaf), "table page {:#x} collides with a data mapping", p);
    }
    let ss_pt = build_ss(&mem, &mut alloc, s.m, &ss_model);

    let fs_w = fs_params(&fs_pt);
    let ss_w = ss_params(&ss_pt, s.exec_enable, false);
    for (input, access) in all_probes(fs_space, &fs_bases, &fs_model, &s.probes) {
        let expected = expect_nested(&fs_model, s.n, &ss_model, s.m, s.exec_enable, input, access);
        check(nested(&mem, &fs_w, &ss_w, input, access), &expected, input, access)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// VT-d §3.7: a 3-, 4- or 5-level second-stage walk over random 4 KiB,
    /// 2 MiB and 1 GiB mappings returns the reference map's output address,
    /// page size and R/W/X; unmapped inputs fault not-present at the level
    /// whose entry region is empty; missing permissions fault at the leaf;
    /// inputs beyond the width fault before any fetch.
    #[test]
    fn ss_walk_agrees_with_reference_map(
        levels in 3u8..=5,
        exec_enable in any::<bool>(),
        ad in any::<bool>(),
        clusters in clusters(),
        maps in raw_maps(),
        probes in probes(),
    ) {
        ss_case(levels, exec_enable, ad, &clusters, &maps, &probes)?;
    }

    /// VT-d §3.6: a 4- or 5-level first-stage-only walk over random mappings
    /// in both canonical halves returns the reference map's output address,
    /// page size, R/W (supervisor writes allowed with WPE=0), XD and U/S;
    /// unmapped inputs fault not-present at the empty level; non-canonical
    /// inputs fault as such.
    #[test]
    fn fs_only_walk_agrees_with_reference_map(
        levels in 4u8..=5,
        clusters in clusters(),
        maps in raw_maps(),
        probes in probes(),
    ) {
        fs_case(levels, &clusters, &maps, &probes)?;
    }

    /// VT-d §3.8: a nested walk (4- or 5-level first stage over a 3-, 4- or
    /// 5-level second stage that maps every first-stage table page) agrees
    /// with the composition of the two reference maps: first-stage faults
    /// first, then second-stage faults on the intermediate address; the page
    /// size is the smaller of the two leaves and the permissions their AND.
    #[test]
    fn nested_walk_agrees_with_composed_reference(spec in nested_spec()) {
        nested_case(&spec)?;
    }
}
