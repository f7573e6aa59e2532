//! The built-in default scenario: `iommu-sim` with no arguments.

use std::io::Write;

/// Runs the default scenario and writes its report.
///
/// # Errors
/// An I/O error writing the report.
pub fn run(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "iommu-sim: default scenario not built yet")
}
