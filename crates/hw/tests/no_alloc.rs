//! `VtdUnit::translate` allocates nothing, on IOTLB hits, on IOTLB misses
//! (full page walks) and on faults, for each translation type; and the unit
//! is shared by translating threads.
//!
//! Allocations are counted per thread by `alloc_counter::CountingAlloc`, so
//! the test harness's other threads (and tests running in parallel) do not
//! disturb a measurement; only the measured loop is counted.

mod common;

use alloc_counter::{allocations, CountingAlloc};
use common::{Kind, Setup, Unit, UNMAPPED};
use iommu_format::vtd::regs::{gcmd, offset as o};
use iommu_hw::vtd::{Request, VtdConfig};
use iommu_types::{Access, Hpa, Iova, NullInterrupts, PagedMemory, RegisterBus, Width};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Translations per measurement.
const N: usize = 1000;
/// Mapped pages per setup: all of them fit the full-featured IOTLB, and
/// cycling through them misses every time in a 1 × 1 IOTLB.
const PAGES: usize = 64;

/// The full-featured configuration: 256 × 8 IOTLB, every mapped page hits
/// once warmed up.
fn hitting(kind: Kind) -> Setup {
    Setup::new(kind, VtdConfig::full_featured(), PAGES)
}

/// A one-entry IOTLB: cycling through the mapped pages misses every time,
/// so each translation walks (context and PASID caches still hit).
fn missing(kind: Kind) -> Setup {
    Setup::new(kind, VtdConfig { iotlb: (1, 1), ..VtdConfig::full_featured() }, PAGES)
}

/// Translates every mapped page once (a write, so first-stage leaves get D
/// and later fills are usable for writes) and one faulting request, so that
/// nothing lazily initialised is left for the measurement.
fn warm_up(s: &Setup) {
    for (i, &iova) in s.iovas.iter().enumerate() {
        let t = s.unit.translate(&s.request(iova, Access::WRITE));
        assert_eq!(t.map(|t| t.addr), Ok(s.expected(i, 0)), "{}: warm-up of page {i}", s.kind.name());
    }
    let f = s.unit.translate(&s.request(Iova::new(UNMAPPED), Access::READ));
    assert!(f.is_err_and(|f| f.recorded), "{}: warm-up fault is recorded", s.kind.name());
}

/// What a measured loop saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Measured {
    allocations: u64,
    cached: usize,
    faulted: usize,
    wrong: usize,
}

/// Runs `N` translations cycling through `reqs` and counts this thread's
/// allocations during the loop only.
fn measure(unit: &Unit, reqs: &[(Request, Option<Hpa>)]) -> Measured {
    let mut m = Measured::default();
    let before = allocations();
    for k in 0..N {
        let (req, want) = &reqs[k % reqs.len()];
        match unit.translate(req) {
            Ok(t) => {
                m.cached += t.cached as usize;
                m.wrong += (Some(t.addr) != *want) as usize;
            }
            Err(_) => {
                m.faulted += 1;
                m.wrong += want.is_some() as usize;
            }
        }
    }
    m.allocations = allocations() - before;
    m
}

/// Reads and writes, alternately, at an offset inside each mapped page.
fn mapped_requests(s: &Setup) -> Vec<(Request, Option<Hpa>)> {
    (0..s.iovas.len())
        .map(|i| {
            let off = (i as u64 * 0x48) & 0xFF8;
            let access = if i % 2 == 0 { Access::READ } else { Access::WRITE };
            (s.request(Iova::new(s.iovas[i].raw() + off), access), Some(s.expected(i, off)))
        })
        .collect()
}

fn assert_hits_allocate_nothing(kind: Kind) {
    let s = hitting(kind);
    warm_up(&s);
    let m = measure(&s.unit, &mapped_requests(&s));
    assert_eq!(m, Measured { allocations: 0, cached: N, faulted: 0, wrong: 0 }, "{}", kind.name());
}

fn assert_misses_allocate_nothing(kind: Kind) {
    let s = missing(kind);
    warm_up(&s);
    let m = measure(&s.unit, &mapped_requests(&s));
    assert_eq!(m, Measured { allocations: 0, cached: 0, faulted: 0, wrong: 0 }, "{}", kind.name());
}

fn assert_faults_allocate_nothing(kind: Kind) {
    let s = hitting(kind);
    warm_up(&s);
    // Unmapped pages next to the top-level hole, reads and writes; the fault
    // log fills up after the first few and the rest overflow.
    let reqs: Vec<_> = (0..16u64)
        .map(|i| {
            let access = if i % 2 == 0 { Access::READ } else { Access::WRITE };
            (s.request(Iova::new(UNMAPPED + (i << 12)), access), None)
        })
        .collect();
    let m = measure(&s.unit, &reqs);
    assert_eq!(m, Measured { allocations: 0, cached: 0, faulted: N, wrong: 0 }, "{}", kind.name());
}

#[test]
fn translate_allocates_nothing_on_iotlb_hit_legacy_second_stage() {
    assert_hits_allocate_nothing(Kind::LegacySs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_hit_second_stage() {
    assert_hits_allocate_nothing(Kind::ScalableSs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_hit_first_stage() {
    assert_hits_allocate_nothing(Kind::ScalableFs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_hit_nested() {
    assert_hits_allocate_nothing(Kind::ScalableNested4x4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_miss_legacy_second_stage() {
    assert_misses_allocate_nothing(Kind::LegacySs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_miss_second_stage() {
    assert_misses_allocate_nothing(Kind::ScalableSs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_miss_first_stage() {
    assert_misses_allocate_nothing(Kind::ScalableFs4);
}

#[test]
fn translate_allocates_nothing_on_iotlb_miss_nested() {
    assert_misses_allocate_nothing(Kind::ScalableNested4x4);
}

#[test]
fn translate_allocates_nothing_on_fault_legacy_second_stage() {
    assert_faults_allocate_nothing(Kind::LegacySs4);
}

#[test]
fn translate_allocates_nothing_on_fault_second_stage() {
    assert_faults_allocate_nothing(Kind::ScalableSs4);
}

#[test]
fn translate_allocates_nothing_on_fault_first_stage() {
    assert_faults_allocate_nothing(Kind::ScalableFs4);
}

#[test]
fn translate_allocates_nothing_on_fault_nested() {
    assert_faults_allocate_nothing(Kind::ScalableNested4x4);
}

/// The counter itself sees allocations made inside a measured loop (so the
/// zeros above are not vacuous).
#[test]
fn allocation_counter_sees_allocations_in_the_measured_thread() {
    let before = allocations();
    let v: Vec<Box<u64>> = (0..10).map(Box::new).collect();
    assert!(allocations() - before >= 10);
    drop(std::hint::black_box(v));
}

#[test]
fn driver_programming_enables_translation_at_the_documented_offsets() {
    for kind in Kind::ALL {
        let s = hitting(kind);
        assert_eq!(common::iotlb_reg_offset(&s.unit), 0xF8, "ECAP.IRO of full_featured");
        let gsts = s.unit.read(o::GSTS, Width::W32).unwrap() as u32;
        assert_eq!(gsts & (gcmd::TE | gcmd::SRTP), gcmd::TE | gcmd::SRTP, "{}: GSTS.TES and RTPS", kind.name());
        let rtaddr = s.unit.read(o::RTADDR, Width::W64).unwrap();
        assert_eq!(rtaddr >> 10 & 3, (kind != Kind::LegacySs4) as u64, "{}: RTADDR.TTM", kind.name());
        for (i, &iova) in s.iovas.iter().enumerate() {
            let t = s.unit.translate(&s.request(Iova::new(iova.raw() | 0x123), Access::READ)).unwrap();
            assert_eq!((t.addr, t.cached), (s.expected(i, 0x123), false), "{}: page {i}", kind.name());
        }
    }
}

/// The walker parameters the benchmarks use reproduce the unit's own
/// translations, and the nested miss makes (4+1)(4+1)−1 = 24 entry fetches.
#[test]
fn walker_parameters_reproduce_the_units_translations() {
    for kind in Kind::ALL {
        let s = hitting(kind);
        for (i, &iova) in s.iovas.iter().enumerate() {
            let t = s.walk.run(s.unit.mem(), iova.raw(), Access::READ).unwrap();
            assert_eq!(t.output(iova.raw()), s.expected(i, 0), "{}: page {i}", kind.name());
            let refs = if kind == Kind::ScalableNested4x4 { 24 } else { 4 };
            assert_eq!(t.mem_refs, refs, "{}", kind.name());
        }
    }
}

#[test]
fn vtd_unit_over_paged_memory_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<iommu_hw::vtd::VtdUnit<PagedMemory, NullInterrupts>>();
}

/// Four threads translate through one `&VtdUnit` at once, every page at a
/// thread-specific offset, reads and writes, hitting and (with a small
/// IOTLB shared by all four) missing and refilling concurrently.
#[test]
fn four_threads_translating_through_one_unit_all_get_correct_results() {
    const THREADS: u64 = 4;
    const ROUNDS: usize = 50;
    for small_iotlb in [false, true] {
        for kind in Kind::ALL {
            let s = if small_iotlb {
                Setup::new(kind, VtdConfig { iotlb: (4, 2), ..VtdConfig::full_featured() }, PAGES)
            } else {
                hitting(kind)
            };
            let wrong: Vec<Vec<String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let s = &s;
                        scope.spawn(move || {
                            let mut wrong = Vec::new();
                            for round in 0..ROUNDS {
                                for (i, &iova) in s.iovas.iter().enumerate() {
                                    let off = 0x100 * t + 8 * (round as u64 % 16);
                                    let access = if (i + round) % 2 == 0 { Access::READ } else { Access::WRITE };
                                    let got = s.unit.translate(&s.request(Iova::new(iova.raw() + off), access));
                                    if got.map(|t| t.addr) != Ok(s.expected(i, off)) {
                                        wrong.push(format!("thread {t} round {round} page {i}: {got:?}"));
                                    }
                                }
                            }
                            wrong
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("translating thread panicked")).collect()
            });
            let wrong: Vec<String> = wrong.into_iter().flatten().collect();
            assert!(wrong.is_empty(), "{} (small IOTLB: {small_iotlb}): {wrong:#?}", kind.name());
        }
    }
}
