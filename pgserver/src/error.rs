//! The crate's error type.

use std::fmt;

/// What kind of failure an [`Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The requested feature or backend is not available in this environment
    /// (e.g. a throwaway server was requested while `AEPG_TEST_BACKEND=url`,
    /// or no Docker engine / PostgreSQL binaries were found). Tests may choose
    /// to skip on this kind.
    Unavailable,
    /// Something that should have worked failed (server start-up, SQL, I/O, ...).
    Failed,
}

/// An error finding, starting or using a server, with a human-readable
/// explanation.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of kind [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            message: message.into(),
        }
    }

    /// An error of kind [`ErrorKind::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether this error means "not available here" rather than "broken".
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
