//! Malformed replay input gives a clear error and a non-zero exit, never a panic.

use std::io::Write;
use std::process::{Command, Stdio};

use iommu_sim::replay::vtd::replay_stream;
use iommu_sim::replay::ReplayError;

fn replay(input: &str) -> Result<String, ReplayError> {
    let mut out = Vec::new();
    replay_stream(input.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

const HEADER: &str = r#""schema":"vtd-oracle-case/v1","config":{"qemu_props":{},"ram":"16M"}"#;

fn case(steps: &str) -> String {
    format!(r#"{{"id":"t",{HEADER},"steps":[{steps}]}}"#)
}

#[test]
fn bad_json_is_reported_with_its_line() {
    let err = replay("\n{not json").unwrap_err();
    assert!(matches!(err, ReplayError::Json { line: 2, .. }), "{err}");
}

#[test]
fn unknown_op_is_reported_with_case_and_step() {
    let err = replay(&case(r#"{"op":"teleport"}"#)).unwrap_err();
    assert_eq!(err.to_string(), r#"line 1 (case t), step 0: unknown op "teleport""#);
}

#[test]
fn memory_write_outside_ram_is_an_error() {
    let err = replay(&case(r#"{"op":"mem_write","addr":"0x40000000","hex":"00"}"#)).unwrap_err();
    assert!(err.to_string().contains("mem_write outside RAM"), "{err}");
}

#[test]
fn register_access_outside_the_window_is_an_error() {
    let err = replay(&case(r#"{"op":"reg_read","width":32,"offset":"0x5000"}"#)).unwrap_err();
    assert!(err.to_string().contains("outside the register window"), "{err}");
}

#[test]
fn odd_length_hex_is_an_error() {
    let err = replay(&case(r#"{"op":"mem_write","addr":"0x1000","hex":"abc"}"#)).unwrap_err();
    assert!(err.to_string().contains("mem_write.hex"), "{err}");
}

#[test]
fn dma_data_length_must_match_size() {
    let step = r#"{"op":"dma","source_id":"0x8","pasid":null,"iova":"0x1000","size":4,"dir":"write","data":"00"}"#;
    let err = replay(&case(step)).unwrap_err();
    assert!(err.to_string().contains("length differs"), "{err}");
}

#[test]
fn oversized_ram_is_refused() {
    let c = r#"{"id":"big","config":{"ram":"100000G"},"steps":[]}"#;
    assert!(replay(c).unwrap_err().to_string().contains("exceeds"));
}

#[test]
fn well_formed_case_with_no_dma_replays() {
    let out = replay(&case(r#"{"op":"reg_read","width":64,"offset":"0x8"}"#)).unwrap();
    assert!(out.starts_with(r#"{"id":"t","observed":"#), "{out}");
}

#[test]
fn binary_exits_non_zero_with_a_message_on_malformed_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iommu-sim"))
        .args(["replay", "vtd", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"[1,2,\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("not valid JSON") && !err.contains("panicked"), "{err}");
}

#[test]
fn binary_reports_a_missing_file() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_iommu-sim")).args(["replay", "vtd", "/nonexistent.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl"));
}
