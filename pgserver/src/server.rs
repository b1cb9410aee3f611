//! A running PostgreSQL server and what can be done with it.

use std::path::{Path, PathBuf};

use tokio_postgres::{Client, Config};

use crate::backend::BackendKind;
use crate::choice;
use crate::container::PgContainer;
use crate::database::Database;
use crate::error::{Error, Result};
use crate::fs_copy::copy_dir_recursive;
use crate::local::LocalCluster;
use crate::pg_config;

/// Facts about a PostgreSQL server.
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
pub(crate) enum Resource {
    /// Nothing to own: an external server.
    Url,
    /// A container.
    Container(Box<PgContainer>),
    /// A local cluster.
    Local(LocalCluster),
}

/// A running PostgreSQL server, reached with superuser (or at least
/// `CREATEDB`) settings.
///
/// [`Server::start`] starts a throwaway server of its own with extra
/// settings, whose log and data directory can be read; dropping it stops
/// and removes the server. [`Server::shared`] is the one server of the
/// process, found or started on first use and cleaned up after the process
/// exits.
///
/// ```no_run
/// # async fn demo() -> aepg_pgserver::Result<()> {
/// let server = aepg_pgserver::Server::start(&[("log_statement", "all")]).await?;
/// let database = server.create_database("demo").await?;
/// let client = database.connect().await?;
/// client.simple_query("SELECT 'needle'").await.ok();
/// assert!(server.server_log().await?.contains("needle"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    pub(crate) admin: Config,
    pub(crate) info: ServerInfo,
    /// The data directory as the server sees it (empty for `url`).
    pub(crate) data_dir: String,
    pub(crate) resource: Resource,
}

impl Server {
    /// Starts a throwaway server with `settings` as `postgresql.conf`
    /// parameters (`("log_statement", "all")` becomes `-c log_statement=all`).
    ///
    /// Backends: `container` (a new container; the log is its
    /// stdout+stderr), else `local` (a new `initdb` cluster; the log is
    /// `pg_ctl -l`'s file). `AEPG_TEST_BACKEND` forces one of them;
    /// `AEPG_TEST_BACKEND=url` yields an
    /// [`Unavailable`](crate::ErrorKind::Unavailable) error.
    pub async fn start(settings: &[(&str, &str)]) -> Result<Self> {
        choice::throwaway(settings).await
    }

    /// The process-wide shared server, found or started on first use: the
    /// `url` backend, else `container`, else `local` (or the one
    /// `AEPG_TEST_BACKEND` forces). It is never dropped; a watchdog removes
    /// its container or cluster once the process has exited.
    pub async fn shared() -> Result<&'static Self> {
        choice::shared().await
    }

    /// Facts about the server.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Which backend runs the server.
    pub fn backend(&self) -> BackendKind {
        self.info.backend
    }

    /// Superuser connection settings for the `postgres` database (no TLS).
    pub fn config(&self) -> Config {
        self.admin.clone()
    }

    /// [`Server::config`] as a libpq `key=value` connection string
    /// (includes the password, if any).
    pub fn connection_string(&self) -> String {
        pg_config::connection_string(&self.admin)
    }

    /// Connects to the `postgres` database; the connection task is spawned on
    /// the current Tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        pg_config::connect(&self.admin).await
    }

    /// Creates a uniquely named database on this server; `label` becomes
    /// part of its name. It is not dropped when the [`Database`] is.
    pub async fn create_database(&self, label: &str) -> Result<Database> {
        Database::create(&self.admin, &self.info, label).await
    }

    /// The server log so far. Container: stdout followed by stderr (the
    /// server logs to stderr). Local: the `pg_ctl -l` log file. Still readable
    /// after [`Server::stop`]. Not available for the `url` backend.
    pub async fn server_log(&self) -> Result<String> {
        match &self.resource {
            Resource::Container(c) => c.logs().await,
            Resource::Local(l) => l.read_log(),
            Resource::Url => Err(not_available()),
        }
    }

    /// The data directory as the server sees it (inside the container for
    /// the container backend; empty for the `url` backend).
    pub fn data_directory(&self) -> &str {
        &self.data_dir
    }

    /// The data directory on this machine, for the local backend (`None` for
    /// containers: use [`Server::copy_data_dir`]).
    pub fn local_data_dir(&self) -> Option<&Path> {
        match &self.resource {
            Resource::Local(l) => Some(l.data_dir()),
            _ => None,
        }
    }

    /// The server log file on this machine, for the local backend.
    pub fn local_log_file(&self) -> Option<&Path> {
        match &self.resource {
            Resource::Local(l) => Some(l.log_file()),
            _ => None,
        }
    }

    /// Copies the data directory to `dest`, which must not exist yet (it is
    /// created), and returns `dest`. Container: `docker cp` (needs the
    /// `docker` CLI). Local: a recursive copy. For a consistent snapshot,
    /// call [`Server::stop`] first (or at least run `CHECKPOINT`).
    pub async fn copy_data_dir(&self, dest: impl AsRef<Path>) -> Result<PathBuf> {
        let dest = dest.as_ref().to_owned();
        if dest.exists() {
            return Err(Error::failed(format!(
                "copy_data_dir: {} already exists",
                dest.display()
            )));
        }
        match &self.resource {
            // `docker cp` blocks briefly; acceptable here.
            Resource::Container(c) => c.copy_data_dir(&dest)?,
            Resource::Local(l) => copy_dir_recursive(l.data_dir(), &dest).map_err(|e| {
                Error::failed(format!(
                    "cannot copy {} to {}: {e}",
                    l.data_dir().display(),
                    dest.display()
                ))
            })?,
            Resource::Url => return Err(not_available()),
        }
        Ok(dest)
    }

    /// Shuts the server down cleanly. Its log and data directory remain
    /// available until the `Server` is dropped; connecting no longer works.
    pub async fn stop(&mut self) -> Result<()> {
        match &mut self.resource {
            Resource::Container(c) => c.stop().await,
            Resource::Local(l) => l.stop(),
            Resource::Url => Err(not_available()),
        }
    }
}

fn not_available() -> Error {
    Error::unavailable("not available for the url backend")
}
