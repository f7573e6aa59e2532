//! Every scenario in `examples/` runs green: each expectation holds and no
//! invariant is violated. Each file starts with a comment header saying
//! what it shows.

use std::path::PathBuf;

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::scenario::load;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn there_is_an_example_per_seed_thread() {
    let names: Vec<String> = examples().iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "nested-guest-bind",
        "multi-bind-refused",
        "small-pasid-device",
        "aux-domains",
        "vm-teardown",
        "smmuv3-sva",
        "smmuv3-aux-domains",
        "smmuv3-small-ssid",
    ] {
        assert!(names.iter().any(|n| n == want), "examples/{want}.toml missing: {names:?}");
    }
}

#[test]
fn every_example_starts_with_a_comment_header() {
    for p in examples() {
        let text = std::fs::read_to_string(&p).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(header.len() >= 3, "{}: a comment header of a few lines says what it shows", p.display());
    }
}

#[test]
fn every_example_runs_green() {
    let mut failures = Vec::new();
    for p in examples() {
        let sc = match load(&p) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let r = run(&sc, RunOptions::default());
        if !r.ok {
            failures.push(iommu_sim::report::text::render(&r));
        }
        assert!(r.invariants.iter().all(|i| i.enabled), "{}: examples run with every checker on", p.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
