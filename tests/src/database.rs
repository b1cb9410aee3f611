//! Isolated per-test databases.

use std::time::Duration;

use aepg_pgserver::{BackendKind, Database, Server, ServerInfo};
use tokio_postgres::{Client, Config};

use crate::env_vars;
use crate::Result;

/// A freshly created, uniquely named database on a test server, dropped
/// again (best effort, `DROP DATABASE ... WITH (FORCE)`) when this value is
/// dropped. Databases of different tests never collide, so tests run in
/// parallel.
///
/// ```no_run
/// # async fn demo() {
/// let db = aepg_tests::TestDatabase::new("roundtrip").await;
/// let client = db.connect().await;
/// client.batch_execute("CREATE TABLE t (x int)").await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct TestDatabase {
    database: Database,
    /// Set when dropping is pointless (already dropped, or the server is a
    /// throwaway dedicated one).
    dropped: bool,
}

impl TestDatabase {
    /// Creates a database on the process-wide shared server (starting the
    /// server on first use). `label` becomes part of the database name.
    ///
    /// # Panics
    ///
    /// When no server is available or the database cannot be created; the
    /// message says why. Use [`TestDatabase::try_new`] to handle that.
    pub async fn new(label: &str) -> Self {
        match Self::try_new(label).await {
            Ok(db) => db,
            Err(e) => panic!("aepg-tests: cannot create test database {label:?}: {e}"),
        }
    }

    /// Like [`TestDatabase::new`], returning errors instead of panicking.
    pub async fn try_new(label: &str) -> Result<Self> {
        let database = Server::shared().await?.create_database(label).await?;
        Ok(Self {
            database,
            dropped: false,
        })
    }

    /// A database on a throwaway server: not dropped on drop, the whole
    /// server goes away instead.
    pub(crate) fn on_throwaway_server(database: Database) -> Self {
        Self {
            database,
            dropped: true,
        }
    }

    /// The database name (`aepg_<label>_<pid>_<n>_<nonce>`, at most 63 bytes).
    pub fn name(&self) -> &str {
        self.database.name()
    }

    /// Connection settings for this database (superuser of the test server;
    /// no TLS).
    pub fn config(&self) -> Config {
        self.database.config()
    }

    /// The same settings as a libpq `key=value` connection string (includes
    /// the password, if any).
    pub fn connection_string(&self) -> String {
        self.database.connection_string()
    }

    /// Opens a connection to this database; the connection task is spawned on
    /// the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When the connection fails. Use [`TestDatabase::try_connect`] to handle that.
    pub async fn connect(&self) -> Client {
        match self.try_connect().await {
            Ok(client) => client,
            Err(e) => panic!("aepg-tests: {e}"),
        }
    }

    /// Like [`TestDatabase::connect`], returning errors instead of panicking.
    pub async fn try_connect(&self) -> Result<Client> {
        self.database.connect().await
    }

    /// Facts about the server this database lives on.
    pub fn server(&self) -> &ServerInfo {
        self.database.server()
    }

    /// Shorthand for `self.server().backend`.
    pub fn backend(&self) -> BackendKind {
        self.server().backend
    }

    /// Shorthand for `self.server().version_num`.
    pub fn server_version_num(&self) -> i32 {
        self.server().version_num
    }

    /// Drops the database now, reporting errors (instead of the best-effort
    /// drop on `Drop`). Open connections to it are terminated.
    pub async fn drop_database(mut self) -> Result<()> {
        self.dropped = true;
        self.database.drop_database().await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped || env_vars::flag(env_vars::KEEP_DATABASES) {
            return;
        }
        if let Err(e) = self
            .database
            .drop_database_blocking(Duration::from_secs(30))
        {
            eprintln!("[aepg-tests] warning: {e}");
        }
    }
}
