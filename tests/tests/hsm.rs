//! Master keys in an HSM (SoftHSM2 through PKCS#11), end to end: a file
//! master key moved into the token without touching a cell, a client that
//! holds only the token, and what a DBA can and cannot do to the records
//! the token signed.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::keystore::{
    KeyStoreProvider, KeyStoreRegistry, KeyWrapAlgorithm, MasterKeyLocation, TrustedKeyPaths,
    TwoKeyPath,
};
use aepg::record::{CatalogRecord, WrappedColumnKey};
use aepg::{Encryption, EncryptionConfig};
use aepg_tests::fixture::{master_key_pem, EncryptedDatabase, MASTER_KEY};
use aepg_tests::key_store::FixtureKeyStore;
use aepg_tests::TestDatabase;

const HSM_KEY: &str = "hsm-cmk";

/// A database whose fixture master key is in process memory (the key the
/// tests move into a token, or keep beside it): a registry holds one
/// provider per name.
async fn database(label: &str) -> EncryptedDatabase {
    EncryptedDatabase::with_key(
        TestDatabase::new(label).await,
        FixtureKeyStore::in_memory(MASTER_KEY, master_key_pem()),
    )
    .await
}

/// A deterministic `text` setting `secret` on column key `key_id`, and
/// the table `vault (id, secret)` with `secret` assigned to it.
async fn vault_table(
    db: &EncryptedDatabase,
    admin: &aepg::catalog::CatalogAdmin,
    conn: &mut tokio_postgres::Client,
    key_id: u32,
) {
    let setting = aepg::catalog::NewEncryptionSetting::new(
        "secret",
        aepg::cell::PlaintextType::parse("text").unwrap(),
        Deterministic,
        key_id,
    );
    admin.create_setting(conn, &setting).await.unwrap();
    db.plain
        .batch_execute("CREATE TABLE vault (id int, secret aepg.ciphertext)")
        .await
        .unwrap();
    admin
        .assign_column(
            conn,
            &aepg::ColumnName::new("public", "vault", "secret"),
            "secret",
        )
        .await
        .unwrap();
}

/// A registry holding `stores`, each trusting its own key path.
fn registry(stores: &[(&Arc<FixtureKeyStore>, &MasterKeyLocation)]) -> KeyStoreRegistry {
    let mut registry = KeyStoreRegistry::new();
    for (store, location) in stores {
        registry
            .register(
                Arc::<FixtureKeyStore>::clone(store),
                TrustedKeyPaths::only([location.key_path.clone()]),
            )
            .unwrap();
    }
    registry
}

/// The one text value `sql` selects, or the error (querying or decrypting).
async fn text_of(client: &aepg::Client, sql: &str) -> Result<String, String> {
    let row = client
        .query_one(sql, &[])
        .await
        .map_err(|error| error.to_string())?;
    row.try_get(0).map_err(|error| error.to_string())
}

/// The server's bytes of every `ssn` and `note` cell, by id.
async fn cells(db: &EncryptedDatabase) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    db.plain
        .query(
            "SELECT id, ssn::bytea, note::bytea FROM people ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn a_master_key_moves_into_the_hsm_without_re_encrypting_a_cell() {
    let db = database("hsm_move").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("note", "text", Randomized).await;
    db.table(
        "CREATE TABLE people (id int PRIMARY KEY, ssn aepg.ciphertext, note aepg.ciphertext)",
        &[("people", "ssn", "ssn"), ("people", "note", "note")],
    )
    .await;
    let app = db.client().await;
    for id in 0..20 {
        app.execute(
            "INSERT INTO people (id, ssn, note) VALUES ($1, $2, $3)",
            &[&id, &format!("{id:03}-00-0000"), &format!("note {id}")],
        )
        .await
        .unwrap();
    }
    let before = cells(&db).await;

    // The new master key is generated inside a token and never leaves it.
    let (hsm, hsm_location) = FixtureKeyStore::in_token(HSM_KEY, "hsm_move").await;
    let hsm = Arc::new(hsm);
    let both = aepg::catalog::CatalogAdmin::new(registry(&[
        (&db.store, &db.master_key),
        (&hsm, &hsm_location),
    ]));
    let conn = &mut *db.admin_connection().await;
    both.register_master_key(conn, HSM_KEY, &hsm_location)
        .await
        .unwrap();
    both.start_master_key_rotation(conn, MASTER_KEY, HSM_KEY, &hsm_location)
        .await
        .unwrap();
    both.complete_master_key_rotation(conn, MASTER_KEY, HSM_KEY, &hsm_location)
        .await
        .unwrap();
    assert_eq!(cells(&db).await, before, "no cell was re-encrypted");

    // The column key is now wrapped for the token with the algorithm the
    // token can unwrap (SoftHSM2: RSA-OAEP-SHA-1), in a record it signed.
    let record: Vec<u8> = db
        .plain
        .query_one(
            "SELECT record FROM aepg.column_key_values WHERE master_key_name = $1",
            &[&HSM_KEY],
        )
        .await
        .unwrap()
        .get(0);
    let wrapped = WrappedColumnKey::from_canonical_bytes(&record).unwrap();
    assert_eq!(wrapped.wrapped.algorithm, KeyWrapAlgorithm::RsaOaepSha1);

    // An application holding only the token reads and writes everything.
    let hsm_only = db
        .client_with(Encryption::new(EncryptionConfig::new(registry(&[(
            &hsm,
            &hsm_location,
        )]))))
        .await;
    let unwraps = hsm.operation_counts().unwrap;
    let row = hsm_only
        .query_one("SELECT note FROM people WHERE ssn = $1", &[&"007-00-0000"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "note 7");
    hsm_only
        .execute(
            "INSERT INTO people (id, ssn, note) VALUES (100, $1, $2)",
            &[&"100-00-0000", &"through the token"],
        )
        .await
        .unwrap();
    assert!(
        hsm.operation_counts().unwrap > unwraps,
        "the token unwrapped the key"
    );

    // One that holds only the retired key is refused as a whole: no
    // manifest it trusts says which columns are encrypted.
    let old_only = db
        .client_with(Encryption::new(EncryptionConfig::new(registry(&[(
            &db.store,
            &db.master_key,
        )]))))
        .await;
    let err = text_of(&old_only, "SELECT note FROM people WHERE id = 1")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no column manifest signed by a master key this application trusts"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dba_cannot_change_how_a_column_key_was_wrapped_for_the_token() {
    let db = database("hsm_downgrade").await;
    let (hsm, location) = FixtureKeyStore::in_token(HSM_KEY, "hsm_downgrade").await;
    let hsm = Arc::new(hsm);
    let admin = aepg::catalog::CatalogAdmin::new(registry(&[
        (&db.store, &db.master_key),
        (&hsm, &location),
    ]));
    let conn = &mut *db.admin_connection().await;
    admin
        .register_master_key(conn, HSM_KEY, &location)
        .await
        .unwrap();
    let key_id = admin
        .create_column_key(conn, HSM_KEY, &location)
        .await
        .unwrap();
    vault_table(&db, &admin, conn, key_id).await;
    let hsm_registry = registry(&[(&hsm, &location)]);
    let app = db
        .client_with(Encryption::new(EncryptionConfig::new(hsm_registry.clone())))
        .await;
    app.execute(
        "INSERT INTO vault (id, secret) VALUES (1, $1)",
        &[&"s3cret"],
    )
    .await
    .unwrap();

    // The DBA re-labels the wrapped key as RSA-OAEP-SHA-256 (and, second,
    // as SHA-1 again with its ciphertext swapped for one made with the
    // public key alone), keeping the token's signature.
    let stored: Vec<u8> = db
        .plain
        .query_one(
            "SELECT record FROM aepg.column_key_values WHERE key_id = $1",
            &[&i32::try_from(key_id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let genuine = WrappedColumnKey::from_canonical_bytes(&stored).unwrap();
    let mut relabelled = genuine.clone();
    relabelled.wrapped.algorithm = KeyWrapAlgorithm::RsaOaepSha256;
    let forged_key = aepg::keystore::ColumnKey::generate().unwrap();
    let mut swapped = genuine.clone();
    swapped.wrapped = hsm
        .wrap_column_key(&location.key_path, &forged_key)
        .await
        .unwrap();
    for forged in [relabelled, swapped] {
        db.plain
            .execute(
                "UPDATE aepg.column_key_values SET record = $1 WHERE key_id = $2",
                &[
                    &forged.canonical_bytes().unwrap(),
                    &i32::try_from(key_id).unwrap(),
                ],
            )
            .await
            .unwrap();
        let unwraps = hsm.operation_counts().unwrap;
        let reader = db
            .client_with(Encryption::new(EncryptionConfig::new(hsm_registry.clone())))
            .await;
        let err = text_of(&reader, "SELECT secret FROM vault WHERE id = 1")
            .await
            .unwrap_err();
        assert!(err.contains("public.vault.secret"), "{err}");
        assert_eq!(
            hsm.operation_counts().unwrap,
            unwraps,
            "the token never unwrapped a record it did not sign"
        );
    }

    // Put back, the genuine record works again.
    db.plain
        .execute(
            "UPDATE aepg.column_key_values SET record = $1 WHERE key_id = $2",
            &[&stored, &i32::try_from(key_id).unwrap()],
        )
        .await
        .unwrap();
    let reader = db
        .client_with(Encryption::new(EncryptionConfig::new(hsm_registry)))
        .await;
    let row = reader
        .query_one("SELECT secret FROM vault WHERE secret = $1", &[&"s3cret"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "s3cret");
}

/// A master key that is two keys (docs/FORMAT.md, "Two-key master keys"):
/// the token wraps, a memory key signs, as a store whose keys either
/// encrypt or sign (AWS KMS, Google Cloud KMS) would need.
#[tokio::test]
async fn a_two_key_master_key_wraps_in_the_token_and_signs_elsewhere() {
    let db = database("hsm_two_key").await;
    db.store.memory().generate_key("signer", 2048).unwrap();
    let (hsm, wrapping) = FixtureKeyStore::in_token("wrapper", "hsm_two_key").await;
    let hsm = Arc::new(hsm);
    let signing = MasterKeyLocation::new("memory", "signer");
    let pair = TwoKeyPath::new(wrapping.clone(), signing.clone())
        .unwrap()
        .location();
    let trusting = |memory_paths: &[&str]| {
        let mut registry = KeyStoreRegistry::new();
        registry
            .register(
                Arc::<FixtureKeyStore>::clone(&db.store),
                TrustedKeyPaths::only(memory_paths.iter().copied()),
            )
            .unwrap();
        registry
            .register(
                Arc::<FixtureKeyStore>::clone(&hsm),
                TrustedKeyPaths::only([wrapping.key_path.clone()]),
            )
            .unwrap();
        registry
    };
    let admin = aepg::catalog::CatalogAdmin::new(trusting(&[MASTER_KEY, "signer"]));
    let conn = &mut *db.admin_connection().await;
    admin
        .register_master_key(conn, "split", &pair)
        .await
        .unwrap();
    let key_id = admin.create_column_key(conn, "split", &pair).await.unwrap();
    vault_table(&db, &admin, conn, key_id).await;

    // The wrapped value is the token's (SHA-1 OAEP), in a record that
    // names both keys, signed by the memory key.
    let (record, signature): (Vec<u8>, Vec<u8>) = {
        let row = db
            .plain
            .query_one(
                "SELECT record, signature FROM aepg.column_key_values WHERE key_id = $1",
                &[&i32::try_from(key_id).unwrap()],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let wrapped = WrappedColumnKey::from_canonical_bytes(&record).unwrap();
    assert_eq!(wrapped.master_key, pair);
    assert_eq!(wrapped.wrapped.algorithm, KeyWrapAlgorithm::RsaOaepSha1);
    assert!(hsm
        .unwrap_column_key(&wrapping.key_path, &wrapped.wrapped)
        .await
        .is_ok());
    assert!(!signature.is_empty());

    let app = db
        .client_with(Encryption::new(EncryptionConfig::new(trusting(&[
            "signer",
        ]))))
        .await;
    app.execute("INSERT INTO vault (id, secret) VALUES (1, $1)", &[&"split"])
        .await
        .unwrap();
    assert_eq!(
        text_of(&app, "SELECT secret FROM vault WHERE id = 1")
            .await
            .unwrap(),
        "split"
    );

    // An application that trusts the token but not the signing key cannot
    // check the records: refused, never decrypted.
    let unsure = db
        .client_with(Encryption::new(EncryptionConfig::new(trusting(&[]))))
        .await;
    let err = text_of(&unsure, "SELECT secret FROM vault WHERE id = 1")
        .await
        .unwrap_err();
    assert!(err.contains("signer"), "{err}");
}
