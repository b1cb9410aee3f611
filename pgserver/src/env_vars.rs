//! Environment variables that choose and shape the server.
//!
//! They carry the `AEPG_TEST_` prefix because the test suites were their
//! first user; the quickstart reads the same ones.

use std::time::Duration;

/// libpq-style URL or `key=value` connection string of an existing server
/// (anything `tokio_postgres::Config` parses). Selects the `url` backend.
/// The role needs `CREATEDB`; connections use no TLS.
pub const DATABASE_URL: &str = "AEPG_TEST_DATABASE_URL";

/// Forces one backend: `url`, `container` or `local`. Without it the
/// backends are tried in that order.
pub const BACKEND: &str = "AEPG_TEST_BACKEND";

/// Image (`name:tag`) for the `container` backend. Default [`DEFAULT_IMAGE`].
pub const PG_IMAGE: &str = "AEPG_TEST_PG_IMAGE";

/// Default image of the `container` backend: the official PostgreSQL 17 image.
pub const DEFAULT_IMAGE: &str = "postgres:17";

/// Directory holding `initdb` and `pg_ctl` for the `local` backend
/// (default: `PATH`, then the newest `/usr/lib/postgresql/*/bin`).
pub const PG_BINDIR: &str = "AEPG_TEST_PG_BINDIR";

/// OS user that runs `initdb`/`pg_ctl` when running as root
/// (default `postgres`).
pub const LOCAL_USER: &str = "AEPG_TEST_LOCAL_USER";

/// Seconds to wait for a server to become ready (default 120).
pub const STARTUP_TIMEOUT_SECS: &str = "AEPG_TEST_PG_STARTUP_TIMEOUT_SECS";

/// The value of `name`, if set to something other than whitespace.
pub(crate) fn non_empty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The server start-up timeout.
pub(crate) fn startup_timeout() -> Duration {
    let secs = non_empty(STARTUP_TIMEOUT_SECS)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(120);
    Duration::from_secs(secs)
}
