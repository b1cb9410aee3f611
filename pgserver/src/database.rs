//! Uniquely named databases on a server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use crate::error::{Error, Result};
use crate::pg_config::{self, quote_ident};
use crate::runtime;
use crate::server::ServerInfo;

/// A freshly created, uniquely named database on a server, made by
/// [`Server::create_database`](crate::Server::create_database).
///
/// It is not dropped when this value is: on a throwaway server it goes
/// with the server; elsewhere call [`Database::drop_database`] (or
/// [`Database::drop_database_blocking`] from `Drop`).
#[derive(Debug)]
pub struct Database {
    name: String,
    admin: Config,
    config: Config,
    info: ServerInfo,
}

impl Database {
    /// Creates a database through the superuser connection settings `admin`.
    pub(crate) async fn create(admin: &Config, info: &ServerInfo, label: &str) -> Result<Self> {
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
                    return Err(Error::failed(format!(
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
        })
    }

    /// The database name (`aepg_<label>_<pid>_<n>_<nonce>`, at most 63 bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for this database (superuser of the server; no
    /// TLS).
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
    pub async fn connect(&self) -> Result<Client> {
        pg_config::connect(&self.config).await
    }

    /// Facts about the server this database lives on.
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Drops the database (`DROP DATABASE ... WITH (FORCE)`; open
    /// connections to it are terminated). Dropping it twice is harmless.
    pub async fn drop_database(&self) -> Result<()> {
        drop_database(self.admin.clone(), self.name.clone(), self.info.version_num).await
    }

    /// Like [`Database::drop_database`], blocking the calling thread for up
    /// to `timeout`. Usable from `Drop`, inside or outside a Tokio runtime
    /// (it runs on this crate's own runtime, never on the caller's).
    pub fn drop_database_blocking(&self, timeout: Duration) -> Result<()> {
        let future = drop_database(self.admin.clone(), self.name.clone(), self.info.version_num);
        runtime::run_blocking(future, timeout)?
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
    result.map_err(|e| Error::failed(format!("cannot drop test database {name}: {e}")))
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
