//! Faults a test inflicts on its server.

use tokio_postgres::Config;

/// Crash-restarts the server of `database`: a backend killed with SIGKILL
/// makes the postmaster end every session and replay the WAL (a
/// superuser's `COPY TO PROGRAM` runs the kill on the server's machine).
/// Returns whether the kill was sent. Use a
/// [`DedicatedServer`](crate::DedicatedServer): every session of the
/// server ends.
pub async fn crash_restart(database: &Config) -> bool {
    let (Some(victim), Some(killer)) = (plain(database).await, plain(database).await) else {
        return false;
    };
    let Ok(row) = victim.query_one("SELECT pg_backend_pid()", &[]).await else {
        return false;
    };
    let pid: i32 = row.get(0);
    let _ = killer
        .batch_execute(&format!("COPY (SELECT 1) TO PROGRAM 'kill -9 {pid}'"))
        .await;
    true
}

/// A plain connection to `database`, if the server takes one now.
pub async fn plain(database: &Config) -> Option<tokio_postgres::Client> {
    let (client, connection) = database.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    Some(client)
}
