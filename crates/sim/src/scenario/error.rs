//! Scenario errors: where in the file, what was wrong, what was expected.

use core::fmt;
use core::ops::Range;

/// A scenario that cannot be run, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file (or `<built-in>`).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.origin, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.origin, self.message),
            _ => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Maps byte offsets of a source text to lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct Locator<'a> {
    pub(crate) origin: &'a str,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(origin: &'a str, text: &'a str) -> Self {
        Self { origin, text }
    }

    /// 1-based (line, column) of byte `offset` (clamped to the text).
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(before.chars().count(), |i| before[i + 1..].chars().count()) + 1;
        (line, col)
    }

    /// An error at `span` (its start).
    pub(crate) fn at(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let (l, c) = self.line_col(span.start);
        ScenarioError { origin: self.origin.to_string(), line: Some(l), column: Some(c), message: message.into() }
    }

    /// An error without a position.
    pub(crate) fn whole(&self, message: impl Into<String>) -> ScenarioError {
        ScenarioError { origin: self.origin.to_string(), line: None, column: None, message: message.into() }
    }
}
