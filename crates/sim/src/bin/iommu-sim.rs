//! `iommu-sim`: parse arguments, run, print. All logic lives in the library.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Deterministic IOMMU simulator: conformance replay, scenarios, decoding.
#[derive(Debug, Parser)]
#[command(name = "iommu-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Replay conformance cases (JSON Lines) and print one observation per case.
    Replay {
        /// Which model.
        model: Model,
        /// Case file (`-` for standard input).
        file: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    /// Intel VT-d.
    Vtd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Replay { model: Model::Vtd, file }) => replay(&file),
        None => default_scenario(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iommu-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The built-in default scenario: the hardware model on its own, the OS
/// side driving it, then guest SVA through a vIOMMU; fails when an
/// expectation does not hold.
fn default_scenario() -> Result<(), String> {
    let mut out = io::stdout().lock();
    iommu_sim::demo::run(&mut out).map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    let os = iommu_sim::demo_os::run(&mut out).map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    let vmm = iommu_sim::demo_vmm::run(&mut out).map_err(|e| e.to_string())?;
    match os + vmm {
        0 => Ok(()),
        n => Err(format!("{n} expectation(s) of the default scenario did not hold")),
    }
}

fn replay(file: &str) -> Result<(), String> {
    let out = io::stdout().lock();
    let n = if file == "-" {
        iommu_sim::replay::vtd::replay_stream(io::stdin().lock(), out)
    } else {
        let f = File::open(file).map_err(|e| format!("{file}: {e}"))?;
        iommu_sim::replay::vtd::replay_stream(BufReader::new(f), out)
    }
    .map_err(|e| format!("{file}: {e}"))?;
    eprintln!("iommu-sim: replayed {n} case(s)");
    Ok(())
}
