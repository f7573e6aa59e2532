//! Scenario files (`iommu-sim run FILE`): the TOML parser and its checks,
//! then the engine on whatever the parser accepts.
//!
//! Input: the text of a scenario file; inputs that are not UTF-8 are
//! skipped. `seeds/scenario/` holds small valid scenarios to mutate.
//!
//! Properties: `parse` never panics; every error it returns has a line (and
//! column) inside the text and displays as `origin:line:col: message`. A
//! scenario it accepts runs to a report, rendered as text, without a panic,
//! when it is small enough to run quickly: at most 64 steps, 1 GiB of host
//! memory, 4 VMs with 64 MiB of guest RAM in all, 1000 DMAs per
//! `random-dma`, 4096 PASIDs per `pasid-alloc` and 4 MiB per `map`.
#![no_main]

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::report::text;
use iommu_sim::scenario::{parse, Op, Scenario};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.toml";

/// Whether `sc` runs in well under a second (a fuzz run must stay fast, and
/// within libFuzzer's memory limit: VM RAM and `map`s are backed by host
/// frames that are zeroed, so touched).
fn small_enough(sc: &Scenario) -> bool {
    sc.steps.len() <= 64
        && sc.machine.memory_mib <= 1024
        && sc.vms.len() <= 4
        && sc.vms.iter().map(|v| v.ram_mib).sum::<u64>() <= 64
        && sc.steps.iter().all(|s| match &s.op {
            Op::RandomDma { count, .. } => *count <= 1000,
            Op::PasidAlloc { count } => *count <= 4096,
            Op::Map { len, .. } => *len <= 4 << 20,
            _ => true,
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sc = match parse(text, ORIGIN, "fuzz") {
        Ok(sc) => sc,
        Err(e) => {
            let line = e.line.unwrap_or_else(|| panic!("an error without a line: {e}"));
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&line), "line {line} of a {lines}-line text: {e}");
            let col = e.column.unwrap_or_else(|| panic!("an error without a column: {e}"));
            assert!(col >= 1, "{e}");
            assert!(e.to_string().starts_with(&format!("{ORIGIN}:{line}:{col}: ")), "{e}");
            return;
        }
    };
    if !small_enough(&sc) {
        return;
    }
    let report = run(&sc, RunOptions::default());
    assert!(
        report.steps.len() == sc.steps.len() || !report.setup_errors.is_empty(),
        "{} of {} steps reported",
        report.steps.len(),
        sc.steps.len()
    );
    let _ = text::render(&report);
});
