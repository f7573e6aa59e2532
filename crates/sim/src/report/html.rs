//! The HTML report: one self-contained page (inline CSS and SVG, no
//! scripts or external resources).
//!
//! The page has a header with the verdict and counts, three charts that
//! share one step axis (columns `0` = setup, `1..=steps`, and `teardown`):
//!
//! * `#bindings-chart`: one lane per (device, PASID), a bar per attachment;
//! * `#dma-chart`: completed and refused DMAs per step, failed steps and
//!   faults marked;
//! * `#cache-chart`: cumulative IOTLB and device-TLB hit rates after each
//!   step (with the rate within each step as dots when there are few steps);
//!
//! then tables (steps, bindings, DMAs, caches, invariants and violations,
//! faults and page requests) and, when recorded, the trace. Everything that
//! comes from the scenario or the run is escaped with [`escape`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use super::{BindingSpan, Report};

/// Trace lines shown in the page (the report may keep more).
pub const MAX_TRACE_SHOWN: usize = 5_000;
/// Step rows shown in the steps table (failed steps are listed apart too).
const MAX_STEP_ROWS: usize = 5_000;
/// Points of a hit-rate polyline at most (longer timelines are thinned).
const MAX_POLYLINE_POINTS: usize = 2_000;
/// Columns up to which per-step dots and per-column titles are drawn.
const DETAIL_COLUMNS: usize = 400;

/// Escapes `s` for HTML text and attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or length for SVG: one decimal, never `NaN` or infinite.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "0".into()
    }
}

/// `part / whole` as a percentage, `None` when `whole` is zero.
fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

fn pasid_label(p: Option<u32>) -> String {
    p.map_or("-".into(), |p| p.to_string())
}

fn lane_label(device: &str, pasid: Option<u32>) -> String {
    match pasid {
        Some(p) => format!("{device} PASID {p}"),
        None => format!("{device} RID"),
    }
}

/// `s` cut to `max` characters (with an ellipsis when cut).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------- geometry

/// Width of every chart (SVG user units; the page scales it).
const W: f64 = 1200.0;
/// Left margin (lane labels, y axis).
const LEFT: f64 = 170.0;
/// Right margin.
const RIGHT: f64 = 24.0;

/// The step axis shared by the charts: columns `0..=steps + 1`, the last
/// being teardown.
#[derive(Debug, Clone, Copy)]
struct Cols {
    steps: usize,
}

impl Cols {
    fn count(self) -> usize {
        self.steps + 2
    }
    fn width(self) -> f64 {
        (W - LEFT - RIGHT) / self.count() as f64
    }
    /// Left edge of column `c` (`count()`: the right edge of the plot).
    fn x(self, c: usize) -> f64 {
        LEFT + c.min(self.count()) as f64 * self.width()
    }
    fn center(self, c: usize) -> f64 {
        self.x(c) + self.width() / 2.0
    }
    fn right(self) -> f64 {
        self.x(self.count())
    }
    fn teardown(self) -> usize {
        self.steps + 1
    }
    /// Label step numbers every this many columns.
    fn stride(self) -> usize {
        nice_at_least(self.count().div_ceil(25))
    }
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `x`.
fn nice_at_least(x: usize) -> usize {
    let mut base = 1usize;
    loop {
        for m in [1, 2, 5] {
            let v = base.saturating_mul(m);
            if v >= x || v == usize::MAX {
                return v;
            }
        }
        base = base.saturating_mul(10);
    }
}

/// Opens a chart `<svg>`.
fn svg_open(out: &mut String, id: &str, height: f64, label: &str) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{label}\">",
        w = num(W),
        h = num(height),
        label = escape(label)
    );
}

/// Shades the teardown column between `top` and `bottom`.
fn teardown_band(out: &mut String, cols: Cols, top: f64, bottom: f64) {
    let _ = write!(
        out,
        "<rect class=\"teardown-col\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>teardown</title></rect>",
        num(cols.x(cols.teardown())),
        num(top),
        num(cols.width()),
        num((bottom - top).max(0.0))
    );
}

/// The step axis at `y`: a baseline, ticks with step numbers, `teardown`.
fn x_axis(out: &mut String, cols: Cols, y: f64, top: f64) {
    out.push_str("<g class=\"axis\">");
    let _ =
        write!(out, "<line x1=\"{}\" y1=\"{y1}\" x2=\"{}\" y2=\"{y1}\"/>", num(LEFT), num(cols.right()), y1 = num(y));
    let stride = cols.stride();
    let right_limit = cols.right() - 60.0;
    for c in (0..=cols.steps).step_by(stride) {
        let x = cols.center(c);
        if c != 0 && x > right_limit {
            continue;
        }
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{c}</text>",
            num(top),
            num(y + 4.0),
            num(y + 16.0),
            x = num(x)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">teardown</text><text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>",
        num(cols.right()),
        num(y + 16.0),
        num((LEFT + cols.right()) / 2.0),
        num(y + 32.0)
    );
    out.push_str("</g>");
}

/// A horizontal legend at `y`, starting at `x`: (swatch class or colour, label).
fn legend(out: &mut String, mut x: f64, y: f64, items: &[(&str, &str)]) {
    out.push_str("<g class=\"legend\">");
    for (swatch, label) in items {
        let paint = if swatch.starts_with('#') { format!("fill=\"{swatch}\"") } else { format!("class=\"{swatch}\"") };
        let _ = write!(
            out,
            "<rect {paint} x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>",
            num(x),
            num(y - 10.0),
            num(x + 17.0),
            num(y),
            escape(label)
        );
        x += 17.0 + 6.5 * label.chars().count() as f64 + 18.0;
    }
    out.push_str("</g>");
}

/// A message in the middle of an empty plot.
fn empty_note(out: &mut String, cols: Cols, y: f64, text: &str) {
    let _ = write!(
        out,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        num((LEFT + cols.right()) / 2.0),
        num(y),
        escape(text)
    );
}

// ---------------------------------------------------------- bindings chart

/// What kind of thing a binding's target is, for its colour.
fn target_kind(target: &str) -> (&'static str, &'static str) {
    let t = target.to_ascii_lowercase();
    if t.contains("sva") {
        ("sva", "#0969da")
    } else if t.contains("nested") {
        ("nested", "#8250df")
    } else if t.contains("stage 2") || t.contains("stage-2") {
        ("stage2", "#bc4c00")
    } else if t.contains("domain") {
        ("domain", "#1a7f37")
    } else {
        ("other", "#6e7781")
    }
}

const KIND_LEGEND: [(&str, &str); 5] =
    [("#0969da", "SVA"), ("#8250df", "nested"), ("#1a7f37", "domain"), ("#bc4c00", "stage 2"), ("#6e7781", "other")];

/// The lanes of the bindings chart: (device, PASID) grouped by device in
/// order of first appearance, the RID first, then PASIDs ascending.
fn lanes(bindings: &[BindingSpan]) -> Vec<(&str, Option<u32>)> {
    let mut device_order: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashSet<(&str, Option<u32>)> = HashSet::new();
    let mut lanes = Vec::new();
    for b in bindings {
        let n = device_order.len();
        device_order.entry(b.device.as_str()).or_insert(n);
        if seen.insert((b.device.as_str(), b.pasid)) {
            lanes.push((b.device.as_str(), b.pasid));
        }
    }
    lanes.sort_by_key(|&(d, p)| (device_order[d], p.is_some(), p));
    lanes
}

fn until_label(to: Option<usize>, steps: usize) -> String {
    match to {
        None => "the end (still attached)".into(),
        Some(s) if s > steps => "teardown".into(),
        Some(s) => format!("step {s}"),
    }
}

fn bindings_chart(r: &Report, cols: Cols) -> String {
    const TOP: f64 = 34.0;
    const LANE: f64 = 24.0;
    const BAR: f64 = 16.0;
    let lanes = lanes(&r.bindings);
    let rows = lanes.len().max(1);
    let plot_bottom = TOP + rows as f64 * LANE;
    let height = plot_bottom + 40.0;
    let mut out = String::new();
    svg_open(&mut out, "bindings-chart", height, "PASID bindings per device over the steps");
    legend(&mut out, LEFT, 18.0, &KIND_LEGEND);
    teardown_band(&mut out, cols, TOP, plot_bottom);
    let index: HashMap<(&str, Option<u32>), usize> = lanes.iter().enumerate().map(|(i, &l)| (l, i)).collect();
    for (i, &(device, pasid)) in lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        let label = lane_label(device, pasid);
        if i % 2 == 0 {
            let _ = write!(
                out,
                "<rect class=\"lane-bg\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                num(y),
                num(cols.right()),
                num(LANE)
            );
        }
        let _ = write!(
            out,
            "<text class=\"lane-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}<title>{}</title></text>",
            num(LEFT - 8.0),
            num(y + LANE / 2.0 + 4.0),
            escape(&clip(&label, 26)),
            escape(&label)
        );
    }
    if lanes.is_empty() {
        empty_note(&mut out, cols, TOP + LANE / 2.0 + 4.0, "no attachments recorded");
    }
    x_axis(&mut out, cols, plot_bottom, TOP);
    for b in &r.bindings {
        let lane = index[&(b.device.as_str(), b.pasid)];
        let y = TOP + lane as f64 * LANE + (LANE - BAR) / 2.0;
        let x0 = cols.x(b.from_step);
        let x1 = b.to_step.map_or(cols.right(), |t| cols.x(t));
        let width = (x1 - x0).max(3.0);
        let (kind, colour) = target_kind(&b.target);
        let title = format!(
            "{}: {} (after step {} until {})",
            lane_label(&b.device, b.pasid),
            b.target,
            b.from_step,
            until_label(b.to_step, r.steps.len())
        );
        let _ = write!(
            out,
            "<rect class=\"binding\" data-kind=\"{kind}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"3\" fill=\"{colour}\"><title>{}</title></rect>",
            num(x0),
            num(y),
            num(width),
            num(BAR),
            escape(&title)
        );
        let room = ((width - 8.0) / 6.4).floor();
        if room >= 4.0 {
            let _ = write!(
                out,
                "<text class=\"bar-label\" x=\"{}\" y=\"{}\">{}</text>",
                num(x0 + 4.0),
                num(y + BAR / 2.0 + 4.0),
                escape(&clip(&b.target, room as usize))
            );
        }
    }
    out.push_str("</svg>");
    out
}

// --------------------------------------------------------------- DMA chart

/// Tick spacing and top of a count axis for counts up to `max`.
fn count_axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let tick = nice_at_least(usize::try_from(max.div_ceil(4)).unwrap_or(usize::MAX)) as u64;
    let tick = tick.max(1);
    (tick, max.div_ceil(tick) * tick)
}

fn dma_chart(r: &Report, cols: Cols) -> String {
    const TOP: f64 = 40.0;
    const PLOT: f64 = 170.0;
    let bottom = TOP + PLOT;
    let height = bottom + 40.0;
    let mut per_step: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for row in &r.dma.rows {
        let e = per_step.entry(row.step.min(cols.teardown())).or_default();
        if row.ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let mut faults: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for f in &r.faults {
        faults.entry(f.step.min(cols.teardown())).or_default().push(&f.reason);
    }
    let max = per_step.values().map(|&(a, b)| a + b).max().unwrap_or(0);
    let (tick, top_count) = count_axis(max);
    let y_of = |v: u64| bottom - PLOT * v as f64 / top_count as f64;

    let mut out = String::new();
    svg_open(&mut out, "dma-chart", height, "DMA outcomes and faults per step");
    legend(
        &mut out,
        LEFT,
        18.0,
        &[
            ("dma-ok", "completed"),
            ("dma-refused", "refused"),
            ("step-failed", "failed expectation"),
            ("fault-mark", "fault"),
        ],
    );
    if r.dma.total > r.dma.rows.len() as u64 {
        let _ = write!(
            out,
            "<text class=\"trunc\" x=\"{}\" y=\"18\" text-anchor=\"end\">first {} of {} DMAs plotted</text>",
            num(cols.right()),
            r.dma.rows.len(),
            r.dma.total
        );
    }
    teardown_band(&mut out, cols, TOP, bottom);
    // y axis
    out.push_str("<g class=\"axis\">");
    let mut v = 0;
    while v <= top_count {
        let y = num(y_of(v));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v}</text>",
            num(LEFT),
            num(cols.right()),
            num(LEFT - 6.0),
            num(y_of(v) + 4.0)
        );
        v += tick;
    }
    let _ = write!(
        out,
        "<text class=\"axis-title\" transform=\"translate({} {}) rotate(-90)\" text-anchor=\"middle\">DMAs</text></g>",
        num(LEFT - 40.0),
        num(TOP + PLOT / 2.0)
    );
    x_axis(&mut out, cols, bottom, TOP);
    // failed steps behind the bars
    for s in r.steps.iter().filter(|s| !s.ok) {
        let c = s.step.min(cols.teardown());
        let title =
            format!("step {} (line {}) failed: {}: expected {}, got {}", s.step, s.line, s.op, s.expected, s.got);
        let _ = write!(
            out,
            "<a href=\"#step-{}\"><rect class=\"step-failed\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect></a>",
            s.step,
            num(cols.x(c)),
            num(TOP),
            num(cols.width().max(2.0)),
            num(PLOT),
            escape(&title)
        );
    }
    let bar_w = (cols.width() * 0.7).max(1.0);
    for (&step, &(ok, refused)) in &per_step {
        let x = num(cols.center(step) - bar_w / 2.0);
        let title = format!("step {step}: {ok} completed, {refused} refused");
        let h_ok = PLOT * ok as f64 / top_count as f64;
        let h_ref = PLOT * refused as f64 / top_count as f64;
        if ok > 0 {
            let _ = write!(
                out,
                "<rect class=\"dma-ok\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                num(bottom - h_ok),
                num(bar_w),
                num(h_ok),
                escape(&title)
            );
        }
        if refused > 0 {
            let _ = write!(
                out,
                "<rect class=\"dma-refused\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                num(bottom - h_ok - h_ref),
                num(bar_w),
                num(h_ref),
                escape(&title)
            );
        }
    }
    // faults as diamonds just above the plot
    for (&step, reasons) in &faults {
        let cx = cols.center(step);
        let cy = TOP - 8.0;
        let mut title = format!("step {step}: {} fault(s)", reasons.len());
        for reason in reasons.iter().take(5) {
            let _ = write!(title, "\n{reason}");
        }
        if reasons.len() > 5 {
            let _ = write!(title, "\n… {} more", reasons.len() - 5);
        }
        let _ = write!(
            out,
            "<path class=\"fault-mark\" d=\"M{} {}l5 5l-5 5l-5 -5z\"><title>{}</title></path>",
            num(cx),
            num(cy - 5.0),
            escape(&title)
        );
    }
    if per_step.is_empty() {
        empty_note(&mut out, cols, TOP + PLOT / 2.0, "no DMAs issued");
    }
    out.push_str("</svg>");
    out
}

// ------------------------------------------------------------- cache chart

/// One hit-rate series: for each timeline point, (step, hits, misses).
struct Series<'a> {
    class: &'static str,
    name: &'a str,
    points: Vec<(usize, u64, u64)>,
}

impl Series<'_> {
    fn has_lookups(&self) -> bool {
        self.points.iter().any(|&(_, h, m)| h + m > 0)
    }
}

fn cache_chart(r: &Report, cols: Cols) -> String {
    const TOP: f64 = 40.0;
    const PLOT: f64 = 170.0;
    let bottom = TOP + PLOT;
    let height = bottom + 40.0;
    let y_of = |pct: f64| bottom - PLOT * pct.clamp(0.0, 100.0) / 100.0;
    let series = [
        Series {
            class: "iotlb-rate",
            name: "IOTLB",
            points: r.cache_timeline.iter().map(|p| (p.step, p.iotlb_hits, p.iotlb_misses)).collect(),
        },
        Series {
            class: "devtlb-rate",
            name: "device TLB",
            points: r.cache_timeline.iter().map(|p| (p.step, p.devtlb_hits, p.devtlb_misses)).collect(),
        },
    ];

    let mut out = String::new();
    svg_open(&mut out, "cache-chart", height, "IOTLB and device-TLB hit rates over the steps");
    let labels: Vec<String> = series
        .iter()
        .map(|s| {
            if s.has_lookups() {
                format!("{} (cumulative hit rate)", s.name)
            } else {
                format!("{} (no lookups)", s.name)
            }
        })
        .collect();
    let swatches: Vec<String> = series.iter().map(|s| format!("{}-key", s.class)).collect();
    let items: Vec<(&str, &str)> = swatches.iter().zip(&labels).map(|(a, b)| (a.as_str(), b.as_str())).collect();
    legend(&mut out, LEFT, 18.0, &items);
    teardown_band(&mut out, cols, TOP, bottom);
    out.push_str("<g class=\"axis\">");
    for pct in [0u32, 25, 50, 75, 100] {
        let y = y_of(f64::from(pct));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{pct}%</text>",
            num(LEFT),
            num(cols.right()),
            num(LEFT - 6.0),
            num(y + 4.0),
            yy = num(y)
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis-title\" transform=\"translate({} {}) rotate(-90)\" text-anchor=\"middle\">hit rate</text></g>",
        num(LEFT - 44.0),
        num(TOP + PLOT / 2.0)
    );

    x_axis(&mut out, cols, bottom, TOP);
    for s in &series {
        // Cumulative rate: a polyline per run of points with lookups so far.
        let stride = s.points.len().div_ceil(MAX_POLYLINE_POINTS).max(1);
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        let last = s.points.len().saturating_sub(1);
        for (i, &(step, h, m)) in s.points.iter().enumerate() {
            if i % stride != 0 && i != last {
                continue;
            }
            match percent(h, h + m) {
                Some(p) => segments.last_mut().expect("one segment at least").push((cols.center(step), y_of(p))),
                None => {
                    if segments.last().is_some_and(|seg| !seg.is_empty()) {
                        segments.push(Vec::new());
                    }
                }
            }
        }
        for seg in segments.iter().filter(|seg| !seg.is_empty()) {
            if seg.len() == 1 {
                let _ = write!(
                    out,
                    "<circle class=\"{}-pt\" cx=\"{}\" cy=\"{}\" r=\"3\"/>",
                    s.class,
                    num(seg[0].0),
                    num(seg[0].1)
                );
                continue;
            }
            let pts: Vec<String> = seg.iter().map(|&(x, y)| format!("{},{}", num(x), num(y))).collect();
            let _ = write!(
                out,
                "<polyline class=\"{}\" points=\"{}\"><title>{} cumulative hit rate</title></polyline>",
                s.class,
                pts.join(" "),
                escape(s.name)
            );
        }
        // The rate within each step, as dots, when there are few steps.
        if cols.count() <= DETAIL_COLUMNS {
            let mut prev = (0u64, 0u64);
            for &(step, h, m) in &s.points {
                let (dh, dm) = (h.saturating_sub(prev.0), m.saturating_sub(prev.1));
                prev = (h, m);
                if let Some(p) = percent(dh, dh + dm) {
                    let _ = write!(
                        out,
                        "<circle class=\"{}-step\" cx=\"{}\" cy=\"{}\" r=\"2.5\"><title>{} step {step}: {dh} hit(s), {dm} miss(es) in this step ({p:.1}%); {} so far</title></circle>",
                        s.class,
                        num(cols.center(step)),
                        num(y_of(p)),
                        escape(s.name),
                        percent(h, h + m).map_or("-".into(), |q| format!("{q:.1}%"))
                    );
                }
            }
        }
    }
    if !series.iter().any(Series::has_lookups) {
        empty_note(&mut out, cols, TOP + PLOT / 2.0, "no IOTLB or device-TLB lookups");
    }
    out.push_str("</svg>");
    out
}

// ------------------------------------------------------------------ tables

fn meter(rate: Option<f64>) -> String {
    match rate {
        Some(p) => {
            format!("<span class=\"meter\"><span style=\"width:{}%\"></span></span> {p:.1}%", num(p.clamp(0.0, 100.0)))
        }
        None => "-".into(),
    }
}

fn steps_table(out: &mut String, r: &Report) {
    if r.steps.is_empty() {
        out.push_str("<p class=\"note\">The scenario has no steps.</p>");
        return;
    }
    out.push_str(
        "<table class=\"steps\"><thead><tr><th>#</th><th>line</th><th>operation</th><th>expected</th><th>got</th><th></th><th>note</th></tr></thead><tbody>",
    );
    for s in r.steps.iter().take(MAX_STEP_ROWS) {
        let _ = write!(
            out,
            "<tr id=\"step-{n}\" class=\"{cls}\"><td class=\"num\">{n}</td><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"mark\">{}</td><td class=\"note\">{}</td></tr>",
            s.line,
            escape(&s.op),
            escape(&s.expected),
            escape(&s.got),
            if s.ok { "ok" } else { "FAIL" },
            s.note.as_deref().map(escape).unwrap_or_default(),
            n = s.step,
            cls = if s.ok { "ok" } else { "fail" },
        );
    }
    out.push_str("</tbody></table>");
    if r.steps.len() > MAX_STEP_ROWS {
        let _ = write!(
            out,
            "<p class=\"note\">{} more step(s) not shown; failed ones are listed above.</p>",
            r.steps.len() - MAX_STEP_ROWS
        );
    }
}

fn bindings_table(out: &mut String, r: &Report) {
    if r.bindings.is_empty() {
        return;
    }
    out.push_str(
        "<details><summary>Bindings table</summary><table><thead><tr><th>device</th><th>PASID</th><th>attached</th><th>from step</th><th>until</th></tr></thead><tbody>",
    );
    for b in &r.bindings {
        let until = match b.to_step {
            None => "end".into(),
            Some(s) if s > r.steps.len() => "teardown".into(),
            Some(s) => s.to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&b.device),
            pasid_label(b.pasid),
            escape(&b.target),
            b.from_step,
            until
        );
    }
    out.push_str("</tbody></table></details>");
}

fn dma_table(out: &mut String, r: &Report) {
    let d = &r.dma;
    let _ = write!(
        out,
        "<p>{} DMA(s) issued, {} completed, {} refused, {} byte(s) moved.",
        d.total, d.completed, d.refused, d.bytes
    );
    if d.total > d.rows.len() as u64 {
        let _ = write!(
            out,
            " <span class=\"warn\">Rows truncated: the report lists the first {} of {} DMAs; the chart and table show those.</span>",
            d.rows.len(),
            d.total
        );
    }
    out.push_str("</p>");
    if d.rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<details><summary>DMA table ({} row(s))</summary><table><thead><tr><th>step</th><th>device</th><th>PASID</th><th>address</th><th>len</th><th>dir</th><th>outcome</th><th>host address</th></tr></thead><tbody>",
        d.rows.len()
    );
    for row in &d.rows {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td><code>{:#x}</code></td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            if row.ok { "ok" } else { "fail" },
            row.step,
            escape(&row.device),
            pasid_label(row.pasid),
            row.addr,
            row.len,
            if row.write { "W" } else { "R" },
            escape(&row.outcome),
            row.hpa.map_or("-".into(), |h| format!("{h:#x}"))
        );
    }
    out.push_str("</tbody></table></details>");
}

fn caches_table(out: &mut String, r: &Report) {
    if r.caches.is_empty() {
        out.push_str("<p class=\"note\">No cache statistics.</p>");
        return;
    }
    out.push_str(
        "<table class=\"caches\"><thead><tr><th>cache (host unit)</th><th>capacity</th><th>hits</th><th>misses</th><th>hit rate</th><th>fills</th><th>evictions</th></tr></thead><tbody>",
    );
    for c in &r.caches {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"rate\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.cache),
            c.capacity,
            c.hits,
            c.misses,
            meter(percent(c.hits, c.hits.saturating_add(c.misses))),
            c.fills,
            c.evictions
        );
    }
    out.push_str("</tbody></table>");
}

fn invariants_tables(out: &mut String, r: &Report) {
    if r.invariants.is_empty() {
        out.push_str("<p class=\"note\">No invariant checkers.</p>");
    } else {
        out.push_str(
            "<table><thead><tr><th>invariant</th><th>checks made</th><th>violations</th><th>what it checks</th></tr></thead><tbody>",
        );
        for i in &r.invariants {
            let (cls, v) = if !i.enabled {
                ("off", "off".to_string())
            } else if i.violations.is_empty() {
                ("ok", "0".to_string())
            } else {
                ("fail", i.violations.len().to_string())
            };
            let _ = write!(
                out,
                "<tr class=\"{cls}\"><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{v}</td><td>{}</td></tr>",
                escape(&i.name),
                i.checked,
                escape(&i.checks)
            );
        }
        out.push_str("</tbody></table>");
    }
    if r.violations() == 0 {
        return;
    }
    out.push_str(
        "<h3>Violations</h3><table><thead><tr><th>invariant</th><th>after</th><th>line</th><th>message</th></tr></thead><tbody>",
    );
    for i in &r.invariants {
        for v in &i.violations {
            let after = if v.step == 0 {
                "setup".to_string()
            } else if v.step > r.steps.len() {
                "the end".to_string()
            } else {
                format!("step {}", v.step)
            };
            let line = if v.line > 0 { v.line.to_string() } else { "-".into() };
            let _ = write!(
                out,
                "<tr class=\"fail\"><td>{}</td><td>{after}</td><td class=\"num\">{line}</td><td>{}</td></tr>",
                escape(&i.name),
                escape(&v.message)
            );
        }
    }
    out.push_str("</tbody></table>");
}

/// One chart section: heading, the chart, a note, then its table.
fn chart_section(out: &mut String, title: &str, chart: &str, note: &str, table: impl FnOnce(&mut String)) {
    let _ = write!(out, "<section><h2>{}</h2>{chart}<p class=\"note\">{}</p>", escape(title), escape(note));
    table(out);
    out.push_str("</section>");
}

fn faults_tables(out: &mut String, r: &Report) {
    let p = &r.page_requests;
    let _ = write!(
        out,
        "<table class=\"counts\"><tbody><tr><th>DMAs refused (rows below)</th><td class=\"num\">{}</td></tr><tr><th>faults recorded by the unit</th><td class=\"num\">{}</td></tr><tr><th>page requests sent</th><td class=\"num\">{}</td></tr><tr><th>answered SUCCESS</th><td class=\"num\">{}</td></tr><tr><th>answered otherwise or not at all</th><td class=\"num\">{}</td></tr></tbody></table>",
        r.faults.len(),
        p.faults_recorded,
        p.sent,
        p.success,
        p.refused
    );
    if r.faults.is_empty() {
        return;
    }
    out.push_str(
        "<table><thead><tr><th>step</th><th>device</th><th>PASID</th><th>address</th><th>why</th></tr></thead><tbody>",
    );
    for f in &r.faults {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td><code>{:#x}</code></td><td>{}</td></tr>",
            f.step,
            escape(&f.device),
            pasid_label(f.pasid),
            f.addr,
            escape(&f.reason)
        );
    }
    out.push_str("</tbody></table>");
}

fn trace_section(out: &mut String, r: &Report) {
    if r.trace.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<section><h2>Trace</h2><details><summary>{} hardware-visible action(s)</summary><pre class=\"trace\">",
        r.trace.len() as u64 + r.trace_dropped
    );
    for l in r.trace.iter().take(MAX_TRACE_SHOWN) {
        let _ = writeln!(out, "[{:>3}] {:<16} {}", l.step, escape(&l.actor), escape(&l.event));
    }
    out.push_str("</pre>");
    if r.trace.len() > MAX_TRACE_SHOWN {
        let _ = write!(
            out,
            "<p class=\"note\">… {} more trace line(s) not shown here (see <code>--json --trace</code>).</p>",
            r.trace.len() - MAX_TRACE_SHOWN
        );
    }
    if r.trace_dropped > 0 {
        let _ = write!(out, "<p class=\"note\">{} more trace line(s) were dropped by the run.</p>", r.trace_dropped);
    }
    out.push_str("</details></section>");
}

// -------------------------------------------------------------------- page

const CSS: &str = r#"
:root{--ok:#1a7f37;--bad:#cf222e;--muted:#57606a;--border:#d0d7de;--bg:#f6f8fa;--text:#1f2328}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 20px 48px}
header{display:flex;gap:24px;align-items:flex-start;justify-content:space-between;border-bottom:1px solid var(--border);padding-bottom:14px}
h1{margin:0 0 2px;font-size:26px;word-break:break-word}
h2{font-size:19px;margin:0 0 10px;border-bottom:1px solid var(--border);padding-bottom:4px}
h3{font-size:16px;margin:16px 0 8px}
.origin{color:var(--muted);font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.desc{white-space:pre-wrap;margin:10px 0 0;max-width:860px}
.verdict{flex:none;font-size:42px;font-weight:800;letter-spacing:3px;color:#fff;padding:6px 30px;border-radius:12px}
.verdict.pass{background:var(--ok)}
.verdict.fail{background:var(--bad)}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0 4px}
.stat{border:1px solid var(--border);border-radius:8px;padding:8px 14px;min-width:130px;background:var(--bg)}
.stat b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.stat.bad{border-color:#ff8182;background:#ffebe9}
.stat.bad b{color:var(--bad)}
.errors{border:1px solid #ff8182;background:#ffebe9;border-radius:8px;padding:8px 14px;margin:14px 0}
.errors ul{margin:4px 0;padding-left:20px}
section{margin-top:30px}
svg.chart{display:block;width:100%;height:auto;border:1px solid var(--border);border-radius:6px;background:#fff}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:11px;fill:var(--text)}
svg .axis line{stroke:#8c959f}
svg .axis line.grid{stroke:#eaeef2}
svg .axis-title{fill:var(--muted)}
svg .lane-bg{fill:#f6f8fa}
svg .lane-label{font-size:12px}
svg .bar-label{fill:#fff;font-weight:600;pointer-events:none}
svg .teardown-col{fill:#eaeef2;fill-opacity:.6}
svg .empty,svg .trunc{fill:var(--muted);font-style:italic;font-size:13px}
svg .trunc{fill:#9a6700}
svg .dma-ok{fill:#2da44e}
svg .dma-refused{fill:#cf222e}
svg .step-failed{fill:#cf222e;fill-opacity:.14}
svg .legend .step-failed{fill-opacity:.3}
svg .fault-mark{fill:#bc4c00}
svg .iotlb-rate{fill:none;stroke:#0969da;stroke-width:2;stroke-linejoin:round}
svg .devtlb-rate{fill:none;stroke:#8250df;stroke-width:2;stroke-linejoin:round}
svg .iotlb-rate-key,svg .iotlb-rate-pt,svg .iotlb-rate-step{fill:#0969da}
svg .devtlb-rate-key,svg .devtlb-rate-pt,svg .devtlb-rate-step{fill:#8250df}
svg .iotlb-rate-step,svg .devtlb-rate-step{fill-opacity:.45}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
table.counts,table.caches{width:auto;min-width:480px}
th,td{border:1px solid var(--border);padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:var(--bg);position:sticky;top:0}
tbody th{background:var(--bg);font-weight:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.mark{font-weight:700;color:var(--ok)}
tr.fail td{background:#ffebe9}
tr.fail td.mark{color:var(--bad)}
tr.off td{color:var(--muted)}
td.note{color:var(--muted)}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.note{color:var(--muted)}
.warn{color:#9a6700;font-weight:600}
.meter{display:inline-block;vertical-align:middle;width:80px;height:8px;background:#eaeef2;border-radius:4px;overflow:hidden}
.meter span{display:block;height:100%;background:#2da44e}
details{margin:8px 0}
summary{cursor:pointer;color:#0969da}
pre.trace{max-height:640px;overflow:auto;background:var(--bg);border:1px solid var(--border);border-radius:6px;padding:8px 10px;margin:6px 0}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"#;

fn stat(out: &mut String, label: &str, value: impl std::fmt::Display, bad: bool) {
    let _ = write!(out, "<div class=\"stat{}\">{}<b>{value}</b></div>", if bad { " bad" } else { "" }, escape(label));
}

/// Renders `r` as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    let cols = Cols { steps: r.steps.len() };
    let verdict = if r.ok { "PASS" } else { "FAIL" };
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{verdict} · {} · iommu-sim report</title><style>{CSS}</style></head><body><main>",
        escape(&r.scenario)
    );

    // header
    let _ =
        write!(out, "<header><div><h1>{}</h1><div class=\"origin\">{}</div>", escape(&r.scenario), escape(&r.origin));
    if !r.description.is_empty() {
        let _ = write!(out, "<p class=\"desc\">{}</p>", escape(r.description.trim_end()));
    }
    let _ = write!(out, "</div><div class=\"verdict {}\">{verdict}</div></header>", verdict.to_ascii_lowercase());
    out.push_str("<div class=\"stats\">");
    stat(&mut out, "steps", r.steps.len(), false);
    stat(&mut out, "failed steps", r.failed_steps, r.failed_steps > 0);
    stat(&mut out, "invariant violations", r.violations(), r.violations() > 0);
    stat(&mut out, "DMAs", r.dma.total, false);
    stat(&mut out, "DMAs refused", r.dma.refused, false);
    stat(&mut out, "bindings", r.bindings.len(), false);
    if !r.setup_errors.is_empty() {
        stat(&mut out, "setup errors", r.setup_errors.len(), true);
    }
    out.push_str("</div>");
    if !r.setup_errors.is_empty() {
        out.push_str("<div class=\"errors\"><b>Setup errors</b><ul>");
        for e in &r.setup_errors {
            let _ = write!(out, "<li>{}</li>", escape(e));
        }
        out.push_str("</ul></div>");
    }
    let failed: Vec<_> = r.steps.iter().filter(|s| !s.ok).collect();
    if !failed.is_empty() {
        out.push_str("<div class=\"errors\"><b>Failed expectations</b><ul>");
        for s in &failed {
            let _ = write!(
                out,
                "<li><a href=\"#step-{n}\">step {n}</a> (line {}): <code>{}</code>: expected {}, got {}</li>",
                s.line,
                escape(&s.op),
                escape(&s.expected),
                escape(&s.got),
                n = s.step
            );
        }
        out.push_str("</ul></div>");
    }

    // charts
    chart_section(
        &mut out,
        "PASID bindings per device",
        &bindings_chart(r, cols),
        "One lane per device and PASID (RID: requests without a PASID). A bar starts after the step that attached it and ends after the step that removed it; column 0 is setup and the last column teardown. Hover a bar for details.",
        |o| bindings_table(o, r),
    );
    chart_section(
        &mut out,
        "DMA outcomes and faults",
        &dma_chart(r, cols),
        "Completed and refused DMAs per step (stacked); shaded columns are steps whose expectation did not hold; diamonds mark steps with faults or unanswered page requests.",
        |o| dma_table(o, r),
    );
    chart_section(
        &mut out,
        "Cache hit rates",
        &cache_chart(r, cols),
        "Lines: hit rate of all lookups up to and including each step; dots: the hit rate within a step.",
        |o| caches_table(o, r),
    );

    // tables
    out.push_str("<section><h2>Steps</h2>");
    steps_table(&mut out, r);
    out.push_str("</section><section><h2>Invariants</h2>");
    invariants_tables(&mut out, r);
    out.push_str("</section><section><h2>Faults and page requests</h2>");
    faults_tables(&mut out, r);
    out.push_str("</section>");
    trace_section(&mut out, r);

    let _ = writeln!(
        out,
        "<footer>iommu-sim report · {verdict}: {} step(s), {} failed, {} invariant violation(s)</footer></main></body></html>",
        r.steps.len(),
        r.failed_steps,
        r.violations()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape(r#"<b>&"x"'</b>"#), "&lt;b&gt;&amp;&quot;x&quot;&#39;&lt;/b&gt;");
        assert_eq!(escape("plain PASID 1 ✓"), "plain PASID 1 ✓");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_at_least(0), 1);
        assert_eq!(nice_at_least(1), 1);
        assert_eq!(nice_at_least(3), 5);
        assert_eq!(nice_at_least(7), 10);
        assert_eq!(nice_at_least(11), 20);
        assert_eq!(count_axis(0), (1, 1));
        assert_eq!(count_axis(3), (1, 3));
        assert_eq!(count_axis(9), (5, 10));
    }

    #[test]
    fn empty_report_has_no_nan() {
        let html = render(&Report::default());
        assert!(!html.contains("NaN"), "{html}");
        for id in ["bindings-chart", "dma-chart", "cache-chart"] {
            assert!(html.contains(&format!("id=\"{id}\"")));
        }
    }
}
