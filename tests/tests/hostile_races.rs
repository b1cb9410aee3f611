//! Attacks on the seams between the catalog, the analysis and the running
//! clients: the server's unsigned column order and column lists, duplicate
//! and recycled catalog rows, an administrator tricked into re-signing a
//! stripped catalog, and transaction snapshots that hide a change. Each
//! test is the attack a superuser of the server makes with plain SQL, and
//! checks that no plaintext bound for an encrypted column reaches the wire.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::Duration;

use aepg::catalog::{CatalogError, NewEncryptionSetting, Pins};
use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::cell::PlaintextType;
use aepg::tokio_postgres::IsolationLevel;
use aepg::{ColumnName, Error};
use aepg_keystore::MasterKeyLocation;
use aepg_tests::fixture::{EncryptedDatabase, MASTER_KEY};
use aepg_tests::WireTap;
use futures_util::StreamExt;

/// Long enough for a NOTIFY to reach every listening connection.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// A database with a plaintext `people (id int, email text)` and an `email`
/// setting, a wire tap in front of its server, and the configuration that
/// routes a client through the tap.
async fn tapped_people(label: &str) -> (EncryptedDatabase, WireTap, aepg::tokio_postgres::Config) {
    let db = EncryptedDatabase::new(label).await;
    db.setting("email", "text", Deterministic).await;
    db.table("CREATE TABLE people (id int, email text)", &[])
        .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    (db, tap, routed)
}

/// A database with `patients (id int, ssn aepg.ciphertext)`, ssn deterministic.
async fn patients(label: &str) -> EncryptedDatabase {
    let db = EncryptedDatabase::new(label).await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int, ssn aepg.ciphertext)",
        &[("patients", "ssn", "ssn")],
    )
    .await;
    db
}

fn text_setting(name: &str, mode: aepg::cell::EncryptionMode, key_id: u32) -> NewEncryptionSetting {
    NewEncryptionSetting::new(name, PlaintextType::parse("text").unwrap(), mode, key_id)
}

/// Without a column list, which value lands in which column follows the
/// server's column order, which no signature covers: the attacker rebuilds
/// the table with `ssn` moved, and a positional INSERT would put the ssn
/// into the plaintext column `note`. So it is refused from the start; an
/// INSERT that lists its columns is unaffected by the reorder.
#[tokio::test]
async fn positional_inserts_are_refused_and_listed_ones_survive_a_reorder() {
    let db = EncryptedDatabase::new("race_positional").await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext, note text)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let pins = Pins::of_catalog(&db.admin.load(&db.plain).await.unwrap());
    let warm = db.client_at(&routed, db.encryption_with(|c| c)).await;
    let positional = "INSERT INTO people VALUES ($1, $2, $3)";
    let listed = "INSERT INTO people (id, ssn, note) VALUES ($1, $2, $3)";
    let error = warm
        .execute(positional, &[&0, &"positional-SECRET", &"n"])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refused(_)), "{error}");
    assert!(error.to_string().contains("list the columns"), "{error}");
    warm.execute(listed, &[&1, &"warm-before-SECRET", &"n"])
        .await
        .unwrap();

    db.plain
        .batch_execute(
            "ALTER TABLE people RENAME COLUMN ssn TO ssn_old;
             ALTER TABLE people ADD COLUMN ssn aepg.ciphertext;
             UPDATE people SET ssn = ssn_old;
             ALTER TABLE people DROP COLUMN ssn_old;
             UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    let pinned = db
        .client_at(&routed, db.encryption_with(|c| c.pins(pins.clone())))
        .await;
    for (client, secret) in [
        (&warm, "warm-after-SECRET"),
        (&pinned, "pinned-after-SECRET"),
    ] {
        assert!(client
            .execute(positional, &[&2, &secret, &"n"])
            .await
            .is_err());
        // Whether the rebuilt table is accepted or refused, the listed
        // columns put the ssn where it belongs, encrypted.
        let _ = client.execute(listed, &[&3, &secret, &"n"]).await;
        assert!(!tap.saw(secret.as_bytes()), "{secret} reached the server");
    }
    assert!(!tap.saw(b"positional-SECRET"));
    assert!(!tap.saw(b"warm-before-SECRET"));
    let notes: Vec<String> = db
        .plain
        .query("SELECT note FROM people", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(notes.iter().all(|note| note == "n"), "{notes:?}");
}

/// Two manifest rows for one master key (the attacker dropped the primary
/// key): a duplicate is tampering, not a choice between two manifests, so
/// an older one cannot lower what a client remembers and then be replayed
/// alone.
#[tokio::test]
async fn duplicate_manifest_rows_are_tampering_not_a_rollback_step() {
    let db = EncryptedDatabase::new("race_dup_manifest").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("email", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int, ssn aepg.ciphertext, email aepg.ciphertext)",
        &[("patients", "ssn", "ssn")],
    )
    .await;
    db.plain
        .batch_execute("CREATE TABLE saved AS SELECT * FROM aepg.manifests")
        .await
        .unwrap();
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let warm = db.client_at(&routed, db.encryption_with(|c| c)).await;
    warm.catalog().await.unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("public", "patients", "email"),
            "email",
        )
        .await
        .unwrap();
    warm.refresh_catalog().await.unwrap();
    let insert = "INSERT INTO patients (id, email) VALUES ($1, $2)";
    warm.execute(insert, &[&0, &"before-SECRET"]).await.unwrap();

    db.plain
        .batch_execute(
            "ALTER TABLE aepg.manifests DROP CONSTRAINT manifests_pkey;
             INSERT INTO aepg.manifests (master_key_name, generation, record, signature)
               SELECT master_key_name, generation, record, signature FROM saved;
             UPDATE aepg.catalog_version SET generation = generation + 1;",
        )
        .await
        .unwrap();
    let error = warm.refresh_catalog().await.unwrap_err();
    assert!(matches!(error, Error::Catalog(_)), "{error}");

    db.plain
        .batch_execute(
            "DELETE FROM aepg.manifests m USING saved s
               WHERE m.master_key_name = s.master_key_name AND m.generation <> s.generation;
             DELETE FROM aepg.column_assignments WHERE column_name = 'email';
             ALTER TABLE patients ALTER COLUMN email TYPE text USING NULL;
             UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    let error = warm
        .execute(insert, &[&1, &"after-SECRET-email"])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("rolled back"),
        "the replayed manifest is a rollback: {error}"
    );
    assert!(!tap.saw(b"before-SECRET"));
    assert!(!tap.saw(b"after-SECRET-email"));
}

/// The attacker deletes the manifests and a column's assignment, then waits
/// for an administrator's unrelated change: signing a fresh manifest of
/// what is left would make every client accept the column as plaintext.
/// The administrator refuses instead; with the applications' pin file, it
/// also refuses a catalog rolled back to an older (signed) manifest that
/// does not list the column yet.
#[tokio::test]
async fn an_administrator_refuses_to_re_sign_a_stripped_catalog() {
    let db = EncryptedDatabase::new("race_launder").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("email", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int, ssn aepg.ciphertext, email aepg.ciphertext)",
        &[("patients", "ssn", "ssn")],
    )
    .await;
    db.plain
        .batch_execute("CREATE TABLE older AS SELECT * FROM aepg.manifests")
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("public", "patients", "email"),
            "email",
        )
        .await
        .unwrap();
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let catalog = db.admin.load(&db.plain).await.unwrap();
    let pins = Pins::of_catalog(&catalog);
    let mut generation_pins = Pins::new().catalog(catalog.id());
    for manifest in catalog.manifests() {
        generation_pins =
            generation_pins.minimum_generation(&manifest.master_key_name, manifest.generation);
    }
    let warm = db.client_at(&routed, db.encryption_with(|c| c)).await;
    let insert = "INSERT INTO patients (id, ssn, email) VALUES ($1, $2, $3)";
    warm.execute(insert, &[&0, &"before-SECRET", &"before@example.org"])
        .await
        .unwrap();

    db.plain
        .batch_execute(
            "DELETE FROM aepg.manifests;
             DELETE FROM aepg.column_assignments;
             DELETE FROM patients;
             ALTER TABLE patients ALTER COLUMN ssn TYPE text USING NULL,
                                  ALTER COLUMN email TYPE text USING NULL",
        )
        .await
        .unwrap();
    let unrelated = text_setting("unrelated", Randomized, db.key_id);
    let error = db
        .admin
        .create_setting(&mut *db.admin_connection().await, &unrelated)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Catalog(CatalogError::ManifestMissing { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("restore the catalog"), "{error}");

    // The older manifest, from before email was encrypted, put back: an
    // administrator with the applications' pins refuses it.
    db.plain
        .batch_execute("INSERT INTO aepg.manifests SELECT * FROM older")
        .await
        .unwrap();
    let pinned_admin = db.admin.clone().with_pins(pins);
    let error = pinned_admin
        .create_setting(&mut *db.admin_connection().await, &unrelated)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("rolled back"), "{error}");

    db.plain
        .batch_execute(
            "UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    let pinned = db
        .client_at(
            &routed,
            db.encryption_with(|c| c.pins(generation_pins.clone())),
        )
        .await;
    for (client, secret) in [(&warm, "warm-SECRET"), (&pinned, "pinned-SECRET")] {
        let email = format!("{secret}@example.org");
        assert!(client
            .execute(insert, &[&1, &secret, &email])
            .await
            .is_err());
        assert!(!tap.saw(secret.as_bytes()), "{secret} reached the server");
    }
    assert!(!tap.saw(b"before-SECRET"));
}

/// The attacker empties the master key table (which takes the manifests and
/// wrapped keys with it) and the assignments, and retypes the column: the
/// catalog now looks new. The administrator's ordinary, idempotent
/// provisioning step — registering its master key — must not sign a
/// manifest of that emptiness: a catalog that has changed since its
/// install, without a manifest of any key the administrator holds, is
/// refused.
#[tokio::test]
async fn registering_a_master_key_again_does_not_sign_a_stripped_catalog() {
    let db = patients("race_reregister").await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let warm = db.client_at(&routed, db.encryption_with(|c| c)).await;
    let insert = "INSERT INTO patients (id, ssn) VALUES ($1, $2)";
    warm.execute(insert, &[&0, &"before-SECRET"]).await.unwrap();
    let location = MasterKeyLocation::new("memory", MASTER_KEY);
    // Idempotent on an intact catalog.
    db.admin
        .register_master_key(&mut *db.admin_connection().await, MASTER_KEY, &location)
        .await
        .unwrap();

    db.plain
        .batch_execute(
            "DELETE FROM aepg.column_assignments;
             TRUNCATE aepg.master_keys CASCADE;
             DELETE FROM patients;
             ALTER TABLE patients ALTER COLUMN ssn TYPE text USING NULL",
        )
        .await
        .unwrap();
    let error = db
        .admin
        .register_master_key(&mut *db.admin_connection().await, MASTER_KEY, &location)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Catalog(CatalogError::NoHeldManifest { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("joining_catalog"), "{error}");
    let manifests: i64 = db
        .plain
        .query_one("SELECT count(*) FROM aepg.manifests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(manifests, 0, "nothing was signed");
    db.plain
        .batch_execute(
            "UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    assert!(warm.execute(insert, &[&1, &"warm-SECRET"]).await.is_err());
    assert!(!tap.saw(b"before-SECRET"));
    assert!(!tap.saw(b"warm-SECRET"));
}

/// The attacker resets the setting id sequence: the administrator's next
/// setting would take the id of an existing randomized one, and clients
/// would encrypt that column deterministically. The administrator refuses
/// the recycled id; and two setting rows of one id are tampering.
#[tokio::test]
async fn recycled_and_duplicate_setting_ids_are_refused() {
    let db = EncryptedDatabase::new("race_id_reuse").await;
    let diagnosis_id = db.setting("diagnosis", "text", Randomized).await;
    db.table(
        "CREATE TABLE patients (id int, diagnosis aepg.ciphertext)",
        &[("patients", "diagnosis", "diagnosis")],
    )
    .await;
    db.plain
        .batch_execute(&format!(
            "CREATE TABLE saved_settings AS SELECT * FROM aepg.encryption_settings;
             ALTER TABLE aepg.encryption_settings DROP CONSTRAINT encryption_settings_pkey CASCADE;
             ALTER SEQUENCE aepg.encryption_setting_ids RESTART WITH {diagnosis_id};"
        ))
        .await
        .unwrap();
    let zip = text_setting("zip", Deterministic, db.key_id);
    let error = db
        .admin
        .create_setting(&mut *db.admin_connection().await, &zip)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Catalog(CatalogError::IdInUse { .. })),
        "{error}"
    );
    // Freed first: the row is gone, but the signed manifest still names
    // the id.
    db.plain
        .batch_execute(&format!(
            "DELETE FROM aepg.encryption_settings WHERE id = {diagnosis_id};
             ALTER SEQUENCE aepg.encryption_setting_ids RESTART WITH {diagnosis_id};"
        ))
        .await
        .unwrap();
    let error = db
        .admin
        .create_setting(&mut *db.admin_connection().await, &zip)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Catalog(CatalogError::IdInUse { .. })),
        "{error}"
    );
    db.plain
        .batch_execute("INSERT INTO aepg.encryption_settings SELECT * FROM saved_settings")
        .await
        .unwrap();

    let client = db.client().await;
    let insert = "INSERT INTO patients (id, diagnosis) VALUES ($1, $2)";
    client.execute(insert, &[&1, &"flu"]).await.unwrap();
    db.plain
        .batch_execute(
            "ALTER TABLE aepg.encryption_settings DROP CONSTRAINT encryption_settings_name_key;
             INSERT INTO aepg.encryption_settings SELECT * FROM aepg.encryption_settings;
             UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    let error = client.execute(insert, &[&2, &"flu"]).await.unwrap_err();
    assert!(error.to_string().contains("patients.diagnosis"), "{error}");
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

/// A column alias list renames a table's columns in the server's column
/// order, as a positional INSERT fills them: rebuilt with `ssn` moved, the
/// name the application compares would mean a plaintext column. Column
/// alias lists over a `*` of a table with encrypted columns are refused.
#[tokio::test]
async fn column_alias_lists_over_an_encrypted_table_are_refused() {
    let db = EncryptedDatabase::new("race_alias_list").await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int, ssn aepg.ciphertext, note text)",
        &[("patients", "ssn", "ssn")],
    )
    .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let client = db.client_at(&routed, db.encryption_with(|c| c)).await;
    for sql in [
        "SELECT pid FROM patients AS p(pid, secret) WHERE secret = $1",
        "WITH p(pid, secret) AS (SELECT * FROM patients) SELECT pid FROM p WHERE secret = $1",
        "SELECT pid FROM (SELECT * FROM patients) AS p(pid, secret) WHERE secret = $1",
    ] {
        let error = client.query(sql, &[&"alias-SECRET"]).await.unwrap_err();
        assert!(error.to_string().contains("column order"), "{sql}: {error}");
    }
    // Named columns are the application's own order.
    client
        .query(
            "WITH p(pid, secret) AS (SELECT id, ssn FROM patients) SELECT pid FROM p WHERE secret = $1",
            &[&"named-SECRET"],
        )
        .await
        .unwrap();
    assert!(!tap.saw(b"alias-SECRET"));
    assert!(!tap.saw(b"named-SECRET"));
}

/// An unqualified name in a correlated subquery binds to the innermost
/// relation that has it: a plaintext column the attacker adds to the inner
/// table would capture the comparison the application wrote for the outer,
/// encrypted one. The analysis refuses a name an inner query binds while an
/// outer query has an encrypted column of that name.
#[tokio::test]
async fn an_added_inner_column_does_not_capture_an_outer_encrypted_comparison() {
    let db = EncryptedDatabase::new("race_capture").await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int, ssn aepg.ciphertext);
         CREATE TABLE visits (id int, patient_id int);",
        &[("patients", "ssn", "ssn")],
    )
    .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let pins = Pins::of_catalog(&db.admin.load(&db.plain).await.unwrap());
    let sql = "SELECT id FROM patients WHERE EXISTS \
               (SELECT 1 FROM visits WHERE visits.patient_id = patients.id AND ssn = $1)";
    let warm = db.client_at(&routed, db.encryption_with(|c| c)).await;
    warm.query(sql, &[&"before-SECRET"]).await.unwrap();

    db.plain
        .batch_execute(
            "ALTER TABLE visits ADD COLUMN ssn text;
             UPDATE aepg.catalog_version SET generation = generation + 1;
             NOTIFY aepg_catalog",
        )
        .await
        .unwrap();
    settle().await;
    let pinned = db
        .client_at(&routed, db.encryption_with(|c| c.pins(pins.clone())))
        .await;
    for (client, secret) in [(&pinned, "pinned-SECRET"), (&warm, "warm-SECRET")] {
        let error = client.query(sql, &[&secret]).await.unwrap_err();
        assert!(error.to_string().contains("qualify it"), "{error}");
        assert!(!tap.saw(secret.as_bytes()), "{secret} reached the server");
    }
    assert!(!tap.saw(b"before-SECRET"));
}

/// A statement in a repeatable-read transaction reads the catalog
/// generation from the transaction's snapshot. That must not clear an
/// announcement for the whole pool (another client would send plaintext
/// into a column encrypted meanwhile), nor count as a rollback once
/// another client loaded the change.
#[tokio::test]
async fn a_transaction_snapshot_neither_hides_a_change_nor_reports_a_rollback() {
    let (db, tap, routed) = tapped_people("race_snapshot").await;
    let shared = db.encryption_with(|c| c);
    let mut a = db.client_at(&routed, shared.clone()).await;
    let b = db.client_at(&routed, shared.clone()).await;
    let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
    b.execute(insert, &[&0, &"before@example.org"])
        .await
        .unwrap();
    let tx = a
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    // The snapshot is taken; the table is left unlocked for the change.
    tx.query("SELECT 1", &[]).await.unwrap();

    db.plain
        .batch_execute(
            "DELETE FROM people;
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
    settle().await;
    let error = tx
        .query("SELECT id FROM people WHERE id = $1", &[&1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Catalog(CatalogError::ChangedDuringTransaction)
        ),
        "{error}"
    );
    b.execute(insert, &[&1, &"b-SECRET@example.org"])
        .await
        .unwrap();
    assert!(!tap.saw(b"b-SECRET@example.org"), "b sent plaintext");
    // b loaded the change: the snapshot is old, not rolled back.
    tx.query("SELECT id FROM people WHERE id = $1", &[&1])
        .await
        .unwrap();
    drop(tx);
    let row = a
        .query_one("SELECT email FROM people WHERE id = $1", &[&1])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "b-SECRET@example.org");
}

/// PostgreSQL holds notifications back until a transaction ends, so a lone
/// client inside one hears no announcement: before a warm statement sends
/// plaintext there, it prepares the statement again, and the server types
/// the parameters against its tables as they are now — which neither a
/// read-committed nor a repeatable-read snapshot hides.
#[tokio::test]
async fn a_lone_client_inside_a_transaction_does_not_miss_a_change() {
    for level in [
        IsolationLevel::ReadCommitted,
        IsolationLevel::RepeatableRead,
    ] {
        let (db, tap, routed) = tapped_people("race_tx_deaf").await;
        let mut client = db.client_at(&routed, db.encryption_with(|c| c)).await;
        let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
        client
            .execute(insert, &[&0, &"before@example.org"])
            .await
            .unwrap();
        let tx = client
            .build_transaction()
            .isolation_level(level)
            .start()
            .await
            .unwrap();
        tx.execute(insert, &[&1, &"in-tx@example.org"])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let tx = client
            .build_transaction()
            .isolation_level(level)
            .start()
            .await
            .unwrap();
        tx.query("SELECT 1", &[]).await.unwrap();
        db.plain
            .batch_execute(
                "DELETE FROM people;
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
        settle().await;
        let secret = format!("{level:?}-SECRET");
        let outcome = tx.execute(insert, &[&2, &secret]).await;
        assert!(!tap.saw(secret.as_bytes()), "{level:?}: {outcome:?}");
        if matches!(level, IsolationLevel::ReadCommitted) {
            outcome.unwrap();
        }
    }
}

/// Inside a transaction, a name can come to mean another table without
/// any change to the one it meant: a table created and assigned in a
/// schema ahead of it on the search path. The locks the transaction holds
/// on the first table do not stop that, so a warm statement that sends
/// plaintext is checked again at every run, not once per transaction: the
/// run after the change encrypts for the new table, and no plaintext goes
/// out.
#[tokio::test]
async fn a_name_moving_to_a_new_encrypted_table_inside_a_transaction_is_seen() {
    let (db, tap, routed) = tapped_people("race_tx_shadow").await;
    let mut client = db.client_at(&routed, db.encryption_with(|c| c)).await;
    // `app` does not exist yet: `people` means `public.people`.
    client
        .batch_execute("SET search_path = app, public")
        .await
        .unwrap();
    let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
    client
        .execute(insert, &[&0, &"before@example.org"])
        .await
        .unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(insert, &[&1, &"in-tx@example.org"])
        .await
        .unwrap();
    db.plain
        .batch_execute("CREATE SCHEMA app; CREATE TABLE app.people (id int, email aepg.ciphertext)")
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &ColumnName::new("app", "people", "email"),
            "email",
        )
        .await
        .unwrap();
    settle().await;
    let secret = "SECRET-for-the-new-table@example.org";
    let outcome = tx.execute(insert, &[&2, &secret]).await;
    assert!(!tap.saw(secret.as_bytes()), "{outcome:?}");
    outcome.unwrap();
    tx.commit().await.unwrap();
    let rows = client
        .query("SELECT id FROM app.people WHERE email = $1", &[&secret])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "stored encrypted in the new table");
}

/// An announcement that changes nothing (a bare `NOTIFY` from the server,
/// or one a client already loaded) must not lock a client that only runs
/// repeatable-read transactions out: the first statement of each takes a
/// fresh snapshot.
#[tokio::test]
async fn an_empty_announcement_does_not_lock_repeatable_read_transactions_out() {
    snapshot_transactions_run_after(
        "race_notify_dos",
        "NOTIFY aepg_catalog; NOTIFY aepg_catalog, '1'",
    )
    .await;
}

/// After the server sends `announcement`, a client's repeatable-read
/// transactions still run.
async fn snapshot_transactions_run_after(label: &str, announcement: &str) {
    let db = patients(label).await;
    let mut client = db.client().await;
    client.query("SELECT 1", &[]).await.unwrap();
    db.plain.batch_execute(announcement).await.unwrap();
    settle().await;
    for _ in 0..3 {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await
            .unwrap();
        tx.query("SELECT id FROM patients WHERE ssn = $1", &[&"x"])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
}

/// A transaction block opened other than through `client.transaction()`
/// — `BEGIN` in a batch with other statements, `COMMIT AND CHAIN`,
/// `ROLLBACK AND CHAIN`, a prepared `BEGIN` — is noticed too: inside it, a
/// warm statement that sends plaintext is prepared again first.
#[tokio::test]
async fn every_way_of_opening_a_transaction_block_is_noticed() {
    for opener in [
        "BEGIN; SELECT 1",
        "COMMIT AND CHAIN",
        "ROLLBACK AND CHAIN",
        "prepared BEGIN",
    ] {
        let (db, tap, routed) = tapped_people("race_block").await;
        let client = db.client_at(&routed, db.encryption_with(|c| c)).await;
        let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
        client
            .execute(insert, &[&0, &"before@example.org"])
            .await
            .unwrap();
        match opener {
            "prepared BEGIN" => {
                let begin = client.prepare("BEGIN").await.unwrap();
                client.execute(&begin, &[]).await.unwrap();
            }
            "BEGIN; SELECT 1" => client.batch_execute(opener).await.unwrap(),
            chain => {
                client.batch_execute("BEGIN").await.unwrap();
                client.query("SELECT 1", &[]).await.unwrap();
                client.batch_execute(chain).await.unwrap();
            }
        }
        let open: i64 = db
            .plain
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(open, 1, "{opener}: no block open");
        db.plain
            .batch_execute(
                "DELETE FROM people;
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
        settle().await;
        let secret = format!("{}-SECRET@example.org", opener.replace(' ', "-"));
        let outcome = client.execute(insert, &[&2, &secret]).await;
        assert!(!tap.saw(secret.as_bytes()), "{opener}: {outcome:?}");
        outcome.unwrap();
        client.batch_execute("COMMIT").await.unwrap();
    }
}

/// An announcement naming a generation the server never reached (any role
/// may `NOTIFY`) is forgotten at the next check that reads the server:
/// repeatable-read transactions are not locked out for good.
#[tokio::test]
async fn a_spoofed_announcement_does_not_lock_snapshot_transactions_out() {
    snapshot_transactions_run_after(
        "race_notify_max",
        "NOTIFY aepg_catalog, '18446744073709551615'",
    )
    .await;
}

/// A function the server hooks into the application's session can
/// `UNLISTEN`: announcements then stop, and warm statements go unchecked
/// until the catalog TTL runs out. An application that cannot accept that
/// window sets the TTL to zero, and every statement checks.
#[tokio::test]
async fn a_zero_catalog_ttl_holds_when_announcements_are_silenced() {
    let db = EncryptedDatabase::new("race_unlisten").await;
    db.setting("email", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int, email text);
         CREATE FUNCTION hook() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN UNLISTEN aepg_catalog; RETURN NEW; END $$;
         CREATE TRIGGER hook BEFORE INSERT ON people FOR EACH ROW EXECUTE FUNCTION hook();",
        &[],
    )
    .await;
    let tap = WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let hooked = db
        .client_at(
            &routed,
            db.encryption_with(|c| c.catalog_ttl(Duration::ZERO)),
        )
        .await;
    let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
    hooked
        .execute(insert, &[&0, &"before@example.org"])
        .await
        .unwrap();
    db.plain
        .batch_execute(
            "DELETE FROM people;
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
    hooked
        .execute(insert, &[&1, &"hooked-SECRET"])
        .await
        .unwrap();
    assert!(!tap.saw(b"hooked-SECRET"));
}

/// `SET TRANSACTION ISOLATION LEVEL` must come before a transaction's
/// first query: session control goes to the server as written, without
/// aepg's own catalog check in front of it, on watched and unwatched
/// clients alike; `build_transaction` sets the options up front.
#[tokio::test]
async fn transaction_control_reaches_the_server_first() {
    let db = patients("race_set_tx").await;
    let mut watched = db.client().await;
    let mut unwatched = db.unwatched_client_with(db.encryption_with(|c| c)).await;
    for client in [&mut watched, &mut unwatched] {
        client.query("SELECT 1", &[]).await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[])
            .await
            .unwrap();
        let level = tx
            .query_one("SHOW transaction_isolation", &[])
            .await
            .unwrap();
        assert_eq!(level.get::<_, &str>(0), "repeatable read");
        tx.execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&1, &"078-05-1120"],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let tx = client.transaction().await.unwrap();
        tx.batch_execute(
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET LOCAL search_path = public",
        )
        .await
        .unwrap();
        let row = tx
            .query_one("SELECT ssn FROM patients WHERE ssn = $1", &[&"078-05-1120"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), "078-05-1120");
        tx.rollback().await.unwrap();

        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .read_only(true)
            .start()
            .await
            .unwrap();
        let level = tx
            .query_one("SHOW transaction_isolation", &[])
            .await
            .unwrap();
        assert_eq!(level.get::<_, &str>(0), "serializable");
        tx.commit().await.unwrap();
        db.plain
            .batch_execute("DELETE FROM patients")
            .await
            .unwrap();
    }
}

/// aepg reads string literals as the server does only with
/// `standard_conforming_strings` on: a session that turns it off is
/// refused rather than analyzed with the wrong reading of `\'`.
#[tokio::test]
async fn a_session_without_standard_strings_is_refused() {
    let db = patients("race_scs").await;
    let client = db.client().await;
    client.query("SELECT 1", &[]).await.unwrap();
    client
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let error = client
        .query("SELECT id FROM patients WHERE ssn = $1", &[&"078-05-1120"])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnsafeSession { .. }), "{error}");
    assert!(
        error.to_string().contains("standard_conforming_strings"),
        "{error}"
    );
    client
        .batch_execute("RESET standard_conforming_strings")
        .await
        .unwrap();
    client
        .query("SELECT id FROM patients WHERE ssn = $1", &[&"078-05-1120"])
        .await
        .unwrap();
}

/// Catalog checks of one pool are not serialized behind a lock held across
/// a query: a row stream left half-read on one connection, whose reader
/// queries another connection, must not stall a check queued behind it.
#[tokio::test]
async fn a_half_read_stream_does_not_stall_another_connections_catalog_check() {
    let db = EncryptedDatabase::new("race_stall").await;
    let shared = db.encryption_with(|c| c.catalog_ttl(Duration::from_millis(50)));
    let a = db.client_with(shared.clone()).await;
    let b = db.client_with(shared.clone()).await;
    a.query("SELECT 1", &[]).await.unwrap();
    b.query("SELECT 3", &[]).await.unwrap();
    a.query("SELECT 2", &[]).await.unwrap();
    let work = async {
        let streaming = async {
            let stream = a
                .query_raw("SELECT g FROM generate_series(1, 20000) g", &[])
                .await
                .unwrap();
            let mut stream = Box::pin(stream);
            let mut rows = 0;
            while let Some(row) = stream.next().await {
                row.unwrap();
                rows += 1;
                if rows == 1 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                if rows % 1000 == 1 {
                    b.query("SELECT 3", &[]).await.unwrap();
                }
            }
            rows
        };
        let other = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            a.query("SELECT 2", &[]).await.unwrap();
        };
        tokio::join!(streaming, other)
    };
    let (rows, ()) = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("catalog checks stalled behind a half-read stream");
    assert_eq!(rows, 20000);
}
