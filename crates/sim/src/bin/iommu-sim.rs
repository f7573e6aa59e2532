//! `iommu-sim`: parse arguments, run, print. All logic lives in the library.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use iommu_sim::engine::{self, RunOptions};
use iommu_sim::report::{html, text};
use iommu_sim::scenario::{self, DEFAULT_SCENARIO};

/// Deterministic IOMMU simulator: scenarios, conformance replay, decoding.
#[derive(Debug, Parser)]
#[command(name = "iommu-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario file (TOML, see docs/SCENARIOS.md); without one, the
    /// built-in default scenario. Exits 0 only when every expectation and
    /// invariant holds.
    Run {
        /// Scenario file.
        scenario: Option<PathBuf>,
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Also print the ordered log of hardware-visible actions.
        #[arg(long)]
        trace: bool,
        /// Also write a self-contained HTML report with charts to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Decode a structure from hex words (lowest 64-bit word first, or one
    /// big number written most significant digit first).
    Decode {
        /// Structure kind (`--list` shows them).
        #[arg(required_unless_present = "list")]
        kind: Option<String>,
        /// The words, e.g. `0x1001 0x0`.
        #[arg(num_args = 1.., allow_hyphen_values = false)]
        hex: Vec<String>,
        /// List the kinds.
        #[arg(long)]
        list: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay conformance cases (JSON Lines) and print one observation per case.
    Replay {
        /// Which model.
        model: Model,
        /// Case file (`-` for standard input).
        file: String,
    },
    /// The hardware-level walkthrough: five PASIDs in every translation
    /// mode, a decoded fault, a stale IOTLB entry and its invalidation, a
    /// page request and its response, on the VT-d model alone.
    Demo,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    /// Intel VT-d.
    Vtd,
    /// Arm SMMUv3.
    Smmuv3,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Run { scenario, json, trace, html }) => run(scenario, json, trace, html),
        Some(Cmd::Decode { kind, hex, list, json }) => decode(kind, &hex, list, json),
        Some(Cmd::Replay { model, file }) => replay(model, &file),
        Some(Cmd::Demo) => demo(),
        None => demo().and_then(|()| run(None, false, false, None)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iommu-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: Option<PathBuf>, json: bool, trace: bool, html_out: Option<PathBuf>) -> Result<(), String> {
    let sc = match &path {
        Some(p) => scenario::load(p),
        None => scenario::parse(DEFAULT_SCENARIO, "<built-in default>", "default"),
    }
    .map_err(|e| e.to_string())?;
    let opts = RunOptions { trace: trace || html_out.is_some(), progress: io::stderr().is_terminal() };
    let mut report = engine::run(&sc, opts);
    if let Some(f) = &html_out {
        std::fs::write(f, html::render(&report)).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    if !trace {
        report.trace.clear();
        report.trace_dropped = 0;
    }
    let mut out = io::stdout().lock();
    let written = if json {
        serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|s| writeln!(out, "{s}").map_err(|e| e.to_string()))
    } else {
        let mut s = text::render(&report);
        if trace {
            s.push_str("\ntrace\n");
            s.push_str(&text::render_trace(&report));
        }
        write!(out, "{s}").map_err(|e| e.to_string())
    };
    written?;
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "{}: {} step(s) failed, {} invariant violation(s){}",
            report.origin,
            report.failed_steps,
            report.violations(),
            if report.setup_errors.is_empty() {
                String::new()
            } else {
                format!(", {} setup error(s)", report.setup_errors.len())
            }
        ))
    }
}

fn decode(kind: Option<String>, hex: &[String], list: bool, json: bool) -> Result<(), String> {
    let mut out = io::stdout().lock();
    if list {
        return write!(out, "{}", iommu_sim::decode::list()).map_err(|e| e.to_string());
    }
    let kind = kind.unwrap_or_default();
    let d = iommu_sim::decode::decode(&kind, &hex.join(" ")).map_err(|e| e.to_string())?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&d.to_json()).map_err(|e| e.to_string())?)
    } else {
        write!(out, "{d}")
    }
    .map_err(|e| e.to_string())
}

/// The hardware-level walkthrough.
fn demo() -> Result<(), String> {
    let mut out = io::stdout().lock();
    iommu_sim::demo::run(&mut out).map_err(|e| e.to_string())?;
    writeln!(out).map_err(|e| e.to_string())
}

fn replay(model: Model, file: &str) -> Result<(), String> {
    let out = io::stdout().lock();
    let input: Box<dyn io::BufRead> = if file == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(BufReader::new(File::open(file).map_err(|e| format!("{file}: {e}"))?))
    };
    let n = match model {
        Model::Vtd => iommu_sim::replay::vtd::replay_stream(input, out),
        Model::Smmuv3 => iommu_sim::replay::smmuv3::replay_stream(input, out),
    }
    .map_err(|e| format!("{file}: {e}"))?;
    eprintln!("iommu-sim: replayed {n} case(s)");
    Ok(())
}
