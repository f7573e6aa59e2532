use std::collections::BTreeMap;

use iommu_format::smmuv3::desc::Granule;
use iommu_format::smmuv3::event::FaultClass;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_hw::vtd::{Request, VtdConfig, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::PageAlloc;
use iommu_types::{Access, DomainId, Gpa, NullInterrupts, PagedMemory, Pasid, SourceId};
use iommu_walk::smmuv3::config::{CdCfg, S2Cfg, TableCfg};
use iommu_walk::smmuv3::page::{s1_walk, s2_walk, select_half, Perms, TransFaultKind};
use proptest::prelude::*;

use super::*;
use crate::frames::RangeFrames;

/// Simulated memory: 64 MiB; table frames come from [1 MiB, 16 MiB). Data
/// addresses are never dereferenced, so they may lie anywhere.
const MEM_SIZE: u64 = 64 << 20;
const FRAMES_START: u64 = 0x10_0000;
const FRAMES_END: u64 = 0x100_0000;

const RW: Perm = Perm { read: true, write: true, exec: false };
const RO: Perm = Perm { read: true, write: false, exec: false };
const RWX: Perm = Perm::ALL;

const FS4: PtFormat = PtFormat::FirstStage { levels: 4 };
const SS3: PtFormat = PtFormat::SecondStage { levels: 3 };
const AS1_3: PtFormat = PtFormat::ArmS1 { levels: 3 };
const AS1_4: PtFormat = PtFormat::ArmS1 { levels: 4 };
const AS2_3: PtFormat = PtFormat::ArmS2 { levels: 3 };
const AS2_4: PtFormat = PtFormat::ArmS2 { levels: 4 };
const ARM_FORMATS: [PtFormat; 4] = [AS1_3, AS1_4, AS2_3, AS2_4];

/// ADDR, bits 51:12 of both formats.
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

struct Env {
    mem: PagedMemory,
    frames: RangeFrames,
}

fn env() -> Env {
    Env { mem: PagedMemory::new(MEM_SIZE), frames: RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(FRAMES_END)) }
}

fn table(e: &mut Env, format: PtFormat) -> IoPageTable {
    IoPageTable::new(&e.mem, &mut e.frames, format).unwrap()
}

fn map4k(e: &mut Env, pt: &mut IoPageTable, iova: u64, pa: u64, perm: Perm) -> Result<(), Errno> {
    pt.map(&e.mem, &mut e.frames, Iova::new(iova), Hpa::new(pa), PageSize::Size4K, perm, true)
}

/// The raw entry that translates `iova` at `level`, read straight from
/// memory (the path above it must be built).
fn entry(mem: &PagedMemory, pt: &IoPageTable, iova: u64, level: u8) -> u64 {
    let mut table = pt.root().raw();
    let mut l = pt.format().levels();
    loop {
        let index = (iova >> (12 + 9 * (u32::from(l) - 1))) & 0x1FF;
        let e = mem.read_u64(Hpa::new(table + 8 * index)).unwrap();
        if l == level {
            return e;
        }
        table = e & ADDR_MASK;
        l -= 1;
    }
}

fn page_bytes(mem: &PagedMemory, page: Hpa) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    mem.read(page, &mut buf).unwrap();
    buf
}

// ---- entry encoding (golden values) ----

/// VT-d §9.7 / SDM Vol 3 §4.5: a 4 KiB first-stage leaf, read/write, user,
/// no execute: P (bit 0), R/W (1), U/S (2), ADDR = 0x5000 (51:12),
/// XD (63).
#[test]
fn fs_4k_leaf_rw_user_no_exec_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x8000_0000_0000_5007);
}

/// VT-d §9.7: a supervisor-only leaf (user = false) leaves U/S (bit 2)
/// clear: P, R/W, XD, ADDR = 0x5000.
#[test]
fn fs_supervisor_leaf_has_us_clear() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), PageSize::Size4K, RW, false).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x8000_0000_0000_5003);
}

/// VT-d §9.7: a read-only executable user leaf: P (bit 0) and U/S (2)
/// set, R/W (1) and XD (63) clear, ADDR = 0x5000.
#[test]
fn fs_read_only_exec_leaf_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let perm = Perm { read: true, write: false, exec: true };
    map4k(&mut e, &mut pt, 0x1000, 0x5000, perm).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x0000_0000_0000_5005);
}

/// VT-d §9.7: a non-leaf first-stage entry grants everything (P, R/W, U/S
/// set, XD clear) and points at the next table; the leaf decides.
#[test]
fn fs_table_entry_is_p_rw_us_without_xd() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RO).unwrap();
    let pml4e = entry(&e.mem, &pt, 0x1000, 4);
    assert_eq!(pml4e & !ADDR_MASK, 0x7);
}

/// VT-d §9.7: a 2 MiB first-stage leaf sets PS (bit 7): P, R/W, U/S, PS,
/// ADDR = 0x20_0000, XD.
#[test]
fn fs_2m_leaf_sets_ps() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x40_0000), Hpa::new(0x20_0000), PageSize::Size2M, RW, true).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x40_0000, 2), 0x8000_0000_0020_0087);
}

/// VT-d §9.8: a read-only 4 KiB second-stage leaf: R (bit 0), ADDR =
/// 0x5000.
#[test]
fn ss_read_only_leaf_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RO).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x5001);
}

/// VT-d §9.8: a second-stage non-leaf entry has R, W and X set (bits 2:0).
#[test]
fn ss_table_entry_is_rwx() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RO).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 3) & !ADDR_MASK, 0x7);
}

/// VT-d §9.8: a 1 GiB second-stage leaf: R, W, X, PS (bit 7), ADDR =
/// 0x4000_0000.
#[test]
fn ss_1g_leaf_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x4000_0000), Hpa::new(0x4000_0000), PageSize::Size1G, RWX, true).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x4000_0000, 3), 0x4000_0087);
}

// ---- construction ----

/// VT-d §3.6: the first stage has 4 or 5 levels.
#[test]
fn three_level_first_stage_is_inval() {
    let mut e = env();
    let r = IoPageTable::new(&e.mem, &mut e.frames, PtFormat::FirstStage { levels: 3 });
    assert_eq!(r.unwrap_err(), Errno::Inval);
}

/// VT-d §3.7: the second stage has 3, 4 or 5 levels.
#[test]
fn six_level_second_stage_is_inval_and_allocates_nothing() {
    let mut e = env();
    let r = IoPageTable::new(&e.mem, &mut e.frames, PtFormat::SecondStage { levels: 6 });
    assert_eq!((r.unwrap_err(), e.frames.in_use()), (Errno::Inval, 0));
}

#[test]
fn input_bits_are_39_48_57() {
    let bits = [SS3, FS4, PtFormat::SecondStage { levels: 5 }].map(PtFormat::input_bits);
    assert_eq!(bits, [39, 48, 57]);
}

#[test]
fn new_table_owns_only_its_root() {
    let mut e = env();
    let pt = table(&mut e, FS4);
    assert_eq!((pt.table_pages(), e.frames.in_use()), (1, 1));
}

// ---- map and lookup ----

#[test]
fn lookup_returns_address_with_offset_size_and_perm() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x7000, 0x9000, RW).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x7123)), Some((Hpa::new(0x9123), PageSize::Size4K, RW)));
}

#[test]
fn lookup_of_unmapped_neighbour_is_none() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x7000, 0x9000, RW).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x8000)), None);
}

#[test]
fn lookup_inside_2m_leaf_keeps_the_offset() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x80_0000), PageSize::Size2M, RW, true).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x3F_F008)), Some((Hpa::new(0x9F_F008), PageSize::Size2M, RW)));
}

#[test]
fn first_4k_map_allocates_one_table_per_level_below_the_root() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    assert_eq!((pt.table_pages(), e.frames.in_use()), (4, 4));
}

/// VT-d §3.6: a 5-level first stage translates 57-bit inputs.
#[test]
fn five_level_first_stage_maps_above_48_bits() {
    let mut e = env();
    let mut pt = table(&mut e, PtFormat::FirstStage { levels: 5 });
    map4k(&mut e, &mut pt, 0x00F0_0000_0000_0000, 0x5000, RW).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x00F0_0000_0000_0010)).map(|t| t.0), Some(Hpa::new(0x5010)));
}

#[test]
fn map_over_existing_leaf_is_exist_and_leaves_entry_unchanged() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    let before = entry(&e.mem, &pt, 0x1000, 1);
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 0x6000, RO), Err(Errno::Exist));
    assert_eq!((entry(&e.mem, &pt, 0x1000, 1), e.frames.in_use()), (before, 4));
}

#[test]
fn map_2m_over_a_mapped_4k_page_is_exist() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x20_1000, 0x5000, RW).unwrap();
    let r = pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_0000), PageSize::Size2M, RW, true);
    assert_eq!(r, Err(Errno::Exist));
}

#[test]
fn map_4k_inside_a_2m_leaf_is_exist_and_allocates_nothing() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_0000), PageSize::Size2M, RW, true).unwrap();
    let in_use = e.frames.in_use();
    assert_eq!(map4k(&mut e, &mut pt, 0x20_1000, 0x5000, RW), Err(Errno::Exist));
    assert_eq!(e.frames.in_use(), in_use);
}

#[test]
fn map_misaligned_iova_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    assert_eq!(map4k(&mut e, &mut pt, 0x1008, 0x5000, RW), Err(Errno::Inval));
}

#[test]
fn map_2m_with_4k_aligned_pa_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let r = pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_1000), PageSize::Size2M, RW, true);
    assert_eq!(r, Err(Errno::Inval));
}

/// The first stage maps the lower canonical half only: bit 47 set is
/// refused for a 4-level table.
#[test]
fn fs_map_in_upper_half_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    assert_eq!(map4k(&mut e, &mut pt, 0xFFFF_8000_0000_0000, 0x5000, RW), Err(Errno::Inval));
}

#[test]
fn ss_map_beyond_39_bits_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    assert_eq!(map4k(&mut e, &mut pt, 1 << 39, 0x5000, RW), Err(Errno::Inval));
}

/// VT-d §9.7, §9.8: the ADDR field ends at bit 51.
#[test]
fn map_pa_beyond_52_bits_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 1 << 52, RW), Err(Errno::Inval));
}

/// VT-d §9.7: a present first-stage entry is always readable, so a
/// mapping without read cannot be expressed.
#[test]
fn fs_map_without_read_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let wo = Perm { read: false, write: true, exec: false };
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 0x5000, wo), Err(Errno::Inval));
}

/// VT-d §9.8: a second-stage entry without R and W is not present.
#[test]
fn ss_map_execute_only_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    let xo = Perm { read: false, write: false, exec: true };
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 0x5000, xo), Err(Errno::Inval));
}

#[test]
fn map_above_max_leaf_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.set_max_leaf(PageSize::Size2M);
    let r = pt.map(&e.mem, &mut e.frames, Iova::new(0x4000_0000), Hpa::new(0), PageSize::Size1G, RW, true);
    assert_eq!(r, Err(Errno::Inval));
}

#[test]
fn map_whose_third_table_allocation_fails_frees_the_first_two() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    e.frames.fail_nth(Some(3));
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 0x5000, RW), Err(Errno::NoMem));
    assert_eq!((e.frames.in_use(), pt.table_pages(), pt.lookup(&e.mem, Iova::new(0x1000))), (1, 1, None));
}

// ---- map_range ----

#[test]
fn map_range_of_zero_length_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), 0, RW, true);
    assert_eq!(r, Err(Errno::Inval));
}

#[test]
fn map_range_of_partial_page_length_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), 0x1800, RW, true);
    assert_eq!(r, Err(Errno::Inval));
}

#[test]
fn map_range_overflowing_u64_is_overflow() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0xFFFF_FFFF_FFFF_F000), 0x2000, RW, true);
    assert_eq!(r, Err(Errno::Overflow));
}

#[test]
fn map_range_maps_every_page_to_its_offset() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1F_E000), Hpa::new(0x70_0000), 0x4000, RW, true).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x20_1004)).map(|t| t.0), Some(Hpa::new(0x70_3004)));
}

#[test]
fn map_range_uses_a_2m_leaf_when_both_addresses_are_aligned() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x60_0000), 0x20_0000, RW, true).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x20_0000)).map(|t| t.1), Some(PageSize::Size2M));
}

#[test]
fn map_range_uses_4k_leaves_when_pa_is_not_2m_aligned() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x60_1000), 0x20_0000, RW, true).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x20_0000)).map(|t| t.1), Some(PageSize::Size4K));
}

#[test]
fn map_range_respects_max_leaf() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.set_max_leaf(PageSize::Size4K);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x60_0000), 0x20_0000, RW, true).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x20_0000)).map(|t| t.1), Some(PageSize::Size4K));
}

#[test]
fn map_range_over_a_mapped_page_is_exist_and_maps_nothing() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x3000, 0x5000, RW).unwrap();
    let in_use = e.frames.in_use();
    let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x9000), 0x4000, RW, true);
    assert_eq!(r, Err(Errno::Exist));
    assert_eq!((pt.lookup(&e.mem, Iova::new(0x1000)), e.frames.in_use()), (None, in_use));
}

/// Semantics §5.8 (fail_nth): every allocation of a map_range that needs
/// five new table pages fails in turn; each failure leaves the table and
/// the allocator as they were, and the sixth attempt succeeds.
#[test]
fn map_range_fail_nth_sweep_fails_cleanly_then_succeeds() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    // Crosses a 1 GiB boundary: one PDPT, two PDs, two PTs.
    let (iova, pa, len) = (Iova::new(0x3FFF_F000), Hpa::new(0x5000), 0x2000);
    let root = page_bytes(&e.mem, pt.root());
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        e.frames.fail_nth(Some(attempts));
        let r = pt.map_range(&e.mem, &mut e.frames, iova, pa, len, RW, true);
        if r != Err(Errno::NoMem) || attempts > 16 {
            break r;
        }
        assert_eq!((e.frames.in_use(), pt.table_pages()), (1, 1), "attempt {attempts}");
        assert_eq!(page_bytes(&e.mem, pt.root()), root, "attempt {attempts}");
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x4000_0000)), None, "attempt {attempts}");
    };
    assert_eq!((result, attempts, pt.table_pages()), (Ok(()), 6, 6));
}

// ---- unmap ----

#[test]
fn unmap_returns_gather_with_range_and_leaf_count() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), 0x3000, RW, true).unwrap();
    let g = pt.unmap(&e.mem, Iova::new(0x2000), 0x2000).unwrap();
    assert_eq!((g.start(), g.end(), g.leaves()), (Iova::new(0x2000), Iova::new(0x4000), 2));
    g.complete(&mut e.frames);
}

#[test]
fn unmap_then_lookup_is_none() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!(pt.lookup(&e.mem, Iova::new(0x1000)), None);
}

#[test]
fn unmap_keeping_a_sibling_leaf_is_leaf_only() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), 0x2000, RW, true).unwrap();
    let g = pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap();
    assert_eq!((g.leaf_only(), g.freed_tables()), (true, 0));
    g.complete(&mut e.frames);
}

/// Table pages emptied by an unmap may still sit in the IOMMU's
/// paging-structure caches until the invalidation completes (VT-d §6.5),
/// so they are not returned to the allocator before `complete`.
#[test]
fn unmap_hands_emptied_tables_to_the_gather_not_the_allocator() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    let g = pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap();
    assert_eq!((g.freed_tables(), g.leaf_only(), e.frames.in_use(), pt.table_pages()), (3, false, 4, 1));
    g.complete(&mut e.frames);
}

#[test]
fn completing_the_gather_frees_the_emptied_tables() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!(e.frames.in_use(), 1);
}

#[test]
fn unmap_unlinks_the_emptied_table_from_its_parent() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!(entry(&e.mem, &pt, 0x1000, 4), 0);
}

#[test]
fn unmap_removes_a_fully_covered_2m_leaf() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_0000), PageSize::Size2M, RW, true).unwrap();
    let g = pt.unmap(&e.mem, Iova::new(0x20_0000), 0x40_0000).unwrap();
    assert_eq!((g.start(), g.end(), g.leaves()), (Iova::new(0x20_0000), Iova::new(0x40_0000), 1));
    g.complete(&mut e.frames);
}

/// A large leaf only partly inside the range is refused, and the check
/// comes before any change: the 4 KiB page inside the range stays mapped.
/// The range of a gather that freed tables is clipped to the unmapped
/// range: an invalidation anywhere in a freed table's span drops the
/// paging-structure-cache entries that point at it.
#[test]
fn gather_range_with_freed_tables_is_clipped_to_the_unmapped_range() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_0000), PageSize::Size2M, RW, true).unwrap();
    let g = pt.unmap(&e.mem, Iova::new(0x10_0000), 0x50_0000).unwrap();
    assert_eq!((g.start(), g.end(), g.freed_tables()), (Iova::new(0x10_0000), Iova::new(0x60_0000), 2));
    g.complete(&mut e.frames);
}

#[test]
fn unmap_partly_covering_a_2m_leaf_is_inval_and_changes_nothing() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1F_F000, 0x5000, RW).unwrap();
    pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x40_0000), PageSize::Size2M, RW, true).unwrap();
    assert_eq!(pt.unmap(&e.mem, Iova::new(0x1F_F000), 0x2000).unwrap_err(), Errno::Inval);
    assert!(pt.lookup(&e.mem, Iova::new(0x1F_F000)).is_some());
}

#[test]
fn unmap_of_an_unmapped_range_is_an_empty_gather() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    let g = pt.unmap(&e.mem, Iova::new(0x1000), 0x10_0000).unwrap();
    assert_eq!((g.is_empty(), g.start(), g.end()), (true, Iova::new(0x1000), Iova::new(0x1000)));
    g.complete(&mut e.frames);
}

#[test]
fn unmap_misaligned_is_inval() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    assert_eq!(pt.unmap(&e.mem, Iova::new(0x1800), 0x1000).unwrap_err(), Errno::Inval);
}

#[test]
fn unmap_overflowing_u64_is_overflow() {
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    assert_eq!(pt.unmap(&e.mem, Iova::new(0xFFFF_FFFF_FFFF_F000), 0x2000).unwrap_err(), Errno::Overflow);
}

#[test]
fn unmap_of_the_whole_input_range_empties_the_table() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    map4k(&mut e, &mut pt, 0x7FFF_FFFF_F000, 0x6000, RW).unwrap();
    let end = pt.input_end().raw();
    pt.unmap(&e.mem, Iova::ZERO, end).unwrap().complete(&mut e.frames);
    assert_eq!((pt.table_pages(), e.frames.in_use()), (1, 1));
}

// ---- gathers ----

#[test]
fn merge_covers_both_ranges_and_adds_counts() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    map4k(&mut e, &mut pt, 0x9000, 0x6000, RW).unwrap();
    let mut g = pt.unmap(&e.mem, Iova::new(0x9000), 0x1000).unwrap();
    g.merge(pt.unmap(&e.mem, Iova::new(0x1000), 0x1000).unwrap());
    assert_eq!((g.start(), g.end(), g.leaves(), g.freed_tables()), (Iova::new(0x1000), Iova::new(0xA000), 2, 3));
    g.complete(&mut e.frames);
}

#[test]
fn merging_an_empty_gather_keeps_the_range() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    map4k(&mut e, &mut pt, 0x9000, 0x6000, RW).unwrap();
    let mut g = pt.unmap(&e.mem, Iova::new(0x9000), 0x1000).unwrap();
    g.merge(pt.unmap(&e.mem, Iova::new(0x40_0000), 0x1000).unwrap());
    assert_eq!((g.start(), g.end()), (Iova::new(0x9000), Iova::new(0xA000)));
    g.complete(&mut e.frames);
}

// ---- destroy ----

#[test]
fn destroy_returns_every_table_page() {
    let mut e = env();
    let mut pt = table(&mut e, FS4);
    pt.map_range(&e.mem, &mut e.frames, Iova::new(0x3FFF_F000), Hpa::new(0x5000), 0x2000, RW, true).unwrap();
    pt.map(&e.mem, &mut e.frames, Iova::new(0x8000_0000), Hpa::new(0), PageSize::Size1G, RW, true).unwrap();
    pt.destroy(&e.mem, &mut e.frames);
    assert_eq!(e.frames.in_use(), 0);
}

// ---- the hardware walker agrees ----

const DEV: SourceId = SourceId::from_bdf(1, 0, 0);
/// The unit's memory: 256 MiB; the setup's root, context and PASID tables
/// come from [1 MiB, 8 MiB), the page tables under test from [8 MiB,
/// 16 MiB).
const HW_MEM: u64 = 256 << 20;

fn hw_entry(did: u16, config: PasidConfig) -> PasidEntryRepr {
    PasidEntryRepr { fpd: false, did: DomainId::new(did), pwsnp: false, pgsnp: false, config }
}

/// A full-featured VT-d unit whose device `DEV` translates PASID 1 through
/// `pt`, as a driver would program it.
fn hw_unit(mem: PagedMemory, pt: &IoPageTable) -> VtdUnit<PagedMemory, NullInterrupts> {
    let unit = VtdUnit::new(VtdConfig::full_featured(), mem, NullInterrupts);
    let mut alloc = PageAlloc::new(0x10_0000, 0x80_0000);
    let mut setup = VtdSetup::new(&mut alloc, true);
    setup.scalable_device(unit.mem(), &mut alloc, DEV, false, false);
    let levels = pt.format().levels();
    let config = match pt.format() {
        PtFormat::FirstStage { .. } => PasidConfig::FirstStage(FirstStageCfg {
            root: Gpa::new(pt.root().raw()),
            levels,
            sre: false,
            ere: false,
            wpe: false,
            eafe: false,
        }),
        PtFormat::SecondStage { .. } => {
            PasidConfig::SecondStage(SecondStageCfg { root: pt.root(), levels, ssade: false })
        }
        PtFormat::ArmS1 { .. } | PtFormat::ArmS2 { .. } => unreachable!("a VT-d unit walks VT-d formats only"),
    };
    setup.pasid_entry(unit.mem(), &mut alloc, DEV, Pasid::new(1), &hw_entry(1, config));
    setup.enable(&unit);
    unit
}

fn hw_translate(unit: &VtdUnit<PagedMemory, NullInterrupts>, addr: u64) -> Option<(Hpa, PageSize)> {
    let req = Request { sid: DEV, pasid: Some(Pasid::new(1)), addr: Iova::new(addr), access: Access::READ };
    unit.translate(&req).ok().map(|t| (t.addr, t.size))
}

/// Output address and page size per probe (`None`: no translation).
type Translations = Vec<Option<(Hpa, PageSize)>>;

/// Builds `format` tables with a 4 KiB page, a 2 MiB leaf and a 4 KiB page
/// that had a neighbour unmapped, then compares the unit's translations
/// with `lookup`.
fn hw_agrees(format: PtFormat) -> (Translations, Translations) {
    let mem = PagedMemory::new(HW_MEM);
    let mut frames = RangeFrames::new(Hpa::new(0x80_0000), Hpa::new(0x100_0000));
    let mut pt = IoPageTable::new(&mem, &mut frames, format).unwrap();
    pt.map_range(&mem, &mut frames, Iova::new(0x1000), Hpa::new(0x200_0000), 0x2000, RW, true).unwrap();
    pt.map(&mem, &mut frames, Iova::new(0x4000_0000), Hpa::new(0x400_0000), PageSize::Size2M, RW, true).unwrap();
    pt.unmap(&mem, Iova::new(0x2000), 0x1000).unwrap().complete(&mut frames);
    let probes = [0x1008, 0x2008, 0x4012_3456, 0x4020_0000, 0x7F_0000_0000];
    let sw = probes.iter().map(|a| pt.lookup(&mem, Iova::new(*a)).map(|(pa, size, _)| (pa, size))).collect();
    let unit = hw_unit(mem, &pt);
    let hw = probes.iter().map(|a| hw_translate(&unit, *a)).collect();
    (hw, sw)
}

/// VT-d §3.6: the unit's first-stage walk of an OS-built table gives what
/// `lookup` gives.
#[test]
fn vtd_unit_first_stage_walk_agrees_with_lookup() {
    let (hw, sw) = hw_agrees(FS4);
    assert_eq!(hw, sw);
}

/// VT-d §3.7: the unit's second-stage walk of an OS-built table gives what
/// `lookup` gives.
#[test]
fn vtd_unit_second_stage_walk_agrees_with_lookup() {
    let (hw, sw) = hw_agrees(PtFormat::SecondStage { levels: 4 });
    assert_eq!(hw, sw);
}

// ---- reference model ----

/// The model window: 8 MiB that cross a 1 GiB boundary (two PDPT entries).
const WIN_BASE: u64 = 0x3FC0_0000;
const WIN_PAGES: u64 = 2048;
const PA_BASE: u64 = 0x1_0000_0000;

#[derive(Debug, Clone)]
enum Op {
    /// One page at window page `page` (rounded down to 512 when large).
    Map {
        page: u64,
        large: bool,
        pa_page: u64,
        write: bool,
    },
    /// `pages` pages from window page `page`, best-fit leaves.
    MapRange {
        page: u64,
        pages: u64,
        pa_page: u64,
        write: bool,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..WIN_PAGES, any::<bool>(), 0..4096u64, any::<bool>()).prop_map(|(page, large, pa_page, write)| Op::Map {
            page,
            large,
            pa_page,
            write
        }),
        (0..WIN_PAGES, 1..1100u64, 0..4096u64, any::<bool>()).prop_map(|(page, pages, pa_page, write)| Op::MapRange {
            page,
            pages,
            pa_page,
            write
        }),
        (0..WIN_PAGES, 1..1100u64).prop_map(|(page, pages)| Op::Unmap { page, pages }),
    ]
}

/// Leaves by start address: (bytes, output, perm).
type Model = BTreeMap<u64, (u64, u64, Perm)>;

fn model_overlaps(m: &Model, start: u64, end: u64) -> bool {
    m.range(..end).next_back().is_some_and(|(s, (len, _, _))| s + len > start)
}

fn model_lookup(m: &Model, a: u64) -> Option<(Hpa, PageSize, Perm)> {
    let (s, (len, pa, perm)) = m.range(..=a).next_back()?;
    let size = if *len == 0x20_0000 { PageSize::Size2M } else { PageSize::Size4K };
    (a < s + len).then(|| (Hpa::new(pa + (a - s)), size, *perm))
}

fn perm_of(write: bool) -> Perm {
    Perm { read: true, write, exec: false }
}

/// Applies `op` to the table and the model; returns the probe range.
fn apply(e: &mut Env, pt: &mut IoPageTable, m: &mut Model, op: &Op) -> Result<(u64, u64), TestCaseError> {
    let page = |p: u64| WIN_BASE + (p << 12);
    match *op {
        Op::Map { page: p, large, pa_page, write } => {
            let (size, p, q) =
                if large { (PageSize::Size2M, p & !511, pa_page & !511) } else { (PageSize::Size4K, p, pa_page) };
            let (iova, pa, perm) = (page(p), PA_BASE + (q << 12), perm_of(write));
            let expected = if model_overlaps(m, iova, iova + size.bytes()) { Err(Errno::Exist) } else { Ok(()) };
            let r = pt.map(&e.mem, &mut e.frames, Iova::new(iova), Hpa::new(pa), size, perm, true);
            prop_assert_eq!(r, expected);
            if r.is_ok() {
                m.insert(iova, (size.bytes(), pa, perm));
            }
            Ok((iova, iova + size.bytes()))
        }
        Op::MapRange { page: p, pages, pa_page, write } => {
            let pages = pages.min(WIN_PAGES - p);
            let (iova, pa, len, perm) = (page(p), PA_BASE + (pa_page << 12), pages << 12, perm_of(write));
            let expected = if model_overlaps(m, iova, iova + len) { Err(Errno::Exist) } else { Ok(()) };
            let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(iova), Hpa::new(pa), len, perm, true);
            prop_assert_eq!(r, expected);
            if r.is_ok() {
                let mut off = 0;
                while off < len {
                    let big = (iova + off) % 0x20_0000 == 0 && (pa + off) % 0x20_0000 == 0 && len - off >= 0x20_0000;
                    let step = if big { 0x20_0000 } else { 0x1000 };
                    m.insert(iova + off, (step, pa + off, perm));
                    off += step;
                }
            }
            Ok((iova, iova + len))
        }
        Op::Unmap { page: p, pages } => {
            let pages = pages.min(WIN_PAGES - p);
            let (start, end) = (page(p), page(p + pages));
            let hit: Vec<(u64, u64)> = m
                .range(..end)
                .rev()
                .take_while(|(s, (len, _, _))| *s + len > start)
                .map(|(s, (l, _, _))| (*s, *l))
                .collect();
            let cut = hit.iter().any(|(s, l)| *s < start || s + l > end);
            match pt.unmap(&e.mem, Iova::new(start), end - start) {
                Ok(g) => {
                    prop_assert!(!cut);
                    prop_assert_eq!(g.leaves(), hit.len() as u64);
                    g.complete(&mut e.frames);
                    for (s, _) in hit {
                        m.remove(&s);
                    }
                }
                Err(err) => prop_assert!(cut && err == Errno::Inval, "unexpected {:?}", err),
            }
            Ok((start, end))
        }
    }
}

fn format() -> impl Strategy<Value = PtFormat> {
    prop_oneof![Just(FS4), Just(SS3), Just(PtFormat::SecondStage { levels: 4 }), Just(AS1_4), Just(AS2_3)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `lookup` agrees with a map of leaves over random map, map_range and
    /// unmap sequences; the only frames in use are the table's own; destroy
    /// returns them all.
    #[test]
    fn lookup_agrees_with_a_reference_model(format in format(), ops in proptest::collection::vec(op(), 1..24)) {
        let mut e = env();
        let mut pt = IoPageTable::new(&e.mem, &mut e.frames, format).unwrap();
        let mut m = Model::new();
        for op in &ops {
            let (start, end) = apply(&mut e, &mut pt, &mut m, op)?;
            let lo = start.saturating_sub(0x1000).max(WIN_BASE);
            let hi = (end + 0x1000).min(WIN_BASE + (WIN_PAGES << 12));
            for a in (lo..hi).step_by(0x1000) {
                prop_assert_eq!(pt.lookup(&e.mem, Iova::new(a + 8)), model_lookup(&m, a + 8), "at {:#x}", a + 8);
            }
            prop_assert_eq!(e.frames.in_use(), pt.table_pages());
        }
        pt.destroy(&e.mem, &mut e.frames);
        prop_assert_eq!(e.frames.in_use(), 0);
    }
}

// ---- Arm VMSAv8-64 formats: entry encoding (golden values) ----

/// Arm ARM D8.3: a 4 KiB stage-1 page, read/write, EL0, no execute: valid
/// and page type (bits 1:0 = 0b11), AttrIndx 0, AP = 0b01 (bit 6: EL0
/// access, bit 7 clear: writable), SH = 0b11 (9:8), AF (10), nG (11),
/// OA = 0x5000 (47:12), PXN (53), UXN (54).
#[test]
fn arm_s1_4k_rw_user_page_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x0060_0000_0000_5F43);
}

/// Arm ARM D8.3: a read-only 2 MiB stage-1 block (our level 2, Arm level
/// 2): block type (bits 1:0 = 0b01), AP = 0b11 (EL0, read-only), SH, AF,
/// nG, OA = 0x20_0000, PXN, UXN.
#[test]
fn arm_s1_2m_read_only_block_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x40_0000), Hpa::new(0x20_0000), PageSize::Size2M, RO, true).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x40_0000, 2), 0x0060_0000_0020_0FC1);
}

/// Arm ARM D8.4: a privileged (user = false) executable stage-1 page has
/// AP[1] clear and only UXN set: EL1 may execute it, EL0 may not reach it.
#[test]
fn arm_s1_supervisor_exec_page_clears_ap1_and_pxn() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    pt.map(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), PageSize::Size4K, RWX, false).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x0040_0000_0000_5F03);
}

/// Arm ARM D8.4: a user executable page clears UXN and keeps PXN (as
/// Linux does for EL0 pages).
#[test]
fn arm_s1_user_exec_page_clears_uxn_only() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RWX).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x0020_0000_0000_5F43);
}

/// Arm ARM D8.3: a 4 KiB stage-2 page, read/write, no execute: page type,
/// MemAttr = 0b1111 (5:2), S2AP = 0b11 (7:6), SH = 0b11, AF, OA = 0x5000,
/// XN = 0b10 (54:53).
#[test]
fn arm_s2_4k_rw_page_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, AS2_4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RW).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x1000, 1), 0x0040_0000_0000_57FF);
}

/// Arm ARM D8.3: a read-only executable 1 GiB stage-2 block (our level 3,
/// Arm level 1): block type, MemAttr 0b1111, S2AP = 0b01, SH, AF, OA =
/// 0x4000_0000, XN = 0b00.
#[test]
fn arm_s2_1g_read_only_exec_block_is_golden() {
    let mut e = env();
    let mut pt = table(&mut e, AS2_3);
    let rx = Perm { read: true, write: false, exec: true };
    pt.map(&e.mem, &mut e.frames, Iova::new(0x4000_0000), Hpa::new(0x4000_0000), PageSize::Size1G, rx, true).unwrap();
    assert_eq!(entry(&e.mem, &pt, 0x4000_0000, 3), 0x4000_077D);
}

/// Arm ARM D8.3: table descriptors are valid + table type (bits 1:0 =
/// 0b11) and the next table's address, with APTable, XNTable, PXNTable
/// and NSTable (63:59) all 0, at every level of both stages.
#[test]
fn arm_table_descriptors_are_type_and_address_only() {
    for format in ARM_FORMATS {
        let mut e = env();
        let mut pt = table(&mut e, format);
        map4k(&mut e, &mut pt, 0x1000, 0x5000, RO).unwrap();
        for level in 2..=format.levels() {
            let d = entry(&e.mem, &pt, 0x1000, level);
            assert_eq!(d & !OA_MASK, 0b11, "{format:?} level {level}");
            assert!((FRAMES_START..FRAMES_END).contains(&(d & OA_MASK)), "{format:?} level {level}");
        }
    }
}

/// Decoding what was encoded gives the same entry back, for pages,
/// blocks and table links.
#[test]
fn arm_encode_decode_round_trips() {
    let perms = [RO, RW, RWX, Perm { read: true, write: false, exec: true }];
    for format in ARM_FORMATS {
        for perm in perms {
            for user in [true, false] {
                let user = user || matches!(format, PtFormat::ArmS2 { .. });
                for (size, frame) in
                    [(PageSize::Size4K, 0x5000), (PageSize::Size2M, 0x20_0000), (PageSize::Size1G, 0x4000_0000)]
                {
                    let leaf = PteRepr::Leaf { frame: frame | 0xFFFF_0000_0000, size, perm, user };
                    assert_eq!(format.decode(format.encode(&leaf), size.level()), leaf, "{format:?}");
                }
            }
        }
        let link = PteRepr::Table { next: 0xFFFF_FFFF_F000, perm: TABLE_PERM, user: true };
        for level in 2..=4 {
            assert_eq!(format.decode(format.encode(&link), level), link, "{format:?}");
        }
    }
}

/// Arm ARM D8.3: descriptor type 0b01 at Arm level 3 (our level 1) is
/// reserved and a 4 KiB-granule block at Arm level 0 (our level 4) needs
/// LPA2: the walker faults on both, so they decode as not present; an
/// invalid descriptor (bit 0 clear) is not present whatever its other bits.
#[test]
fn arm_reserved_types_and_invalid_descriptors_decode_as_not_present() {
    for format in ARM_FORMATS {
        assert_eq!(format.decode(0x0000_0000_0000_5F41, 1), PteRepr::NotPresent, "{format:?}");
        assert_eq!(format.decode(0x0000_0000_0000_0F41, 4), PteRepr::NotPresent, "{format:?}");
        assert_eq!(format.decode(0x0060_0000_0000_5F42, 1), PteRepr::NotPresent, "{format:?}");
        assert_eq!(format.decode(0, 3), PteRepr::NotPresent, "{format:?}");
    }
}

/// A stage-2 leaf with S2AP = 0 is still a valid descriptor (accesses take
/// permission faults): it occupies its slot.
#[test]
fn arm_s2_leaf_without_access_decodes_as_a_leaf() {
    let r = AS2_4.decode(0x0040_0000_0000_573F, 1);
    let none = Perm { read: false, write: false, exec: false };
    assert_eq!(r, PteRepr::Leaf { frame: 0x5000, size: PageSize::Size4K, perm: none, user: true });
}

// ---- Arm formats: construction and bounds ----

/// Arm ARM D8.2: with the 4 KiB granule and no LPA2 a tree has 3 or 4
/// levels (start level 1 or 0).
#[test]
fn arm_formats_have_three_or_four_levels() {
    let mut e = env();
    for bad in [PtFormat::ArmS1 { levels: 5 }, PtFormat::ArmS1 { levels: 2 }, PtFormat::ArmS2 { levels: 5 }] {
        let r = IoPageTable::new(&e.mem, &mut e.frames, bad);
        assert_eq!((r.unwrap_err(), e.frames.in_use()), (Errno::Inval, 0), "{bad:?}");
    }
    let bits = ARM_FORMATS.map(PtFormat::input_bits);
    assert_eq!(bits, [39, 48, 39, 48]);
}

/// An Arm stage-1 table is a TTB0 tree: the whole 48-bit range, with no
/// canonical halving (unlike the x86 first stage).
#[test]
fn arm_s1_maps_the_whole_ttb0_range() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    assert_eq!(pt.input_end(), Iova::new(1 << 48));
    map4k(&mut e, &mut pt, 0xFFFF_FFFF_F000, 0x5000, RW).unwrap();
    assert_eq!(pt.lookup(&e.mem, Iova::new(0xFFFF_FFFF_F010)).map(|t| t.0), Some(Hpa::new(0x5010)));
    assert_eq!(map4k(&mut e, &mut pt, 1 << 48, 0x5000, RW), Err(Errno::Inval));
}

#[test]
fn arm_3_level_map_beyond_39_bits_is_inval() {
    for format in [AS1_3, AS2_3] {
        let mut e = env();
        let mut pt = table(&mut e, format);
        assert_eq!(map4k(&mut e, &mut pt, 1 << 39, 0x5000, RW), Err(Errno::Inval), "{format:?}");
    }
}

/// Arm ARM D8.3: the OA field ends at bit 47 without LPA, so an output
/// address at 2^48 cannot be expressed; VT-d's ADDR field goes on to bit 51.
#[test]
fn arm_map_pa_beyond_48_bits_is_inval() {
    for format in ARM_FORMATS {
        let mut e = env();
        let mut pt = table(&mut e, format);
        assert_eq!(map4k(&mut e, &mut pt, 0x1000, 1 << 48, RW), Err(Errno::Inval), "{format:?}");
        let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new((1 << 48) - 0x1000), 0x2000, RW, true);
        assert_eq!((r, e.frames.in_use()), (Err(Errno::Inval), 1), "{format:?}");
        assert_eq!(map4k(&mut e, &mut pt, 0x1000, (1 << 48) - 0x1000, RW), Ok(()), "{format:?}");
    }
    let mut e = env();
    let mut pt = table(&mut e, SS3);
    assert_eq!(map4k(&mut e, &mut pt, 0x1000, 1 << 48, RW), Ok(()));
}

/// A table page the allocator hands out beyond the 48-bit OA field cannot
/// be linked: the map fails with NoMem and frees it.
#[test]
fn arm_table_page_beyond_48_bits_is_nomem() {
    let mem = PagedMemory::new(MEM_SIZE);
    let mut low = RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(FRAMES_START + 0x1000));
    let mut pt = IoPageTable::new(&mem, &mut low, AS1_4).unwrap();
    let mut high = RangeFrames::new(Hpa::new(1 << 48), Hpa::new((1 << 48) + 0x10_0000));
    let r = pt.map(&mem, &mut high, Iova::new(0x1000), Hpa::new(0x5000), PageSize::Size4K, RW, true);
    assert_eq!((r, high.in_use(), pt.table_pages()), (Err(Errno::NoMem), 0, 1));
}

/// Arm ARM D8.4: stage 1 has no read-permission bit, so a mapping must
/// grant read; stage 2 needs read or write (S2AP = 0 is inaccessible).
#[test]
fn arm_perms_the_formats_cannot_express_are_inval() {
    let wo = Perm { read: false, write: true, exec: false };
    let xo = Perm { read: false, write: false, exec: true };
    let mut e = env();
    let mut s1 = table(&mut e, AS1_4);
    assert_eq!(map4k(&mut e, &mut s1, 0x1000, 0x5000, wo), Err(Errno::Inval));
    let mut s2 = table(&mut e, AS2_4);
    assert_eq!(map4k(&mut e, &mut s2, 0x1000, 0x5000, xo), Err(Errno::Inval));
    assert_eq!(map4k(&mut e, &mut s2, 0x1000, 0x5000, wo), Ok(()));
    assert_eq!(s2.lookup(&e.mem, Iova::new(0x1000)), Some((Hpa::new(0x5000), PageSize::Size4K, wo)));
}

// ---- Arm formats: map, lookup, unmap round trips ----

/// The same sequence for every Arm format: 4 KiB, 2 MiB and 1 GiB leaves,
/// a range crossing a 1 GiB boundary, Exist on overlap, unmap with its
/// gather, and a full teardown that returns every table page.
#[test]
fn arm_map_lookup_unmap_round_trips() {
    let rx = Perm { read: true, write: false, exec: true };
    for format in ARM_FORMATS {
        let mut e = env();
        let mut pt = table(&mut e, format);
        let f = format!("{format:?}");
        map4k(&mut e, &mut pt, 0x7000, 0x9000, RW).unwrap();
        assert_eq!((pt.table_pages(), e.frames.in_use()), (usize::from(format.levels()), usize::from(format.levels())));
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x7123)), Some((Hpa::new(0x9123), PageSize::Size4K, RW)), "{f}");
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x8000)), None, "{f}");
        pt.map(&e.mem, &mut e.frames, Iova::new(0x20_0000), Hpa::new(0x80_0000), PageSize::Size2M, RO, true).unwrap();
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x3F_F008)), Some((Hpa::new(0x9F_F008), PageSize::Size2M, RO)), "{f}");
        pt.map(&e.mem, &mut e.frames, Iova::new(0x8000_0000), Hpa::new(0xC000_0000), PageSize::Size1G, rx, true)
            .unwrap();
        let want = Some((Hpa::new(0xC123_4567), PageSize::Size1G, rx));
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x8123_4567)), want, "{f}");
        pt.map_range(&e.mem, &mut e.frames, Iova::new(0x3FFF_F000), Hpa::new(0x5000), 0x2000, RW, true).unwrap();
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x4000_0004)).map(|t| t.0), Some(Hpa::new(0x6004)), "{f}");
        assert_eq!(map4k(&mut e, &mut pt, 0x7000, 0x1_0000, RW), Err(Errno::Exist), "{f}");
        assert_eq!(map4k(&mut e, &mut pt, 0x20_1000, 0x1_0000, RW), Err(Errno::Exist), "{f}");
        assert_eq!(pt.unmap(&e.mem, Iova::new(0x20_0000), 0x1000).unwrap_err(), Errno::Inval, "{f}");
        let g = pt.unmap(&e.mem, Iova::new(0x7000), 0x1000).unwrap();
        // The page's table held nothing else: it is unlinked too.
        let got = (g.start(), g.end(), g.leaves(), g.freed_tables());
        assert_eq!(got, (Iova::new(0x7000), Iova::new(0x8000), 1, 1), "{f}");
        g.complete(&mut e.frames);
        assert_eq!(pt.lookup(&e.mem, Iova::new(0x7000)), None, "{f}");
        assert!(pt.leaf_entry(&e.mem, Iova::new(0x20_0000)).is_some(), "{f}");
        let end = pt.input_end().raw();
        let g = pt.unmap(&e.mem, Iova::ZERO, end).unwrap();
        assert_eq!(g.leaves(), 4, "{f}");
        g.complete(&mut e.frames);
        assert_eq!((pt.table_pages(), e.frames.in_use()), (1, 1), "{f}");
        pt.destroy(&e.mem, &mut e.frames);
        assert_eq!(e.frames.in_use(), 0, "{f}");
    }
}

#[test]
fn arm_map_fail_nth_sweep_fails_cleanly_then_succeeds() {
    for format in [AS1_4, AS2_3] {
        let mut e = env();
        let mut pt = table(&mut e, format);
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            e.frames.fail_nth(Some(attempts));
            let r = pt.map_range(&e.mem, &mut e.frames, Iova::new(0x3FFF_F000), Hpa::new(0x5000), 0x2000, RW, true);
            if r != Err(Errno::NoMem) || attempts > 16 {
                break r;
            }
            assert_eq!((e.frames.in_use(), pt.table_pages()), (1, 1), "{format:?} attempt {attempts}");
        };
        e.frames.fail_nth(None);
        // 4 levels: one level-3 table, two level-2, two level-1; 3 levels:
        // the root covers both 1 GiB halves, so two level-2 and two level-1.
        let tables = if format.levels() == 4 { 5 } else { 4 };
        assert_eq!((result, attempts), (Ok(()), tables + 1), "{format:?}");
    }
}

// ---- Arm formats: the SMMUv3 walker agrees ----

/// An SMMUv3's view of an OS-built Arm table: 4 KiB granule, T0SZ /
/// S2T0SZ = 64 − input bits, one start table at Arm level `4 − levels`
/// (0 for 48 bits, 1 for 39), 48-bit output (SMMUv3 §5.2, §5.4).
fn smmu_tables(pt: &IoPageTable) -> TableCfg {
    let input_bits = pt.input_bits();
    let start_level = 4 - pt.format().levels();
    assert_eq!(start_level, Granule::G4K.start_level(input_bits));
    TableCfg { base: pt.root().raw(), granule: Granule::G4K, input_bits, start_level, root_bits: 9, out_bits: 48 }
}

/// A CD translating through `tables` as TTB0 (EPD1: no TTB1 walks), with
/// no WXN, UWXN, PAN or AFFD.
fn smmu_cd(tables: TableCfg) -> CdCfg {
    CdCfg {
        asid: 1,
        tt: [Some(tables), None],
        tbi: [false; 2],
        had: [false; 2],
        affd: false,
        wxn: false,
        uwxn: false,
        pan: false,
        record: false,
        stall: false,
    }
}

/// What the SMMUv3 walker makes of `addr` in `pt`: the output address
/// (offset included), log2 of the leaf size and the permissions, or the
/// fault kind.
fn smmu_walk(mem: &PagedMemory, pt: &IoPageTable, addr: u64) -> Result<(u64, u32, Perms), TransFaultKind> {
    let tables = smmu_tables(pt);
    let mut refs = 0;
    let (oa, shift, perms) = match pt.format() {
        PtFormat::ArmS1 { .. } => {
            let cd = smmu_cd(tables);
            let (half, t) = select_half(&cd, addr).map_err(|f| f.kind)?;
            let o = s1_walk(mem, &cd, half, &t, addr, None, &mut refs).map_err(|f| f.kind)?;
            (o.oa, o.shift, o.perms)
        }
        PtFormat::ArmS2 { .. } => {
            let s2 = S2Cfg { tables, affd: false, record: false, stall: false };
            let o = s2_walk(mem, &s2, addr, FaultClass::In, &mut refs).map_err(|f| f.kind)?;
            (o.pa, o.shift, o.perms)
        }
        other => panic!("{other:?} is not an SMMUv3 format"),
    };
    Ok((oa | (addr & ((1u64 << shift) - 1)), shift, perms))
}

/// Whether an SMMU must allow `a` on a leaf with `perm` and `user`
/// (Arm ARM D8.4). Stage 1: EL0 reaches only AP[1] pages; a write needs
/// AP[2] clear; EL0 executes user pages without UXN, EL1 executes
/// privileged pages without PXN (user pages are always PXN). Stage 2:
/// S2AP and XN, the same for both privileges.
fn arm_allows(s2: bool, perm: Perm, user: bool, a: Access) -> bool {
    if s2 {
        return perm.allows(a);
    }
    if !a.privileged && !user {
        return false;
    }
    let exec_ok = perm.exec && (user != a.privileged);
    (!a.write || perm.write) && (!a.exec || exec_ok)
}

const ACCESSES: [Access; 8] = [
    Access::READ,
    Access::WRITE,
    Access::READ_WRITE,
    Access { read: true, write: false, exec: true, privileged: false },
    Access { read: true, write: false, exec: false, privileged: true },
    Access { read: false, write: true, exec: false, privileged: true },
    Access { read: true, write: true, exec: false, privileged: true },
    Access { read: true, write: false, exec: true, privileged: true },
];

/// Arm ARM D8.4 through the walker: an unprivileged write to a read-only
/// user page faults, a privileged read of it does not; EL0 cannot reach a
/// privileged page at all; EL1 cannot execute a user page.
#[test]
fn smmu_s1_permissions_follow_ap_uxn_pxn() {
    let mut e = env();
    let mut pt = table(&mut e, AS1_4);
    let rx = Perm { read: true, write: false, exec: true };
    pt.map(&e.mem, &mut e.frames, Iova::new(0x1000), Hpa::new(0x5000), PageSize::Size4K, rx, true).unwrap();
    pt.map(&e.mem, &mut e.frames, Iova::new(0x2000), Hpa::new(0x6000), PageSize::Size4K, RW, false).unwrap();
    let (pa, _, user_ro) = smmu_walk(&e.mem, &pt, 0x1010).unwrap();
    assert_eq!(pa, 0x5010);
    assert!(!user_ro.allows(Access::WRITE));
    assert!(user_ro.allows(Access::READ) && user_ro.allows(Access::READ.privileged()));
    assert!(user_ro.allows(Access::READ.exec()) && !user_ro.allows(Access::READ.exec().privileged()));
    let (_, _, kernel_rw) = smmu_walk(&e.mem, &pt, 0x2000).unwrap();
    assert!(!kernel_rw.allows(Access::READ) && !kernel_rw.allows(Access::WRITE));
    assert!(kernel_rw.allows(Access::READ_WRITE.privileged()));
    assert_eq!(smmu_walk(&e.mem, &pt, 0x3000).unwrap_err(), TransFaultKind::Translation);
}

/// Stage 2 through the walker: S2AP read-only refuses writes at both
/// privileges; XN = 0b10 refuses execution.
#[test]
fn smmu_s2_permissions_follow_s2ap_and_xn() {
    let mut e = env();
    let mut pt = table(&mut e, AS2_4);
    map4k(&mut e, &mut pt, 0x1000, 0x5000, RO).unwrap();
    let (pa, shift, p) = smmu_walk(&e.mem, &pt, 0x1008).unwrap();
    assert_eq!((pa, shift), (0x5008, 12));
    assert!(p.allows(Access::READ) && p.allows(Access::READ.privileged()));
    assert!(!p.allows(Access::WRITE) && !p.allows(Access::WRITE.privileged()) && !p.allows(Access::READ.exec()));
}

/// The windows Arm mappings go to: below and across the 1 GiB boundary,
/// and the top 2 GiB of the 39-bit range (the top of the root table of
/// a 3-level tree, and of entry 0 of a 4-level one).
const ARM_REGIONS: [u64; 2] = [0, 0x7E_0000_0000];
/// Each window is 8 GiB: 2^21 pages.
const ARM_WIN_PAGES: u64 = 1 << 21;

#[derive(Debug, Clone)]
enum ArmOp {
    Map {
        region: usize,
        page: u64,
        /// 0: 4 KiB, 1: 2 MiB, 2: 1 GiB.
        size: u8,
        pa_page: u64,
        write: bool,
        exec: bool,
        user: bool,
    },
    Unmap {
        region: usize,
        page: u64,
        pages: u64,
    },
}

fn arm_op() -> impl Strategy<Value = ArmOp> {
    prop_oneof![
        4 => (0..2usize, 0..ARM_WIN_PAGES, 0..3u8, 0..(1u64 << 28), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(region, page, size, pa_page, write, exec, user)| ArmOp::Map {
                region, page, size, pa_page, write, exec, user
            }),
        1 => (0..2usize, 0..ARM_WIN_PAGES, 1..1100u64).prop_map(|(region, page, pages)| ArmOp::Unmap {
            region, page, pages
        }),
    ]
}

/// Leaves by start address: (bytes, output, perm, user).
type ArmModel = BTreeMap<u64, (u64, u64, Perm, bool)>;

fn arm_model_lookup(m: &ArmModel, a: u64) -> Option<(u64, PageSize, Perm, bool)> {
    let (s, (len, pa, perm, user)) = m.range(..=a).next_back()?;
    let size = match len {
        0x1000 => PageSize::Size4K,
        0x20_0000 => PageSize::Size2M,
        _ => PageSize::Size1G,
    };
    (a < s + len).then_some((pa + (a - s), size, *perm, *user))
}

/// Applies `op` to the table and the model.
fn arm_apply(e: &mut Env, pt: &mut IoPageTable, m: &mut ArmModel, op: &ArmOp) -> Result<(), TestCaseError> {
    let s2 = matches!(pt.format(), PtFormat::ArmS2 { .. });
    let end_of_input = pt.input_end().raw();
    match *op {
        ArmOp::Map { region, page, size, pa_page, write, exec, user } => {
            let size = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][usize::from(size)];
            let align = !((size.bytes() >> 12) - 1);
            let iova = ARM_REGIONS[region] + ((page & align) << 12);
            let pa = (pa_page & align) << 12;
            let perm = Perm { read: true, write, exec };
            let user = user || s2;
            let end = iova + size.bytes();
            let overlaps = m.range(..end).next_back().is_some_and(|(s, (len, ..))| s + len > iova);
            let expected = if overlaps { Err(Errno::Exist) } else { Ok(()) };
            let r = pt.map(&e.mem, &mut e.frames, Iova::new(iova), Hpa::new(pa), size, perm, user);
            prop_assert!(end <= end_of_input);
            prop_assert_eq!(r, expected);
            if r.is_ok() {
                m.insert(iova, (size.bytes(), pa, perm, user));
            }
        }
        ArmOp::Unmap { region, page, pages } => {
            let pages = pages.min(ARM_WIN_PAGES - page);
            let (start, end) = (ARM_REGIONS[region] + (page << 12), ARM_REGIONS[region] + ((page + pages) << 12));
            let hit: Vec<(u64, u64)> = m
                .range(..end)
                .rev()
                .take_while(|(s, (len, ..))| *s + len > start)
                .map(|(s, (l, ..))| (*s, *l))
                .collect();
            let cut = hit.iter().any(|(s, l)| *s < start || s + l > end);
            match pt.unmap(&e.mem, Iova::new(start), end - start) {
                Ok(g) => {
                    prop_assert!(!cut);
                    prop_assert_eq!(g.leaves(), hit.len() as u64);
                    g.complete(&mut e.frames);
                    for (s, _) in hit {
                        m.remove(&s);
                    }
                }
                Err(err) => prop_assert!(cut && err == Errno::Inval, "unexpected {:?}", err),
            }
        }
    }
    Ok(())
}

fn arm_format() -> impl Strategy<Value = PtFormat> {
    prop_oneof![Just(AS1_4), Just(AS1_3), Just(AS2_4), Just(AS2_3)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// SMMUv3 §3.4 / Arm ARM D8: random mappings built by `IoPageTable` in
    /// an Arm format are translated by the SMMUv3 walker (`s1_walk` for
    /// stage 1 through a CD's TTB0, `s2_walk` for stage 2) exactly as the
    /// model and `lookup` say: the same output, leaf size, and permission
    /// outcome for reads, writes and fetches at both privileges; an
    /// unmapped address is a translation fault.
    #[test]
    fn smmu_walker_agrees_with_os_built_arm_tables(
        format in arm_format(),
        ops in proptest::collection::vec(arm_op(), 1..24),
        extra in proptest::collection::vec((0..2usize, 0..(ARM_WIN_PAGES << 12)), 8),
    ) {
        let mut e = env();
        let mut pt = IoPageTable::new(&e.mem, &mut e.frames, format).unwrap();
        let s2 = matches!(format, PtFormat::ArmS2 { .. });
        let mut m = ArmModel::new();
        for op in &ops {
            arm_apply(&mut e, &mut pt, &mut m, op)?;
        }
        let mut probes: Vec<u64> = extra.iter().map(|(r, off)| ARM_REGIONS[*r] + off).collect();
        for (s, (len, ..)) in &m {
            probes.extend([s + 8, s + len - 8, s + len + 0x10]);
            if let Some(before) = s.checked_sub(0xFF0) {
                probes.push(before);
            }
        }
        for a in probes {
            let hw = smmu_walk(&e.mem, &pt, a);
            let sw = pt.lookup(&e.mem, Iova::new(a));
            match arm_model_lookup(&m, a) {
                None => {
                    prop_assert_eq!(hw.map(|t| t.0), Err(TransFaultKind::Translation), "at {:#x}", a);
                    prop_assert_eq!(sw, None, "at {:#x}", a);
                }
                Some((pa, size, perm, user)) => {
                    prop_assert_eq!(sw, Some((Hpa::new(pa), size, perm)), "at {:#x}", a);
                    let (hw_pa, shift, perms) = hw.map_err(|k| TestCaseError::fail(format!("{k:?} at {a:#x}")))?;
                    prop_assert_eq!((hw_pa, shift), (pa, size.shift()), "at {:#x}", a);
                    for acc in ACCESSES {
                        prop_assert_eq!(
                            perms.allows(acc), arm_allows(s2, perm, user, acc),
                            "{:?} at {:#x} ({:?}, user {})", acc, a, perm, user
                        );
                    }
                }
            }
        }
        pt.destroy(&e.mem, &mut e.frames);
        prop_assert_eq!(e.frames.in_use(), 0);
    }
}
