//! Malformed scenario files: every error names the file, the line of the
//! key or value at fault and what was expected; nothing panics — not the
//! parser on arbitrary or mutated text, not the engine on whatever the
//! parser accepts, not the binary.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::scenario::{parse, ScenarioError, DEFAULT_SCENARIO};
use proptest::prelude::*;

/// A small valid scenario the cases below break one key at a time.
const BASE: &str = r#"name = "t"

[machine]
iommu = "vtd"
memory_mib = 128
pasid_bits = 20

[checks]
isolation = true

[[device]]
name = "gpu"
bdf = "00:01.0"

[[device]]
name = "nic"
bdf = "00:02.0"
ats = true

[[device]]
name = "vf"
bdf = "00:03.0"

[[process]]
name = "app"
maps = [{ va = 0x4000_0000, len = 0x10000, perm = "rw" }]

[[vm]]
name = "vm0"
pasid_mode = "translated"
devices = [{ device = "vf", bdf = "00:05.0" }]
processes = [{ name = "gapp", maps = [{ va = 0x4000_0000, len = 0x2000 }] }]

[[step]]
op = "bind"
device = "gpu"
process = "app"
as = "b0"

[[step]]
op = "bind"
vm = "vm0"
device = "vf"
process = "gapp"
as = "g0"
"#;

/// Marks the header of the step a case appends.
const HEADER: &str = "# the step under test";

/// `BASE` and one more step with these keys.
fn step(body: &str) -> String {
    format!("{BASE}\n[[step]] {HEADER}\n{body}\n")
}

/// `BASE` with `insert` (lines) after its first line equal to `anchor`.
fn after(anchor: &str, insert: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in BASE.lines() {
        out.push_str(l);
        out.push('\n');
        if !done && l == anchor {
            out.push_str(insert);
            out.push('\n');
            done = true;
        }
    }
    assert!(done, "no line `{anchor}` in BASE");
    out
}

/// `BASE` with its first `from` replaced by `to`.
fn replace(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "no `{from}` in BASE");
    BASE.replacen(from, to, 1)
}

/// 1-based line of the only line of `text` containing `marker`, looking
/// only at the step under test when there is one.
fn line_of(text: &str, marker: &str) -> usize {
    let from = text.lines().position(|l| l.contains(HEADER)).unwrap_or(0);
    let hits: Vec<usize> =
        text.lines().enumerate().skip(from).filter(|(_, l)| l.contains(marker)).map(|(i, _)| i + 1).collect();
    assert_eq!(hits.len(), 1, "marker `{marker}` must be on exactly one line of\n{text}");
    hits[0]
}

fn parse_err(text: &str) -> ScenarioError {
    match parse(text, "bad.toml", "bad") {
        Ok(sc) => panic!("parsed, with {} steps:\n{text}", sc.steps.len()),
        Err(e) => e,
    }
}

/// `text` fails to parse at the line holding `marker`, with a message
/// containing every one of `wants`; `None` when it does, else what is wrong.
fn failure(text: &str, marker: &str, wants: &[&str]) -> Option<String> {
    let line = line_of(text, marker);
    let e = match parse(text, "bad.toml", "bad") {
        Ok(_) => return Some("parsed without an error".into()),
        Err(e) => e,
    };
    let mut wrong = Vec::new();
    if e.origin != "bad.toml" {
        wrong.push(format!("origin {:?}", e.origin));
    }
    if e.line != Some(line) {
        wrong.push(format!("line {:?}, expected {line} (`{}`)", e.line, text.lines().nth(line - 1).unwrap_or("")));
    }
    if e.column.is_none() {
        wrong.push("no column".into());
    }
    for w in wants {
        if !e.message.contains(w) {
            wrong.push(format!("message lacks {w:?}"));
        }
    }
    if !e.to_string().starts_with(&format!("bad.toml:{line}:")) {
        wrong.push("Display is not `bad.toml:LINE:COL: message`".into());
    }
    (!wrong.is_empty()).then(|| format!("{}\n    got: {e}", wrong.join("; ")))
}

fn check(text: &str, marker: &str, wants: &[&str]) {
    if let Some(f) = failure(text, marker, wants) {
        panic!("{f}");
    }
}

#[test]
fn the_base_scenario_parses() {
    let sc = parse(BASE, "bad.toml", "bad").expect("BASE is valid");
    assert_eq!(sc.steps.len(), 2);
    let sc = parse(&step("op = \"unbind\"\nbond = \"b0\""), "bad.toml", "bad").expect("a valid extra step");
    assert_eq!(
        sc.steps[2].line,
        line_of(&step("op = \"unbind\"\nbond = \"b0\""), HEADER),
        "a step's line is its header's"
    );
}

/// One `#[test]` per case: name, text, marker of the offending line, and
/// substrings the message must contain.
macro_rules! cases {
    ($($name:ident: $text:expr, at $marker:expr => $($want:expr),+;)+) => {
        $(
            #[test]
            fn $name() {
                check(&$text, $marker, &[$($want),+]);
            }
        )+

        /// Every case again, all failures reported together.
        #[test]
        fn every_case_in_one_table() {
            let table: Vec<(&str, String, &str, Vec<&str>)> =
                vec![$((stringify!($name), $text.to_string(), $marker, vec![$($want),+])),+];
            assert!(table.len() >= 14);
            for (n, t, _, _) in &table {
                if let Err(e) = parse(t, "bad.toml", "bad") {
                    println!("{n}: {e}");
                }
            }
            let failures: Vec<String> = table
                .iter()
                .filter_map(|(n, t, m, w)| failure(t, m, w).map(|f| format!("{n}: {f}")))
                .collect();
            assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), table.len(), failures.join("\n"));
        }
    };
}

cases! {
    // --- TOML syntax ---------------------------------------------------------
    syntax_unclosed_string: step("op = \"unmap\ndomain = \"d\""), at "op = \"unmap" => "string";
    syntax_missing_equals: step("op \"unbind\"\nbond = \"b0\""), at "op \"unbind\"" => "=";
    syntax_duplicate_key: step("op = \"unbind\"\nbond = \"b0\"\nbond = \"g0\""), at "bond = \"g0\"" => "duplicate key";
    syntax_bad_header: format!("{BASE}\n[[step] {HEADER}\nop = \"unbind\"\n"), at HEADER => "unclosed array table", "expected `]`";

    // --- unknown keys --------------------------------------------------------
    unknown_top_level_key: after("name = \"t\"", "colour = \"red\""), at "colour" =>
        "unknown field `colour`", "expected one of", "`machine`", "`step`";
    unknown_machine_key: after("memory_mib = 128", "cpus = 4"), at "cpus" =>
        "unknown field `cpus`", "`memory_mib`", "`pasid_bits`";
    unknown_checks_key: after("isolation = true", "speed = true"), at "speed" => "unknown field `speed`", "`leaks`";
    unknown_device_key: after("ats = true", "speed = 10"), at "speed" => "unknown field `speed`", "`bdf`", "`pasids`";
    unknown_map_key: replace("perm = \"rw\" }", "perm = \"rw\", huge = true }"), at "huge" =>
        "unknown field `huge`", "`perm`";
    unknown_vm_key: after("pasid_mode = \"translated\"", "vcpus = 2"), at "vcpus" =>
        "unknown field `vcpus`", "`ram_mib`", "`host_api`";
    unknown_step_key: step("op = \"unbind\"\nbond = \"b0\"\ncolour = 1"), at "colour" =>
        "unknown key `colour`", "it takes: vm, bond", "any step: expect, note";
    unknown_step_key_of_another_op: step("op = \"exit\"\nprocess = \"app\"\ndevice = \"gpu\""), at "device = \"gpu\"" =>
        "step `exit`: unknown key `device`", "it takes: vm, process;";

    // --- ops -----------------------------------------------------------------
    unknown_op: step("op = \"teleport\"\ndevice = \"gpu\""), at "teleport" =>
        "unknown op `teleport`", "expected one of mmap", "dma-write", "vm-destroy";
    op_not_a_string: step("op = 3"), at "op = 3" => "op: expected a string";
    missing_op: step("device = \"gpu\"\nprocess = \"app\""), at HEADER => "step without `op`";
    missing_data: step("op = \"dma-write\"\ndevice = \"gpu\"\nbond = \"b0\"\naddr = 0x4000_0000"), at HEADER =>
        "step `dma-write`: missing `data`", "it takes: vm, device, pasid | bond, addr, data";
    missing_len: step("op = \"dma-read\"\ndevice = \"gpu\"\naddr = 0x4000_0000"), at HEADER => "missing `len`";
    missing_vm: step("op = \"vm-destroy\""), at HEADER => "missing `vm`";
    missing_detach_domain: step("op = \"detach\"\ndevice = \"nic\"\npasid = 3"), at HEADER => "missing `domain`";

    // --- names ---------------------------------------------------------------
    unknown_device_in_step: step("op = \"dma-read\"\ndevice = \"tpu\"\naddr = 0\nlen = 4"), at "tpu" =>
        "unknown device `tpu`", "[[device]] names";
    unknown_process: step("op = \"exit\"\nprocess = \"ghost\""), at "ghost" =>
        "unknown process `ghost`", "[[process]] names";
    host_process_in_vm_step: step("op = \"exit\"\nvm = \"vm0\"\nprocess = \"app\""), at "process = \"app\"" =>
        "unknown process `app`", "the processes of VM `vm0`";
    bond_used_before_its_as: format!(
        "{}\n[[step]]\nop = \"bind\"\ndevice = \"nic\"\nprocess = \"app\"\nas = \"later\"\n",
        step("op = \"dma-read\"\ndevice = \"nic\"\nbond = \"later\"\naddr = 0\nlen = 4")
    ), at "bond = \"later\"" => "unknown bond `later`", "named by `as` on an earlier bind step";
    host_bond_in_a_vm: step("op = \"unbind\"\nvm = \"vm0\"\nbond = \"b0\""), at "bond = \"b0\"" =>
        "unknown bond `b0`", "in the same kernel";
    unknown_bond_in_random_dma: step("op = \"random-dma\"\ndevice = \"gpu\"\nbonds = [\"b0\", \"nope\"]\nbase = 0\nspan = 4096\ncount = 8"),
        at "nope" => "unknown bond `nope`";
    bond_defined_twice: step("op = \"bind\"\ndevice = \"nic\"\nprocess = \"app\"\nas = \"b0\""), at "as = \"b0\"" =>
        "bond `b0` is defined twice";
    bad_bond_name: step("op = \"bind\"\ndevice = \"nic\"\nprocess = \"app\"\nas = \"a b\""), at "a b" =>
        "bond name `a b`", "letters, digits";
    unknown_domain: step("op = \"map\"\ndomain = \"nodom\"\niova = 0\nlen = 4096"), at "nodom" =>
        "unknown domain `nodom`", "named by `as`";
    duplicate_device_name: after("bdf = \"00:03.0\"", "\n[[device]]\nname = \"gpu\" # again\nbdf = \"00:09.0\""),
        at "# again" => "device `gpu` is defined twice";
    duplicate_process_name: after("maps = [{ va = 0x4000_0000, len = 0x10000, perm = \"rw\" }]",
        "\n[[process]]\nname = \"app\" # again"), at "# again" => "process `app` is defined twice";
    bad_device_name: replace("name = \"nic\"", "name = \"n i c\""), at "n i c" => "device name `n i c`";
    unknown_vm_device: replace("device = \"vf\", bdf", "device = \"vv\", bdf"), at "vv" => "unknown device `vv`";

    // --- bdfs ----------------------------------------------------------------
    duplicate_bdf: after("bdf = \"00:03.0\"", "\n[[device]]\nname = \"tpu\"\nbdf = \"00:01.0\" # dup"), at "# dup" =>
        "bdf 00:01.0 is already device `gpu`";
    bdf_device_over_1f: replace("bdf = \"00:02.0\"", "bdf = \"00:20.0\""), at "00:20.0" =>
        "bdf `00:20.0`", "expected BB:DD.F";
    bdf_not_hex: replace("bdf = \"00:02.0\"", "bdf = \"zz\""), at "zz" => "bdf `zz`", "expected BB:DD.F";
    bdf_function_over_7: replace("bdf = \"00:02.0\"", "bdf = \"00:02.8\""), at "00:02.8" => "expected BB:DD.F";
    guest_bdf_malformed: replace("bdf = \"00:05.0\"", "bdf = \"00:05\""), at "00:05\"" => "bdf `00:05`";

    // --- ranges --------------------------------------------------------------
    pasid_bits_out_of_range: replace("pasid_bits = 20", "pasid_bits = 21"), at "pasid_bits" =>
        "pasid_bits = 21 is out of range", "1..=20";
    memory_mib_out_of_range: replace("memory_mib = 128", "memory_mib = 1"), at "memory_mib" =>
        "memory_mib = 1 is out of range", "64..=16384";
    dma_pasid_out_of_range: step("op = \"dma-read\"\ndevice = \"gpu\"\npasid = 0x100000\naddr = 0\nlen = 4"),
        at "0x100000" => "pasid = 1048576 is out of range", "0xfffff";
    random_dma_count_out_of_range: step("op = \"random-dma\"\ndevice = \"gpu\"\nbase = 0\nspan = 4096\ncount = 2_000_000"),
        at "count" => "count = 2000000 is out of range";
    negative_len: step("op = \"cpu-read\"\nprocess = \"app\"\nva = 0x4000_0000\nlen = -1"), at "len = -1" =>
        "len = -1 is out of range";
    unaligned_map: replace("va = 0x4000_0000, len = 0x10000", "va = 0x4000_0010, len = 0x10000"), at "0x4000_0010" =>
        "4 KiB aligned";
    empty_data: step("op = \"cpu-write\"\nprocess = \"app\"\nva = 0x4000_0000\ndata = \"\""), at "data" =>
        "data: expected 1..=";

    // --- types ---------------------------------------------------------------
    step_va_not_an_integer: step("op = \"cpu-read\"\nprocess = \"app\"\nva = \"x\"\nlen = 4"), at "va = \"x\"" =>
        "va: expected an integer, found string";
    step_value_a_table: step("op = \"cpu-read\"\nprocess = \"app\"\nva = { a = 1 }\nlen = 4"), at "va = {" =>
        "va: expected an integer, found table";
    device_ats_not_a_bool: replace("ats = true", "ats = 3"), at "ats = 3" => "invalid type: integer `3`", "a boolean";
    checks_not_a_bool: replace("isolation = true", "isolation = \"yes\""), at "isolation" => "expected a boolean";
    map_va_not_an_integer: replace("va = 0x4000_0000, len = 0x10000", "va = \"x\", len = 0x10000"), at "va = \"x\"" =>
        "invalid type: string \"x\"", "i64";
    step_vm_not_a_string: step("op = \"exit\"\nvm = 0\nprocess = \"gapp\""), at "vm = 0" => "vm: expected a string";
    nest_parent_not_a_bool: step("op = \"domain-alloc\"\nas = \"d\"\nnest_parent = 1"), at "nest_parent" =>
        "nest_parent: expected true or false";
    data_byte_over_255: step("op = \"cpu-write\"\nprocess = \"app\"\nva = 0x4000_0000\ndata = [1, 2, 256]"),
        at "256" => "data: expected bytes 0..=255";
    random_dma_pasids_not_an_array: step("op = \"random-dma\"\ndevice = \"gpu\"\npasids = 5\nbase = 0\nspan = 4096\ncount = 8"),
        at "pasids = 5" => "pasids: expected an array";

    // --- strings with a fixed set of values ------------------------------------
    bad_step_perm: step("op = \"mmap\"\nprocess = \"app\"\nva = 0x5000_0000\nlen = 4096\nperm = \"rq\""), at "\"rq\"" =>
        "perm `rq`", "expected letters from `rwx`";
    bad_map_perm: replace("perm = \"rw\"", "perm = \"rq\""), at "\"rq\"" => "perm `rq`", "`rwx`";
    perm_without_read_or_write: step("op = \"mmap\"\nprocess = \"app\"\nva = 0x5000_0000\nlen = 4096\nperm = \"x\""),
        at "perm = \"x\"" => "perm `x`: expected at least `r` or `w`";
    bad_expect: step("op = \"unbind\"\nbond = \"b0\"\nexpect = \"maybe\""), at "maybe" =>
        "expect `maybe`", "\"ok\", \"any\", an errno name";
    bad_fault_code: step("op = \"dma-read\"\ndevice = \"gpu\"\naddr = 0\nlen = 4\nexpect = \"fault:0xZZ\""),
        at "0xZZ" => "expect `fault:0xZZ`", "fault:0xNN or fault:<reason name>";
    vm_on_smmuv3: replace("iommu = \"vtd\"", "iommu = \"smmuv3\""), at "[[vm]]" => "[[vm]] needs `iommu = \"vtd\"`";
    unknown_iommu: replace("iommu = \"vtd\"", "iommu = \"amd-vi\""), at "amd-vi" => "iommu `amd-vi`", "\"vtd\"";
    bad_policy: after("pasid_bits = 20", "policy = \"v4\""), at "v4" => "policy `v4`", "\"v2\", \"v3\"";
    bad_pasid_mode: replace("pasid_mode = \"translated\"", "pasid_mode = \"mirrored\""), at "mirrored" =>
        "pasid_mode `mirrored`", "\"identity\", \"translated\"";
    bad_domain_format: step("op = \"domain-alloc\"\nas = \"d\"\nformat = \"third-stage\""), at "third-stage" =>
        "step `domain-alloc`: format `third-stage`", "\"second-stage\"";

    // --- VMs -----------------------------------------------------------------
    unknown_vm_in_step: step("op = \"exit\"\nvm = \"vm9\"\nprocess = \"gapp\""), at "vm9" =>
        "unknown VM `vm9`", "[[vm]] names";
    device_not_assigned_to_the_vm: step("op = \"dma-read\"\nvm = \"vm0\"\ndevice = \"gpu\"\naddr = 0\nlen = 4"),
        at "device = \"gpu\"" => "device `gpu` is not assigned to VM `vm0`";
    host_only_op_with_vm: step("op = \"domain-alloc\"\nvm = \"vm0\"\nas = \"d\""), at "vm = \"vm0\"" =>
        "step `domain-alloc`: runs on the host only", "remove `vm`";
    bind_gpasid_needs_translated: replace("pasid_mode = \"translated\"", "host_api = \"bind-gpasid\""),
        at "bind-gpasid" => "needs pasid_mode = \"translated\"";
    device_assigned_twice: replace("devices = [{ device = \"vf\", bdf = \"00:05.0\" }]",
        "devices = [{ device = \"vf\", bdf = \"00:05.0\" }, { device = \"vf\", bdf = \"00:06.0\" }]"),
        at "00:06.0" => "device `vf` is assigned twice";

    // --- conflicting keys ----------------------------------------------------
    pasid_and_bond: step("op = \"dma-read\"\ndevice = \"gpu\"\npasid = 1\nbond = \"b0\"\naddr = 0\nlen = 4"), at HEADER =>
        "give `pasid` or `bond`, not both";
    expect_data_on_an_op_that_reads_nothing: step("op = \"exit\"\nprocess = \"app\"\nexpect_data = \"x\""),
        at "expect_data" => "step `exit`: unknown key `expect_data`";
    misspelt_key_reported_before_the_missing_one: step("op = \"dma-read\"\ndevice = \"gpu\"\naddr = 0\nsize = 4"),
        at "size" => "unknown key `size`", "len";
    bdf_with_a_sign: replace("bdf = \"00:01.0\"", "bdf = \"+0:+1.+0\""), at "+0:+1.+0" => "expected BB:DD.F";
    mdev_with_its_own_bdf: after("bdf = \"00:03.0\"", "\n[[device]]\nname = \"m0\"\nparent = \"gpu\"\nbdf = \"00:09.0\""), at "00:09.0" =>
        "a mediated device (with `parent`) takes only `name` and `parent`, not `bdf`";
    mdev_of_an_unknown_parent: after("bdf = \"00:03.0\"", "\n[[device]]\nname = \"m0\"\nparent = \"tpu\""), at "\"tpu\"" =>
        "parent `tpu`: expected the name of an earlier [[device]]";
    corrupt_pte_without_owner: step("op = \"corrupt-pte\"\nva = 0x4000_0000\nvalue = 0"), at HEADER =>
        "give exactly one of `process` or `domain`";
}

#[test]
fn a_missing_section_field_points_at_its_table() {
    let text = after("bdf = \"00:03.0\"", "\n[[device]] # no bdf\nname = \"tpu\"");
    let e = parse_err(&text);
    assert!(e.message.contains("missing key `bdf`"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "# no bdf")), "the [[device]] header: {e}");
}

#[test]
fn a_missing_map_field_points_at_its_inline_table() {
    let text =
        replace("maps = [{ va = 0x4000_0000, len = 0x10000, perm = \"rw\" }]", "maps = [\n  { va = 0 }, # no len\n]");
    let e = parse_err(&text);
    assert!(e.message.contains("missing field `len`"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "# no len")), "{e}");
}

#[test]
fn too_many_devices_points_at_the_first_one_over() {
    let devices: String =
        (0..257).map(|i| format!("[[device]]\nname = \"d{i}\"\nbdf = \"{:02x}:{:02x}.0\"\n", i / 32, i % 32)).collect();
    let text = format!("name = \"many\"\n{devices}");
    let e = parse_err(&text);
    assert!(e.message.contains("257 devices: at most 256"), "{e}");
    assert_eq!(e.line, Some(2 + 256 * 3), "the 257th [[device]]: {e}");
}

#[test]
fn too_many_steps_points_at_the_first_one_over() {
    let steps: String = (0..10_001).map(|_| "[[step]]\nop = \"pasid-alloc\"\ncount = 1\n").collect();
    let text = format!("name = \"long\"\n{steps}");
    let e = parse_err(&text);
    assert!(e.message.contains("10001 steps: at most 10000"), "{e}");
    assert_eq!(e.line, Some(2 + 10_000 * 3), "the 10001st [[step]]: {e}");
}

#[test]
fn steps_as_a_plain_table_is_a_type_error_with_a_line() {
    let e = parse_err(&format!("{BASE}\n[steps]\nop = \"x\"\n"));
    assert!(e.message.contains("unknown field `steps`"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn every_error_of_the_default_scenario_with_one_line_deleted_has_a_line_in_the_file() {
    let lines: Vec<&str> = DEFAULT_SCENARIO.lines().collect();
    for i in 0..lines.len() {
        let mut v = lines.clone();
        v.remove(i);
        let text = v.join("\n");
        if let Err(e) = parse(&text, "bad.toml", "bad") {
            let l = e.line.unwrap_or_else(|| panic!("deleting line {}: no line in {e}", i + 1));
            assert!(l >= 1 && l <= v.len() + 1, "deleting line {}: line {l} of {}: {e}", i + 1, v.len());
        }
    }
}

// --- the binary -------------------------------------------------------------

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scenario_errors-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

fn run_binary(path: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sim")).arg("run").arg(path).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_reports_file_and_line_and_exits_non_zero() {
    let text = replace("pasid_bits = 20", "pasid_bits = 21");
    let path = tmp_file("bad.toml", &text);
    let (code, _, stderr) = run_binary(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!("{}:{}:", path.display(), line_of(&text, "pasid_bits"));
    assert!(stderr.contains(&want), "stderr lacks {want:?}:\n{stderr}");
    assert!(stderr.contains("pasid_bits = 21 is out of range"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

#[test]
fn binary_reports_a_syntax_error_with_its_line() {
    let text = step("op = \"unmap\ndomain = \"d\"");
    let path = tmp_file("syntax.toml", &text);
    let (code, _, stderr) = run_binary(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!("{}:{}:", path.display(), line_of(&text, "op = \"unmap"));
    assert!(stderr.contains(&want), "stderr lacks {want:?}:\n{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

#[test]
fn binary_on_a_missing_file_says_so_and_exits_1() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scenario_errors-no-such-file.toml");
    let (code, stdout, stderr) = run_binary(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the scenario"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
}

// --- never a panic ------------------------------------------------------------

/// A parse error has a position, within the text.
fn position_in_text(text: &str, e: &ScenarioError) -> Result<(), TestCaseError> {
    let Some(l) = e.line else { return Err(TestCaseError::fail(format!("no line: {e}\n{text}"))) };
    prop_assert!(l >= 1 && l <= text.split('\n').count(), "line {l} outside the text: {e}");
    prop_assert!(e.column.is_some_and(|c| c >= 1), "{e}");
    Ok(())
}

/// A mutation of the default scenario.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceChar(usize, char),
}

fn mutate(text: &str, m: &Mutation) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    match *m {
        Mutation::DeleteLine(i) => {
            let mut v = lines;
            v.remove(i % v.len());
            v.join("\n")
        }
        Mutation::DuplicateLine(i) => {
            let mut v = lines;
            let i = i % v.len();
            v.insert(i, v[i]);
            v.join("\n")
        }
        Mutation::ReplaceChar(i, c) => {
            let mut i = i % text.len();
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let len = text[i..].chars().next().map_or(0, char::len_utf8);
            format!("{}{c}{}", &text[..i], &text[i + len..])
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting =
        prop::sample::select(vec!['"', '=', '[', ']', '#', '\n', '0', '9', '-', '_', ' ', '{', 'é', '\u{0}']);
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Mutation::ReplaceChar(i, c)),
        (any::<usize>(), interesting).prop_map(|(i, c)| Mutation::ReplaceChar(i, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Err(e) = parse(&text, "bad.toml", "bad") {
            position_in_text(&text, &e)?;
        }
    }

    #[test]
    fn toml_like_text_never_panics(text in "([a-z_]{1,8} = (\"[a-z0-9:. -]{0,8}\"|-?[0-9]{1,8}|true|\\[[0-9, ]{0,8}\\])\n|\\[\\[?(step|device|process|vm)\\]\\]?\n|\\[machine\\]\n){0,24}") {
        if let Err(e) = parse(&text, "bad.toml", "bad") {
            position_in_text(&text, &e)?;
        }
    }
}

proptest! {
    // Each accepted mutation is run (~50 ms in a debug build).
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_default_scenario_never_panics(ms in prop::collection::vec(mutation(), 1..4)) {
        let mut text = DEFAULT_SCENARIO.to_string();
        for m in &ms {
            text = mutate(&text, m);
        }
        match parse(&text, "bad.toml", "bad") {
            Err(e) => position_in_text(&text, &e)?,
            Ok(sc) => {
                let t = Instant::now();
                let r = run(&sc, RunOptions::default());
                prop_assert!(r.steps.len() == sc.steps.len() || !r.setup_errors.is_empty(), "{} of {} steps", r.steps.len(), sc.steps.len());
                prop_assert!(t.elapsed().as_secs() < 10, "a run took {:?}", t.elapsed());
            }
        }
    }
}
