//! Encrypting a plaintext column in place, and decrypting it back, while
//! applications keep reading and writing it: through aepg, and (until the
//! swap) through plain clients. Afterwards every row holds what its last
//! writer wrote, no read failed and no equality lookup missed.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepg::catalog::CatalogError;
use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::migration::{MigrationError, MigrationOptions, MigrationProgress, MigrationStage};
use aepg::{ColumnName, Error};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::workload::{aepg_writer, check_rows, people, plain_writer, reader, ssn_type, ROWS};

fn options() -> MigrationOptions {
    MigrationOptions::default()
        .batch_size(1_000)
        .grace(Duration::from_millis(300))
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
    assert_eq!(ssn_type(&db.plain).await, "aepg.ciphertext");
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
    assert_eq!(ssn_type(&db.plain).await, "text");
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
    db.plain
        .batch_execute(
            "ALTER TABLE t ADD COLUMN k int4 GENERATED ALWAYS AS IDENTITY,
                           ADD COLUMN cs text COLLATE \"C\";",
        )
        .await
        .unwrap();
    let cases: [(&str, &str, &str); 8] = [
        ("ssn", "ssn", "view v"),
        ("note", "note", "randomized"),
        ("n", "ssn", "integer"),
        ("d", "ssn", "default"),
        ("c", "ssn", "constraint"),
        ("id", "short", "character varying(8)"),
        ("cs", "ssn", "collation"),
        ("k", "ssn", "integer"),
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
    assert_eq!(columns, 8);
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

/// Runs `encrypt_column` on a connection of its own and drops it after the
/// first batch: a run that died.
async fn interrupted_encryption(db: &EncryptedDatabase, column: &ColumnName, setting: &str) {
    let mut connection = db.database.connect().await;
    let (first_batch, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut first_batch = Some(first_batch);
    let mut progress = |_: &MigrationProgress| {
        if let Some(signal) = first_batch.take() {
            let _ = signal.send(());
        }
    };
    let options = options().batch_size(200);
    tokio::select! {
        outcome = db.admin.encrypt_column(&mut connection, column, setting, &options, &mut progress) => {
            panic!("finished before it could be stopped: {outcome:?}")
        }
        _ = stopped => {}
    }
    drop(connection);
    // The server rolls the open batch back when it notices the session gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_dba_who_alters_a_stopped_migration_gains_nothing() {
    let db = EncryptedDatabase::new("migration_tampered").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("other", "text", Randomized).await;
    let ledger = people(&db.plain).await;
    let column = ColumnName::new("public", "people", "ssn");
    interrupted_encryption(&db, &column, "ssn").await;

    // Another setting in the work state: the re-run refuses to resume it.
    db.plain
        .batch_execute(
            "UPDATE aepg.column_migrations SET setting_id = (SELECT id FROM aepg.encryption_settings WHERE name = 'other')",
        )
        .await
        .unwrap();
    let error = db
        .admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &column,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Migration(migration) if matches!(**migration, MigrationError::Conflict { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("public.people.ssn"), "{error}");

    // The walk said to be over: the catch-up passes, which scan the whole
    // table, still convert every row.
    db.plain
        .batch_execute(
            "UPDATE aepg.column_migrations
                SET setting_id = (SELECT id FROM aepg.encryption_settings WHERE name = 'ssn'),
                    next_block = end_block;",
        )
        .await
        .unwrap();
    let report = db
        .admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &column,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert!(report.resumed);
    check_rows(&db.client().await, &ledger).await;
}

#[tokio::test]
async fn a_forged_swap_makes_clients_wait_and_refuse_but_never_send_plaintext() {
    let db = EncryptedDatabase::new("migration_forged").await;
    db.plain
        .batch_execute(
            "CREATE TABLE people (id int, ssn text);
             INSERT INTO aepg.column_migrations
                 (schema_name, table_name, column_name, direction, setting_id, shadow_name, phase)
             VALUES ('public', 'people', 'ssn', 'encrypt', 1, 'x', 'swapping');",
        )
        .await
        .unwrap();
    let tap = aepg_tests::WireTap::start(&db.database.config()).await;
    let client = db
        .client_at(
            &tap.route(&db.database.config()),
            db.encryption_with(|config| config.migration_swap_wait(Duration::from_millis(600))),
        )
        .await;
    let started = std::time::Instant::now();
    let error = client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&1, &"forged-swap-secret"],
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        matches!(&error, Error::Catalog(CatalogError::Swapping { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("public.people"), "{error}");
    assert!(!tap.saw(b"forged-swap-secret"));
    // Statements on other tables are not held up.
    client.query("SELECT 1", &[]).await.unwrap();
    // Inside a transaction block the statement is refused at once: waiting
    // would hold locks a swap needs.
    let mut client = client;
    let transaction = client.transaction().await.unwrap();
    let started = std::time::Instant::now();
    transaction
        .query("SELECT ssn FROM people", &[])
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crash_in_the_middle_of_a_migration_loses_nothing() {
    let server = aepg_tests::DedicatedServer::start(&[]).await.unwrap();
    let db = EncryptedDatabase::on(server.create_database("migration_crash").await.unwrap()).await;
    db.setting("ssn", "text", Deterministic).await;
    let ledger = people(&db.plain).await;
    let column = ColumnName::new("public", "people", "ssn");
    let config = db.database.config();
    let mut connection = db.database.connect().await;
    let mut crash = None;
    let outcome = {
        let config = config.clone();
        let mut progress = |_: &MigrationProgress| {
            if crash.is_none() {
                let config = config.clone();
                crash = Some(tokio::spawn(async move {
                    aepg_tests::faults::crash_restart(&config).await
                }));
            }
        };
        db.admin
            .encrypt_column(
                &mut connection,
                &column,
                "ssn",
                &options().batch_size(100),
                &mut progress,
            )
            .await
    };
    assert!(crash.unwrap().await.unwrap(), "the crash was not sent");
    let error = outcome.unwrap_err();
    assert!(matches!(error, Error::Database(_)), "{error}");
    // Back after recovery: the same call finishes the migration.
    let mut connection = loop {
        if let Some(connection) = aepg_tests::faults::plain(&config).await {
            if connection.simple_query("SELECT 1").await.is_ok() {
                break connection;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let report = db
        .admin
        .encrypt_column(&mut connection, &column, "ssn", &options(), &mut |_| {})
        .await
        .unwrap();
    assert!(report.resumed);
    check_rows(&db.client().await, &ledger).await;
}

#[tokio::test]
async fn tables_whose_triggers_or_row_type_could_defeat_a_migration_are_refused() {
    let db = EncryptedDatabase::new("migration_refused_tables").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("id", "int4", Deterministic).await;
    db.plain
        .batch_execute(
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, ssn text);
             CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
             CREATE TRIGGER zzzz_late BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION late();
             CREATE TABLE r (ssn text);
             CREATE TABLE uses_r (x r);",
        )
        .await
        .unwrap();
    let mut admin = db.admin_connection().await;
    for (column, setting, needle) in [
        (ColumnName::new("public", "t", "ssn"), "ssn", "zzzz_late"),
        (ColumnName::new("public", "t", "id"), "id", "identity"),
        (ColumnName::new("public", "r", "ssn"), "ssn", "uses_r.x"),
    ] {
        let error = db
            .admin
            .encrypt_column(&mut admin, &column, setting, &options(), &mut |_| {})
            .await
            .unwrap_err();
        assert!(error.to_string().contains(needle), "{needle}: {error}");
    }
}

#[tokio::test]
async fn array_values_are_encrypted_and_decrypted_in_place() {
    let db = EncryptedDatabase::new("migration_arrays").await;
    db.setting("scores", "int4[]", Randomized).await;
    db.plain
        .batch_execute(
            "CREATE TABLE t (id int, scores int4[]);
             INSERT INTO t SELECT i, ARRAY[i, NULL, -i] FROM generate_series(1, 300) i;
             INSERT INTO t VALUES (0, NULL), (-1, '{}');",
        )
        .await
        .unwrap();
    let before: Vec<tokio_postgres::Row> = db
        .plain
        .query("SELECT id, scores FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let column = ColumnName::new("public", "t", "scores");
    let mut admin = db.admin_connection().await;
    db.admin
        .encrypt_column(&mut admin, &column, "scores", &options(), &mut |_| {})
        .await
        .unwrap();
    let client = db.client().await;
    let row = client
        .query_one("SELECT scores FROM t WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Vec<Option<i32>>>(0),
        vec![Some(7), None, Some(-7)]
    );
    db.admin
        .decrypt_column(&mut admin, &column, &options(), &mut |_| {})
        .await
        .unwrap();
    let after = db
        .plain
        .query("SELECT id, scores FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let values = |rows: &[tokio_postgres::Row]| -> Vec<(i32, Option<Vec<Option<i32>>>)> {
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    };
    assert_eq!(values(&after), values(&before));
}

#[tokio::test]
async fn a_disabled_trigger_stops_the_swap_and_an_abort_restores_the_column() {
    let db = EncryptedDatabase::new("migration_abort").await;
    db.setting("ssn", "text", Deterministic).await;
    let ledger = people(&db.plain).await;
    let column = ColumnName::new("public", "people", "ssn");
    interrupted_encryption(&db, &column, "ssn").await;
    // The DBA turns the trigger off: writes from now on go unseen.
    db.plain
        .batch_execute("ALTER TABLE people DISABLE TRIGGER zzz_aepg_migrate_3")
        .await
        .unwrap();
    let error = db
        .admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &column,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Migration(migration) if matches!(**migration, MigrationError::Damaged { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("abort"), "{error}");
    assert!(db
        .admin
        .abort_migration(&mut *db.admin_connection().await, &column, &options())
        .await
        .unwrap());
    let leftovers: i64 = db
        .plain
        .query_one(
            "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'people'::regclass
                       AND attname LIKE 'aepg%' AND NOT attisdropped)
                  + (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass)
                  + (SELECT count(*) FROM aepg.column_migrations)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    assert_eq!(ssn_type(&db.plain).await, "text");
    // Started again, it finishes.
    db.admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &column,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap();
    check_rows(&db.client().await, &ledger).await;
}
