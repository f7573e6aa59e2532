//! Each invariant checker catches a deliberately broken run, and stays
//! quiet on the same run without the breaking step.

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::report::Report;
use iommu_sim::scenario::parse;

fn run_text(text: &str) -> Report {
    let sc = parse(text, "test.toml", "test").unwrap_or_else(|e| panic!("{e}"));
    run(&sc, RunOptions::default())
}

fn violations(r: &Report, name: &str) -> Vec<String> {
    r.invariants
        .iter()
        .find(|i| i.name == name)
        .map_or(Vec::new(), |i| i.violations.iter().map(|v| v.message.clone()).collect())
}

/// Two processes with a resident page each, both bound to an ATS/PRI
/// device.
const TWO_PROCESSES: &str = r#"
[[device]]
name = "dev"
bdf = "00:01.0"

[[process]]
name = "a"
maps = [{ va = 0x4000_0000, len = 0x1000 }]

[[process]]
name = "b"
maps = [{ va = 0x4000_0000, len = 0x1000 }]

[[step]]
op = "cpu-write"
process = "a"
va = 0x4000_0000
data = "AAAA"

[[step]]
op = "cpu-write"
process = "b"
va = 0x4000_0000
data = "BBBB"

[[step]]
op = "bind"
device = "dev"
process = "a"
as = "ba"

[[step]]
op = "bind"
device = "dev"
process = "b"
as = "bb"
"#;

const READ_A: &str = r#"
[[step]]
op = "dma-read"
device = "dev"
bond = "ba"
addr = 0x4000_0000
len = 4
expect = "any"
"#;

const REDIRECT_A_TO_B: &str = r#"
[[step]]
op = "corrupt-pte"
process = "a"
va = 0x4000_0000
redirect_process = "b"
redirect_va = 0x4000_0000
"#;

const CLEAR_A: &str = r#"
[[step]]
op = "corrupt-pte"
process = "a"
va = 0x4000_0000
value = 0
"#;

const UNBIND_ALL: &str = r#"
[[step]]
op = "unbind"
bond = "ba"

[[step]]
op = "unbind"
bond = "bb"
"#;

#[test]
fn isolation_checker_passes_a_dma_into_the_bound_process() {
    let r = run_text(&[TWO_PROCESSES, READ_A, UNBIND_ALL].concat());
    assert!(r.ok, "{}", iommu_sim::report::text::render(&r));
    assert!(r.invariants[0].checked >= 1);
}

#[test]
fn isolation_checker_catches_a_dma_redirected_into_another_process() {
    let r = run_text(&[TWO_PROCESSES, REDIRECT_A_TO_B, READ_A, UNBIND_ALL].concat());
    let v = violations(&r, "isolation");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("dev PASID 1 at 0x40000000"), "{}", v[0]);
    assert!(!r.ok);
}

#[test]
fn stale_checker_passes_when_the_kernel_invalidates() {
    let munmap = "\n[[step]]\nop = \"munmap\"\nprocess = \"a\"\nva = 0x4000_0000\nlen = 0x1000\n";
    let r = run_text(&[TWO_PROCESSES, READ_A, munmap, READ_A, UNBIND_ALL].concat());
    assert!(violations(&r, "stale").is_empty(), "{:?}", violations(&r, "stale"));
    assert!(r.ok, "{}", iommu_sim::report::text::render(&r));
}

#[test]
fn stale_checker_catches_a_pte_cleared_without_invalidation() {
    let r = run_text(&[TWO_PROCESSES, READ_A, CLEAR_A, UNBIND_ALL].concat());
    let v = violations(&r, "stale");
    assert!(!v.is_empty(), "the cleared PTE leaves the IOTLB entry stale");
    assert!(v[0].contains("IOTLB still translates 00:01.0 PASID 1 0x40000000"), "{}", v[0]);
    assert!(v[0].contains("the tables fault"), "{}", v[0]);
    let step = &r.invariants[1].violations[0];
    assert_eq!(step.step, 6, "found right after the corrupting step");
}

const LEAKY: &str = r#"
[[device]]
name = "dev"
bdf = "00:01.0"

[[step]]
op = "domain-alloc"
as = "d"

[[step]]
op = "map"
domain = "d"
iova = 0x10_0000
len = 0x1000

[[step]]
op = "attach"
domain = "d"
device = "dev"
pasid = 3
"#;

const CLEANUP: &str = r#"
[[step]]
op = "detach"
domain = "d"
device = "dev"
pasid = 3

[[step]]
op = "unmap"
domain = "d"
iova = 0x10_0000
len = 0x1000

[[step]]
op = "domain-free"
domain = "d"
"#;

#[test]
fn leak_checker_passes_a_scenario_that_releases_what_it_made() {
    let r = run_text(&[LEAKY, CLEANUP].concat());
    assert!(violations(&r, "leaks").is_empty(), "{:?}", violations(&r, "leaks"));
    assert!(r.ok);
}

#[test]
fn leak_checker_catches_a_domain_never_detached_or_freed() {
    let r = run_text(LEAKY);
    let v = violations(&r, "leaks").join("\n");
    assert!(v.contains("domains: "), "{v}");
    assert!(v.contains("memory files: "), "{v}");
    assert!(v.contains("frames: "), "{v}");
    assert!(!r.ok);
}

fn vm_with_budget(pasids: u32) -> String {
    format!(
        r#"
[[device]]
name = "vf"
bdf = "00:04.0"

[[vm]]
name = "vm0"
devices = [{{ device = "vf", bdf = "00:03.0" }}]
processes = [{{ name = "p", maps = [] }}, {{ name = "q", maps = [] }}]
budget = {{ pasids = {pasids} }}

[[step]]
op = "bind"
vm = "vm0"
device = "vf"
process = "p"
as = "bp"

[[step]]
op = "bind"
vm = "vm0"
device = "vf"
process = "q"
as = "bq"
"#
    )
}

#[test]
fn bounds_checker_passes_a_vm_within_its_budget() {
    let r = run_text(&vm_with_budget(2));
    assert!(violations(&r, "bounds").is_empty());
    assert!(r.ok, "{}", iommu_sim::report::text::render(&r));
}

#[test]
fn bounds_checker_catches_a_vm_beyond_its_budget() {
    let r = run_text(&vm_with_budget(1));
    let v = violations(&r, "bounds");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("VM vm0 holds 2 host PASID attachments; its budget is 1"), "{}", v[0]);
}

#[test]
fn a_checker_switched_off_reports_nothing() {
    let text = format!("[checks]\nstale = false\n{}", [TWO_PROCESSES, READ_A, CLEAR_A, UNBIND_ALL].concat());
    let r = run_text(&text);
    assert!(!r.invariants[1].enabled);
    assert!(violations(&r, "stale").is_empty());
}
