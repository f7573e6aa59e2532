//! The readable report: a header, then tables (steps, bindings, DMAs,
//! faults and page requests, caches, invariants) and a verdict.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use super::Report;

/// Rows of the DMA and fault tables shown in text (the JSON has more).
const SHOWN_ROWS: usize = 40;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn pasid(p: Option<u32>) -> String {
    p.map_or("-".into(), |p| p.to_string())
}

/// Renders `r` as text. With `trace`, the trace follows the tables.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {} ({})", r.scenario, r.origin);
    if !r.description.is_empty() {
        for l in r.description.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    for e in &r.setup_errors {
        let _ = writeln!(out, "SETUP ERROR: {e}");
    }

    let mut t = table(&["#", "line", "operation", "expected", "got", ""]);
    for s in &r.steps {
        let mark = if s.ok { "ok" } else { "FAIL" };
        let op = match &s.note {
            Some(n) => format!("{}\n  ({n})", s.op),
            None => s.op.clone(),
        };
        t.add_row(vec![s.step.to_string(), s.line.to_string(), op, s.expected.clone(), s.got.clone(), mark.into()]);
    }
    let _ = writeln!(out, "\nsteps\n{t}");

    let mut t = table(&["device", "PASID", "attached", "from step", "until step"]);
    for b in &r.bindings {
        let until = match b.to_step {
            None => "end".into(),
            Some(s) if s > r.steps.len() => "teardown".into(),
            Some(s) => s.to_string(),
        };
        t.add_row(vec![b.device.clone(), pasid(b.pasid), b.target.clone(), b.from_step.to_string(), until]);
    }
    let _ = writeln!(out, "\nbindings\n{t}");

    let d = &r.dma;
    let _ = writeln!(
        out,
        "\nDMA: {} issued, {} completed, {} refused, {} bytes moved",
        d.total, d.completed, d.refused, d.bytes
    );
    if !d.rows.is_empty() {
        let mut t = table(&["step", "device", "PASID", "address", "len", "dir", "outcome", "host address"]);
        for row in d.rows.iter().take(SHOWN_ROWS) {
            t.add_row(vec![
                row.step.to_string(),
                row.device.clone(),
                pasid(row.pasid),
                format!("{:#x}", row.addr),
                row.len.to_string(),
                if row.write { "W" } else { "R" }.into(),
                row.outcome.clone(),
                row.hpa.map_or("-".into(), |h| format!("{h:#x}")),
            ]);
        }
        let _ = writeln!(out, "{t}");
        if d.rows.len() > SHOWN_ROWS || d.total > d.rows.len() as u64 {
            let _ = writeln!(out, "({} more in --json)", d.total.saturating_sub(SHOWN_ROWS as u64));
        }
    }

    let p = &r.page_requests;
    let _ = writeln!(
        out,
        "\nfaults and page requests: {} DMA(s) refused, {} fault(s) recorded by the unit; {} page request(s), {} answered SUCCESS, {} not",
        r.faults.len(),
        p.faults_recorded,
        p.sent,
        p.success,
        p.refused
    );
    if !r.faults.is_empty() {
        let mut t = table(&["step", "device", "PASID", "address", "why"]);
        for f in r.faults.iter().take(SHOWN_ROWS) {
            t.add_row(vec![
                f.step.to_string(),
                f.device.clone(),
                pasid(f.pasid),
                format!("{:#x}", f.addr),
                f.reason.clone(),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }

    let mut t = table(&["cache", "capacity", "hits", "misses", "hit rate", "fills", "evictions"]);
    for c in &r.caches {
        let total = c.hits + c.misses;
        let rate = if total == 0 { "-".into() } else { format!("{:.1}%", 100.0 * c.hits as f64 / total as f64) };
        t.add_row(vec![
            c.cache.clone(),
            c.capacity.to_string(),
            c.hits.to_string(),
            c.misses.to_string(),
            rate,
            c.fills.to_string(),
            c.evictions.to_string(),
        ]);
    }
    let _ = writeln!(out, "\ncaches (host unit)\n{t}");

    let mut t = table(&["invariant", "checks", "violations", "what it checks"]);
    for i in &r.invariants {
        let v = if i.enabled { i.violations.len().to_string() } else { "off".into() };
        t.add_row(vec![i.name.clone(), i.checked.to_string(), v, i.checks.clone()]);
    }
    let _ = writeln!(out, "\ninvariants\n{t}");
    for i in &r.invariants {
        for v in &i.violations {
            let at = if v.step > r.steps.len() {
                "the end-of-run teardown".to_string()
            } else if v.line > 0 {
                format!("step {} (line {})", v.step, v.line)
            } else {
                format!("step {}", v.step)
            };
            let _ = writeln!(out, "VIOLATION {} after {at}: {}", i.name, v.message);
        }
    }
    for s in r.steps.iter().filter(|s| !s.ok) {
        let _ = writeln!(
            out,
            "FAILED {}:{}: step {} `{}`: expected {}, got {}",
            r.origin, s.line, s.step, s.op, s.expected, s.got
        );
    }
    let _ = writeln!(
        out,
        "\n{}: {} step(s), {} failed, {} invariant violation(s)",
        if r.ok { "PASS" } else { "FAIL" },
        r.steps.len(),
        r.failed_steps,
        r.violations()
    );
    out
}

/// The trace alone, one action per line.
pub fn render_trace(r: &Report) -> String {
    let mut out = String::new();
    for l in &r.trace {
        let _ = writeln!(out, "[{:>3}] {:<16} {}", l.step, l.actor, l.event);
    }
    if r.trace_dropped > 0 {
        let _ = writeln!(out, "({} more trace lines dropped)", r.trace_dropped);
    }
    out
}
