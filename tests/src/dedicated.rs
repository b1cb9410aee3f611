//! Servers of a test's own, started with extra settings.

use std::ops::{Deref, DerefMut};

use aepg_pgserver::Server;

use crate::database::TestDatabase;
use crate::Result;

/// A PostgreSQL server started for one test, with extra server settings
/// (e.g. `log_statement=all`), whose log and data directory the test can
/// inspect. Dropping it stops and removes the server.
///
/// A thin wrapper around [`aepg_pgserver::Server::start`]: it dereferences
/// to that [`Server`] for everything (`info`, `config`, `connect`,
/// `server_log`, `copy_data_dir`, `stop`, ...) except
/// [`create_database`](DedicatedServer::create_database), which yields a
/// [`TestDatabase`].
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
    server: Server,
}

impl DedicatedServer {
    /// Starts a server with `settings` as `postgresql.conf` parameters
    /// (`("log_statement", "all")` becomes `-c log_statement=all`).
    pub async fn start(settings: &[(&str, &str)]) -> Result<Self> {
        Server::start(settings).await.map(|server| Self { server })
    }

    /// Creates an isolated database on this server. It is not dropped when
    /// the [`TestDatabase`] is (the whole server goes away with this value).
    pub async fn create_database(&self, label: &str) -> Result<TestDatabase> {
        let database = self.server.create_database(label).await?;
        Ok(TestDatabase::on_throwaway_server(database))
    }
}

impl Deref for DedicatedServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for DedicatedServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}
