//! Which kind of PostgreSQL server is used, and how it is forced.

use std::fmt;
use std::str::FromStr;

use crate::env_vars;
use crate::error::{Error, Result};

/// Where a PostgreSQL server comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// An existing server named by `AEPG_TEST_DATABASE_URL`.
    Url,
    /// A Docker container started through `testcontainers`.
    Container,
    /// A throwaway cluster made with `initdb` and started with `pg_ctl`.
    Local,
}

impl BackendKind {
    /// All backends, in fallback order.
    pub const ALL: [BackendKind; 3] =
        [BackendKind::Url, BackendKind::Container, BackendKind::Local];

    /// The name used in `AEPG_TEST_BACKEND` (`url`, `container`, `local`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Url => "url",
            BackendKind::Container => "container",
            BackendKind::Local => "local",
        }
    }

    /// Whether this backend can start throwaway servers with extra settings
    /// ([`crate::Server::start`]).
    pub fn supports_dedicated_servers(self) -> bool {
        !matches!(self, BackendKind::Url)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "url" => Ok(BackendKind::Url),
            "container" | "docker" => Ok(BackendKind::Container),
            "local" => Ok(BackendKind::Local),
            other => Err(Error::failed(format!(
                "{}={other:?} is not one of url, container, local",
                env_vars::BACKEND
            ))),
        }
    }
}

/// The backend forced through `AEPG_TEST_BACKEND`, if any.
pub(crate) fn forced_backend() -> Result<Option<BackendKind>> {
    env_vars::non_empty(env_vars::BACKEND)
        .map(|v| v.parse())
        .transpose()
}
