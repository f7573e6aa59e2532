//! `iommu_sim::report::html`: the HTML report of the default scenario has
//! its three charts, escapes what it shows and references nothing outside
//! the page; and a headless Chromium parses the charts as SVG elements and
//! renders a non-trivial screenshot.
//!
//! The browser test looks for `$CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on `PATH`. Without one it prints a
//! note and passes, unless `IOMMU_SIM_REQUIRE_CHROMIUM=1` (CI), where it
//! fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iommu_sim::engine::{run, RunOptions};
use iommu_sim::report::html::{escape, render};
use iommu_sim::report::{BindingSpan, CachePoint, DmaRow, Report, StepRecord};
use iommu_sim::scenario::{parse, DEFAULT_SCENARIO};

/// How long one browser run may take before it is killed.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

fn default_report() -> Report {
    let sc = parse(DEFAULT_SCENARIO, "<built-in default>", "default").expect("the default scenario parses");
    run(&sc, RunOptions { trace: true, progress: false })
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Checks every page must pass: charts present, no script, no NaN, nothing
/// fetched from elsewhere.
fn assert_self_contained(html: &str) {
    for id in ["bindings-chart", "dma-chart", "cache-chart"] {
        assert_eq!(count(html, &format!("<svg id=\"{id}\"")), 1, "one <svg id={id}>");
    }
    assert!(!html.contains("NaN"), "NaN in the page");
    assert!(!html.to_ascii_lowercase().contains("<script"), "a script in the page");
    assert!(!html.contains("http://") && !html.contains("https://"), "an absolute URL in the page");
    assert!(!html.contains("src="), "an element loading a resource");
    assert!(!html.contains("url("), "a CSS url()");
    assert!(!html.contains("@import"), "a CSS @import");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
}

#[test]
fn default_report_has_charts_and_tables() {
    let r = default_report();
    assert!(!r.bindings.is_empty() && !r.dma.rows.is_empty() && !r.trace.is_empty(), "the default scenario has data");
    let html = render(&r);
    assert_self_contained(&html);
    assert!(
        count(&html, "<rect class=\"binding\"") >= r.bindings.len(),
        "a binding rect per binding ({} bindings)",
        r.bindings.len()
    );
    for b in &r.bindings {
        let lane = match b.pasid {
            Some(p) => format!("{} PASID {p}", b.device),
            None => format!("{} RID", b.device),
        };
        assert!(html.contains(&escape(&lane)), "lane {lane}");
        assert!(html.contains(&escape(&b.target)), "target {}", b.target);
    }
    let refused = r.dma.rows.iter().filter(|d| !d.ok).count();
    assert!(count(&html, "class=\"dma-ok\"") > 1, "completed DMA bars");
    assert!(refused == 0 || count(&html, "class=\"dma-refused\"") > 1, "refused DMA bars");
    if r.cache_timeline.iter().filter(|p| p.devtlb_hits + p.devtlb_misses > 0).count() >= 2 {
        assert!(html.contains("<polyline class=\"devtlb-rate\""), "device-TLB hit-rate line");
    }
    if r.cache_timeline.iter().filter(|p| p.iotlb_hits + p.iotlb_misses > 0).count() >= 2 {
        assert!(html.contains("<polyline class=\"iotlb-rate\""), "IOTLB hit-rate line");
    }
    // Every step has a row, and the tables and trace are there.
    for s in &r.steps {
        assert!(html.contains(&format!("<tr id=\"step-{}\"", s.step)), "row of step {}", s.step);
    }
    for i in &r.invariants {
        assert!(html.contains(&escape(&i.name)) && html.contains(&escape(&i.checks)), "invariant {}", i.name);
    }
    for c in &r.caches {
        assert!(html.contains(&escape(&c.cache)), "cache {}", c.cache);
    }
    assert!(html.contains("<details><summary>") && html.contains("<pre class=\"trace\">"), "trace section");
    assert!(html.contains("class=\"verdict pass\">PASS<"), "PASS verdict");
}

#[test]
fn scenario_names_and_messages_are_escaped() {
    let mut r = Report { scenario: "<b>&\"x\"".into(), origin: "<i>o</i>".into(), ..Report::default() };
    r.description = "a <script>alert(1)</script> description".into();
    r.setup_errors.push("device <nic> & more".into());
    r.steps.push(StepRecord {
        step: 1,
        line: 3,
        op: "dma-write <dev> \"x\"".into(),
        expected: "ok".into(),
        got: "<fault>".into(),
        ok: false,
        note: Some("n'ote".into()),
    });
    r.bindings.push(BindingSpan {
        device: "<dev>".into(),
        pasid: None,
        target: "SVA <app>".into(),
        from_step: 0,
        to_step: None,
    });
    let html = render(&r);
    assert_self_contained(&html);
    assert!(html.contains("<h1>&lt;b&gt;&amp;&quot;x&quot;</h1>"), "escaped name in the header");
    assert!(html.contains("&lt;b&gt;&amp;&quot;x&quot; · iommu-sim report</title>"), "escaped name in the title");
    for raw in ["<b>&\"x\"", "<i>o</i>", "<nic>", "<dev>", "<fault>", "<app>"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }
    for escaped in ["&lt;i&gt;o&lt;/i&gt;", "device &lt;nic&gt; &amp; more", "&lt;fault&gt;", "n&#39;ote"] {
        assert!(html.contains(escaped), "{escaped}");
    }
    assert!(html.contains("class=\"verdict fail\">FAIL<"));
    assert!(html.contains("<tr id=\"step-1\" class=\"fail\">"));
}

#[test]
fn empty_and_odd_reports_render_without_nan() {
    // Nothing at all: zero steps, no bindings, no DMAs, no cache points.
    let html = render(&Report::default());
    assert_self_contained(&html);
    assert!(html.contains("no attachments recorded") && html.contains("no DMAs issued"));
    assert_eq!(count(&html, "<rect class=\"binding\""), 0);

    // Truncated rows, a zero-length binding, DMAs past the last step, a
    // cache timeline whose counters start at zero.
    let mut r = Report::default();
    r.dma.total = 10_000;
    r.dma.rows.push(DmaRow {
        step: 7,
        device: "gpu".into(),
        pasid: Some(1),
        addr: 0x1000,
        len: 4,
        write: false,
        outcome: "fault".into(),
        hpa: None,
        ok: false,
    });
    r.bindings.push(BindingSpan {
        device: "gpu".into(),
        pasid: Some(1),
        target: "mystery".into(),
        from_step: 3,
        to_step: Some(3),
    });
    for step in 0..3 {
        r.cache_timeline.push(CachePoint {
            step,
            iotlb_hits: step as u64,
            iotlb_misses: step as u64,
            devtlb_hits: 0,
            devtlb_misses: 0,
        });
    }
    let html = render(&r);
    assert_self_contained(&html);
    assert!(html.contains("first 1 of 10000 DMAs"), "truncation noted");
    assert_eq!(count(&html, "<rect class=\"binding\""), 1);
    assert!(html.contains("<polyline class=\"iotlb-rate\""));
    assert!(html.contains("device TLB (no lookups)"));
}

// ------------------------------------------------------------ the browser

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// A scratch directory under the temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("iommu-sim-html-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one browser run printed.
struct BrowserRun {
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs headless Chromium with `args` on `page`, killing it after
/// [`BROWSER_DEADLINE`]. Output goes to files (no pipe can fill up).
fn chromium(bin: &Path, scratch: &Path, page: &Path, args: &[String]) -> BrowserRun {
    let out_path = scratch.join("stdout.txt");
    let err_path = scratch.join("stderr.txt");
    let started = Instant::now();
    let mut command = Command::new(bin);
    // Its own process group, so a hung browser is killed with its helpers.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", scratch.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            #[cfg(unix)]
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("{} {args:?} did not finish within {BROWSER_DEADLINE:?}; killed. stderr:\n{stderr}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "{} {args:?} exited with {status}; stderr:\n{stderr}", bin.display());
    BrowserRun { stdout, stderr, took }
}

/// The part of `dom` from `<svg id="{id}"` to its `</svg>`.
fn svg_element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no <svg id=\"{id}\"> in the DOM"));
    let len = dom[start..].find("</svg>").unwrap_or_else(|| panic!("<svg id=\"{id}\"> is not closed in the DOM"));
    &dom[start..start + len + "</svg>".len()]
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&png[16..20]), be(&png[20..24])))
}

#[test]
fn headless_chromium_parses_and_renders_the_charts() {
    let Some(bin) = find_chromium() else {
        let required = std::env::var("IOMMU_SIM_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "IOMMU_SIM_REQUIRE_CHROMIUM=1 but no Chromium was found: set CHROMIUM to its path or put chromium, \
             chromium-browser or google-chrome on PATH (Debian: apt-get install chromium)"
        );
        eprintln!(
            "note: headless Chromium render test skipped: no chromium, chromium-browser or google-chrome on PATH \
             and CHROMIUM unset (set IOMMU_SIM_REQUIRE_CHROMIUM=1 to make this a failure)"
        );
        return;
    };
    let r = default_report();
    let html = render(&r);
    let scratch = Scratch::new("chromium");
    let page = scratch.0.join("report.html");
    std::fs::write(&page, &html).expect("write the page");

    // 1. The DOM the browser built: the charts are SVG elements with their
    //    marks (the serializer writes `<rect ...></rect>` for the source's
    //    `<rect .../>`, so these are parsed elements, not echoed text).
    let dump = chromium(&bin, &scratch.0, &page, &["--dump-dom".into()]);
    let dom = &dump.stdout;
    assert!(
        dom.contains("<main>") && dom.contains("</html>"),
        "no page in --dump-dom output; stderr:\n{}",
        dump.stderr
    );
    let bindings = svg_element(dom, "bindings-chart");
    assert_eq!(count(bindings, "<rect class=\"binding\""), r.bindings.len(), "binding bars in the DOM");
    assert_eq!(count(bindings, "<title>"), count(bindings, "</title>"), "titles parsed as elements");
    assert!(bindings.contains("</rect>"), "rects serialized as elements by the browser");
    let dma = svg_element(dom, "dma-chart");
    assert!(dma.contains("<rect class=\"dma-ok\""), "completed-DMA bars in the DOM");
    if r.dma.rows.iter().any(|d| !d.ok) {
        assert!(dma.contains("<rect class=\"dma-refused\""), "refused-DMA bars in the DOM");
    }
    let cache = svg_element(dom, "cache-chart");
    for (class, hits_misses) in [
        ("iotlb-rate", r.cache_timeline.iter().map(|p| p.iotlb_hits + p.iotlb_misses).collect::<Vec<_>>()),
        ("devtlb-rate", r.cache_timeline.iter().map(|p| p.devtlb_hits + p.devtlb_misses).collect()),
    ] {
        if hits_misses.iter().filter(|&&n| n > 0).count() >= 2 {
            assert!(cache.contains(&format!("<polyline class=\"{class}\"")), "{class} polyline in the DOM");
        }
    }
    assert!(cache.contains("<polyline class="), "at least one hit-rate polyline in the DOM");
    assert!(!dom.contains("NaN"), "NaN in the DOM");
    assert!(dom.contains("<details><summary>"), "trace section in the DOM");

    // 2. A screenshot at 1280 px: produced, the requested size, and far
    //    bigger than a blank page.
    let shot = scratch.0.join("report.png");
    let run_shot = chromium(
        &bin,
        &scratch.0,
        &page,
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,2000".into()],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!("no screenshot at {} ({e}); stderr:\n{}", shot.display(), run_shot.stderr);
    });
    let (w, h) = png_size(&png).expect("the screenshot is a PNG");
    assert_eq!((w, h), (1280, 2000), "screenshot size");
    assert!(png.len() > 40_000, "screenshot only {} bytes: blank page?", png.len());
    if let Some(dir) = std::env::var_os("IOMMU_SIM_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("iommu-sim-report.png"));
        let _ = std::fs::write(Path::new(&dir).join("iommu-sim-report.html"), &html);
    }
    eprintln!(
        "chromium {}: --dump-dom {:?}, --screenshot {:?} ({} bytes)",
        bin.display(),
        dump.took,
        run_shot.took,
        png.len()
    );
}
