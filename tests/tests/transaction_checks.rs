//! Inside a transaction, where catalog announcements do not arrive, a
//! statement that sends plaintext is prepared again (the server types its
//! parameters against its tables as they are) once per lock scope: the
//! prepare locks the tables it names until the transaction ends, so no
//! other session can turn one of their columns into an encrypted one in
//! between. What ends a scope (the transaction's end, a savepoint rolled
//! back, a statement of the session that may change tables) prepares it
//! again; and another session's change of such a column waits for the
//! transaction, then is seen.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::Duration;

use aepg::cell::EncryptionMode::Deterministic;
use aepg::ColumnName;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::{DedicatedServer, WireTap};

/// The statement the tests run: plaintext parameters only.
const INSERT: &str = "INSERT INTO people (id, email) VALUES ($1, $2)";

/// A server that logs every protocol step, and a database on it with
/// `people (id int, email text)` (plaintext) and an `email` setting.
async fn logged_people(label: &str) -> (DedicatedServer, EncryptedDatabase) {
    let server = DedicatedServer::start(&[("log_min_duration_statement", "0")])
        .await
        .unwrap();
    let db = EncryptedDatabase::on(server.create_database(label).await.unwrap()).await;
    db.setting("email", "text", Deterministic).await;
    db.table("CREATE TABLE people (id int, email text)", &[])
        .await;
    (server, db)
}

/// How often the server parsed [`INSERT`] between `SELECT '<marker>-start'`
/// and `SELECT '<marker>-end'`.
fn insert_parses(log: &str, marker: &str) -> usize {
    let (start, end) = (format!("'{marker}-start'"), format!("'{marker}-end'"));
    log.lines()
        .skip_while(|line| !line.contains(&start))
        .take_while(|line| !line.contains(&end))
        .filter(|line| line.contains("parse") && line.contains(INSERT))
        .count()
}

#[tokio::test]
async fn a_statement_is_checked_once_per_lock_scope() {
    let (server, db) = logged_people("tx_scope").await;
    let mut client = db.client().await;
    client.execute(INSERT, &[&0, &"warm"]).await.unwrap();
    let mark = |marker: String| {
        let plain = &db.plain;
        async move {
            plain
                .batch_execute(&format!("SELECT '{marker}'"))
                .await
                .unwrap()
        }
    };

    mark("runs-start".into()).await;
    let tx = client.transaction().await.unwrap();
    for id in 1..=5 {
        tx.execute(INSERT, &[&id, &"in a transaction"])
            .await
            .unwrap();
    }
    mark("runs-end".into()).await;

    mark("ddl-start".into()).await;
    tx.batch_execute("CREATE TABLE other (x int)")
        .await
        .unwrap();
    tx.execute(INSERT, &[&6, &"after DDL"]).await.unwrap();
    tx.execute(INSERT, &[&7, &"after DDL"]).await.unwrap();
    mark("ddl-end".into()).await;

    mark("savepoint-start".into()).await;
    let mut tx = tx;
    {
        let nested = tx.transaction().await.unwrap();
        nested.execute(INSERT, &[&8, &"rolled back"]).await.unwrap();
        nested.rollback().await.unwrap();
    }
    tx.execute(INSERT, &[&9, &"after a savepoint rolled back"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    mark("savepoint-end".into()).await;

    mark("next-start".into()).await;
    let tx = client.transaction().await.unwrap();
    tx.execute(INSERT, &[&10, &"next transaction"])
        .await
        .unwrap();
    tx.execute(INSERT, &[&11, &"next transaction"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    mark("next-end".into()).await;

    let log = server.server_log().await.unwrap();
    assert_eq!(insert_parses(&log, "runs"), 1, "five runs, one scope");
    assert_eq!(insert_parses(&log, "ddl"), 1, "a new scope after DDL");
    // The savepoint's own scope is the transaction's; its rollback ends it.
    assert_eq!(
        insert_parses(&log, "savepoint"),
        1,
        "a new scope after the savepoint rolled back"
    );
    assert_eq!(insert_parses(&log, "next"), 1, "a new transaction");
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 11, "every insert but the rolled back one");
}

/// What the once-per-scope check rests on: a column a transaction's checked
/// statement names cannot be retyped by another session until the
/// transaction ends; once it is, and assigned, the next transaction's first
/// run of the statement sees it, and no plaintext goes out.
#[tokio::test]
async fn another_session_cannot_encrypt_a_column_under_a_checked_statement() {
    let db = EncryptedDatabase::new("tx_scope_lock").await;
    db.setting("email", "text", Deterministic).await;
    db.table("CREATE TABLE people (id int, email text)", &[])
        .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let mut client = db.client_at(&routed, db.encryption_with(|c| c)).await;
    client.execute(INSERT, &[&0, &"warm"]).await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute(INSERT, &[&1, &"checked"]).await.unwrap();
    let retype = "SET lock_timeout = '300ms'; \
                  ALTER TABLE people ALTER COLUMN email TYPE aepg.ciphertext USING NULL";
    let refused = db.plain.batch_execute(retype).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&aepg::tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{refused}"
    );
    // Unchecked again, the statement still stores into a plaintext column.
    tx.execute(INSERT, &[&2, &"still plaintext"]).await.unwrap();
    tx.commit().await.unwrap();

    db.plain
        .batch_execute(
            "RESET lock_timeout; DELETE FROM people; \
             ALTER TABLE people ALTER COLUMN email TYPE aepg.ciphertext USING NULL",
        )
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("public", "people", "email"),
            "email",
        )
        .await
        .unwrap();
    // Announced, but a transaction hears nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tx = client.transaction().await.unwrap();
    let secret = "SECRET-after-the-change@example.org";
    let outcome = tx.execute(INSERT, &[&3, &secret]).await;
    assert!(!tap.saw(secret.as_bytes()), "{outcome:?}");
    outcome.unwrap();
    tx.commit().await.unwrap();
    let rows = client
        .query("SELECT id FROM people WHERE email = $1", &[&secret])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "stored encrypted, found by equality");
}
