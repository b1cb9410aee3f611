//! How a run fails, and with which exit status.

use std::fmt;

/// A failed run: a message, and whether it was a usage error (exit 2) or
/// the operation failing (exit 1).
#[derive(Debug)]
pub struct Failure {
    message: String,
    usage: bool,
    /// The command printed its result already (`verify`'s failed records):
    /// `--json` prints no error object after it.
    reported: bool,
}

impl Failure {
    /// A usage or configuration error: exit status 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: true,
            reported: false,
        }
    }

    /// The operation failed: exit status 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            usage: false,
            reported: false,
        }
    }

    /// The operation failed, and its result, which says how, is printed.
    pub fn reported(message: impl Into<String>) -> Self {
        Self {
            reported: true,
            ..Self::failed(message)
        }
    }

    /// Whether the result was printed already.
    pub fn is_reported(&self) -> bool {
        self.reported
    }

    /// The process's exit status.
    pub fn exit_code(&self) -> i32 {
        if self.usage {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An aepg error, with its causes, as an operation failure.
impl From<aepg::Error> for Failure {
    fn from(error: aepg::Error) -> Self {
        Self::failed(with_causes(&error))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::failed(with_causes(&error))
    }
}

/// `error: cause: cause`, each cause once.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
