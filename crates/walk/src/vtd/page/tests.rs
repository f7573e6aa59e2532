use super::*;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::PagedMemory;

const MEM: u64 = 64 << 20;
const RW: Perm = Perm { read: true, write: true, exec: true };
const RO: Perm = Perm { read: true, write: false, exec: true };

fn rules() -> SsRules {
    SsRules { haw: 48, large_2m: true, large_1g: true, snp_reserved: false, tm_reserved: true }
}

fn ss_params(pt: &PageTable) -> SsWalk {
    SsWalk {
        root: pt.root,
        levels: pt.levels,
        width: 12 + 9 * pt.levels as u32,
        rules: rules(),
        exec_enable: false,
        ad: false,
    }
}

fn fs_params(pt: &PageTable) -> FsWalk {
    FsWalk { root: Gpa::new(pt.root.raw()), levels: pt.levels, haw: 48, fs1gp: true, wpe: false, eafe: false }
}

struct World {
    mem: PagedMemory,
    alloc: PageAlloc,
}

fn world() -> World {
    World { mem: PagedMemory::new(MEM), alloc: PageAlloc::new(0x10_0000, 0x100_0000) }
}

#[test]
fn ss_walk_4k_translates_with_offset() {
    let mut w = world();
    let mut pt = PageTable::new(Format::SecondStage, 4, &mut w.alloc);
    pt.map(&w.mem, &mut w.alloc, 0x7654_3000, 0x200_0000, PageSize::Size4K, RW);
    let t = ss_walk(&w.mem, &ss_params(&pt), 0x7654_3123, Access::WRITE).unwrap();
    assert_eq!(t.output(0x7654_3123), Hpa::new(0x200_0123));
    assert_eq!(t.mem_refs, 4);
}

#[test]
fn ss_walk_write_to_read_only_page_is_permission_fault() {
    let mut w = world();
    let mut pt = PageTable::new(Format::SecondStage, 3, &mut w.alloc);
    pt.map(&w.mem, &mut w.alloc, 0x1000, 0x200_0000, PageSize::Size4K, RO);
    let r = ss_walk(&w.mem, &ss_params(&pt), 0x1000, Access::WRITE);
    assert_eq!(r, Err(WalkFault::Permission { stage: Stage::Second, level: 1, lacking: PermFault::Write }));
}

#[test]
fn ss_walk_beyond_width_faults_before_reading_memory() {
    let mut w = world();
    let pt = PageTable::new(Format::SecondStage, 3, &mut w.alloc);
    let r = ss_walk(&w.mem, &ss_params(&pt), 1 << 39, Access::READ);
    assert_eq!(r, Err(WalkFault::AddressBeyond { stage: Stage::Second }));
}

#[test]
fn ss_walk_1g_leaf_is_found_at_level_3() {
    let mut w = world();
    let mut pt = PageTable::new(Format::SecondStage, 4, &mut w.alloc);
    pt.map(&w.mem, &mut w.alloc, 0x4000_0000, 0xC000_0000, PageSize::Size1G, RW);
    let t = ss_walk(&w.mem, &ss_params(&pt), 0x4123_4567, Access::READ).unwrap();
    assert_eq!((t.size, t.output(0x4123_4567), t.mem_refs), (PageSize::Size1G, Hpa::new(0xC123_4567), 2));
}

#[test]
fn fs_walk_sets_accessed_on_every_level_and_dirty_on_leaf_for_write() {
    let mut w = world();
    let mut pt = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    pt.map(&w.mem, &mut w.alloc, 0x40_0000, 0x300_0000, PageSize::Size4K, RW);
    fs_only(&w.mem, &fs_params(&pt), 0x40_0010, Access::WRITE).unwrap();
    for level in (2..=4).rev() {
        let e = w.mem.read_u64(pt.entry_addr(0x40_0000, level).unwrap()).unwrap();
        assert_eq!(e & 0x60, 0x20, "level {level}: A set, D clear");
    }
    let leaf = w.mem.read_u64(pt.entry_addr(0x40_0000, 1).unwrap()).unwrap();
    assert_eq!(leaf & 0x60, 0x60);
}

#[test]
fn fs_walk_rejects_non_canonical_input() {
    let mut w = world();
    let pt = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    assert_eq!(fs_only(&w.mem, &fs_params(&pt), 1 << 50, Access::READ), Err(WalkFault::NonCanonical));
}

#[test]
fn fs_walk_accepts_upper_half_canonical_input_in_5_level_mode() {
    assert!(is_canonical(0xFF00_0000_0000_0000, 5));
    assert!(!is_canonical(0xFF00_0000_0000_0000, 4));
}

#[test]
fn fs_walk_supervisor_write_to_read_only_page_needs_wpe_to_fault() {
    let mut w = world();
    let mut pt = PageTable::new(Format::FirstStage, 4, &mut w.alloc);
    pt.map(&w.mem, &mut w.alloc, 0x5000, 0x300_0000, PageSize::Size4K, RO);
    let sup_write = Access::WRITE.privileged();
    assert!(fs_only(&w.mem, &fs_params(&pt), 0x5000, sup_write).is_ok());
    let wpe = FsWalk { wpe: true, ..fs_params(&pt) };
    assert!(matches!(
        fs_only(&w.mem, &wpe, 0x5000, sup_write),
        Err(WalkFault::Permission { lacking: PermFault::Write, .. })
    ));
}

/// Builds an n-level first stage over an m-level second stage in which the
/// second stage maps every page the first stage touches with 4 KiB pages
/// (identity GPA → HPA), so every table-pointer translation is a full
/// m-level walk.
fn nested_world(n: u8, m: u8) -> (World, FsWalk, SsWalk, u64) {
    let mut w = world();
    let mut fs = PageTable::new(Format::FirstStage, n, &mut w.alloc);
    let iova = 0x12_3456_7000u64 & ((1 << (12 + 9 * n as u32 - 1)) - 1);
    let data = 0x300_0000;
    fs.map(&w.mem, &mut w.alloc, iova, data, PageSize::Size4K, RW);
    let mut ss = PageTable::new(Format::SecondStage, m, &mut w.alloc);
    let mut pages: Vec<u64> = (1..=n).map(|l| fs.entry_addr(iova, l).unwrap().raw() & !0xFFF).collect();
    pages.push(data);
    for p in pages {
        ss.map(&w.mem, &mut w.alloc, p, p, PageSize::Size4K, RW);
    }
    let (f, s) = (fs_params(&fs), ss_params(&ss));
    (w, f, s, iova)
}

/// VT-d §3.8: a nested 4×4 miss makes (4+1)(4+1)−1 = 24 entry fetches.
#[test]
fn nested_4x4_miss_makes_exactly_24_memory_references() {
    let (w, fs, ss, iova) = nested_world(4, 4);
    let t = nested(&w.mem, &fs, &ss, iova | 0x10, Access::READ).unwrap();
    assert_eq!(t.output(iova | 0x10), Hpa::new(0x300_0010));
    assert_eq!(t.mem_refs, 24);
}

/// VT-d §3.8: a nested 5×5 miss makes (5+1)(5+1)−1 = 35 entry fetches.
#[test]
fn nested_5x5_miss_makes_exactly_35_memory_references() {
    let (w, fs, ss, iova) = nested_world(5, 5);
    let t = nested(&w.mem, &fs, &ss, iova, Access::WRITE).unwrap();
    assert_eq!(t.mem_refs, 35);
}

#[test]
fn nested_second_stage_fault_on_table_pointer_is_reported_as_second_stage() {
    let (w, fs, mut ss, iova) = nested_world(4, 4);
    ss.root = Hpa::new(0x1000); // an empty page: nothing is mapped
    let r = nested(&w.mem, &fs, &ss, iova, Access::READ);
    assert_eq!(r, Err(WalkFault::NotPresent { stage: Stage::Second, level: 4 }));
}

/// Memory where software clears the entry at `victim` just before the
/// walker's first compare-exchange on it.
struct ClearedUnderWalk {
    mem: PagedMemory,
    victim: Hpa,
}

impl PhysMem for ClearedUnderWalk {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), iommu_types::MemError> {
        self.mem.read(addr, buf)
    }
    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), iommu_types::MemError> {
        self.mem.write(addr, data)
    }
    fn compare_exchange_u64(
        &self,
        addr: Hpa,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, iommu_types::MemError> {
        if addr == self.victim {
            self.mem.write_u64(addr, 0)?;
        }
        self.mem.compare_exchange_u64(addr, current, new)
    }
}

#[test]
fn accessed_flag_is_not_set_on_an_entry_cleared_under_the_walk() {
    let mem = PagedMemory::new(MEM);
    let mut alloc = PageAlloc::new(0x10_0000, MEM);
    let mut pt = PageTable::new(Format::FirstStage, 4, &mut alloc);
    pt.map(&mem, &mut alloc, 0x1000, 0x90_0000, PageSize::Size4K, RW);
    let victim = pt.entry_addr(0x1000, 1).unwrap();
    let racy = ClearedUnderWalk { mem, victim };
    let _ = fs_only(&racy, &fs_params(&pt), 0x1000, Access::READ);
    assert_eq!(racy.mem.read_u64(victim).unwrap(), 0);
}
