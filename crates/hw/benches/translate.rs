//! Cost of `VtdUnit::translate`: an IOTLB hit, and IOTLB misses (full page
//! walks) for each translation type; plus the bare walks (`walk_only`)
//! through `iommu_walk::vtd::page` with the parameters the unit derives.
//!
//! Misses are forced with a 1 × 1 IOTLB and requests cycling through
//! `PAGES` distinct pages: each translation evicts the previous page's
//! entry. The context and PASID caches are full size, so they hit.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Kind, Setup};
use criterion::Criterion;
use iommu_hw::vtd::{Request, VtdConfig};
use iommu_types::{Access, Iova};

/// Distinct pages a miss benchmark cycles through.
const PAGES: usize = 64;

fn requests(s: &Setup) -> Vec<Request> {
    s.iovas.iter().map(|&iova| s.request(Iova::new(iova.raw() | 0x40), Access::READ)).collect()
}

/// A warmed-up setup on `cfg` and its requests; checks that each request
/// translates correctly and that cycling through them hits (or misses) the
/// IOTLB as the benchmark expects.
fn prepared(kind: Kind, cfg: VtdConfig, expect_cached: bool) -> (Setup, Vec<Request>) {
    let s = Setup::new(kind, cfg, PAGES);
    let reqs = requests(&s);
    for _ in 0..2 {
        for (i, r) in reqs.iter().enumerate() {
            let t = s.unit.translate(r).expect("mapped page translates");
            assert_eq!(t.addr, s.expected(i, 0x40), "{}: page {i}", kind.name());
        }
    }
    for r in &reqs {
        let t = s.unit.translate(r).expect("mapped page translates");
        assert_eq!(t.cached, expect_cached, "{}: IOTLB {} as the benchmark expects", kind.name(), expect_cached);
    }
    (s, reqs)
}

fn one_entry_iotlb() -> VtdConfig {
    VtdConfig { iotlb: (1, 1), ..VtdConfig::full_featured() }
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");

    let (s, reqs) = prepared(Kind::ScalableFs4, VtdConfig::full_featured(), true);
    let req = reqs[0];
    g.bench_function("iotlb_hit", |b| b.iter(|| s.unit.translate(black_box(&req))));

    for (name, kind) in [
        ("fs_4level_miss", Kind::ScalableFs4),
        ("ss_4level_miss", Kind::ScalableSs4),
        ("legacy_ss_4level_miss", Kind::LegacySs4),
        ("nested_4x4_miss", Kind::ScalableNested4x4),
    ] {
        let (s, reqs) = prepared(kind, one_entry_iotlb(), false);
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

fn walk_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("walk_only");
    for (name, kind) in
        [("fs_4level", Kind::ScalableFs4), ("ss_4level", Kind::ScalableSs4), ("nested_4x4", Kind::ScalableNested4x4)]
    {
        let (s, reqs) = prepared(kind, one_entry_iotlb(), false);
        let inputs: Vec<u64> = reqs.iter().map(|r| r.addr.raw()).collect();
        let (mem, walk) = (s.unit.mem(), s.walk);
        let mut k = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = (k + 1) % inputs.len();
                walk.run(mem, black_box(inputs[k]), Access::READ)
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
    walk_only(&mut c);
    c.final_summary();
}
