//! Small helpers around `tokio_postgres::Config`.

use std::time::{Duration, Instant};

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};
use crate::log::log;

/// Renders `config` as a libpq `key=value` connection string.
pub(crate) fn connection_string(config: &Config) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |key: &str, value: &str| parts.push(format!("{key}={}", quote(value)));
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.to_string_lossy().into_owned(),
        })
        .collect();
    if !hosts.is_empty() {
        push("host", &hosts.join(","));
    }
    let addrs: Vec<String> = config
        .get_hostaddrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    if !addrs.is_empty() {
        push("hostaddr", &addrs.join(","));
    }
    let ports: Vec<String> = config.get_ports().iter().map(|p| p.to_string()).collect();
    if !ports.is_empty() {
        push("port", &ports.join(","));
    }
    if let Some(user) = config.get_user() {
        push("user", user);
    }
    if let Some(password) = config.get_password() {
        push("password", &String::from_utf8_lossy(password));
    }
    if let Some(dbname) = config.get_dbname() {
        push("dbname", dbname);
    }
    if let Some(options) = config.get_options() {
        push("options", options);
    }
    if let Some(name) = config.get_application_name() {
        push("application_name", name);
    }
    match config.get_ssl_mode() {
        SslMode::Disable => push("sslmode", "disable"),
        SslMode::Require => push("sslmode", "require"),
        _ => {}
    }
    if let Some(timeout) = config.get_connect_timeout() {
        push("connect_timeout", &timeout.as_secs().max(1).to_string());
    }
    parts.join(" ")
}

/// Quotes a libpq connection-string value when needed.
fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\', '=']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Connects without TLS and spawns the connection task on the current Tokio
/// runtime. Connection errors are logged, except the "terminating connection
/// due to administrator command" that dropping a database causes.
pub(crate) async fn connect(config: &Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| Error::failed(format!("cannot connect ({}): {e}", describe(config))))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            let admin_shutdown = e
                .as_db_error()
                .is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::ADMIN_SHUTDOWN);
            if !admin_shutdown {
                log(format!("connection error: {e}"));
            }
        }
    });
    Ok(client)
}

/// Connects, retrying for up to `timeout` (a server that just said "ready"
/// may not accept connections on the mapped port for a moment).
pub(crate) async fn connect_with_retry(config: &Config, timeout: Duration) -> Result<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        match connect(config).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `host:port/dbname` without the password, for messages.
pub(crate) fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.to_string_lossy().into_owned(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("?");
    format!("{host}:{port}/{db}")
}

/// `server_version_num` and `server_version` of the server `client` is on.
pub(crate) async fn server_version(client: &Client) -> Result<(i32, String)> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num'), current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| Error::failed(format!("cannot query the server version: {e}")))?;
    let num: String = row.get(0);
    let text: String = row.get(1);
    let num = num
        .parse()
        .map_err(|e| Error::failed(format!("odd server_version_num {num:?}: {e}")))?;
    Ok((num, text))
}

/// Quotes an SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_connection_strings() {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(5433)
            .user("postgres")
            .password("p w'd")
            .dbname("db");
        assert_eq!(
            connection_string(&config),
            r"host=127.0.0.1 port=5433 user=postgres password='p w\'d' dbname=db"
        );
        let parsed: std::result::Result<Config, _> = connection_string(&config).parse();
        assert!(parsed.is_ok_and(|c| c.get_password() == Some(&b"p w'd"[..])));
    }
}
