//! The built-in default scenario runs green, and its JSON report has an
//! invariants section with no violations.

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::report::Report;
use iommu_sim::scenario::{parse, DEFAULT_SCENARIO};

fn default_report(trace: bool) -> Report {
    let sc = parse(DEFAULT_SCENARIO, "<built-in default>", "default").expect("the default scenario parses");
    run(&sc, RunOptions { trace, progress: false })
}

#[test]
fn default_scenario_meets_every_expectation_and_invariant() {
    let r = default_report(false);
    let text = iommu_sim::report::text::render(&r);
    assert!(r.ok, "{text}");
    assert_eq!(r.failed_steps, 0, "{text}");
    assert!(r.setup_errors.is_empty(), "{text}");
}

#[test]
fn default_scenario_json_has_four_enabled_invariants_with_zero_violations() {
    let json = serde_json::to_string(&default_report(false)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let inv = v["invariants"].as_array().expect("an invariants array");
    let names: Vec<&str> = inv.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["isolation", "stale", "leaks", "bounds"]);
    for i in inv {
        assert_eq!(i["enabled"], true);
        assert_eq!(i["violations"].as_array().unwrap().len(), 0, "{i}");
        assert!(i["checked"].as_u64().unwrap() > 0, "{i} checked something");
    }
    assert_eq!(v["ok"], true);
}

#[test]
fn default_scenario_covers_every_seed_mechanism() {
    let r = default_report(false);
    let ops: Vec<&str> = r.steps.iter().map(|s| s.op.as_str()).collect();
    let has = |p: &str| ops.iter().any(|o| o.contains(p));
    assert!(has("bind gpu to app"), "host SVA");
    assert!(has("bind-device-pasid accel"), "per-device PASID on a small device");
    assert!(has("[vm0] bind vf"), "guest SVA through the vIOMMU");
    assert!(r.steps.iter().any(|s| s.expected == "EBUSY" && s.op.contains("gpasid-bind")), "double bind refused");
    assert!(has("ioasid-free"), "free before unbind");
    assert!(has("vm-destroy"), "VM destroy");
    assert!(r.bindings.iter().any(|b| b.target == "vm0 nested"), "nested host attachments for the guest");
    assert!(r.page_requests.success >= 2, "host and guest page faults resolved");
}

#[test]
fn default_scenario_trace_shows_descriptors_drains_and_responses() {
    let r = default_report(true);
    let t = iommu_sim::report::text::render_trace(&r);
    assert!(t.contains("PasidEntrySetPresent"), "entry writes");
    assert!(t.contains("drain_page_requests: true"), "drains");
    assert!(t.contains("page request group 0: Success, retrying"), "responses");
    assert!(t.contains("vm0 VMM"), "VMM actions");
    assert!(t.contains("vm0 guest"), "guest driver actions");
}
