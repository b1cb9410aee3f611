//! The log lines this crate writes.

use std::fmt;

/// Writes a log line to stderr (captured per test by libtest unless
/// `--nocapture`). The `[aepg-tests]` prefix predates this crate; it is kept
/// so that the lines read, and can be searched for, as before.
pub(crate) fn log(message: impl fmt::Display) {
    eprintln!("[aepg-tests] {message}");
}
