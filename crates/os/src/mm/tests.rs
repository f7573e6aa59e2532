use iommu_format::smmuv3::desc::Granule;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr};
use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::PageAlloc;
use iommu_types::{DomainId, Gpa, NullInterrupts, PagedMemory, Pasid, SourceId};
use iommu_walk::smmuv3::config::{CdCfg, TableCfg};
use iommu_walk::smmuv3::page::{s1_walk, TransFaultKind};

use super::*;
use crate::frames::RangeFrames;

/// Simulated memory: 64 MiB; every frame (tables and data) comes from
/// [1 MiB, 16 MiB).
const MEM_SIZE: u64 = 64 << 20;
const FRAMES_START: u64 = 0x10_0000;
const FRAMES_END: u64 = 0x100_0000;

const RW: Perm = Perm { read: true, write: true, exec: false };
const RO: Perm = Perm { read: true, write: false, exec: false };

/// A fixed user address for tests that place their VMA.
const VA: u64 = 0x4000_0000;

struct Env {
    mem: PagedMemory,
    frames: RangeFrames,
    mm: Mm,
}

fn env() -> Env {
    let mem = PagedMemory::new(MEM_SIZE);
    let mut frames = RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(FRAMES_END));
    let mm = Mm::new(&mem, &mut frames).unwrap();
    Env { mem, frames, mm }
}

/// An mm whose page tables are in `format`.
fn env_in(format: PtFormat) -> Env {
    let mem = PagedMemory::new(MEM_SIZE);
    let mut frames = RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(FRAMES_END));
    let mm = Mm::with_format(&mem, &mut frames, format).unwrap();
    Env { mem, frames, mm }
}

/// An mm with a VMA of `pages` pages at [`VA`] with `perm`.
fn env_with_vma(pages: u64, perm: Perm) -> Env {
    let mut e = env();
    e.mm.mmap(Some(VA), pages << 12, perm).unwrap();
    e
}

/// The AArch64 format an Arm mm uses: VMSAv8-64 stage 1, 4 KiB granule,
/// 48-bit TTBR0 range.
const ARM: PtFormat = PtFormat::ArmS1 { levels: 4 };

/// An Arm mm with a VMA of `pages` pages at [`VA`] with `perm`.
fn arm_with_vma(pages: u64, perm: Perm) -> Env {
    let mut e = env_in(ARM);
    e.mm.mmap(Some(VA), pages << 12, perm).unwrap();
    e
}

fn fault(e: &mut Env, addr: u64, access: Access) -> Result<(), Errno> {
    e.mm.handle_fault(&e.mem, &mut e.frames, addr, access)
}

// ---- mmap ----

#[test]
fn new_mm_has_no_vmas_and_no_resident_pages() {
    let e = env();
    assert_eq!((e.mm.vmas().count(), e.mm.resident_pages(), e.frames.in_use()), (0, 0, 1));
}

#[test]
fn mmap_fixed_returns_the_address_and_records_the_vma() {
    let mut e = env();
    assert_eq!(e.mm.mmap(Some(VA), 0x2000, RW), Ok(VA));
    assert_eq!(e.mm.vmas().copied().collect::<Vec<_>>(), [Vma { start: VA, end: VA + 0x2000, perm: RW }]);
}

#[test]
fn mmap_rounds_the_length_up_to_pages() {
    let mut e = env();
    e.mm.mmap(Some(VA), 0x1001, RW).unwrap();
    assert_eq!(e.mm.vmas().next().map(|v| v.end), Some(VA + 0x2000));
}

#[test]
fn mmap_is_lazy() {
    let mut e = env();
    e.mm.mmap(Some(VA), 0x10_0000, RW).unwrap();
    assert_eq!((e.mm.resident_pages(), e.mm.translate(&e.mem, VA), e.frames.in_use()), (0, None, 1));
}

#[test]
fn mmap_of_zero_length_is_inval() {
    let mut e = env();
    assert_eq!(e.mm.mmap(None, 0, RW), Err(Errno::Inval));
}

#[test]
fn mmap_fixed_misaligned_is_inval() {
    let mut e = env();
    assert_eq!(e.mm.mmap(Some(VA + 0x10), 0x1000, RW), Err(Errno::Inval));
}

/// Intel SDM Vol 3 §4.5: user space is the lower canonical half, below
/// 2^47.
#[test]
fn mmap_fixed_reaching_past_user_space_is_inval() {
    let mut e = env();
    assert_eq!(e.mm.mmap(Some(Mm::USER_END - 0x1000), 0x2000, RW), Err(Errno::Inval));
}

#[test]
fn mmap_fixed_overlapping_a_vma_is_exist() {
    let mut e = env_with_vma(4, RW);
    assert_eq!(e.mm.mmap(Some(VA + 0x3000), 0x2000, RO), Err(Errno::Exist));
}

#[test]
fn mmap_fixed_adjacent_to_a_vma_succeeds() {
    let mut e = env_with_vma(4, RW);
    assert_eq!(e.mm.mmap(Some(VA + 0x4000), 0x1000, RO), Ok(VA + 0x4000));
}

#[test]
fn mmap_without_address_starts_at_mmap_base() {
    let mut e = env();
    assert_eq!(e.mm.mmap(None, 0x1000, RW), Ok(Mm::MMAP_BASE));
}

#[test]
fn mmap_without_address_skips_a_gap_too_small() {
    let mut e = env();
    e.mm.mmap(Some(Mm::MMAP_BASE + 0x1000), 0x1000, RW).unwrap();
    assert_eq!(e.mm.mmap(None, 0x2000, RW), Ok(Mm::MMAP_BASE + 0x2000));
}

#[test]
fn mmap_larger_than_user_space_is_nomem() {
    let mut e = env();
    assert_eq!(e.mm.mmap(None, Mm::USER_END + 1, RW), Err(Errno::NoMem));
}

#[test]
fn mmap_beyond_max_vmas_is_nomem() {
    let mut e = env();
    for _ in 0..Mm::MAX_VMAS {
        e.mm.mmap(None, 0x1000, RW).unwrap();
    }
    assert_eq!(e.mm.mmap(None, 0x1000, RW), Err(Errno::NoMem));
}

// ---- faults ----

#[test]
fn fault_populates_a_zeroed_frame() {
    let mut e = env_with_vma(1, RW);
    // The frame the fault will get (the one after the PML4) holds garbage.
    e.mem.write(Hpa::new(FRAMES_START + 0x1000 + 8), &[0xAA; 8]).unwrap();
    fault(&mut e, VA + 8, Access::READ).unwrap();
    let pa = e.mm.translate(&e.mem, VA).unwrap();
    assert_eq!((e.mem.read_u64(Hpa::new(pa.raw() + 8)).unwrap(), e.mm.resident_pages()), (0, 1));
}

/// The raw PTE of `va`, walked from CR3 by hand (Intel SDM Vol 3 §4.5).
fn raw_pte(e: &Env, va: u64) -> u64 {
    let mut table = e.mm.cr3().raw();
    for level in (2..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 0x1FF;
        table = e.mem.read_u64(Hpa::new(table + 8 * index)).unwrap() & 0x000F_FFFF_FFFF_F000;
    }
    e.mem.read_u64(Hpa::new(table + 8 * ((va >> 12) & 0x1FF))).unwrap()
}

/// Intel SDM Vol 3 §4.5 / VT-d §9.7: the PTE a write fault writes for a
/// read/write VMA is P (bit 0), R/W (1), U/S (2), the frame (51:12) and
/// XD (63).
#[test]
fn fault_writes_a_user_rw_no_exec_leaf() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let frame = e.mm.translate(&e.mem, VA).unwrap().raw();
    assert_eq!(raw_pte(&e, VA), 0x8000_0000_0000_0007 | frame);
}

/// Intel SDM Vol 3 §4.5: a read-only executable VMA gets P and U/S only.
#[test]
fn fault_on_a_read_exec_vma_writes_a_user_read_only_exec_leaf() {
    let mut e = env_with_vma(1, Perm { read: true, write: false, exec: true });
    fault(&mut e, VA, Access::READ.exec()).unwrap();
    let frame = e.mm.translate(&e.mem, VA).unwrap().raw();
    assert_eq!(raw_pte(&e, VA), 0x5 | frame);
}

#[test]
fn fault_outside_every_vma_is_fault() {
    let mut e = env_with_vma(1, RW);
    assert_eq!(fault(&mut e, VA + 0x1000, Access::READ), Err(Errno::Fault));
}

#[test]
fn write_fault_on_a_read_only_vma_is_fault() {
    let mut e = env_with_vma(1, RO);
    assert_eq!(fault(&mut e, VA, Access::WRITE), Err(Errno::Fault));
}

#[test]
fn exec_fault_on_a_non_exec_vma_is_fault() {
    let mut e = env_with_vma(1, RW);
    assert_eq!(fault(&mut e, VA, Access::READ.exec()), Err(Errno::Fault));
}

#[test]
fn fault_on_a_prot_none_vma_is_fault() {
    let mut e = env_with_vma(1, Perm::NONE);
    assert_eq!(fault(&mut e, VA, Access::READ), Err(Errno::Fault));
}

/// x86-64: a write-only mapping is readable (a present page always is).
#[test]
fn read_fault_on_a_write_only_vma_succeeds() {
    let mut e = env_with_vma(1, Perm { read: false, write: true, exec: false });
    assert_eq!(fault(&mut e, VA, Access::READ), Ok(()));
}

#[test]
fn fault_on_a_present_page_keeps_its_frame() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::READ).unwrap();
    let pa = e.mm.translate(&e.mem, VA);
    fault(&mut e, VA + 0x10, Access::WRITE).unwrap();
    assert_eq!((e.mm.translate(&e.mem, VA), e.mm.resident_pages()), (pa, 1));
}

/// Semantics §5.8 (fail_nth): a fault needs a data frame and three table
/// pages; each failing allocation leaves nothing resident and no frame
/// allocated, and the fifth attempt succeeds.
#[test]
fn fault_fail_nth_sweep_fails_cleanly_then_succeeds() {
    let mut e = env_with_vma(1, RW);
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        e.frames.fail_nth(Some(attempts));
        let r = fault(&mut e, VA, Access::WRITE);
        if r != Err(Errno::NoMem) || attempts > 16 {
            break r;
        }
        assert_eq!((e.frames.in_use(), e.mm.resident_pages()), (1, 0), "attempt {attempts}");
        assert_eq!(e.mm.translate(&e.mem, VA), None, "attempt {attempts}");
    };
    assert_eq!((result, attempts, e.frames.in_use()), (Ok(()), 5, 5));
}

// ---- CPU loads and stores ----

#[test]
fn write_then_read_round_trips_across_a_page_boundary() {
    let mut e = env_with_vma(2, RW);
    let data: Vec<u8> = (0..64).collect();
    e.mm.write(&e.mem, &mut e.frames, VA + 0xFE0, &data).unwrap();
    let mut buf = [0u8; 64];
    e.mm.read(&e.mem, &mut e.frames, VA + 0xFE0, &mut buf).unwrap();
    assert_eq!((buf.as_slice(), e.mm.resident_pages()), (data.as_slice(), 2));
}

#[test]
fn write_to_a_read_only_vma_is_fault() {
    let mut e = env_with_vma(1, RO);
    assert_eq!(e.mm.write(&e.mem, &mut e.frames, VA, &[1]), Err(Errno::Fault));
}

#[test]
fn read_of_a_read_only_vma_sees_zeroes() {
    let mut e = env_with_vma(1, RO);
    let mut buf = [0xFFu8; 4];
    e.mm.read(&e.mem, &mut e.frames, VA, &mut buf).unwrap();
    assert_eq!(buf, [0; 4]);
}

#[test]
fn write_running_past_the_vma_is_fault() {
    let mut e = env_with_vma(1, RW);
    assert_eq!(e.mm.write(&e.mem, &mut e.frames, VA + 0xFFF, &[1, 2]), Err(Errno::Fault));
}

#[test]
fn write_overflowing_the_address_space_is_fault() {
    let mut e = env();
    assert_eq!(e.mm.write(&e.mem, &mut e.frames, u64::MAX, &[1, 2]), Err(Errno::Fault));
}

// ---- munmap ----

#[test]
fn munmap_then_translate_is_none() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let u = e.mm.munmap(&e.mem, VA, 0x1000).unwrap();
    assert_eq!(e.mm.translate(&e.mem, VA), None);
    u.complete(&mut e.frames);
}

/// The data frame and the emptied page tables stay allocated until the
/// notifier has invalidated the IOMMUs, so no device reaches a reused page.
#[test]
fn munmap_keeps_frames_allocated_until_complete() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let u = e.mm.munmap(&e.mem, VA, 0x1000).unwrap();
    assert_eq!((u.pages(), u.freed_tables(), e.frames.in_use()), (1, 3, 5));
    u.complete(&mut e.frames);
}

#[test]
fn completing_a_munmap_frees_data_frame_and_tables() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    e.mm.munmap(&e.mem, VA, 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!(e.frames.in_use(), 1);
}

#[test]
fn munmap_reports_the_requested_range() {
    let mut e = env_with_vma(4, RW);
    let u = e.mm.munmap(&e.mem, VA + 0x1000, 0x1800).unwrap();
    assert_eq!((u.start(), u.end(), u.is_empty()), (VA + 0x1000, VA + 0x3000, true));
    u.complete(&mut e.frames);
}

#[test]
fn munmap_in_the_middle_splits_the_vma() {
    let mut e = env_with_vma(4, RW);
    e.mm.munmap(&e.mem, VA + 0x1000, 0x1000).unwrap().complete(&mut e.frames);
    let spans: Vec<(u64, u64)> = e.mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(spans, [(VA, VA + 0x1000), (VA + 0x2000, VA + 0x4000)]);
}

#[test]
fn munmap_across_two_vmas_trims_both() {
    let mut e = env_with_vma(2, RW);
    e.mm.mmap(Some(VA + 0x2000), 0x2000, RO).unwrap();
    e.mm.munmap(&e.mem, VA + 0x1000, 0x2000).unwrap().complete(&mut e.frames);
    let spans: Vec<(u64, u64)> = e.mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(spans, [(VA, VA + 0x1000), (VA + 0x3000, VA + 0x4000)]);
}

#[test]
fn munmap_keeps_pages_outside_the_range_resident() {
    let mut e = env_with_vma(2, RW);
    e.mm.write(&e.mem, &mut e.frames, VA + 0xFFF, &[7, 8]).unwrap();
    e.mm.munmap(&e.mem, VA, 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!((e.mm.resident_pages(), e.mm.translate(&e.mem, VA + 0x1000).is_some()), (1, true));
}

#[test]
fn munmap_misaligned_is_inval() {
    let mut e = env_with_vma(1, RW);
    assert_eq!(e.mm.munmap(&e.mem, VA + 8, 0x1000).unwrap_err(), Errno::Inval);
}

#[test]
fn munmap_split_beyond_max_vmas_is_nomem_and_changes_nothing() {
    let mut e = env();
    for _ in 0..Mm::MAX_VMAS {
        e.mm.mmap(None, 0x3000, RW).unwrap();
    }
    let r = e.mm.munmap(&e.mem, Mm::MMAP_BASE + 0x1000, 0x1000);
    assert_eq!((r.unwrap_err(), e.mm.vmas().count()), (Errno::NoMem, Mm::MAX_VMAS));
}

#[test]
fn fault_after_munmap_is_fault() {
    let mut e = env_with_vma(1, RW);
    e.mm.munmap(&e.mem, VA, 0x1000).unwrap().complete(&mut e.frames);
    assert_eq!(fault(&mut e, VA, Access::READ), Err(Errno::Fault));
}

// ---- exit ----

#[test]
fn exit_covers_user_space_and_every_resident_page() {
    let mut e = env_with_vma(2, RW);
    e.mm.write(&e.mem, &mut e.frames, VA + 0xFFF, &[7, 8]).unwrap();
    let u = e.mm.exit(&e.mem);
    assert_eq!((u.start(), u.end(), u.pages(), e.mm.is_dead()), (0, Mm::USER_END, 2, true));
    u.complete(&mut e.frames);
}

#[test]
fn exit_keeps_frames_allocated_until_complete() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let u = e.mm.exit(&e.mem);
    assert_eq!(e.frames.in_use(), 5);
    u.complete(&mut e.frames);
}

#[test]
fn mmap_after_exit_is_fault() {
    let mut e = env();
    e.mm.exit(&e.mem).complete(&mut e.frames);
    assert_eq!(e.mm.mmap(None, 0x1000, RW), Err(Errno::Fault));
}

/// Semantics §4.5: a page request for an exiting mm is answered INVALID.
#[test]
fn fault_after_exit_is_fault() {
    let mut e = env_with_vma(1, RW);
    e.mm.exit(&e.mem).complete(&mut e.frames);
    assert_eq!(fault(&mut e, VA, Access::READ), Err(Errno::Fault));
}

#[test]
fn second_exit_is_an_empty_obligation() {
    let mut e = env_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    e.mm.exit(&e.mem).complete(&mut e.frames);
    let u = e.mm.exit(&e.mem);
    assert!(u.is_empty());
    u.complete(&mut e.frames);
}

#[test]
fn exit_complete_and_destroy_free_every_frame() {
    let mut e = env_with_vma(3, RW);
    e.mm.write(&e.mem, &mut e.frames, VA, &[1; 0x3000]).unwrap();
    e.mm.exit(&e.mem).complete(&mut e.frames);
    e.mm.destroy(&e.mem, &mut e.frames);
    assert_eq!(e.frames.in_use(), 0);
}

#[test]
fn destroy_without_exit_frees_resident_frames_too() {
    let mut e = env_with_vma(2, RW);
    e.mm.write(&e.mem, &mut e.frames, VA, &[1; 0x2000]).unwrap();
    e.mm.destroy(&e.mem, &mut e.frames);
    assert_eq!(e.frames.in_use(), 0);
}

// ---- SVA: the IOMMU walks the CPU's tables ----

/// VT-d §3.6 with SVA: a first-stage PASID entry pointing at `cr3()` lets
/// a device read what the CPU wrote, through the same page tables.
#[test]
fn device_reads_through_cr3_what_the_cpu_wrote() {
    const DEV: SourceId = SourceId::from_bdf(1, 0, 0);
    let mem = PagedMemory::new(256 << 20);
    // Setup tables from [1 MiB, 8 MiB); the mm's frames from [8 MiB, 16 MiB).
    let mut frames = RangeFrames::new(Hpa::new(0x80_0000), Hpa::new(0x100_0000));
    let mut mm = Mm::new(&mem, &mut frames).unwrap();
    mm.mmap(Some(VA), 0x2000, RW).unwrap();
    mm.write(&mem, &mut frames, VA + 0xFFC, b"sva!ok").unwrap();
    let unit = VtdUnit::new(VtdConfig::full_featured(), mem, NullInterrupts);
    let mut alloc = PageAlloc::new(0x10_0000, 0x80_0000);
    let mut setup = VtdSetup::new(&mut alloc, true);
    setup.scalable_device(unit.mem(), &mut alloc, DEV, false, true);
    let fs =
        FirstStageCfg { root: Gpa::new(mm.cr3().raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
    let entry = PasidEntryRepr {
        fpd: false,
        did: DomainId::new(1),
        pwsnp: false,
        pgsnp: false,
        config: PasidConfig::FirstStage(fs),
    };
    setup.pasid_entry(unit.mem(), &mut alloc, DEV, Pasid::new(5), &entry);
    setup.enable(&unit);
    let mut buf = [0u8; 6];
    unit.dma_read(DEV, Some(Pasid::new(5)), Iova::new(VA + 0xFFC), &mut buf).unwrap();
    assert_eq!(&buf, b"sva!ok");
}

// ---- AArch64 page tables ----

#[test]
fn new_mm_is_x86_four_level() {
    let e = env();
    assert_eq!(e.mm.format(), PtFormat::FirstStage { levels: 4 });
}

/// Only the two 4-level CPU formats make a process address space.
#[test]
fn with_format_other_than_x86_or_arm_4_level_is_inval_and_allocates_nothing() {
    let mem = PagedMemory::new(MEM_SIZE);
    let mut frames = RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(FRAMES_END));
    let bad = [
        PtFormat::FirstStage { levels: 5 },
        PtFormat::SecondStage { levels: 4 },
        PtFormat::ArmS1 { levels: 3 },
        PtFormat::ArmS2 { levels: 4 },
    ];
    for format in bad {
        let r = Mm::with_format(&mem, &mut frames, format);
        assert_eq!((r.map(|_| ()), frames.in_use()), (Err(Errno::Inval), 0), "{format:?}");
    }
}

#[test]
fn arm_mm_reports_its_format_and_owns_only_its_root() {
    let e = env_in(ARM);
    assert_eq!((e.mm.format(), e.mm.vmas().count(), e.frames.in_use()), (ARM, 0, 1));
}

/// Arm ARM D8.3, D8.4: the page descriptor a write fault writes for a
/// read/write VMA: page type (bits 1:0), AP = 0b01 (EL0, writable), SH
/// inner, AF, nG, the frame (47:12), PXN (53) and UXN (54).
#[test]
fn arm_fault_writes_an_el0_rw_no_exec_page() {
    let mut e = arm_with_vma(1, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let frame = e.mm.translate(&e.mem, VA).unwrap().raw();
    assert_eq!(raw_pte(&e, VA), 0x0060_0000_0000_0F43 | frame);
    assert_eq!(e.mm.leaf_entry(&e.mem, VA).map(|a| e.mem.read_u64(a).unwrap()), Some(raw_pte(&e, VA)));
}

/// Arm ARM D8.4: a read-only executable VMA gets AP = 0b11 (EL0,
/// read-only) and PXN only (EL0 may execute, EL1 may not).
#[test]
fn arm_fault_on_a_read_exec_vma_writes_an_el0_read_only_exec_page() {
    let mut e = arm_with_vma(1, Perm { read: true, write: false, exec: true });
    fault(&mut e, VA, Access::READ.exec()).unwrap();
    let frame = e.mm.translate(&e.mem, VA).unwrap().raw();
    assert_eq!(raw_pte(&e, VA), 0x0020_0000_0000_0FC3 | frame);
}

#[test]
fn arm_write_fault_on_a_read_only_vma_is_fault() {
    let mut e = arm_with_vma(1, RO);
    assert_eq!(fault(&mut e, VA, Access::WRITE), Err(Errno::Fault));
    fault(&mut e, VA, Access::READ).unwrap();
    assert_eq!(e.mm.write(&e.mem, &mut e.frames, VA, &[1]), Err(Errno::Fault));
}

#[test]
fn arm_exec_fault_on_a_non_exec_vma_is_fault() {
    let mut e = arm_with_vma(1, RW);
    assert_eq!(fault(&mut e, VA, Access::READ.exec()), Err(Errno::Fault));
}

/// Like the x86 mm: a fault needs a data frame and three table pages, and
/// every failing allocation leaves nothing behind.
#[test]
fn arm_fault_fail_nth_sweep_fails_cleanly_then_succeeds() {
    let mut e = arm_with_vma(1, RW);
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        e.frames.fail_nth(Some(attempts));
        let r = fault(&mut e, VA, Access::WRITE);
        if r != Err(Errno::NoMem) || attempts > 16 {
            break r;
        }
        assert_eq!((e.frames.in_use(), e.mm.resident_pages()), (1, 0), "attempt {attempts}");
    };
    assert_eq!((result, attempts, e.frames.in_use()), (Ok(()), 5, 5));
}

#[test]
fn arm_write_then_read_round_trips_across_a_page_boundary() {
    let mut e = arm_with_vma(2, RW);
    let data: Vec<u8> = (0..64).collect();
    e.mm.write(&e.mem, &mut e.frames, VA + 0xFE0, &data).unwrap();
    let mut buf = [0u8; 64];
    e.mm.read(&e.mem, &mut e.frames, VA + 0xFE0, &mut buf).unwrap();
    assert_eq!((buf.as_slice(), e.mm.resident_pages()), (data.as_slice(), 2));
    assert_eq!(e.mm.resident_frame(VA + 0x1000), e.mm.translate(&e.mem, VA + 0x1000));
}

#[test]
fn arm_munmap_keeps_frames_until_complete_then_frees_them() {
    let mut e = arm_with_vma(2, RW);
    fault(&mut e, VA, Access::WRITE).unwrap();
    let u = e.mm.munmap(&e.mem, VA, 0x2000).unwrap();
    assert_eq!(e.mm.translate(&e.mem, VA), None);
    assert_eq!((u.pages(), u.freed_tables(), e.frames.in_use()), (1, 3, 5));
    u.complete(&mut e.frames);
    assert_eq!((e.frames.in_use(), e.mm.vmas().count()), (1, 0));
    assert_eq!(fault(&mut e, VA, Access::READ), Err(Errno::Fault));
}

#[test]
fn arm_exit_complete_and_destroy_free_every_frame() {
    let mut e = arm_with_vma(3, RW);
    e.mm.write(&e.mem, &mut e.frames, VA, &[1; 0x3000]).unwrap();
    let u = e.mm.exit(&e.mem);
    assert_eq!((u.start(), u.end(), u.pages(), e.mm.is_dead()), (0, Mm::USER_END, 3, true));
    u.complete(&mut e.frames);
    assert_eq!(e.mm.mmap(None, 0x1000, RW), Err(Errno::Fault));
    e.mm.destroy(&e.mem, &mut e.frames);
    assert_eq!(e.frames.in_use(), 0);
}

/// SMMUv3 §3.4 with SVA: a CD whose TTB0 is the Arm mm's `cr3()` (T0SZ =
/// 16, 4 KiB granule, start level 0) lets the SMMU walker find what the
/// CPU wrote, with the page's EL0 permissions: an unprivileged write to a
/// read-only VMA's page faults.
#[test]
fn smmu_walks_the_arm_mm_tables_through_ttb0() {
    let mut e = arm_with_vma(2, RW);
    e.mm.mmap(Some(VA + 0x2000), 0x1000, RO).unwrap();
    e.mm.write(&e.mem, &mut e.frames, VA + 0xFFC, b"sva!ok").unwrap();
    let mut buf = [0u8; 1];
    e.mm.read(&e.mem, &mut e.frames, VA + 0x2000, &mut buf).unwrap();
    let tables = TableCfg {
        base: e.mm.cr3().raw(),
        granule: Granule::G4K,
        input_bits: 48,
        start_level: 0,
        root_bits: 9,
        out_bits: 48,
    };
    let cd = CdCfg {
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
    };
    let mut refs = 0;
    let walk = |va: u64, refs: &mut u32| s1_walk(&e.mem, &cd, 0, &tables, va, None, refs);
    let rw = walk(VA + 0x1002, &mut refs).unwrap();
    assert_eq!(rw.oa | 0x002, e.mm.translate(&e.mem, VA + 0x1002).unwrap().raw());
    assert!(rw.perms.allows(Access::READ_WRITE) && !rw.global);
    let mut got = [0u8; 6];
    e.mem.read(Hpa::new(walk(VA + 0xFFC, &mut refs).unwrap().oa | 0xFFC), &mut got[..4]).unwrap();
    e.mem.read(Hpa::new(rw.oa), &mut got[4..]).unwrap();
    assert_eq!(&got, b"sva!ok");
    let ro = walk(VA + 0x2000, &mut refs).unwrap();
    assert!(ro.perms.allows(Access::READ) && !ro.perms.allows(Access::WRITE));
    assert_eq!(walk(VA + 0x3000, &mut refs).unwrap_err().kind, TransFaultKind::Translation);
}
