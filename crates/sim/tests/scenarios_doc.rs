//! `docs/SCENARIOS.md` stays the complete reference of scenario files:
//! every operation of the parser's `OPS` table has its `### \`op\`` heading
//! (in the table's order), every key of every section struct and of every
//! operation appears in the page, every TOML block marked `# complete`
//! parses and runs green, and every block marked `# error: …` fails to
//! parse with exactly that message.

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::scenario::parse;

/// The parser's source: the `OPS` table and the section structs are read
/// from it, so that a new operation or key fails here until documented.
const PARSE_RS: &str = include_str!("../src/scenario/parse.rs");

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SCENARIOS.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The body of `OPS` in parse.rs: (op, the keys it takes as written).
fn ops_table() -> Vec<(String, String)> {
    let start =
        PARSE_RS.find("const OPS: &[(&str, &str)] = &[").expect("parse.rs has `const OPS: &[(&str, &str)] = &[`");
    let body = &PARSE_RS[start..];
    let end = body.find("];").expect("the OPS table ends with `];`");
    let mut out = Vec::new();
    for line in body[..end].lines().skip(1) {
        let t = line.trim();
        if !t.starts_with("(\"") {
            continue;
        }
        let strings: Vec<&str> = t.split('"').collect();
        // ("name", "keys"),  →  ["(", name, ", ", keys, "),"]
        assert!(strings.len() >= 5, "unexpected OPS line: {line}");
        out.push((strings[1].to_string(), strings[3].to_string()));
    }
    assert!(out.len() >= 30, "only {} ops read from the OPS table", out.len());
    out
}

/// Field names of `struct NAME { … }` in parse.rs.
fn struct_fields(name: &str) -> Vec<String> {
    let head = format!("struct {name} {{");
    let start = PARSE_RS.find(&head).unwrap_or_else(|| panic!("parse.rs has no `{head}`"));
    let body = &PARSE_RS[start + head.len()..];
    let end = body.find("\n}").expect("struct ends");
    body[..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("#[") && !l.starts_with("//"))
        .filter_map(|l| l.split(':').next())
        .map(|f| f.trim().to_string())
        .collect()
}

/// The section structs of the parser and the keys they must have (the
/// list guards the source reading above; the source adds any new key).
const SECTIONS: &[(&str, &[&str])] = &[
    ("Doc", &["name", "description", "machine", "checks", "device", "process", "vm", "step"]),
    ("MachineToml", &["iommu", "memory_mib", "pasid_bits", "policy"]),
    ("ChecksToml", &["isolation", "stale", "leaks", "bounds"]),
    ("DeviceToml", &["name", "bdf", "pasids", "ats", "pri", "bus", "group"]),
    ("ProcessToml", &["name", "maps"]),
    ("MapToml", &["va", "len", "perm"]),
    (
        "VmToml",
        &[
            "name",
            "ram_mib",
            "pasid_mode",
            "host_api",
            "max_pasids",
            "max_fault_groups",
            "devices",
            "processes",
            "budget",
        ],
    ),
    ("VmDeviceToml", &["device", "bdf"]),
    ("BudgetToml", &["pasids", "fault_groups", "objects"]),
];

/// Keys every step may carry.
const COMMON_STEP_KEYS: &[&str] = &["op", "expect", "expect_data", "note", "vm", "as"];

/// A top-level key is named as `` `key` `` or as its table header.
fn mentions_key(doc: &str, key: &str) -> bool {
    doc.contains(&format!("`{key}`")) || doc.contains(&format!("[{key}]")) || doc.contains(&format!("[[{key}]]"))
}

/// A key of a section or step has a row of its own in a key table.
fn has_row(doc: &str, key: &str) -> bool {
    doc.contains(&format!("\n| `{key}` |"))
}

#[test]
fn every_op_has_a_heading_in_ops_order() {
    let doc = doc();
    let mut missing = Vec::new();
    let mut positions = Vec::new();
    for (op, _) in ops_table() {
        let heading = format!("\n### `{op}`\n");
        match doc.find(&heading) {
            Some(p) => positions.push((p, op)),
            None => missing.push(heading.trim().to_string()),
        }
    }
    assert!(missing.is_empty(), "docs/SCENARIOS.md lacks headings:\n{}", missing.join("\n"));
    let order: Vec<&str> = positions.iter().map(|(_, o)| o.as_str()).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    let doc_order: Vec<&str> = sorted.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(doc_order, order, "the op headings follow the OPS table's order");
}

#[test]
fn every_key_an_op_takes_is_documented_under_its_heading() {
    let doc = doc();
    let mut missing = Vec::new();
    for (op, takes) in ops_table() {
        let heading = format!("\n### `{op}`\n");
        let Some(start) = doc.find(&heading) else { continue };
        let rest = &doc[start + heading.len()..];
        let section = &rest[..rest.find("\n### ").or_else(|| rest.find("\n## ")).unwrap_or(rest.len())];
        for key in takes.split([',', '|', '+', ' ']).map(str::trim).filter(|k| !k.is_empty()) {
            if !section.contains(&format!("`{key}`")) {
                missing.push(format!("{op}: `{key}`"));
            }
        }
    }
    assert!(missing.is_empty(), "keys missing from their op's section:\n{}", missing.join("\n"));
}

#[test]
fn every_section_key_is_documented() {
    let doc = doc();
    let mut missing = Vec::new();
    for (name, listed) in SECTIONS {
        let fields = struct_fields(name);
        for k in *listed {
            assert!(fields.iter().any(|f| f == k), "parse.rs `{name}` has no field `{k}` (fields: {fields:?})");
        }
        for k in &fields {
            let documented = if *name == "Doc" { mentions_key(&doc, k) } else { has_row(&doc, k) };
            if !documented {
                missing.push(format!("{name}.{k}"));
            }
        }
    }
    for k in COMMON_STEP_KEYS {
        if !has_row(&doc, k) {
            missing.push(format!("step.{k}"));
        }
    }
    assert!(missing.is_empty(), "keys missing from docs/SCENARIOS.md:\n{}", missing.join("\n"));
}

#[test]
fn every_expect_value_is_documented() {
    let doc = doc();
    let errnos = [
        "EPERM",
        "ENOENT",
        "EIO",
        "E2BIG",
        "ENOMEM",
        "EFAULT",
        "EBUSY",
        "EEXIST",
        "ENODEV",
        "EINVAL",
        "ENOSPC",
        "ESPIPE",
        "EOVERFLOW",
        "EOPNOTSUPP",
        "ETIMEDOUT",
    ];
    for e in errnos {
        assert!(doc.contains(&format!("`{e}`")), "errno {e} missing");
    }
    for v in ["ok", "any", "fault", "invalid-request", "response-failure"] {
        assert!(PARSE_RS.contains(&format!("\"{v}\" =>")), "`{v}` is not an expect value of parse.rs");
        assert!(doc.contains(&format!("`\"{v}\"`")), "expect value \"{v}\" missing");
    }
    for v in ["fault:0xNN", "fault:<Name>"] {
        assert!(doc.contains(&format!("`\"{v}\"`")), "expect value \"{v}\" missing");
    }
}

/// A fenced ```toml block: line of its first content line, its text.
fn toml_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut cur {
            None if line == "```toml" => cur = Some((i + 2, String::new())),
            None => {}
            Some(_) if line == "```" => out.extend(cur.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(cur.is_none(), "an unclosed ```toml block");
    out
}

#[test]
fn complete_examples_parse_and_run_green() {
    let doc = doc();
    let complete: Vec<(usize, String)> =
        toml_blocks(&doc).into_iter().filter(|(_, t)| t.lines().next() == Some("# complete")).collect();
    assert!(complete.len() >= 4, "only {} `# complete` blocks", complete.len());
    let mut failures = Vec::new();
    for (line, text) in &complete {
        let origin = format!("docs/SCENARIOS.md:{line}");
        let top_level = text.lines().any(|l| l == "[[step]]" || l == "[[device]]");
        assert!(top_level, "{origin}: a complete block has [[device]] or [[step]] tables");
        match parse(text, &origin, "doc") {
            Err(e) => failures.push(format!("{origin}: does not parse: {e}")),
            Ok(sc) => {
                let r = run(&sc, RunOptions::default());
                if !r.ok {
                    failures.push(format!("{origin}: not green:\n{}", iommu_sim::report::text::render(&r)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn error_examples_report_exactly_their_message() {
    let doc = doc();
    let mut n = 0;
    let mut failures = Vec::new();
    for (line, text) in toml_blocks(&doc) {
        let Some(want) = text.lines().next().and_then(|l| l.strip_prefix("# error: ")) else { continue };
        n += 1;
        match parse(&text, "bad.toml", "bad") {
            Ok(_) => failures.push(format!("docs/SCENARIOS.md:{line}: parsed, expected `{want}`")),
            Err(e) if e.to_string() == want => {}
            Err(e) => failures.push(format!("docs/SCENARIOS.md:{line}:\n  doc: {want}\n  got: {e}")),
        }
    }
    assert!(n >= 5, "only {n} `# error:` blocks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
