//! The HTML report: one self-contained page (inline CSS and SVG, no
//! scripts or external resources).

use super::Report;

/// Renders `r` as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body></body></html>",
        r.scenario
    )
}
