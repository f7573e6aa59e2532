//! Layer 5: the simulated machine and what runs on it.
//!
//! * [`replay`]: replays conformance cases recorded on QEMU
//!   (`shared/vtd-conformance`, case schema v1) against the VT-d model and
//!   prints observations in the same shape;
//! * [`decode`]: reads hex words as one VT-d structure or register (`decode KIND HEX`);
//! * [`scenario`]: scenario files (TOML) parsed and checked;
//! * [`engine`]: runs a scenario on the simulated machine, with the
//!   invariant checkers;
//! * [`report`]: the run's report as text, JSON and HTML;
//! * [`demo`]: the built-in hardware-level walkthrough.
//!
//! The `iommu-sim` binary is a thin `main` over this library.
#![forbid(unsafe_code)]

pub mod decode;
pub mod demo;
pub mod engine;
pub mod replay;
pub mod report;
pub mod scenario;
