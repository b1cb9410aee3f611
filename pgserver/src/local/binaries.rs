//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`) and other
//! programs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::env_vars;
use crate::error::{Error, Result};

/// Where `initdb` and `pg_ctl` are.
#[derive(Debug)]
pub(crate) struct PgBinaries {
    pub(crate) initdb: PathBuf,
    pub(crate) pg_ctl: PathBuf,
}

impl PgBinaries {
    /// `AEPG_TEST_PG_BINDIR`, else `PATH`, else the newest versioned
    /// directory of the Debian or RHEL packages.
    pub(crate) fn find() -> Result<Self> {
        if let Some(dir) = env_vars::non_empty(env_vars::PG_BINDIR) {
            return Self::in_dir(Path::new(&dir)).ok_or_else(|| {
                Error::unavailable(format!(
                    "{}={dir} has no executable initdb and pg_ctl",
                    env_vars::PG_BINDIR
                ))
            });
        }
        if let (Some(initdb), Some(pg_ctl)) = (which("initdb"), which("pg_ctl")) {
            return Ok(Self { initdb, pg_ctl });
        }
        let mut dirs: Vec<(u32, PathBuf)> = Vec::new();
        for pattern_dir in ["/usr/lib/postgresql", "/usr"] {
            let Ok(entries) = fs::read_dir(pattern_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = if pattern_dir == "/usr" {
                    name.strip_prefix("pgsql-").map(str::to_owned)
                } else {
                    Some(name)
                };
                if let Some(major) = version.and_then(|v| v.split('.').next()?.parse().ok()) {
                    dirs.push((major, entry.path().join("bin")));
                }
            }
        }
        dirs.sort();
        dirs.iter()
            .rev()
            .find_map(|(_, dir)| Self::in_dir(dir))
            .ok_or_else(|| {
                Error::unavailable(
                    "initdb/pg_ctl not found in PATH, /usr/lib/postgresql/*/bin or /usr/pgsql-*/bin \
                     (set AEPG_TEST_PG_BINDIR)",
                )
            })
    }

    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join("initdb");
        let pg_ctl = dir.join("pg_ctl");
        (is_executable(&initdb) && is_executable(&pg_ctl)).then_some(Self { initdb, pg_ctl })
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Finds `name` in `PATH` (plus the sbin directories, which root's `PATH`
/// usually has but a test runner's may not).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}
