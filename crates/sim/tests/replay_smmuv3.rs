//! `iommu-sim replay smmuv3`: a minimal case replays to the oracle's
//! observation shape, and malformed input gives a clear error, never a panic.

use iommu_sim::replay::smmuv3::replay_stream;
use iommu_sim::replay::ReplayError;
use serde_json::Value;

fn replay(input: &str) -> Result<Vec<Value>, ReplayError> {
    let mut out = Vec::new();
    replay_stream(input.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

/// One JSON Lines case (the steps are joined onto one line).
fn case(smmu: &str, steps: &str) -> String {
    let steps = steps.replace('\n', " ");
    format!(
        r#"{{"id":"t","schema":"smmuv3-oracle-case/v1","config":{{"smmu":"{smmu}","ram":{{"base":"0x40000000","size":"64M"}}}},"steps":[{steps}]}}"#
    )
}

#[test]
fn dma_with_the_smmu_disabled_bypasses_and_is_observed() {
    let steps = r#"{"op":"dma","stream_id":"0x8","ssid":null,"iova":"0x40001000","size":4,"dir":"write","data":"a1b2c3d4"},
                   {"op":"mem_read","addr":"0x40001000","size":4},
                   {"op":"reg_read","width":32,"offset":"0x0"}"#;
    let out = replay(&case("nested", steps)).unwrap();
    let obs = &out[0]["observed"];
    assert_eq!(obs["watch"][0]["hex"], "a1b2c3d4");
    assert_eq!(obs["dma"][0]["events"].as_array().unwrap().len(), 0);
    assert_eq!(obs["reads"][0]["value"], "0xd44101b");
    assert_eq!(obs["final"]["GBPA"], "0x1000");
}

#[test]
fn memory_below_the_ram_base_is_unbacked() {
    let err = replay(&case("nested", r#"{"op":"mem_write","addr":"0x1000","hex":"00"}"#)).unwrap_err();
    assert!(err.to_string().contains("mem_write outside RAM"), "{err}");
}

#[test]
fn unknown_profile_is_refused() {
    let err = replay(&case("s3only", "")).unwrap_err();
    assert!(err.to_string().contains("config.smmu"), "{err}");
}

#[test]
fn substream_wider_than_20_bits_is_refused() {
    let steps = r#"{"op":"dma","stream_id":"0x8","ssid":"0x100000","iova":"0x0","size":4,"dir":"read"}"#;
    let err = replay(&case("nested", steps)).unwrap_err();
    assert!(err.to_string().contains("20 bits"), "{err}");
}

#[test]
fn unknown_op_names_case_and_step() {
    let err = replay(&case("s1only", r#"{"op":"teleport"}"#)).unwrap_err();
    assert_eq!(err.to_string(), r#"line 1 (case t), step 0: unknown op "teleport""#);
}
