//! Rotating a column master key (`CatalogAdmin::start_master_key_rotation`
//! and `complete_master_key_rotation`) while applications write and read:
//! clients holding the old key, the new key or both keep working between
//! the steps, no cell changes, and afterwards the new key alone is enough.
//! Then what a DBA without either key can do to a rotation.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepg::catalog::{CatalogError, CatalogObject};
use aepg::cell::EncryptionMode::Deterministic;
use aepg::keystore::{KeyStoreRegistry, MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths};
use aepg::migration::MigrationOptions;
use aepg::{Client, ColumnName, Encryption, EncryptionConfig, Error};
use aepg_tests::fixture::{master_key_pem, EncryptedDatabase, MASTER_KEY};
use aepg_tests::workload::{
    aepg_writer, aepg_writer_from, check_rows, people, reader, Ledger, STABLE,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

/// The new master key's name and key path.
const NEW_KEY: &str = "cmk2";

fn new_location() -> MasterKeyLocation {
    MasterKeyLocation::new("memory", NEW_KEY)
}

fn new_key_pem() -> String {
    rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048)
        .unwrap()
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
}

/// A registry with a memory store holding `keys` (name, PEM), trusting them.
fn registry_with(keys: &[(&str, &str)]) -> KeyStoreRegistry {
    let store = MemoryKeyStore::new();
    for (name, pem) in keys {
        store.import_pem(name, pem).unwrap();
    }
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(
            Arc::new(store),
            TrustedKeyPaths::only(keys.iter().map(|(name, _)| *name)),
        )
        .unwrap();
    registry
}

/// The fixture's database with its `people` table's `ssn` encrypted, and
/// the new master key registered; registries holding the old key, the new
/// key, and both.
struct Rotation {
    db: EncryptedDatabase,
    ledger: Arc<Ledger>,
    old_only: KeyStoreRegistry,
    new_only: KeyStoreRegistry,
    both: aepg::catalog::CatalogAdmin,
}

impl Rotation {
    async fn new(label: &str) -> Self {
        let db = EncryptedDatabase::new(label).await;
        db.setting("ssn", "text", Deterministic).await;
        let ledger = people(&db.plain).await;
        let column = ColumnName::new("public", "people", "ssn");
        let options = MigrationOptions::default().grace(Duration::from_millis(100));
        db.admin
            .encrypt_column(
                &mut *db.admin_connection().await,
                &column,
                "ssn",
                &options,
                &mut |_| {},
            )
            .await
            .unwrap();
        let new_pem = new_key_pem();
        let old_only = registry_with(&[(MASTER_KEY, master_key_pem())]);
        let new_only = registry_with(&[(NEW_KEY, &new_pem)]);
        let both = aepg::catalog::CatalogAdmin::new(registry_with(&[
            (MASTER_KEY, master_key_pem()),
            (NEW_KEY, &new_pem),
        ]));
        both.register_master_key(&mut *db.admin_connection().await, NEW_KEY, &new_location())
            .await
            .unwrap();
        Self {
            db,
            ledger,
            old_only,
            new_only,
            both,
        }
    }

    async fn client(&self, registry: &KeyStoreRegistry) -> Client {
        self.db
            .client_with(Encryption::new(EncryptionConfig::new(registry.clone())))
            .await
    }

    async fn start(&self) -> aepg::catalog::MasterKeyRotationReport {
        self.start_as(&self.both, MASTER_KEY, NEW_KEY, &new_location())
            .await
            .unwrap()
    }

    async fn start_as(
        &self,
        admin: &aepg::catalog::CatalogAdmin,
        from: &str,
        to: &str,
        to_location: &MasterKeyLocation,
    ) -> Result<aepg::catalog::MasterKeyRotationReport, Error> {
        admin
            .start_master_key_rotation(
                &mut *self.db.admin_connection().await,
                from,
                to,
                to_location,
            )
            .await
    }

    /// Runs `sql` as the DBA.
    async fn sql(&self, sql: &str) {
        self.db.plain.batch_execute(sql).await.unwrap();
    }

    async fn complete(
        &self,
        admin: &aepg::catalog::CatalogAdmin,
    ) -> Result<aepg::catalog::MasterKeyRotationReport, Error> {
        admin
            .complete_master_key_rotation(
                &mut *self.db.admin_connection().await,
                MASTER_KEY,
                NEW_KEY,
                &new_location(),
            )
            .await
    }

    /// The stored cells of the rows no writer touches.
    async fn stable_cells(&self) -> Vec<(i32, Option<Vec<u8>>)> {
        self.db
            .plain
            .query(
                "SELECT id, ssn::bytea FROM people WHERE id <= $1 ORDER BY id",
                &[&STABLE],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.plain.query_one(sql, &[]).await.unwrap().get(0)
    }
}

/// Whether a new client holding the keys of `registry` can read the
/// encrypted column; the error otherwise.
async fn reads(rotation: &Rotation, registry: &KeyStoreRegistry) -> Result<(), String> {
    let row = rotation
        .client(registry)
        .await
        .query_one("SELECT ssn FROM people WHERE id = 1", &[])
        .await
        .map_err(|error| error.to_string())?;
    let ssn: String = row.try_get(0).map_err(|error| error.to_string())?;
    assert_eq!(ssn, "ssn-1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_is_rotated_under_load_and_the_new_key_alone_suffices() {
    let rotation = Rotation::new("cmk_rotation").await;
    let before = rotation.stable_cells().await;
    let ledger = &rotation.ledger;

    // Applications holding only the old key write and read…
    let stop_old = Arc::new(AtomicBool::new(false));
    let old_writer = aepg_writer(
        rotation.client(&rotation.old_only).await,
        ledger.clone(),
        stop_old.clone(),
    );
    let old_reader = reader(
        rotation.client(&rotation.old_only).await,
        ledger.clone(),
        stop_old.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …while the rotation starts.
    let started = rotation.start().await;
    assert_eq!(started.column_keys, 1);
    assert_eq!(started.records_signed, 2, "the setting and the assignment");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_old.store(true, Ordering::SeqCst);
    old_writer.await.unwrap();

    // Between the steps: applications holding only the new key join, and
    // the old key's reader keeps reading.
    let stop_new = Arc::new(AtomicBool::new(false));
    let new_writer = aepg_writer_from(
        rotation.client(&rotation.new_only).await,
        ledger.clone(),
        stop_new.clone(),
        1_000_000,
    );
    let new_reader = reader(
        rotation.client(&rotation.new_only).await,
        ledger.clone(),
        stop_new.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    old_reader.await.unwrap();
    reads(&rotation, &rotation.old_only).await.unwrap();

    // Completing needs only the new key.
    let new_admin = aepg::catalog::CatalogAdmin::new(rotation.new_only.clone());
    let completed = rotation.complete(&new_admin).await.unwrap();
    assert_eq!(completed.column_keys, 1);
    assert_eq!(completed.records_signed, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_new.store(true, Ordering::SeqCst);
    new_writer.await.unwrap();
    new_reader.await.unwrap();

    ledger.assert_clean();
    let new_client = rotation.client(&rotation.new_only).await;
    check_rows(&new_client, ledger).await;
    assert_eq!(
        rotation.stable_cells().await,
        before,
        "no cell was re-encrypted"
    );

    // Nothing of the old key is left, and a client that holds only it is
    // refused with an error naming what it lacks.
    for (sql, expected) in [
        (
            "SELECT count(*) FROM aepg.master_keys WHERE name = 'cmk1'",
            0,
        ),
        (
            "SELECT count(*) FROM aepg.column_key_values WHERE master_key_name = 'cmk1'",
            0,
        ),
        (
            "SELECT count(*) FROM aepg.manifests WHERE master_key_name = 'cmk1'",
            0,
        ),
        (
            "SELECT count(*) FROM aepg.encryption_settings WHERE cosignature IS NOT NULL",
            0,
        ),
        (
            "SELECT count(*) FROM aepg.column_assignments WHERE cosignature IS NOT NULL",
            0,
        ),
        (
            "SELECT count(*) FROM aepg.manifests WHERE master_key_name = 'cmk2'",
            1,
        ),
    ] {
        assert_eq!(rotation.count(sql).await, expected, "{sql}");
    }
    let refused = reads(&rotation, &rotation.old_only).await.unwrap_err();
    assert!(
        refused.contains("manifest") || refused.contains("cmk2"),
        "{refused}"
    );

    // Run again, completing does nothing.
    let again = rotation.complete(&new_admin).await.unwrap();
    assert_eq!(again.generation, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_dba_without_the_keys_can_do_to_a_rotation() {
    let rotation = Rotation::new("cmk_rotation_hostile").await;
    let (old, new) = (&rotation.old_only, &rotation.new_only);
    // Before the rotation, the new key alone opens nothing.
    let refused = reads(&rotation, new).await.unwrap_err();
    assert!(refused.contains("ssn"), "{refused}");

    rotation.start().await;
    reads(&rotation, new).await.unwrap();

    // The second signatures deleted: clients holding only the new key can
    // no longer trust the setting and refuse the column (fail closed);
    // clients holding the old key are unaffected. Starting again repairs it.
    rotation
        .sql(
            "UPDATE aepg.encryption_settings SET cosignature = NULL;
             UPDATE aepg.column_assignments SET cosignature = NULL;
             UPDATE aepg.catalog_version SET generation = generation + 1;",
        )
        .await;
    let refused = reads(&rotation, new).await.unwrap_err();
    assert!(
        refused.contains("people") && refused.contains("ssn"),
        "{refused}"
    );
    reads(&rotation, old).await.unwrap();
    rotation.start().await;
    reads(&rotation, new).await.unwrap();

    // A second signature that is the old key's own, or garbage: refused by
    // new-key clients the same way.
    rotation
        .sql(
            "UPDATE aepg.encryption_settings SET cosignature = signature;
             UPDATE aepg.catalog_version SET generation = generation + 1;",
        )
        .await;
    let refused = reads(&rotation, new).await.unwrap_err();
    assert!(refused.contains("ssn"), "{refused}");
    reads(&rotation, old).await.unwrap();
    rotation.start().await;

    // A column key created under the old key after the start: completing
    // is refused, naming it, until the rotation is started again.
    let late_key = rotation
        .both
        .create_column_key(
            &mut *rotation.db.admin_connection().await,
            MASTER_KEY,
            &MasterKeyLocation::new("memory", MASTER_KEY),
        )
        .await
        .unwrap();
    let refused = rotation.complete(&rotation.both).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Catalog(CatalogError::MasterKeyRotation { reason, .. })
            if reason.contains(&format!("column key {late_key}"))),
        "{refused}"
    );
    // Also when the DBA deletes the old key's registration, which would
    // make the rotation look complete, and the administrator holds only
    // the new key.
    rotation
        .sql(
            "SET session_replication_role = replica;
             DELETE FROM aepg.master_keys WHERE name = 'cmk1';
             RESET session_replication_role;",
        )
        .await;
    let new_admin = aepg::catalog::CatalogAdmin::new(new.clone());
    let refused = rotation.complete(&new_admin).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("column key {late_key}")),
        "{refused}"
    );
    rotation
        .sql(
            "INSERT INTO aepg.master_keys (name, provider, key_path)
             VALUES ('cmk1', 'memory', 'cmk1')",
        )
        .await;
    assert_eq!(rotation.start().await.column_keys, 1, "only the late key");

    // During the rotation, a record signed by one master key alone would
    // be invisible to clients holding the other: an administrator holding
    // only one is refused, naming the other.
    let old_admin = aepg::catalog::CatalogAdmin::new(old.clone());
    let refused = old_admin
        .create_setting(
            &mut *rotation.db.admin_connection().await,
            &aepg::catalog::NewEncryptionSetting::new(
                "late",
                aepg::cell::PlaintextType::parse("text").unwrap(),
                Deterministic,
                rotation.db.key_id,
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Catalog(CatalogError::SignersMissing { missing, .. })
            if missing == &[NEW_KEY.to_owned()]),
        "{refused}"
    );
    // Encrypting a column under the rotated key is refused before its
    // backfill begins.
    rotation
        .sql("CREATE TABLE extra (id int PRIMARY KEY, ssn text)")
        .await;
    let refused = old_admin
        .encrypt_column(
            &mut *rotation.db.admin_connection().await,
            &ColumnName::new("public", "extra", "ssn"),
            "ssn",
            &MigrationOptions::default(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Catalog(CatalogError::SignersMissing { .. })
        ),
        "{refused}"
    );
    assert_eq!(
        rotation
            .count("SELECT count(*) FROM aepg.column_migrations")
            .await,
        0
    );
    // Nor can an administrator holding only the new key start (it would
    // find no key to rewrap).
    let refused = rotation
        .start_as(&new_admin, MASTER_KEY, NEW_KEY, &new_location())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs both master keys"),
        "{refused}"
    );

    // An administrator without the new key cannot start one, nor can
    // anyone rotate to an unregistered key, or a key to itself.
    let refused = rotation
        .start_as(&old_admin, MASTER_KEY, NEW_KEY, &new_location())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains(NEW_KEY), "{refused}");
    let refused = rotation
        .start_as(
            &rotation.both,
            MASTER_KEY,
            "cmk3",
            &MasterKeyLocation::new("memory", "cmk3"),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("register it first"),
        "{refused}"
    );
    let refused = rotation
        .start_as(
            &rotation.both,
            MASTER_KEY,
            MASTER_KEY,
            &MasterKeyLocation::new("memory", MASTER_KEY),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("same master key"), "{refused}");
    let refused = rotation
        .start_as(&rotation.both, "nope", NEW_KEY, &new_location())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Catalog(CatalogError::NotFound {
                object: CatalogObject::MasterKey,
                ..
            })
        ),
        "{refused}"
    );

    // Completed: the old key's wrapped value and manifest replayed by the
    // DBA (without the old signatures of the settings) give a client
    // holding only the old key nothing, and clients holding the new key,
    // or both, are unaffected. (With the old signatures replayed too, a
    // client that still trusts the old key would load the catalog as it
    // was at the rotation: why the runbook removes the old key from the
    // applications' trusted keys.)
    let old_value = rotation
        .db
        .plain
        .query_one(
            "SELECT key_id, record, signature FROM aepg.column_key_values
             WHERE master_key_name = 'cmk1' AND key_id = $1",
            &[&i32::try_from(rotation.db.key_id).unwrap()],
        )
        .await
        .unwrap();
    let old_manifest = rotation
        .db
        .plain
        .query_one(
            "SELECT generation, record, signature FROM aepg.manifests WHERE master_key_name = 'cmk1'",
            &[],
        )
        .await
        .unwrap();
    rotation.complete(&rotation.both).await.unwrap();
    rotation
        .db
        .plain
        .execute(
            "INSERT INTO aepg.master_keys (name, provider, key_path) VALUES ('cmk1', 'memory', 'cmk1')",
            &[],
        )
        .await
        .unwrap();
    rotation
        .db
        .plain
        .execute(
            "INSERT INTO aepg.column_key_values (key_id, master_key_name, record, signature)
             VALUES ($1, 'cmk1', $2, $3)",
            &[
                &old_value.get::<_, i32>(0),
                &old_value.get::<_, Vec<u8>>(1),
                &old_value.get::<_, Vec<u8>>(2),
            ],
        )
        .await
        .unwrap();
    rotation
        .db
        .plain
        .execute(
            "INSERT INTO aepg.manifests (master_key_name, generation, record, signature)
             VALUES ('cmk1', $1, $2, $3)",
            &[
                &old_manifest.get::<_, i64>(0),
                &old_manifest.get::<_, Vec<u8>>(1),
                &old_manifest.get::<_, Vec<u8>>(2),
            ],
        )
        .await
        .unwrap();
    rotation
        .sql("UPDATE aepg.catalog_version SET generation = generation + 1")
        .await;
    let refused = reads(&rotation, &rotation.old_only).await.unwrap_err();
    assert!(refused.contains("ssn"), "{refused}");
    reads(&rotation, new).await.unwrap();
    let both = rotation.both.load(&rotation.db.plain).await.unwrap();
    assert!(both
        .column(&ColumnName::new("public", "people", "ssn"))
        .unwrap()
        .setting_id()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_assignment_is_refused_not_signed_again() {
    let rotation = Rotation::new("cmk_rotation_replay").await;
    // The assignment of people.ssn, saved; the column decrypted (its
    // assignment leaves the catalog and the manifests); the saved row put back.
    let saved = rotation
        .db
        .plain
        .query_one(
            "SELECT setting_id, record, signature FROM aepg.column_assignments WHERE column_name = 'ssn'",
            &[],
        )
        .await
        .unwrap();
    let column = ColumnName::new("public", "people", "ssn");
    let options = MigrationOptions::default().grace(Duration::from_millis(100));
    rotation
        .db
        .admin
        .decrypt_column(
            &mut *rotation.db.admin_connection().await,
            &column,
            &options,
            &mut |_| {},
        )
        .await
        .unwrap();
    rotation
        .db
        .plain
        .execute(
            "INSERT INTO aepg.column_assignments
                 (schema_name, table_name, column_name, setting_id, record, signature)
             VALUES ('public', 'people', 'ssn', $1, $2, $3)",
            &[
                &saved.get::<_, i32>(0),
                &saved.get::<_, Vec<u8>>(1),
                &saved.get::<_, Vec<u8>>(2),
            ],
        )
        .await
        .unwrap();
    let refused = rotation
        .start_as(&rotation.both, MASTER_KEY, NEW_KEY, &new_location())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("public.people.ssn")
            && refused
                .to_string()
                .contains("disagrees with the signed manifests"),
        "{refused}"
    );
    let under_new = "SELECT count(*) FROM aepg.column_key_values WHERE master_key_name = 'cmk2'";
    assert_eq!(
        rotation.count(under_new).await,
        0,
        "nothing of the start remains"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_waits_for_a_column_key_rotation() {
    let rotation = Rotation::new("cmk_rotation_after_cek").await;
    let options = MigrationOptions::default().grace(Duration::from_millis(100));
    let rotate_column_key = |complete: bool| {
        let (rotation, options) = (&rotation, &options);
        async move {
            let mut connection = rotation.db.admin_connection().await;
            if complete {
                rotation
                    .both
                    .complete_key_rotation(&mut connection, "ssn", options, &mut |_| {})
                    .await
            } else {
                rotation
                    .both
                    .start_key_rotation(&mut connection, "ssn", options, &mut |_| {})
                    .await
            }
        }
    };
    rotate_column_key(false).await.unwrap();
    // Its record is signed by the old master key alone: a master key
    // rotation would leave it unverifiable, so it is refused until then.
    let refused = rotation
        .start_as(&rotation.both, MASTER_KEY, NEW_KEY, &new_location())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("column key rotation"), "{refused}");
    assert_eq!(
        rotation
            .count("SELECT count(*) FROM aepg.column_key_values WHERE master_key_name = 'cmk2'")
            .await,
        0
    );
    rotate_column_key(true).await.unwrap();
    rotation.start().await;
    reads(&rotation, &rotation.new_only).await.unwrap();
}
