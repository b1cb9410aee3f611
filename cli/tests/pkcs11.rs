//! The `aepg` binary with its master key in an HSM: a SoftHSM2 token, set
//! up in the config file as a `pkcs11` key store, the PIN in the
//! environment. The key is generated in the token by `cmk register
//! --generate` and never leaves it; an application reads and writes through
//! the same token.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::sync::Arc;

use aepg::keystore::pkcs11::softhsm::{SoftHsm, MODULE_NAME};
use aepg::keystore::{KeyStoreRegistry, PinSource, Pkcs11KeyStore, TrustedKeyPaths};
use aepg::{Client, Encryption, EncryptionConfig};
use aepg_tests::TestDatabase;
use common::{aepg_json_with_env, aepg_with_env, create_ssn_setting};
use zeroize::Zeroizing;

#[tokio::test]
async fn a_master_key_in_a_token_from_the_command_line_to_the_application() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("cli-hsm");
    let key_path = token.key_path("cmk1");
    let db = TestDatabase::new("cli_pkcs11").await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("aepg.toml"),
        format!(
            "database_url = {:?}\n\n\
             [[key_stores]]\nprovider = \"pkcs11\"\nmodules = {{ {MODULE_NAME} = {:?} }}\n\
             pin_env = \"TEST_TOKEN_PIN\"\ntrusted = [{key_path:?}]\n\n\
             [[master_keys]]\nname = \"cmk1\"\nprovider = \"pkcs11\"\npath = {key_path:?}\n",
            db.connection_string(),
            hsm.module_path().display().to_string(),
        ),
    )
    .unwrap();
    let run = |args: &[&str], value: &str| aepg_with_env(dir, args, ("TEST_TOKEN_PIN", value));
    let ok = |args: &[&str]| aepg_json_with_env(dir, args, ("TEST_TOKEN_PIN", &token.pin));

    ok(&["init"]);
    assert_eq!(
        ok(&["cmk", "register", "cmk1", "--generate"])["generated"],
        true
    );
    create_ssn_setting(ok, "cmk1");
    db.connect()
        .await
        .batch_execute("CREATE TABLE people (id int, ssn aepg.ciphertext)")
        .await
        .unwrap();
    ok(&[
        "column",
        "assign",
        "--table",
        "people",
        "--column",
        "ssn",
        "--setting",
        "ssn",
    ]);
    assert_eq!(ok(&["status"])["records_left_out"], 0);

    // The wrapped column key names the algorithm the token can unwrap, in
    // the record the token's key signed.
    let record: Vec<u8> = db
        .connect()
        .await
        .query_one("SELECT record FROM aepg.column_key_values", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        record.windows(13).any(|window| window == b"RSA-OAEP-SHA1"),
        "SoftHSM2's OAEP is SHA-1 only"
    );

    // A wrong PIN: refused, naming the token, never printing the PIN.
    let (status, stdout, stderr) = run(&["cek", "create", "--cmk", "cmk1"], "0000-wrong");
    assert_eq!(status, Some(1), "{stdout}\n{stderr}");
    eprintln!("wrong PIN: {stderr}");
    assert!(
        stderr.contains("refused the PIN") && stderr.contains("cli-hsm"),
        "{stderr}"
    );
    assert!(!stderr.contains("0000-wrong") && !stdout.contains("0000-wrong"));

    // The application, through the same token.
    let client = application(&db, &token.pin, &key_path).await;
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES (1, $1)",
            &[&"123-45-6789"],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT ssn FROM people WHERE ssn = $1", &[&"123-45-6789"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "123-45-6789");
}

async fn application(db: &TestDatabase, pin: &str, key_path: &str) -> Client {
    let pin = pin.to_owned();
    let store = Pkcs11KeyStore::new(SoftHsm::shared().config().pin(PinSource::Callback(Arc::new(
        move |_| Some(Zeroizing::new(pin.clone())),
    ))))
    .unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(Arc::new(store), TrustedKeyPaths::only([key_path]))
        .unwrap();
    let encryption = Encryption::new(EncryptionConfig::new(registry));
    let (inner, connection) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    let (client, connection) = Client::with_connection(inner, connection, encryption);
    tokio::spawn(connection);
    client
}
