//! A statement that cannot run, said with its place in the text.

use datafusion::common::DataFusionError;

/// A statement that cannot run, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", at.map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default())]
pub struct SqlError {
    pub message: String,
    /// Line and column (from 1) in the text, when the planner knows them.
    pub at: Option<(u64, u64)>,
}

impl SqlError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        SqlError { message: message.into(), at: None }
    }

    pub(super) fn from_datafusion(e: DataFusionError) -> Self {
        let at = e.diagnostic().and_then(|d| d.span).map(|s| (s.start.line, s.start.column));
        let message = match e.find_root() {
            DataFusionError::Diagnostic(_, inner) => inner.to_string(),
            root => root.to_string(),
        };
        SqlError { message, at }
    }
}
