//! Rotating a setting's column key (`CatalogAdmin::start_key_rotation`,
//! `key_rotation_status`, `complete_key_rotation`) while applications
//! write, look rows up by a deterministic column, join two columns of the
//! setting and run into its `UNIQUE` index: no row lost, no lookup or join
//! missed, no duplicate let through; afterwards every cell is under the
//! new key and the old key is gone. Then what a DBA without the master key
//! can do to a rotation.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepg::catalog::{CatalogError, CatalogObject};
use aepg::cell::EncryptionMode::Deterministic;
use aepg::migration::{KeyRotationReport, MigrationOptions};
use aepg::{ColumnName, Error};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::workload::{aepg_writer, check_rows, people, reader, Ledger};

/// Contacts whose `ssn` is under the same setting as `people.ssn`: the
/// stable people's, so a join of the two matches one row per person.
const CONTACTS: i32 = 200;

fn options() -> MigrationOptions {
    MigrationOptions::default()
        .grace(Duration::from_millis(300))
        .batch_size(2_000)
}

/// The fixture's database: `people.ssn` encrypted in place under setting
/// `ssn` (deterministic, `UNIQUE`), and `contacts.ssn` assigned to it too.
async fn database(label: &str) -> (EncryptedDatabase, Arc<Ledger>) {
    let db = EncryptedDatabase::new(label).await;
    db.setting("ssn", "text", Deterministic).await;
    let ledger = people(&db.plain).await;
    db.admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("public", "people", "ssn"),
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap();
    // Two columns of one table under the setting: their migrations'
    // triggers live side by side.
    db.table(
        "CREATE TABLE contacts (id int PRIMARY KEY, ssn aepg.ciphertext, old_ssn aepg.ciphertext)",
        &[("contacts", "ssn", "ssn"), ("contacts", "old_ssn", "ssn")],
    )
    .await;
    let client = db.client().await;
    for id in 1..=CONTACTS {
        client
            .execute(
                "INSERT INTO contacts (id, ssn, old_ssn) VALUES ($1, $2, $2)",
                &[&id, &format!("ssn-{id}")],
            )
            .await
            .unwrap();
    }
    (db, ledger)
}

async fn start(db: &EncryptedDatabase) -> Result<KeyRotationReport, Error> {
    db.admin
        .start_key_rotation(
            &mut *db.admin_connection().await,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
}

async fn complete(db: &EncryptedDatabase) -> Result<KeyRotationReport, Error> {
    db.admin
        .complete_key_rotation(
            &mut *db.admin_connection().await,
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
}

async fn count(db: &EncryptedDatabase, sql: &str) -> i64 {
    db.plain.query_one(sql, &[]).await.unwrap().get(0)
}

/// Cells of `table.column` that do not name column key `key_id`.
async fn cells_not_under(db: &EncryptedDatabase, table: &str, key_id: u32) -> i64 {
    let (table, column) = table.split_once('.').unwrap_or((table, "ssn"));
    db.plain
        .query_one(
            &format!(
                "SELECT count(*) FROM {table}
                 WHERE {column} IS NOT NULL AND substring({column}::bytea FROM 3 FOR 4) <> $1"
            ),
            &[&key_id.to_be_bytes().to_vec()],
        )
        .await
        .unwrap()
        .get(0)
}

/// Through aepg, until `stop`: a join of the setting's two columns, an
/// `IN` lookup, an `= ANY` lookup, and an insert of a duplicate `ssn` that
/// the `UNIQUE` index must refuse. Any other outcome is a miss.
fn equality_checker(
    client: aepg::Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    duplicates_refused: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n: i32 = 0;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            if n > 1 && !ledger.failures.lock().unwrap().is_empty() {
                // Something failed: yield (a closed connection fails at
                // once), so a test that failed can stop this task.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ledger.reads.fetch_add(1, Ordering::SeqCst);
            let joined = client
                .query_one(
                    "SELECT count(*) FROM people p JOIN contacts c ON p.ssn = c.ssn",
                    &[],
                )
                .await
                .map(|row| row.get::<_, i64>(0));
            // Every contact but the ids people keep NULL (every 97th).
            let expected = i64::from(CONTACTS - CONTACTS / 97);
            match joined {
                Ok(found) if found == expected => {}
                Ok(found) => ledger.miss(format!("join: {found} rows, not {expected}")),
                Err(error) => ledger.read_failed(format!("join: {error}")),
            }
            let (a, b) = (1 + n % 90, 101 + n % 90);
            let wanted = [format!("ssn-{a}"), format!("ssn-{b}")];
            let listed = client
                .query(
                    "SELECT id FROM people WHERE ssn IN ($1, $2) ORDER BY id",
                    &[&wanted[0], &wanted[1]],
                )
                .await;
            let any = client
                .query(
                    "SELECT id FROM people WHERE ssn = ANY($1) ORDER BY id",
                    &[&wanted.to_vec()],
                )
                .await;
            for (what, result) in [("IN", listed), ("= ANY", any)] {
                match result {
                    Ok(rows) => {
                        let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
                        let expected: Vec<i32> =
                            [a, b].into_iter().filter(|id| id % 97 != 0).collect();
                        if ids != expected {
                            ledger.miss(format!("{what}: {ids:?}, not {expected:?}"));
                        }
                    }
                    Err(error) => ledger.read_failed(format!("{what}: {error}")),
                }
            }
            let duplicate = client
                .execute(
                    "INSERT INTO people (id, name, ssn) VALUES ($1, 'duplicate', $2)",
                    &[&(-n), &format!("ssn-{}", 1 + n % 50)],
                )
                .await;
            match duplicate {
                Err(Error::Database(error))
                    if error.as_db_error().map(|db| db.code())
                        == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    duplicates_refused.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => ledger.miss(format!("a duplicate of ssn-{} was let in", 1 + n % 50)),
                Err(error) => ledger.read_failed(format!("duplicate insert: {error}")),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_key_is_rotated_under_load_and_equality_never_misses() {
    let (db, ledger) = database("cek_rotation").await;
    let old_key = db.key_id;

    let stop = Arc::new(AtomicBool::new(false));
    let duplicates_refused = Arc::new(AtomicU64::new(0));
    let tasks = [
        aepg_writer(db.client().await, ledger.clone(), stop.clone()),
        reader(db.client().await, ledger.clone(), stop.clone()),
        equality_checker(
            db.client().await,
            ledger.clone(),
            stop.clone(),
            duplicates_refused.clone(),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = start(&db).await.unwrap();
    assert!(started.began);
    assert_eq!(started.from_key, old_key);
    assert_ne!(started.to_key, old_key);
    assert_eq!(started.generation, None);
    assert_eq!(
        started.columns,
        vec![
            ColumnName::new("public", "contacts", "old_ssn"),
            ColumnName::new("public", "contacts", "ssn"),
            ColumnName::new("public", "people", "ssn"),
        ]
    );
    assert!(started.rows_converted > 19_000, "{started:?}");
    // Until the swap, applications write under the old key.
    assert_eq!(cells_not_under(&db, "people", old_key).await, 0);

    let status = db
        .admin
        .key_rotation_status(&*db.admin_connection().await, "ssn")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.to_key, started.to_key);
    assert_eq!(status.columns.len(), 3);
    assert!(status
        .columns
        .iter()
        .all(|column| column.phase == "backfill"));

    // Re-running start goes on with the same new key.
    let again = start(&db).await.unwrap();
    assert!(!again.began);
    assert_eq!(again.to_key, started.to_key);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let completed = complete(&db).await.unwrap();
    assert!(completed.generation.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    ledger.assert_clean();
    assert!(duplicates_refused.load(Ordering::SeqCst) > 5);
    check_rows(&db.client().await, &ledger).await;
    let new_key = completed.to_key;
    assert_eq!(cells_not_under(&db, "people", new_key).await, 0);
    assert_eq!(cells_not_under(&db, "contacts", new_key).await, 0);
    assert_eq!(cells_not_under(&db, "contacts.old_ssn", new_key).await, 0);
    for (sql, expected) in [
        // Retired: no setting names it; `cek drop` deletes it (below).
        (
            format!("SELECT count(*) FROM aepg.encryption_settings WHERE key_id = {old_key}"),
            0,
        ),
        (
            format!("SELECT count(*) FROM aepg.encryption_settings WHERE key_id = {new_key}"),
            1,
        ),
        ("SELECT count(*) FROM aepg.key_rotations".to_owned(), 0),
        ("SELECT count(*) FROM aepg.column_migrations".to_owned(), 0),
        (
            "SELECT count(*) FROM pg_attribute WHERE attname LIKE 'aepg_shadow%'".to_owned(),
            0,
        ),
    ] {
        assert_eq!(count(&db, &sql).await, expected, "{sql}");
    }
    // The unique index was rebuilt on the new cells.
    let duplicate = db
        .client()
        .await
        .execute(
            "INSERT INTO people (id, name, ssn) VALUES (-1, 'x', $1)",
            &[&"ssn-1"],
        )
        .await
        .unwrap_err();
    assert!(duplicate.to_string().contains("unique"), "{duplicate}");

    // Done: run again, complete does nothing; the old key is dropped (no
    // cell names it), the new one cannot be.
    assert_eq!(complete(&db).await.unwrap().generation, None);
    db.admin
        .drop_column_key(&mut *db.admin_connection().await, old_key)
        .await
        .unwrap();
    let refused = db
        .admin
        .drop_column_key(&mut *db.admin_connection().await, new_key)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Catalog(CatalogError::InUse {
                object: CatalogObject::ColumnKey,
                ..
            })
        ),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_dba_without_the_master_key_can_do_to_a_column_key_rotation() {
    let (db, _ledger) = database("cek_rotation_hostile").await;
    let old_key = db.key_id;
    let old_cell: Vec<u8> = db
        .plain
        .query_one("SELECT ssn::bytea FROM people WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    // A second setting's key, to steer the rotation to.
    let other_key = db
        .admin
        .create_column_key(
            &mut *db.admin_connection().await,
            aepg_tests::fixture::MASTER_KEY,
            &aepg::keystore::MasterKeyLocation::new("memory", aepg_tests::fixture::MASTER_KEY),
        )
        .await
        .unwrap();
    let other = aepg::catalog::NewEncryptionSetting::new(
        "other",
        aepg::cell::PlaintextType::parse("text").unwrap(),
        Deterministic,
        other_key,
    );
    db.admin
        .create_setting(&mut *db.admin_connection().await, &other)
        .await
        .unwrap();

    let started = start(&db).await.unwrap();

    // Neither key of a rotation can be dropped while it is under way (the
    // old one is the setting's, the new one the rotation's).
    for (key, user) in [(old_key, "setting"), (started.to_key, "rotation")] {
        let refused = db
            .admin
            .drop_column_key(&mut *db.admin_connection().await, key)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains(user), "{refused}");
    }
    // No column is encrypted under the setting meanwhile: its swap would
    // not re-encrypt it.
    db.plain
        .batch_execute(
            "CREATE TABLE late (id int PRIMARY KEY, ssn text); INSERT INTO late VALUES (1, 'x')",
        )
        .await
        .unwrap();
    let refused = db
        .admin
        .encrypt_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("public", "late", "ssn"),
            "ssn",
            &options(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Catalog(CatalogError::KeyRotation { .. })),
        "{refused}"
    );

    // The rotation steered to another key: its row's key column is only a
    // report, and its record, rewritten to name the other key, no longer
    // verifies. Refused, naming the setting.
    db.plain
        .execute(
            "UPDATE aepg.key_rotations SET to_key_id = $1",
            &[&i32::try_from(other_key).unwrap()],
        )
        .await
        .unwrap();
    let saved: Vec<u8> = db
        .plain
        .query_one("SELECT record FROM aepg.key_rotations", &[])
        .await
        .unwrap()
        .get(0);
    let mut steered = saved.clone();
    let end = steered.len();
    steered[end - 4..].copy_from_slice(&other_key.to_be_bytes());
    db.plain
        .execute("UPDATE aepg.key_rotations SET record = $1", &[&steered])
        .await
        .unwrap();
    let refused = complete(&db).await.unwrap_err().to_string();
    assert!(
        refused.contains("\"ssn\"") && refused.contains("does not verify"),
        "{refused}"
    );
    db.plain
        .execute("UPDATE aepg.key_rotations SET record = $1", &[&saved])
        .await
        .unwrap();
    // A shadow cell replaced by the row's old cell (or any other): made
    // again, so the swap never puts a cell under the old key in.
    let shadow: String = db
        .plain
        .query_one(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = 'people'::regclass AND attname LIKE 'aepg_shadow%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.plain
        .execute(
            &format!("UPDATE people SET {shadow} = ssn::bytea WHERE id = 7"),
            &[],
        )
        .await
        .unwrap();
    complete(&db).await.unwrap();
    assert_eq!(cells_not_under(&db, "people", started.to_key).await, 0);
    let client = db.client().await;
    let ssn: String = client
        .query_one("SELECT ssn FROM people WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ssn, "ssn-7");

    // The old cell put back after the rotation: refused when read, never
    // decrypted under the wrong key or shown as something else; and its
    // key, retired, is not dropped while that cell names it.
    db.plain
        .execute(
            "UPDATE people SET ssn = $1::bytea::aepg.ciphertext WHERE id = 7",
            &[&old_cell],
        )
        .await
        .unwrap();
    let refused = match client
        .query_one("SELECT ssn FROM people WHERE id = 7", &[])
        .await
    {
        Ok(row) => row.try_get::<_, String>(0).unwrap_err().to_string(),
        Err(error) => error.to_string(),
    };
    assert!(refused.contains("key"), "{refused}");
    let kept = db
        .admin
        .drop_column_key(&mut *db.admin_connection().await, old_key)
        .await
        .unwrap_err()
        .to_string();
    assert!(kept.contains("public.people.ssn"), "{kept}");

    // A column key no setting names but a cell does (a scratch copy): not
    // dropped.
    let scratch_key = db
        .admin
        .create_column_key(
            &mut *db.admin_connection().await,
            aepg_tests::fixture::MASTER_KEY,
            &aepg::keystore::MasterKeyLocation::new("memory", aepg_tests::fixture::MASTER_KEY),
        )
        .await
        .unwrap();
    let mut cell = old_cell.clone();
    cell[2..6].copy_from_slice(&scratch_key.to_be_bytes());
    db.plain
        .batch_execute("CREATE TABLE scratch (c aepg.ciphertext)")
        .await
        .unwrap();
    db.plain
        .execute(
            "INSERT INTO scratch VALUES ($1::bytea::aepg.ciphertext)",
            &[&cell],
        )
        .await
        .unwrap();
    let refused = db
        .admin
        .drop_column_key(&mut *db.admin_connection().await, scratch_key)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("scratch"), "{refused}");
    db.plain.batch_execute("DELETE FROM scratch").await.unwrap();
    db.admin
        .drop_column_key(&mut *db.admin_connection().await, scratch_key)
        .await
        .unwrap();
}
