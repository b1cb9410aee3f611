//! Revoking a master key at its key store: every operation that needs it
//! fails with an error naming the key and its store, nothing is
//! half-written, and the key cache's TTL bounds how long a running client
//! keeps reading.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::Duration;

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg_tests::fixture::{master_key_pem, EncryptedDatabase, MASTER_KEY};

const KEY_TTL: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_revoked_master_key_cuts_clients_off_after_the_key_ttl_and_nothing_is_half_written() {
    let db = EncryptedDatabase::new("revocation").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("note", "text", Randomized).await;
    db.table(
        "CREATE TABLE people (id int, name text, ssn aepg.ciphertext, note aepg.ciphertext)",
        &[("people", "ssn", "ssn"), ("people", "note", "note")],
    )
    .await;
    let client = db
        .client_with(db.encryption_with(|config| config.key_ttl(KEY_TTL)))
        .await;
    let insert = "INSERT INTO people (id, name, ssn, note) VALUES ($1, $2, $3, $4)";
    client
        .execute(insert, &[&1, &"Ada", &"111-11-1111", &"first"])
        .await
        .unwrap();
    let read = "SELECT ssn, note FROM people WHERE id = 1";
    client.query_one(read, &[]).await.unwrap();

    // Revoked at the store. The cached column key keeps this client
    // reading, and writing, for at most the key TTL.
    assert!(db.store.memory().remove_key(MASTER_KEY));
    let revoked_at = std::time::Instant::now();
    let row = client.query_one(read, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("ssn"), "111-11-1111");
    tokio::time::sleep(KEY_TTL.saturating_sub(revoked_at.elapsed()) + Duration::from_millis(200))
        .await;

    // Reading: the row arrives, each encrypted value fails, naming the
    // column, the column key, and the master key with its store.
    let row = client.query_one(read, &[]).await.unwrap();
    for column in ["ssn", "note"] {
        let error = row.try_get::<_, String>(column).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("public.people.{column}")),
            "{message}"
        );
        let chain = aepg_error_chain(&error);
        assert!(chain.contains("column key"), "{chain}");
        assert!(
            chain.contains(MASTER_KEY) && chain.contains("memory"),
            "{chain}"
        );
    }
    // Plaintext columns still read.
    let name: String = client
        .query_one("SELECT name FROM people WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Ada");

    // Writing: refused before anything is sent; nothing half-written.
    let error = client
        .execute(insert, &[&2, &"Grace", &"222-22-2222", &"second"])
        .await
        .unwrap_err();
    let chain = aepg_error_chain(&error);
    assert!(
        chain.contains("public.people.ssn") || chain.contains("public.people.note"),
        "{chain}"
    );
    assert!(chain.contains(MASTER_KEY), "{chain}");
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // A client starting now cannot verify the catalog's records at all.
    let fresh = db.client_with(db.encryption_with(|config| config)).await;
    let error = fresh.query(read, &[]).await.unwrap_err();
    let chain = aepg_error_chain(&error);
    assert!(chain.contains(MASTER_KEY), "{chain}");

    // The key back in its store: the running client recovers at its next
    // lookup after the failure backoff (its last lookup failed just now),
    // with no restart.
    db.store
        .memory()
        .import_pem(MASTER_KEY, master_key_pem())
        .unwrap();
    tokio::time::sleep(aepg::DEFAULT_KEY_FAILURE_BACKOFF + Duration::from_millis(100)).await;
    let row = client.query_one(read, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("note"), "first");
}

/// An error with its sources.
fn aepg_error_chain(error: &aepg::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    eprintln!("  chain: {text}");
    text
}
