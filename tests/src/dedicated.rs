//! Servers of a test's own, started with extra settings.

use std::path::{Path, PathBuf};

use tokio_postgres::{Client, Config};

use crate::backend::{log, BackendKind};
use crate::container::Role;
use crate::database::TestDatabase;
use crate::error::{HarnessError, Result};
use crate::local_cluster::copy_dir_recursive;
use crate::pg_config;
use crate::server::{self, ServerInfo, ServerResource, StartedServer};

/// A PostgreSQL server started for one test, with extra server settings
/// (e.g. `log_statement=all`), whose log and data directory the test can
/// inspect. Dropping it stops and removes the server.
///
/// Backends: `container` (a new container; the log is its stdout+stderr) and
/// `local` (a new `initdb` cluster; the log is `pg_ctl -l`'s file). With
/// `AEPG_TEST_BACKEND` unset the container backend is tried first, then the
/// local one; `AEPG_TEST_BACKEND=url` yields an
/// [`Unavailable`](crate::HarnessErrorKind::Unavailable) error.
///
/// ```no_run
/// # async fn demo() -> Result<(), aepg_tests::HarnessError> {
/// let server = aepg_tests::DedicatedServer::start(&[("log_statement", "all")]).await?;
/// let client = server.connect().await?;
/// client.simple_query("SELECT 'needle'").await.unwrap();
/// assert!(server.server_log().await?.contains("needle"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DedicatedServer {
    server: StartedServer,
    data_dir: String,
}

impl DedicatedServer {
    /// Starts a server with `settings` as `postgresql.conf` parameters
    /// (`("log_statement", "all")` becomes `-c log_statement=all`).
    pub async fn start(settings: &[(&str, &str)]) -> Result<Self> {
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let candidates = server::dedicated_candidates()?;
        let mut skipped = Vec::new();
        for backend in candidates.iter().copied() {
            match server::start(backend, Role::Dedicated, &settings).await {
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
                    let data_dir = match &server.resource {
                        ServerResource::Container(c) => c.data_dir().to_owned(),
                        ServerResource::Local(l) => l.data_dir().to_string_lossy().into_owned(),
                        ServerResource::Url => String::new(),
                    };
                    return Ok(Self { server, data_dir });
                }
                Err(e) if candidates.len() == 1 => return Err(e),
                Err(e) => skipped.push(format!("{backend}: {e}")),
            }
        }
        Err(HarnessError::unavailable(format!(
            "cannot start a dedicated server:\n  {}",
            skipped.join("\n  ")
        )))
    }

    /// Facts about the server.
    pub fn info(&self) -> &ServerInfo {
        &self.server.info
    }

    /// Which backend runs the server.
    pub fn backend(&self) -> BackendKind {
        self.server.info.backend
    }

    /// Superuser connection settings for the `postgres` database.
    pub fn config(&self) -> Config {
        self.server.admin.clone()
    }

    /// [`DedicatedServer::config`] as a libpq `key=value` connection string.
    pub fn connection_string(&self) -> String {
        pg_config::connection_string(&self.server.admin)
    }

    /// Connects to the `postgres` database; the connection task is spawned on
    /// the current Tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        pg_config::connect(&self.server.admin).await
    }

    /// Creates an isolated database on this server. It is not dropped when
    /// the [`TestDatabase`] is (the whole server goes away with this value).
    pub async fn create_database(&self, label: &str) -> Result<TestDatabase> {
        TestDatabase::create_on(&self.server.admin, &self.server.info, label, false).await
    }

    /// The server log so far. Container: stdout followed by stderr (the
    /// server logs to stderr). Local: the `pg_ctl -l` log file. Still readable
    /// after [`DedicatedServer::stop`].
    pub async fn server_log(&self) -> Result<String> {
        match &self.server.resource {
            ServerResource::Container(c) => c.logs().await,
            ServerResource::Local(l) => l.read_log(),
            ServerResource::Url => Err(not_available()),
        }
    }

    /// The data directory as the server sees it (inside the container for
    /// the container backend).
    pub fn data_directory(&self) -> &str {
        &self.data_dir
    }

    /// The data directory on this machine, for the local backend (`None` for
    /// containers: use [`DedicatedServer::copy_data_dir`]).
    pub fn local_data_dir(&self) -> Option<&Path> {
        match &self.server.resource {
            ServerResource::Local(l) => Some(l.data_dir()),
            _ => None,
        }
    }

    /// The server log file on this machine, for the local backend.
    pub fn local_log_file(&self) -> Option<&Path> {
        match &self.server.resource {
            ServerResource::Local(l) => Some(l.log_file()),
            _ => None,
        }
    }

    /// Copies the data directory to `dest`, which must not exist yet (it is
    /// created), and returns `dest`. Container: `docker cp` (needs the
    /// `docker` CLI). Local: a recursive copy. For a consistent snapshot,
    /// call [`DedicatedServer::stop`] first (or at least run `CHECKPOINT`).
    pub async fn copy_data_dir(&self, dest: impl AsRef<Path>) -> Result<PathBuf> {
        let dest = dest.as_ref().to_owned();
        if dest.exists() {
            return Err(HarnessError::failed(format!(
                "copy_data_dir: {} already exists",
                dest.display()
            )));
        }
        match &self.server.resource {
            // `docker cp` blocks briefly; acceptable in a test.
            ServerResource::Container(c) => c.copy_data_dir(&dest)?,
            ServerResource::Local(l) => copy_dir_recursive(l.data_dir(), &dest).map_err(|e| {
                HarnessError::failed(format!(
                    "cannot copy {} to {}: {e}",
                    l.data_dir().display(),
                    dest.display()
                ))
            })?,
            ServerResource::Url => return Err(not_available()),
        }
        Ok(dest)
    }

    /// Shuts the server down cleanly. Its log and data directory remain
    /// available until the `DedicatedServer` is dropped; connecting no longer
    /// works.
    pub async fn stop(&mut self) -> Result<()> {
        match &mut self.server.resource {
            ServerResource::Container(c) => c.stop().await,
            ServerResource::Local(l) => l.stop(),
            ServerResource::Url => Err(not_available()),
        }
    }
}

fn not_available() -> HarnessError {
    HarnessError::unavailable("not available for the url backend")
}
