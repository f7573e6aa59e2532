//! The default scenario's OS half meets every expectation it states.

#[test]
fn os_half_of_the_default_scenario_meets_every_expectation() {
    let mut out = Vec::new();
    let failed = iommu_sim::demo_os::run(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(failed, 0, "{text}");
    assert!(!text.contains("BAD"), "{text}");
}

#[test]
fn vmm_half_of_the_default_scenario_meets_every_expectation() {
    let mut out = Vec::new();
    let failed = iommu_sim::demo_vmm::run(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(failed, 0, "{text}");
    assert!(text.contains("Translated"), "{text}");
}
