//! Isolated per-test databases.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use crate::backend::{log, BackendKind};
use crate::env_vars;
use crate::error::{HarnessError, Result};
use crate::pg_config::{self, quote_ident};
use crate::runtime;
use crate::server::{self, ServerInfo};

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
    name: String,
    admin: Config,
    config: Config,
    info: ServerInfo,
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
        let shared = server::shared().await?;
        Self::create_on(&shared.admin, &shared.info, label, true).await
    }

    /// Creates a database through the superuser connection settings `admin`;
    /// `drop_on_drop: false` skips the `DROP DATABASE` when dropped.
    pub(crate) async fn create_on(
        admin: &Config,
        info: &ServerInfo,
        label: &str,
        drop_on_drop: bool,
    ) -> Result<Self> {
        let name = unique_name(label);
        let client = pg_config::connect(admin).await?;
        let sql = format!("CREATE DATABASE {}", quote_ident(&name));
        let mut attempt = 0;
        loop {
            match client.batch_execute(&sql).await {
                Ok(()) => break,
                // "source database template1 is being accessed by other users"
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(HarnessError::failed(format!(
                        "CREATE DATABASE {name} failed on {}: {e}",
                        info.description
                    )))
                }
            }
        }
        let mut config = admin.clone();
        config.dbname(&name);
        Ok(Self {
            name,
            admin: admin.clone(),
            config,
            info: info.clone(),
            dropped: !drop_on_drop,
        })
    }

    /// The database name (`aepg_<label>_<pid>_<n>_<nonce>`, at most 63 bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for this database (superuser of the test server;
    /// no TLS).
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// The same settings as a libpq `key=value` connection string (includes
    /// the password, if any).
    pub fn connection_string(&self) -> String {
        pg_config::connection_string(&self.config)
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
        pg_config::connect(&self.config).await
    }

    /// Facts about the server this database lives on.
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Shorthand for `self.server().backend`.
    pub fn backend(&self) -> BackendKind {
        self.info.backend
    }

    /// Shorthand for `self.server().version_num`.
    pub fn server_version_num(&self) -> i32 {
        self.info.version_num
    }

    /// Drops the database now, reporting errors (instead of the best-effort
    /// drop on `Drop`). Open connections to it are terminated.
    pub async fn drop_database(mut self) -> Result<()> {
        self.dropped = true;
        drop_database(self.admin.clone(), self.name.clone(), self.info.version_num).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped || env_vars::flag(env_vars::KEEP_DATABASES) {
            return;
        }
        let future = drop_database(self.admin.clone(), self.name.clone(), self.info.version_num);
        match runtime::run_blocking(future, Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => log(format!("warning: {e}")),
        }
    }
}

async fn drop_database(admin: Config, name: String, version_num: i32) -> Result<()> {
    let client = pg_config::connect(&admin).await?;
    let ident = quote_ident(&name);
    let result = if version_num >= 130_000 {
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)"))
            .await
    } else {
        let terminate = client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await;
        match terminate {
            Ok(_) => {
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {ident}"))
                    .await
            }
            Err(e) => Err(e),
        }
    };
    result.map_err(|e| HarnessError::failed(format!("cannot drop test database {name}: {e}")))
}

/// `aepg_<label>_<pid>_<counter>_<nonce>`: unique within the process (counter)
/// and across processes sharing a server (pid + time-based nonce).
fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0)
        % 1_000_000;
    let mut clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let suffix = format!("_{}_{n}_{nonce}", std::process::id());
    clean.truncate(63 - "aepg_".len() - suffix.len());
    format!("aepg_{clean}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn names_are_unique_and_short() {
        let a = unique_name("Some Test/Name with a really very long label that goes on and on");
        let b = unique_name("Some Test/Name with a really very long label that goes on and on");
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(a.starts_with("aepg_some_test_name_"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
