//! Which backend serves a request, in which order the backends are tried,
//! and the log line that says what was chosen and why.

use std::time::Instant;

use tokio::sync::OnceCell;

use crate::backend::{forced_backend, BackendKind};
use crate::container::Role;
use crate::env_vars;
use crate::error::{Error, Result};
use crate::launch::launch;
use crate::log::log;
use crate::runtime;
use crate::server::Server;

/// The process-wide shared server. Never dropped: its container or cluster
/// is cleaned up after the process exits (see [`crate::reaper`]).
static SHARED: OnceCell<Result<Server>> = OnceCell::const_new();

/// The shared server, started on first use (on the harness runtime, so it
/// survives the test that happened to start it).
pub(crate) async fn shared() -> Result<&'static Server> {
    let cell = runtime::run(async { SHARED.get_or_init(init_shared).await }).await?;
    cell.as_ref().map_err(Clone::clone)
}

async fn init_shared() -> Result<Server> {
    let forced = forced_backend()?;
    let candidates = match forced {
        Some(b) => vec![b],
        None => BackendKind::ALL.to_vec(),
    };
    let mut skipped: Vec<String> = Vec::new();
    for backend in candidates {
        let t0 = Instant::now();
        match launch(backend, Role::Shared, &[]).await {
            Ok(server) => {
                let why = if forced.is_some() {
                    format!("forced by {}", env_vars::BACKEND)
                } else if skipped.is_empty() {
                    "first choice".to_owned()
                } else {
                    format!("skipped {}", skipped.join("; "))
                };
                log(format!(
                    "shared server: backend {backend} ({why}): {}, PostgreSQL {} ({}), ready in {:.1?}",
                    server.info.description,
                    server.info.version,
                    server.info.version_num,
                    t0.elapsed()
                ));
                return Ok(server);
            }
            Err(e) => {
                if forced.is_some() {
                    return Err(e.context(format!(
                        "{}={backend} is forced, but that backend is not usable",
                        env_vars::BACKEND
                    )));
                }
                if backend == BackendKind::Url && !e.is_unavailable() {
                    // The URL was given explicitly: do not silently test elsewhere.
                    return Err(e);
                }
                skipped.push(format!("{backend}: {e}"));
            }
        }
    }
    Err(Error::unavailable(format!(
        "no PostgreSQL server available for the tests:\n  {}",
        skipped.join("\n  ")
    )))
}

/// A throwaway server with extra settings: container, else local (or the
/// backend forced by `AEPG_TEST_BACKEND`, which must not be `url`).
pub(crate) async fn throwaway(settings: &[(&str, &str)]) -> Result<Server> {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let candidates = throwaway_candidates()?;
    let mut skipped = Vec::new();
    for backend in candidates.iter().copied() {
        match launch(backend, Role::Dedicated, &settings).await {
            Ok(server) => {
                log(format!(
                    "dedicated server: backend {backend}: {}, PostgreSQL {}{}",
                    server.info.description,
                    server.info.version,
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (skipped {})", skipped.join("; "))
                    }
                ));
                return Ok(server);
            }
            Err(e) if candidates.len() == 1 => return Err(e),
            Err(e) => skipped.push(format!("{backend}: {e}")),
        }
    }
    Err(Error::unavailable(format!(
        "cannot start a dedicated server:\n  {}",
        skipped.join("\n  ")
    )))
}

/// Backends to try for a throwaway server.
fn throwaway_candidates() -> Result<Vec<BackendKind>> {
    match forced_backend()? {
        Some(BackendKind::Url) => Err(Error::unavailable(format!(
            "dedicated servers are not available with {}=url (an external server \
             cannot be started with extra settings); use container or local",
            env_vars::BACKEND
        ))),
        Some(b) => Ok(vec![b]),
        None => Ok(vec![BackendKind::Container, BackendKind::Local]),
    }
}
