//! Conformance replay.
//!
//! Input is JSON Lines, one case per line. A case that cannot be replayed
//! (bad JSON, an unknown op, an address outside the simulated RAM, a
//! malformed number) is a [`ReplayError`] naming the line and step; nothing
//! panics.

pub mod vtd;

/// Why a case file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The line is not JSON.
    #[error("line {line}: not valid JSON: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The case is well-formed JSON but not a replayable case.
    #[error("line {line} (case {id}){step}: {msg}")]
    Case {
        /// 1-based line number.
        line: usize,
        /// Case id, or `?`.
        id: String,
        /// `, step N` when a step is at fault.
        step: String,
        /// What is wrong.
        msg: String,
    },
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}
