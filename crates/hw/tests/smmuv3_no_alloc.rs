//! `Smmu::translate` allocates nothing, on TLB hits, on TLB misses (full
//! walks, with a one-entry TLB) and on faults that are recorded in the event
//! queue, for stage-1, stage-2 and nested streams. Every SMMU is set up
//! through memory and registers only, with `iommu_testkit::smmuv3`.
//!
//! Allocations are counted per thread by `alloc_counter::CountingAlloc`, so
//! the test harness's other threads (and tests running in parallel) do not
//! disturb a measurement; only the measured loop is counted.

mod smmuv3_common;

use alloc_counter::{allocations, CountingAlloc};
use iommu_format::smmuv3::event::EventId;
use iommu_format::smmuv3::regs::offset as o;
use iommu_hw::smmuv3::{Request, Smmu, SmmuConfig};
use iommu_types::{Access, NullInterrupts, PagedMemory, RegisterBus, Width};
use smmuv3_common::{full, one_entry_tlb, Kind, Setup, Unit, SID, UNMAPPED};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Translations per measurement (fewer than the event queue's 2048 entries,
/// so every fault is recorded).
const N: usize = 1000;
/// Mapped pages per setup: all of them fit the full profile's 64 × 8 TLB,
/// and cycling through them misses every time in a 1 × 1 TLB.
const PAGES: usize = 64;

/// Translates every mapped page once and one faulting request, so that
/// nothing lazily initialised is left for the measurement.
fn warm_up(s: &Setup) {
    for (i, &a) in s.inputs.iter().enumerate() {
        let t = s.unit.translate(&s.request(a, Access::WRITE));
        assert_eq!(t.map(|t| t.pa), Ok(s.expected(i, 0)), "{}: warm-up of page {i}", s.kind.name());
    }
    let f = s.unit.translate(&s.request(UNMAPPED, Access::READ));
    assert!(f.is_err_and(|f| f.recorded), "{}: warm-up fault is recorded", s.kind.name());
}

/// What a measured loop saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Measured {
    allocations: u64,
    hits: usize,
    faulted: usize,
    recorded: usize,
    wrong: usize,
}

/// Runs `N` translations cycling through `reqs` and counts this thread's
/// allocations during the loop only.
fn measure(unit: &Unit, reqs: &[(Request, Option<u64>)]) -> Measured {
    let mut m = Measured::default();
    let before = allocations();
    for k in 0..N {
        let (req, want) = &reqs[k % reqs.len()];
        match unit.translate(req) {
            Ok(t) => {
                m.hits += t.tlb_hit as usize;
                m.wrong += (Some(t.pa) != *want) as usize;
            }
            Err(t) => {
                m.faulted += 1;
                m.recorded += t.recorded as usize;
                m.wrong += want.is_some() as usize;
            }
        }
    }
    m.allocations = allocations() - before;
    m
}

/// Reads and writes, alternately, at an offset inside each mapped page.
fn mapped_requests(s: &Setup) -> Vec<(Request, Option<u64>)> {
    (0..s.inputs.len())
        .map(|i| {
            let off = (i as u64 * 0x48) & 0xFF8;
            let access = if i % 2 == 0 { Access::READ } else { Access::WRITE };
            (s.request(s.inputs[i] + off, access), Some(s.expected(i, off)))
        })
        .collect()
}

fn assert_hits_allocate_nothing(kind: Kind) {
    let s = Setup::new(kind, full(), PAGES);
    warm_up(&s);
    let m = measure(&s.unit, &mapped_requests(&s));
    assert_eq!(m, Measured { allocations: 0, hits: N, ..Measured::default() }, "{}", kind.name());
}

fn assert_misses_allocate_nothing(kind: Kind) {
    let s = Setup::new(kind, one_entry_tlb(), PAGES);
    warm_up(&s);
    let m = measure(&s.unit, &mapped_requests(&s));
    assert_eq!(m, Measured::default(), "{}", kind.name());
}

fn assert_faults_allocate_nothing(kind: Kind) {
    let mut s = Setup::new(kind, full(), PAGES);
    warm_up(&s);
    let reqs: Vec<_> = s
        .faulting_inputs(16)
        .into_iter()
        .enumerate()
        .map(|(i, a)| (s.request(a, if i % 4 < 2 { Access::READ } else { Access::WRITE }), None))
        .collect();
    let m = measure(&s.unit, &reqs);
    assert_eq!(m, Measured { allocations: 0, faulted: N, recorded: N, ..Measured::default() }, "{}", kind.name());
    // The records are in the event queue: the warm-up's and the loop's.
    let events = s.driver.drain_events(s.unit.mem()).expect("drain the event queue");
    assert_eq!(events.len(), N + 1, "{}", kind.name());
    assert!(events.iter().all(|e| e.id == EventId::FTranslation && e.sid.0 == SID), "{}", kind.name());
    let stage2 = events.iter().filter(|e| e.s2).count();
    let want_s2 = match kind {
        Kind::S1 => 0,
        Kind::S2 => N + 1,
        Kind::Nested4x4 | Kind::Nested4x3 => N / 2,
    };
    assert_eq!(stage2, want_s2, "{}: stage-2 faults", kind.name());
}

#[test]
fn translate_allocates_nothing_on_tlb_hit_stage1() {
    assert_hits_allocate_nothing(Kind::S1);
}

#[test]
fn translate_allocates_nothing_on_tlb_hit_stage2() {
    assert_hits_allocate_nothing(Kind::S2);
}

#[test]
fn translate_allocates_nothing_on_tlb_hit_nested() {
    assert_hits_allocate_nothing(Kind::Nested4x4);
    assert_hits_allocate_nothing(Kind::Nested4x3);
}

#[test]
fn translate_allocates_nothing_on_tlb_miss_stage1() {
    assert_misses_allocate_nothing(Kind::S1);
}

#[test]
fn translate_allocates_nothing_on_tlb_miss_stage2() {
    assert_misses_allocate_nothing(Kind::S2);
}

#[test]
fn translate_allocates_nothing_on_tlb_miss_nested() {
    assert_misses_allocate_nothing(Kind::Nested4x4);
    assert_misses_allocate_nothing(Kind::Nested4x3);
}

#[test]
fn translate_allocates_nothing_on_recorded_fault_stage1() {
    assert_faults_allocate_nothing(Kind::S1);
}

#[test]
fn translate_allocates_nothing_on_recorded_fault_stage2() {
    assert_faults_allocate_nothing(Kind::S2);
}

#[test]
fn translate_allocates_nothing_on_recorded_fault_nested() {
    assert_faults_allocate_nothing(Kind::Nested4x4);
    assert_faults_allocate_nothing(Kind::Nested4x3);
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

/// The driver's bring-up leaves the SMMU enabled with both queues on, the
/// three start-up commands consumed and no error; each page translates
/// (a miss first, a hit after) on every setup, and on the QEMU profile for
/// the setups whose stage 2 fits its 44-bit IAS (a 48-bit stage-2 input
/// makes the STE ILLEGAL there).
#[test]
fn driver_bring_up_enables_translation() {
    use iommu_hw::smmuv3::QemuStages;
    for kind in Kind::ALL {
        let qemu = matches!(kind, Kind::S1 | Kind::Nested4x3).then(|| SmmuConfig::qemu(QemuStages::Nested));
        for cfg in std::iter::once(full()).chain(qemu) {
            let s = Setup::new(kind, cfg, 8);
            let rd = |off| s.unit.read(off, Width::W32).unwrap();
            assert_eq!(rd(o::CR0ACK), 0xD, "{}: SMMUEN | EVENTQEN | CMDQEN", kind.name());
            assert_eq!(rd(o::GERROR) ^ rd(o::GERRORN), 0, "{}: no global error", kind.name());
            assert_eq!((rd(o::CMDQ_PROD), rd(o::CMDQ_CONS)), (3, 3), "{}", kind.name());
            for (i, &a) in s.inputs.iter().enumerate() {
                for hit in [false, true] {
                    let t = s.unit.translate(&s.request(a | 0x123, Access::READ)).unwrap();
                    assert_eq!((t.pa, t.tlb_hit), (s.expected(i, 0x123), hit), "{}: page {i}", kind.name());
                }
            }
        }
    }
}

/// After CMD_TLBI_NSNH_ALL through the driver, the next translation walks.
#[test]
fn tlb_invalidation_through_the_driver_forces_a_walk() {
    for kind in Kind::ALL {
        let mut s = Setup::new(kind, full(), 4);
        let req = s.request(s.inputs[1], Access::READ);
        s.unit.translate(&req).unwrap();
        assert!(s.unit.translate(&req).unwrap().tlb_hit, "{}", kind.name());
        s.driver.invalidate_all(s.unit.mem()).unwrap();
        assert!(!s.unit.translate(&req).unwrap().tlb_hit, "{}: walked after invalidation", kind.name());
    }
}

#[test]
fn smmu_over_paged_memory_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Smmu<PagedMemory, NullInterrupts>>();
}
