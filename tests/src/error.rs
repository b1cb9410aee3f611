//! The harness's error type.

use std::fmt;

/// What kind of failure a [`HarnessError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HarnessErrorKind {
    /// The requested feature or backend is not available in this environment
    /// (e.g. a dedicated server was requested while `AEPG_TEST_BACKEND=url`,
    /// or no Docker engine / PostgreSQL binaries were found). Tests may choose
    /// to skip on this kind.
    Unavailable,
    /// Something that should have worked failed (server start-up, SQL, I/O, ...).
    Failed,
}

/// An error raised by the test harness, with a human-readable explanation.
#[derive(Debug, Clone)]
pub struct HarnessError {
    kind: HarnessErrorKind,
    message: String,
}

impl HarnessError {
    /// An error of kind [`HarnessErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: HarnessErrorKind::Unavailable,
            message: message.into(),
        }
    }

    /// An error of kind [`HarnessErrorKind::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: HarnessErrorKind::Failed,
            message: message.into(),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> HarnessErrorKind {
        self.kind
    }

    /// Whether this error means "not available here" rather than "broken".
    pub fn is_unavailable(&self) -> bool {
        self.kind == HarnessErrorKind::Unavailable
    }

    /// The explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with some context, keeping the kind.
    pub(crate) fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}

/// Shorthand for results of harness operations.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
