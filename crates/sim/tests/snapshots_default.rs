//! Snapshots (insta) of the default scenario's report and trace: any change
//! in what the machine does or how the report reads shows up as a diff to
//! review (`cargo insta review`, or `INSTA_UPDATE=always` to accept).

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::report::text;
use iommu_sim::scenario::{parse, DEFAULT_SCENARIO};

fn report() -> iommu_sim::report::Report {
    let sc = parse(DEFAULT_SCENARIO, "<built-in default>", "default").unwrap();
    run(&sc, RunOptions { trace: true, progress: false })
}

#[test]
fn default_scenario_report_text_is_unchanged() {
    insta::assert_snapshot!("default_report", text::render(&report()));
}

#[test]
fn default_scenario_trace_is_unchanged() {
    insta::assert_snapshot!("default_trace", text::render_trace(&report()));
}

#[test]
fn default_scenario_json_invariants_are_unchanged() {
    let r = report();
    insta::assert_json_snapshot!("default_invariants", r.invariants);
}
