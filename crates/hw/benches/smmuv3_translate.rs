//! Cost of `Smmu::translate` (SMMUv3): a TLB hit, and TLB misses (full
//! walks) for stage 1, stage 2 and nested streams. Every SMMU is set up
//! through memory and registers with `iommu_testkit::smmuv3`.
//!
//! Misses are forced with a 1 × 1 TLB and requests cycling through `PAGES`
//! distinct pages: each translation evicts the previous page's entry. The
//! STE and CD caches are full size, so they hit.

#[path = "../tests/smmuv3_common/mod.rs"]
mod smmuv3_common;

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use iommu_hw::smmuv3::{Request, SmmuConfig};
use iommu_types::Access;
use smmuv3_common::{full, one_entry_tlb, Kind, Setup};

/// Distinct pages a miss benchmark cycles through.
const PAGES: usize = 64;

/// A set-up SMMU on `cfg` and its requests; checks that each request
/// translates correctly and that cycling through them hits (or misses) the
/// TLB as the benchmark expects.
fn prepared(kind: Kind, cfg: SmmuConfig, expect_hit: bool) -> (Setup, Vec<Request>) {
    let s = Setup::new(kind, cfg, PAGES);
    let reqs: Vec<Request> = s.inputs.iter().map(|&a| s.request(a | 0x40, Access::READ)).collect();
    for _ in 0..2 {
        for (i, r) in reqs.iter().enumerate() {
            let t = s.unit.translate(r).expect("mapped page translates");
            assert_eq!(t.pa, s.expected(i, 0x40), "{}: page {i}", kind.name());
        }
    }
    for r in &reqs {
        let t = s.unit.translate(r).expect("mapped page translates");
        assert_eq!(t.tlb_hit, expect_hit, "{}: TLB {} as the benchmark expects", kind.name(), expect_hit);
    }
    (s, reqs)
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("smmuv3_translate");

    let (s, reqs) = prepared(Kind::S1, full(), true);
    let req = reqs[0];
    g.bench_function("tlb_hit_s1", |b| b.iter(|| s.unit.translate(black_box(&req))));

    for (name, kind) in [
        ("s1_4level_miss", Kind::S1),
        ("s2_4level_miss", Kind::S2),
        ("nested_4x4_miss", Kind::Nested4x4),
        ("nested_4x3_miss", Kind::Nested4x3),
    ] {
        let (s, reqs) = prepared(kind, one_entry_tlb(), false);
        let mut k = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = (k + 1) % reqs.len();
                s.unit.translate(black_box(&reqs[k]))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

// What `criterion_group!` / `criterion_main!` expand to, written out because
// the macro's `pub fn` cannot carry the documentation the workspace lints ask for.
fn main() {
    let mut c = config().configure_from_args();
    translate(&mut c);
    c.final_summary();
}
