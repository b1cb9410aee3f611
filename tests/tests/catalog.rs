//! The catalog against a real PostgreSQL: install, administration, verified loading, pinning.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::analysis::ColumnName;
use aepg::catalog::{install, load_catalog, InstallOutcome, PinnedColumn};
use aepg::cell::EncryptionMode;
use aepg::Error;
use aepg_keystore::{KeyStoreRegistry, MemoryKeyStore, TrustedKeyPaths};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::TestDatabase;

fn column(table: &str, name: &str) -> ColumnName {
    ColumnName {
        schema: "public".into(),
        table: table.into(),
        column: name.into(),
    }
}

#[tokio::test]
async fn install_is_idempotent_and_refuses_a_newer_catalog() {
    let database = TestDatabase::new("install").await;
    let mut client = database.connect().await;
    assert!(matches!(
        load_catalog(&client, &KeyStoreRegistry::new(), &[]).await,
        Err(Error::CatalogNotInstalled)
    ));
    assert_eq!(
        install(&mut client).await.unwrap(),
        InstallOutcome::Installed
    );
    assert_eq!(
        install(&mut client).await.unwrap(),
        InstallOutcome::AlreadyInstalled
    );

    client
        .batch_execute("UPDATE aepg.catalog_version SET version = 99")
        .await
        .unwrap();
    let err = install(&mut client).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CatalogTooNew {
                found: 99,
                supported: 1
            }
        ),
        "{err}"
    );
    let err = load_catalog(&client, &KeyStoreRegistry::new(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CatalogTooNew { .. }), "{err}");
}

#[tokio::test]
async fn concurrent_installs_do_not_conflict() {
    let database = TestDatabase::new("install_race").await;
    let mut first = database.connect().await;
    let mut second = database.connect().await;
    let (a, b) = tokio::join!(install(&mut first), install(&mut second));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|outcome| *outcome == InstallOutcome::Installed);
    assert_eq!(
        outcomes,
        [InstallOutcome::AlreadyInstalled, InstallOutcome::Installed]
    );
}

#[tokio::test]
async fn the_server_refuses_plaintext_in_a_ciphertext_column() {
    let db = EncryptedDatabase::new("domain").await;
    db.plain
        .batch_execute("CREATE TABLE t (c aepg.ciphertext)")
        .await
        .unwrap();
    let err = db
        .plain
        .execute(
            "INSERT INTO t VALUES ($1::bytea)",
            &[&b"123-45-6789".to_vec()],
        )
        .await
        .unwrap_err();
    let message = err.as_db_error().unwrap().message();
    assert!(message.contains("violates check constraint"), "{message}");
}

#[tokio::test]
async fn columns_are_assignable_only_when_ciphertext_and_empty() {
    let db = EncryptedDatabase::new("assign").await;
    db.setting("ssn", "text", EncryptionMode::Deterministic)
        .await;
    db.plain
        .batch_execute(
            "CREATE TABLE people (id int, ssn text, card aepg.ciphertext, note aepg.ciphertext)",
        )
        .await
        .unwrap();

    let err = db
        .admin
        .assign_column(&db.plain, &column("people", "ssn"), "ssn")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be declared as aepg.ciphertext"),
        "{err}"
    );
    let err = db
        .admin
        .assign_column(&db.plain, &column("people", "nope"), "ssn")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ColumnNotAssignable { .. }), "{err}");
    let err = db
        .admin
        .assign_column(&db.plain, &column("people", "card"), "no-such")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotInCatalog { .. }), "{err}");

    // A column that already holds (any) cells is a migration, not an assignment.
    db.plain
        .execute(
            "INSERT INTO people (note) VALUES ($1::bytea)",
            &[&vec![1u8; 40]],
        )
        .await
        .unwrap();
    let err = db
        .admin
        .assign_column(&db.plain, &column("people", "note"), "ssn")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already holds values"), "{err}");

    db.admin
        .assign_column(&db.plain, &column("people", "card"), "ssn")
        .await
        .unwrap();
    db.admin
        .assign_column(&db.plain, &column("people", "card"), "ssn")
        .await
        .unwrap();
    let catalog = db.admin.load(&db.plain).await.unwrap();
    let columns = catalog.columns();
    assert_eq!(columns.len(), 1);
    assert_eq!(columns[0].name, column("people", "card"));
    assert!(columns[0].origin.is_some());
}

#[tokio::test]
async fn a_weakened_setting_fails_the_load() {
    let db = EncryptedDatabase::new("weaken").await;
    db.setting("secret", "text", EncryptionMode::Randomized)
        .await;
    db.admin.load(&db.plain).await.unwrap();
    // The adversary rewrites the signed record: randomized (2) becomes deterministic (1).
    // The mode byte follows the 6-byte prefix, the id, the name "secret"
    // (2 + 6 bytes), the key id, type oid and typmod (docs/FORMAT.md §3).
    let mode_at = 6 + 4 + 8 + 12;
    db.plain
        .execute(
            "UPDATE aepg.encryption_settings SET record = set_byte(record, $1, 1)",
            &[&mode_at],
        )
        .await
        .unwrap();
    let err = db.admin.load(&db.plain).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordSignatureInvalid {
                kind: "column encryption setting",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_retargeted_or_deleted_assignment_is_caught() {
    let db = EncryptedDatabase::new("retarget").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.setting("b", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    let pinned = [PinnedColumn::new("public", "t", "x").with_setting("a")];
    load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap();

    // Moving the column to setting b without a new signature: the row no longer matches its record.
    let b_id: i32 = db
        .plain
        .query_one(
            "SELECT id FROM aepg.encryption_settings WHERE name = 'b'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.plain
        .execute(
            "UPDATE aepg.column_assignments SET setting_id = $1",
            &[&b_id],
        )
        .await
        .unwrap();
    let err = load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MalformedCatalogRow { .. }), "{err}");

    // Deleting the assignment (turning the column into "plaintext"): pinning catches it.
    db.plain
        .batch_execute("DELETE FROM aepg.column_assignments")
        .await
        .unwrap();
    let err = load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PinnedColumnMismatch { .. }), "{err}");
    assert!(err.to_string().contains("public.t.x"), "{err}");
}

#[tokio::test]
async fn pins_check_mode_and_setting() {
    let db = EncryptedDatabase::new("pins").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    let good = [PinnedColumn::new("public", "t", "x").with_mode(EncryptionMode::Deterministic)];
    load_catalog(&db.plain, &db.registry, &good).await.unwrap();
    for pin in [
        PinnedColumn::new("public", "t", "x").with_mode(EncryptionMode::Randomized),
        PinnedColumn::new("public", "t", "x").with_setting("other"),
        PinnedColumn::new("public", "t", "y"),
    ] {
        let err = load_catalog(&db.plain, &db.registry, &[pin])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PinnedColumnMismatch { .. }), "{err}");
    }
}

#[tokio::test]
async fn records_under_an_untrusted_master_key_are_skipped_not_used() {
    let db = EncryptedDatabase::new("untrusted").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    // Another application's registry trusts no path of this store.
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(db.store.clone(), TrustedKeyPaths::only(["other"]))
        .unwrap();
    let catalog = load_catalog(&db.plain, &registry, &[]).await.unwrap();
    assert!(catalog.settings().is_empty());
    assert!(catalog.columns().is_empty());
    assert_eq!(catalog.skipped().len(), 3, "{:?}", catalog.skipped());
    let err = load_catalog(
        &db.plain,
        &registry,
        &[PinnedColumn::new("public", "t", "x")],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PinnedColumnMismatch { .. }), "{err}");
}

#[tokio::test]
async fn a_key_record_wrapped_by_an_attacker_is_refused() {
    let db = EncryptedDatabase::new("forged_key").await;
    // The attacker has another key pair and puts a record of its own under the trusted CMK's name.
    let attacker = MemoryKeyStore::new();
    attacker.generate_key("cmk1", 2048).unwrap();
    let mut attacker_registry = KeyStoreRegistry::new();
    attacker_registry
        .register(std::sync::Arc::new(attacker), TrustedKeyPaths::Any)
        .unwrap();
    // The catalog's identity is no secret: the attacker signs for it.
    let catalog = aepg::catalog::catalog_id(&db.plain).await.unwrap();
    let forged = aepg::record::SignedRecord::seal(
        &attacker_registry,
        &catalog,
        "cmk1",
        &aepg_keystore::MasterKeyLocation::new("memory", "cmk1"),
        db.key_id,
        &aepg_keystore::ColumnKey::generate().unwrap(),
    )
    .await
    .unwrap();
    db.plain
        .execute(
            "UPDATE aepg.column_key_values SET record = $1, signature = $2",
            &[&forged.canonical_bytes(), &forged.signature()],
        )
        .await
        .unwrap();
    let unwraps = db.store.operation_counts().unwrap;
    let err = load_catalog(&db.plain, &db.registry, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordSignatureInvalid {
                kind: "wrapped column key",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(db.store.operation_counts().unwrap, unwraps);
}

#[tokio::test]
async fn setting_names_are_signed() {
    let db = EncryptedDatabase::new("setting_names").await;
    db.setting("careful", "text", EncryptionMode::Randomized)
        .await;
    db.setting("revealing", "text", EncryptionMode::Deterministic)
        .await;
    db.admin.load(&db.plain).await.unwrap();
    // Swapping the names would make an administrator assign, and sign, the
    // deterministic setting when asking for the randomized one.
    db.plain
        .batch_execute(
            "UPDATE aepg.encryption_settings SET name = CASE name WHEN 'careful' THEN 'tmp' ELSE 'careful' END;
             UPDATE aepg.encryption_settings SET name = 'revealing' WHERE name = 'tmp'",
        )
        .await
        .unwrap();
    let err = db.admin.load(&db.plain).await.unwrap_err();
    assert!(matches!(err, Error::MalformedCatalogRow { .. }), "{err}");
    db.plain
        .batch_execute("CREATE TABLE t (x aepg.ciphertext)")
        .await
        .unwrap();
    let err = db
        .admin
        .assign_column(&db.plain, &column("t", "x"), "careful")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MalformedCatalogRow { .. }), "{err}");
}

/// Two databases whose catalogs share a master key: a record copied from
/// one into the other does not verify, because each signature covers its
/// catalog's identity.
#[tokio::test]
async fn records_cannot_be_replayed_from_another_database() {
    let staging = EncryptedDatabase::new("replay_staging").await;
    let production = EncryptedDatabase::new("replay_production").await;
    staging
        .setting("ssn", "text", EncryptionMode::Deterministic)
        .await;
    production
        .setting("ssn", "text", EncryptionMode::Randomized)
        .await;
    production.admin.load(&production.plain).await.unwrap();
    // Copy staging's deterministic setting over production's randomized one.
    let row = staging
        .plain
        .query_one(
            "SELECT record, signature FROM aepg.encryption_settings WHERE name = 'ssn'",
            &[],
        )
        .await
        .unwrap();
    let (record, signature): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
    production
        .plain
        .execute(
            "UPDATE aepg.encryption_settings SET record = $1, signature = $2 WHERE name = 'ssn'",
            &[&record, &signature],
        )
        .await
        .unwrap();
    let err = production.admin.load(&production.plain).await.unwrap_err();
    assert!(matches!(err, Error::RecordSignatureInvalid { .. }), "{err}");
}

/// An application that pins its catalog's identity refuses another catalog.
#[tokio::test]
async fn a_pinned_catalog_identity_is_enforced() {
    let db = EncryptedDatabase::new("pinned_catalog").await;
    let other = EncryptedDatabase::new("other_catalog").await;
    let id = aepg::catalog::catalog_id(&db.plain).await.unwrap();
    let right = db
        .client_with(db.encryption_with(|config| config.expect_catalog(id)))
        .await;
    right.catalog().await.unwrap();
    let wrong = other
        .client_with(other.encryption_with(|config| config.expect_catalog(id)))
        .await;
    let err = wrong.catalog().await.unwrap_err();
    assert!(matches!(err, Error::CatalogMismatch { .. }), "{err}");
}
