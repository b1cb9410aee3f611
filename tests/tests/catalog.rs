//! The catalog against a real PostgreSQL: install, administration, verified loading, pinning.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::catalog::{
    install, load_catalog, Catalog, CatalogError, ColumnState, InstallOutcome, PinnedColumn, Pins,
    SkipReason, CATALOG_VERSION,
};
use aepg::cell::EncryptionMode;
use aepg::{ColumnName, Error};
use aepg_keystore::{KeyStoreRegistry, MemoryKeyStore, TrustedKeyPaths};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::TestDatabase;

fn column(table: &str, name: &str) -> ColumnName {
    ColumnName::new("public", table, name)
}

fn pins(columns: impl IntoIterator<Item = PinnedColumn>) -> Pins {
    columns.into_iter().fold(Pins::new(), Pins::column)
}

/// The reason a record whose description contains `what` was left out.
fn skipped(catalog: &Catalog, what: &str) -> Option<(SkipReason, String)> {
    catalog
        .skipped()
        .iter()
        .find(|skipped| skipped.what.contains(what))
        .map(|skipped| (skipped.kind.clone(), skipped.reason.clone()))
}

/// Why the column is unusable, or `None` if it is usable or not encrypted.
fn unusable_reason(catalog: &Catalog, name: &ColumnName) -> Option<String> {
    match &catalog.column(name)?.state {
        ColumnState::Unusable { reason } => Some(reason.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn install_is_idempotent_and_refuses_a_newer_catalog() {
    let database = TestDatabase::new("install").await;
    let mut client = database.connect().await;
    assert!(matches!(
        load_catalog(&client, &KeyStoreRegistry::new(), &Pins::new()).await,
        Err(Error::Catalog(CatalogError::NotInstalled))
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
            Error::Catalog(CatalogError::TooNew {
                found: 99,
                supported: CATALOG_VERSION
            })
        ),
        "{err}"
    );
    let err = load_catalog(&client, &KeyStoreRegistry::new(), &Pins::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::TooNew { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_version_1_catalog_is_upgraded_and_then_needs_its_manifests_signed() {
    let db = EncryptedDatabase::new("upgrade").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    // Back to what version 1 had: no generation, no manifests.
    db.plain
        .batch_execute(
            "DROP TABLE aepg.manifests, aepg.column_migrations, aepg.key_rotations;
             ALTER TABLE aepg.encryption_settings DROP COLUMN cosignature;
             ALTER TABLE aepg.column_assignments DROP COLUMN cosignature;
             ALTER TABLE aepg.catalog_version DROP COLUMN generation;
             DROP OPERATOR IF EXISTS public.= (aepg.ciphertext, aepg.ciphertext);
             DROP OPERATOR IF EXISTS public.<> (aepg.ciphertext, aepg.ciphertext);
             DROP FUNCTION aepg.ciphertext_eq, aepg.ciphertext_ne;
             UPDATE aepg.catalog_version SET version = 1",
        )
        .await
        .unwrap();
    let err = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::TooOld { found: 1, .. })),
        "{err}"
    );
    let mut admin_connection = db.admin_connection().await;
    assert_eq!(
        install(&mut admin_connection).await.unwrap(),
        InstallOutcome::Upgraded { from: 1 }
    );
    // Upgraded, but without a signed manifest a client cannot tell which
    // columns are encrypted: refused until the administrator signs one.
    let err = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::NoManifest { .. })),
        "{err}"
    );
    let generation = db
        .admin
        .sign_manifests(&mut *admin_connection)
        .await
        .unwrap();
    let catalog = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap();
    assert_eq!(catalog.generation(), generation);
    assert_eq!(catalog.manifests().len(), 1);
    assert!(catalog.manifests()[0]
        .columns
        .contains_key(&column("t", "x")));
    assert_eq!(
        catalog.column(&column("t", "x")).unwrap().state,
        ColumnState::Usable { setting_id: 1 }
    );
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
            "CREATE TABLE people (id int, ssn text, card aepg.ciphertext, note aepg.ciphertext);
             CREATE VIEW people_cards AS SELECT id, card FROM people",
        )
        .await
        .unwrap();
    let mut admin = db.admin_connection().await;

    let err = db
        .admin
        .assign_column(&mut *admin, &column("people", "ssn"), "ssn")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be declared as aepg.ciphertext"),
        "{err}"
    );
    let err = db
        .admin
        .assign_column(&mut *admin, &column("people", "nope"), "ssn")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Catalog(CatalogError::ColumnNotAssignable { .. })
        ),
        "{err}"
    );
    let err = db
        .admin
        .assign_column(&mut *admin, &column("people", "card"), "no-such")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::NotFound { .. })),
        "{err}"
    );

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
        .assign_column(&mut *admin, &column("people", "note"), "ssn")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already holds values"), "{err}");

    let before = db.admin.load(&db.plain).await.unwrap().generation();
    db.admin
        .assign_column(&mut *admin, &column("people", "card"), "ssn")
        .await
        .unwrap();
    db.admin
        .assign_column(&mut *admin, &column("people", "card"), "ssn")
        .await
        .unwrap();
    // A view's column is assigned like a table's (it holds no values).
    db.admin
        .assign_column(&mut *admin, &column("people_cards", "card"), "ssn")
        .await
        .unwrap();
    let catalog = db.admin.load(&db.plain).await.unwrap();
    let columns: Vec<_> = catalog.columns().collect();
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[0].name, column("people", "card"));
    assert!(columns[0].origin.is_some());
    assert_eq!(columns[1].name, column("people_cards", "card"));
    // Every change raised the generation and re-signed the manifest, which
    // lists both columns.
    assert_eq!(catalog.generation(), before + 2);
    let manifest = &catalog.manifests()[0];
    assert_eq!(manifest.generation, catalog.generation());
    assert_eq!(manifest.columns.len(), 2);
}

#[tokio::test]
async fn a_weakened_setting_is_left_out_and_its_columns_become_unusable() {
    let db = EncryptedDatabase::new("weaken").await;
    db.setting("secret", "text", EncryptionMode::Randomized)
        .await;
    db.setting("other", "text", EncryptionMode::Deterministic)
        .await;
    db.table(
        "CREATE TABLE t (x aepg.ciphertext, y aepg.ciphertext)",
        &[("t", "x", "secret"), ("t", "y", "other")],
    )
    .await;
    db.admin.load(&db.plain).await.unwrap();
    // The adversary rewrites the signed record: randomized (2) becomes deterministic (1).
    // The mode byte follows the 6-byte prefix, the id, the name "secret"
    // (2 + 6 bytes), the key id, type oid and typmod (docs/FORMAT.md §3).
    let mode_at = 6 + 4 + 8 + 12;
    db.plain
        .execute(
            "UPDATE aepg.encryption_settings SET record = set_byte(record, $1, 1) WHERE name = 'secret'",
            &[&mode_at],
        )
        .await
        .unwrap();
    let catalog = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap();
    let (kind, reason) = skipped(&catalog, "encryption setting \"secret\"").unwrap();
    assert_eq!(kind, SkipReason::Tampered);
    assert!(
        reason.contains("not signed by column master key"),
        "{reason}"
    );
    assert!(catalog.setting_by_name("secret").is_none());
    // Only the columns that depend on it fail closed.
    let reason = unusable_reason(&catalog, &column("t", "x")).unwrap();
    assert!(reason.contains("cannot be used"), "{reason}");
    assert_eq!(
        catalog.column(&column("t", "y")).unwrap().state,
        ColumnState::Usable { setting_id: 2 }
    );
}

#[tokio::test]
async fn a_retargeted_or_deleted_assignment_fails_closed() {
    let db = EncryptedDatabase::new("retarget").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.setting("b", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    let pinned = pins([PinnedColumn::new("public", "t", "x").with_setting("a")]);
    load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap();

    // Moving the column to setting b without a new signature: the row no
    // longer matches its record, which is left out as tampered.
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
    let catalog = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap();
    assert_eq!(
        skipped(&catalog, "assignment of public.t.x").unwrap().0,
        SkipReason::Tampered
    );
    assert!(unusable_reason(&catalog, &column("t", "x")).is_some());
    let err = load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Catalog(CatalogError::PinnedColumnMismatch { .. })
        ),
        "{err}"
    );

    // Deleting the assignment and retyping the column (turning it into
    // "plaintext"): the signed manifest still lists it, pinned or not.
    db.plain
        .batch_execute(
            "DELETE FROM aepg.column_assignments;
             ALTER TABLE t ALTER COLUMN x TYPE text USING NULL",
        )
        .await
        .unwrap();
    let catalog = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap();
    let reason = unusable_reason(&catalog, &column("t", "x")).unwrap();
    assert!(
        reason.contains("manifest lists it as encrypted"),
        "{reason}"
    );
    let err = load_catalog(&db.plain, &db.registry, &pinned)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("public.t.x"), "{err}");
}

#[tokio::test]
async fn pins_check_mode_setting_and_identity_and_round_trip_through_a_pin_file() {
    let db = EncryptedDatabase::new("pins").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    let good =
        pins([PinnedColumn::new("public", "t", "x").with_mode(EncryptionMode::Deterministic)]);
    let catalog = load_catalog(&db.plain, &db.registry, &good).await.unwrap();
    for pin in [
        PinnedColumn::new("public", "t", "x").with_mode(EncryptionMode::Randomized),
        PinnedColumn::new("public", "t", "x").with_setting("other"),
        PinnedColumn::new("public", "t", "y"),
    ] {
        let err = load_catalog(&db.plain, &db.registry, &pins([pin]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Catalog(CatalogError::PinnedColumnMismatch { .. })
            ),
            "{err}"
        );
    }
    // A pin file exported from the catalog reads back to the same pins and holds.
    let exported = Pins::of_catalog(&catalog);
    let file = exported.to_json();
    assert!(file.contains("\"aepg-pins/1\""), "{file}");
    let read = Pins::from_json(&file).unwrap();
    assert_eq!(read, exported);
    assert_eq!(read.catalog_id(), Some(catalog.id()));
    assert_eq!(read.manifests().get("cmk1"), Some(&catalog.generation()));
    load_catalog(&db.plain, &db.registry, &read).await.unwrap();
    // A minimum generation above the manifest's is a rollback.
    let ahead = Pins::new().minimum_generation("cmk1", catalog.generation() + 1);
    let err = load_catalog(&db.plain, &db.registry, &ahead)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::ManifestRollback { .. })),
        "{err}"
    );
    // Malformed pin files are refused with a reason.
    for bad in [
        "",
        "{}",
        r#"{"format": "aepg-pins/9"}"#,
        r#"{"format": "aepg-pins/1", "catalog": "xyz"}"#,
        r#"{"format": "aepg-pins/1", "columns": [{"schema": "s", "table": "t", "column": "c", "mode": "weak"}]}"#,
        r#"{"format": "aepg-pins/1", "extra": 1}"#,
    ] {
        assert!(Pins::from_json(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn records_under_an_untrusted_master_key_are_skipped_not_used() {
    let db = EncryptedDatabase::new("untrusted").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
    // Another application's registry trusts no path of this store: it has
    // no manifest to rely on, and refuses the catalog.
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(db.store.clone(), TrustedKeyPaths::only(["other"]))
        .unwrap();
    let err = load_catalog(&db.plain, &registry, &Pins::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::NoManifest { .. })),
        "{err}"
    );
    // An application that trusts no master key at all loads it, using nothing.
    let catalog = load_catalog(&db.plain, &KeyStoreRegistry::new(), &Pins::new())
        .await
        .unwrap();
    assert!(catalog.settings().is_empty());
    assert_eq!(catalog.columns().count(), 0);
    for (what, kind) in [
        ("manifest", SkipReason::Unverifiable),
        ("column key", SkipReason::Unverifiable),
        ("encryption setting", SkipReason::Dependency),
        ("assignment", SkipReason::Dependency),
    ] {
        assert_eq!(
            skipped(&catalog, what).map(|(kind, _)| kind),
            Some(kind),
            "{what}: {:?}",
            catalog.skipped()
        );
    }
    let err = load_catalog(
        &db.plain,
        &KeyStoreRegistry::new(),
        &pins([PinnedColumn::new("public", "t", "x")]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Catalog(CatalogError::PinnedColumnMismatch { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_key_record_wrapped_by_an_attacker_is_refused_before_any_unwrap() {
    let db = EncryptedDatabase::new("forged_key").await;
    db.setting("a", "text", EncryptionMode::Deterministic).await;
    db.table("CREATE TABLE t (x aepg.ciphertext)", &[("t", "x", "a")])
        .await;
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
    let catalog = load_catalog(&db.plain, &db.registry, &Pins::new())
        .await
        .unwrap();
    let (kind, reason) = skipped(&catalog, "column key").unwrap();
    assert_eq!(kind, SkipReason::Tampered);
    assert!(reason.contains("wrapped column key"), "{reason}");
    assert_eq!(catalog.column_keys().count(), 0);
    // The setting under that key, and the column, fail closed.
    assert!(unusable_reason(&catalog, &column("t", "x")).is_some());
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
    let catalog = db.admin.load(&db.plain).await.unwrap();
    assert!(catalog.settings().is_empty(), "{:?}", catalog.settings());
    assert_eq!(
        skipped(&catalog, "\"careful\"").unwrap().0,
        SkipReason::Tampered
    );
    db.plain
        .batch_execute("CREATE TABLE t (x aepg.ciphertext)")
        .await
        .unwrap();
    let err = db
        .admin
        .assign_column(
            &mut *db.admin_connection().await,
            &column("t", "x"),
            "careful",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Catalog(CatalogError::NotFound { .. })),
        "{err}"
    );
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
    let catalog = production.admin.load(&production.plain).await.unwrap();
    assert!(catalog.setting_by_name("ssn").is_none());
    let (kind, reason) = skipped(&catalog, "\"ssn\"").unwrap();
    assert_eq!(kind, SkipReason::Tampered);
    assert!(reason.contains("not signed by"), "{reason}");
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
    assert!(
        matches!(err, Error::Catalog(CatalogError::IdentityMismatch { .. })),
        "{err}"
    );
}
