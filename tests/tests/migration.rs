//! Encrypting a plaintext column in place, and decrypting it back, while
//! applications keep reading and writing it: through aepg, and (until the
//! swap) through plain clients. Afterwards every row holds what its last
//! writer wrote, no read failed and no equality lookup missed.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::migration::{MigrationError, MigrationOptions, MigrationStage};
use aepg::{ColumnName, Error};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::workload::{aepg_writer, check_rows, people, plain_writer, reader, ROWS};

fn options() -> MigrationOptions {
    MigrationOptions::default()
        .batch_size(1_000)
        .grace(Duration::from_millis(300))
}

async fn column_type(db: &EncryptedDatabase) -> String {
    db.plain
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'people'::regclass AND attname = 'ssn'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_is_encrypted_in_place_under_load_and_decrypted_back() {
    let db = EncryptedDatabase::new("migration").await;
    db.setting("ssn", "text", Deterministic).await;
    let ledger = people(&db.plain).await;
    let column = ColumnName::new("public", "people", "ssn");

    let stop_all = Arc::new(AtomicBool::new(false));
    let stop_plain = Arc::new(AtomicBool::new(false));
    let tasks = vec![
        aepg_writer(db.client().await, ledger.clone(), stop_all.clone()),
        reader(db.client().await, ledger.clone(), stop_all.clone()),
        plain_writer(
            db.database.connect().await,
            ledger.clone(),
            stop_plain.clone(),
        ),
    ];
    let mut stages = Vec::new();
    let report = {
        let stop_plain = stop_plain.clone();
        let mut progress = |progress: &aepg::migration::MigrationProgress| {
            // Plain clients must stop before the swap: afterwards the
            // column takes only cells.
            if progress.stage == MigrationStage::Grace {
                stop_plain.store(true, Ordering::SeqCst);
            }
            if stages.last() != Some(&progress.stage) {
                stages.push(progress.stage);
            }
        };
        db.admin
            .encrypt_column(
                &mut *db.admin_connection().await,
                &column,
                "ssn",
                &options(),
                &mut progress,
            )
            .await
            .unwrap()
    };
    stop_plain.store(true, Ordering::SeqCst);
    assert!(
        report.rows_converted >= u64::try_from(ROWS - ROWS / 97).unwrap(),
        "{report:?}"
    );
    assert!(!report.resumed && !report.already_done);
    assert_eq!(
        stages,
        [
            MigrationStage::Backfill,
            MigrationStage::CatchUp,
            MigrationStage::Grace,
            MigrationStage::Swap
        ]
    );
    assert_eq!(column_type(&db).await, "aepg.ciphertext");
    // The server holds cells only: no plaintext of any row is left in it.
    let plaintexts: i64 = db
        .plain
        .query_one(
            "SELECT count(*) FROM people
             WHERE position('ssn-'::bytea in ssn) > 0 OR position('upd-'::bytea in ssn) > 0
                OR position('plain-'::bytea in ssn) > 0 OR position('new-'::bytea in ssn) > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plaintexts, 0);
    // Writes go on after the swap, encrypted.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = db
        .admin
        .decrypt_column(
            &mut *db.admin_connection().await,
            &column,
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(report.rows_converted > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_all.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(column_type(&db).await, "text");
    ledger.assert_clean();
    check_rows(&db.client().await, &ledger).await;
    // The shadow column, its trigger and function, and the work state are gone.
    let leftovers: i64 = db
        .plain
        .query_one(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'people'::regclass
                       AND attname LIKE 'aepg%' AND NOT attisdropped)
                  + (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass)
                  + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'migrate%')
                  + (SELECT count(*) FROM aepg.column_migrations)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn a_migrated_column_is_signed_and_a_second_run_does_nothing() {
    let db = EncryptedDatabase::new("migration_idempotent").await;
    db.setting("ssn", "text", Deterministic).await;
    db.plain
        .batch_execute(
            "CREATE TABLE people (id int, ssn text);
             INSERT INTO people VALUES (1, 'a'), (2, NULL), (3, 'c');",
        )
        .await
        .unwrap();
    let column = ColumnName::new("public", "people", "ssn");
    let mut admin = db.admin_connection().await;
    let first = db
        .admin
        .encrypt_column(&mut admin, &column, "ssn", &options(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(first.rows_converted, 2);
    let again = db
        .admin
        .encrypt_column(&mut admin, &column, "ssn", &options(), &mut |_| {})
        .await
        .unwrap();
    assert!(again.already_done);
    let catalog = db.admin.load(&*admin).await.unwrap();
    assert!(catalog.column(&column).unwrap().setting_id().is_some());
    assert!(catalog
        .manifests()
        .iter()
        .all(|manifest| manifest.columns.contains_key(&column)));
    drop(admin);
    let client = db.client().await;
    let row = client
        .query_one("SELECT ssn FROM people WHERE ssn = $1", &[&"c"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "c");
}

#[tokio::test]
async fn columns_that_cannot_be_migrated_are_refused_before_anything_changes() {
    let db = EncryptedDatabase::new("migration_refusals").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("note", "text", Randomized).await;
    db.setting("short", "varchar(8)", Deterministic).await;
    db.plain
        .batch_execute(
            "CREATE TABLE t (id int, ssn text, note text UNIQUE, n int4, d text DEFAULT 'x', c text CHECK (length(c) < 10));
             CREATE VIEW v AS SELECT id, ssn FROM t;
             INSERT INTO t (id, ssn, note) VALUES (1, 'a', 'b');",
        )
        .await
        .unwrap();
    let mut admin = db.admin_connection().await;
    let cases: [(&str, &str, &str); 6] = [
        ("ssn", "ssn", "view v"),
        ("note", "note", "randomized"),
        ("n", "ssn", "integer"),
        ("d", "ssn", "default"),
        ("c", "ssn", "constraint"),
        ("id", "short", "character varying(8)"),
    ];
    for (column, setting, needle) in cases {
        let column = ColumnName::new("public", "t", column);
        let error = db
            .admin
            .encrypt_column(&mut admin, &column, setting, &options(), &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Migration(_)), "{error}");
        let message = error.to_string();
        assert!(message.contains(&column.to_string()), "{message}");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // Nothing was added to the table or recorded.
    let columns: i64 = db
        .plain
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 6);
    let migrations: i64 = db
        .plain
        .query_one("SELECT count(*) FROM aepg.column_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(migrations, 0);
}

#[tokio::test]
async fn a_cell_that_does_not_decrypt_stops_the_decryption_and_changes_nothing() {
    let db = EncryptedDatabase::new("migration_bad_cell").await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    let client = db.client().await;
    for id in 1..=50 {
        client
            .execute(
                "INSERT INTO people (id, ssn) VALUES ($1, $2)",
                &[&id, &format!("s{id}")],
            )
            .await
            .unwrap();
    }
    // The DBA flips one bit of one cell.
    db.plain
        .batch_execute(
            "UPDATE people SET ssn = set_byte(ssn::bytea, 30, get_byte(ssn::bytea, 30) # 1)::aepg.ciphertext
             WHERE id = 17",
        )
        .await
        .unwrap();
    let column = ColumnName::new("public", "people", "ssn");
    let error = db
        .admin
        .decrypt_column(
            &mut *db.admin_connection().await,
            &column,
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Migration(migration) if matches!(**migration, MigrationError::Cell { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("public.people.ssn"), "{error}");
    // The column is still encrypted and whole but for that cell; the
    // repaired row lets a re-run finish.
    assert_eq!(
        client
            .query_one("SELECT ssn FROM people WHERE id = 16", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "s16"
    );
    client
        .execute("UPDATE people SET ssn = $1 WHERE id = 17", &[&"s17"])
        .await
        .unwrap();
    let report = db
        .admin
        .decrypt_column(
            &mut *db.admin_connection().await,
            &column,
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(report.resumed);
    let values: Vec<String> = db
        .plain
        .query("SELECT ssn FROM people ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        values,
        (1..=50).map(|id| format!("s{id}")).collect::<Vec<_>>()
    );
}
