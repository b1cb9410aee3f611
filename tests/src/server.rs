//! Obtaining a PostgreSQL server: backend selection, the process-wide shared
//! server, and information about a server.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::Config;

use crate::backend::{forced_backend, log, BackendKind};
use crate::container::{ImageRef, PgContainer, Role};
use crate::env_vars;
use crate::error::{HarnessError, Result};
use crate::local_cluster::LocalCluster;
use crate::pg_config;
use crate::runtime;

/// Facts about a PostgreSQL server used by the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// Which backend provides the server.
    pub backend: BackendKind,
    /// `server_version_num`, e.g. `150010` for 15.10 or `170002` for 17.2.
    pub version_num: i32,
    /// `server_version`, e.g. `"15.10 (Debian 15.10-1.pgdg120+1)"`.
    pub version: String,
    /// Human-readable description (container id and image, data directory,
    /// or host/port/database of the URL; never a password).
    pub description: String,
}

impl ServerInfo {
    /// The major version (`version_num / 10000`), e.g. `15`.
    pub fn major_version(&self) -> i32 {
        self.version_num / 10000
    }
}

/// The server-owning part of a server: dropping it stops/removes the server.
#[derive(Debug)]
pub(crate) enum ServerResource {
    /// Nothing to own: an external server.
    Url,
    /// A container.
    Container(Box<PgContainer>),
    /// A local cluster.
    Local(LocalCluster),
}

/// A running server with superuser (or at least `CREATEDB`) settings.
#[derive(Debug)]
pub(crate) struct StartedServer {
    pub(crate) admin: Config,
    pub(crate) info: ServerInfo,
    pub(crate) resource: ServerResource,
}

/// The process-wide shared server. Never dropped: its container or cluster
/// is cleaned up after the process exits (see [`crate::reaper`]).
static SHARED: OnceCell<Result<StartedServer>> = OnceCell::const_new();

/// The shared server, started on first use (on the harness runtime, so it
/// survives the test that happened to start it).
pub(crate) async fn shared() -> Result<&'static StartedServer> {
    let cell = runtime::run(async { SHARED.get_or_init(init_shared).await }).await?;
    cell.as_ref().map_err(Clone::clone)
}

/// Information about the process-wide shared server, starting it if needed.
pub async fn shared_server_info() -> Result<ServerInfo> {
    shared().await.map(|s| s.info.clone())
}

async fn init_shared() -> Result<StartedServer> {
    let forced = forced_backend()?;
    let candidates = match forced {
        Some(b) => vec![b],
        None => BackendKind::ALL.to_vec(),
    };
    let mut skipped: Vec<String> = Vec::new();
    for backend in candidates {
        let t0 = Instant::now();
        match start(backend, Role::Shared, &[]).await {
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
    Err(HarnessError::unavailable(format!(
        "no PostgreSQL server available for the tests:\n  {}",
        skipped.join("\n  ")
    )))
}

/// Backends to try for a dedicated server.
pub(crate) fn dedicated_candidates() -> Result<Vec<BackendKind>> {
    match forced_backend()? {
        Some(BackendKind::Url) => Err(HarnessError::unavailable(format!(
            "dedicated servers are not available with {}=url (an external server \
             cannot be started with extra settings); use container or local",
            env_vars::BACKEND
        ))),
        Some(b) => Ok(vec![b]),
        None => Ok(vec![BackendKind::Container, BackendKind::Local]),
    }
}

/// Starts (or, for `url`, connects to) a server of the given backend.
pub(crate) async fn start(
    backend: BackendKind,
    role: Role,
    settings: &[(String, String)],
) -> Result<StartedServer> {
    let (admin, description, resource) = match backend {
        BackendKind::Url => {
            let url = env_vars::non_empty(env_vars::DATABASE_URL).ok_or_else(|| {
                HarnessError::unavailable(format!("{} is not set", env_vars::DATABASE_URL))
            })?;
            let admin: Config = url.parse().map_err(|e| {
                HarnessError::failed(format!("{} does not parse: {e}", env_vars::DATABASE_URL))
            })?;
            let description = format!("server at {}", pg_config::describe(&admin));
            (admin, description, ServerResource::Url)
        }
        BackendKind::Container => {
            // Once the engine or image proved unavailable, later servers of
            // this process skip the (possibly slow) attempt.
            static UNAVAILABLE: OnceLock<HarnessError> = OnceLock::new();
            if let Some(e) = UNAVAILABLE.get() {
                return Err(e.clone());
            }
            let container = match PgContainer::start(role, settings).await {
                Ok(container) => container,
                Err(e) => {
                    if e.is_unavailable() {
                        let _ = UNAVAILABLE.set(e.clone());
                    }
                    return Err(e);
                }
            };
            let description = format!(
                "{} (started in {:.1?})",
                container.description(),
                container.startup()
            );
            (
                container.config(),
                description,
                ServerResource::Container(Box::new(container)),
            )
        }
        BackendKind::Local => {
            let settings = settings.to_vec();
            let t0 = Instant::now();
            let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&settings))
                .await
                .map_err(|e| {
                    HarnessError::failed(format!("local cluster start panicked: {e}"))
                })??;
            let description = format!(
                "{} (started in {:.1?})",
                cluster.description(),
                t0.elapsed()
            );
            (
                cluster.config(),
                description,
                ServerResource::Local(cluster),
            )
        }
    };
    let (version_num, version) = {
        let config = admin.clone();
        runtime::run(async move {
            let client = pg_config::connect_with_retry(&config, Duration::from_secs(10)).await?;
            pg_config::server_version(&client).await
        })
        .await??
    };
    Ok(StartedServer {
        admin,
        info: ServerInfo {
            backend,
            version_num,
            version,
            description,
        },
        resource,
    })
}

/// The image the container backend would use (`AEPG_TEST_PG_IMAGE` or the default).
pub fn container_image() -> String {
    ImageRef::from_env().to_string()
}
