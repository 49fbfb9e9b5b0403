//! The harness's one error type: what was being done, and why it failed.
//!
//! Every failure of the harness is an operating error (a disk, a file, a flag); it is printed and
//! the process exits non-zero. Nothing here is meant to be matched on.

use std::fmt;

/// A failed step of a benchmark, with the step named.
#[derive(Debug)]
pub struct PerfError {
    context: String,
    cause: String,
}

impl PerfError {
    pub fn new(context: impl Into<String>, cause: impl fmt::Display) -> Self {
        PerfError {
            context: context.into(),
            cause: cause.to_string(),
        }
    }

    /// An error that is its own context (a bad flag, a check that failed).
    pub fn msg(message: impl Into<String>) -> Self {
        PerfError {
            context: message.into(),
            cause: String::new(),
        }
    }
}

impl fmt::Display for PerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause.is_empty() {
            write!(f, "{}", self.context)
        } else {
            write!(f, "{}: {}", self.context, self.cause)
        }
    }
}

impl std::error::Error for PerfError {}

pub type Result<T> = std::result::Result<T, PerfError>;

/// Names the step that failed: `file.write_at(..).await.context("write raw file")?`.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| PerfError::new(what, e))
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| PerfError::new(what(), e))
    }
}
