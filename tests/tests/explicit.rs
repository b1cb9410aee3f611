//! Explicit encryption: `Client::encrypt_for` and `Client::decrypt_from`
//! agree with the transparent path, cell for cell, and refuse what it
//! refuses.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::{ColumnName, Error};
use aepg_tests::fixture::EncryptedDatabase;

#[tokio::test]
async fn explicit_cells_are_the_transparent_paths_cells() {
    let db = EncryptedDatabase::new("explicit").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("score", "int4", Randomized).await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext, score aepg.ciphertext, note text)",
        &[("people", "ssn", "ssn"), ("people", "score", "score")],
    )
    .await;
    let client = db.client().await;
    let ssn = ColumnName::new("public", "people", "ssn");
    let score = ColumnName::new("public", "people", "score");

    // Written through aepg, read as cells without it, decrypted explicitly.
    client
        .execute(
            "INSERT INTO people (id, ssn, score) VALUES ($1, $2, $3)",
            &[&1, &"111-11-1111", &42i32],
        )
        .await
        .unwrap();
    let row = db
        .plain
        .query_one(
            "SELECT ssn::bytea, score::bytea FROM people WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let (ssn_cell, score_cell): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
    assert_eq!(
        client
            .decrypt_from::<String>(&ssn, &ssn_cell)
            .await
            .unwrap(),
        "111-11-1111"
    );
    assert_eq!(
        client
            .decrypt_from::<i32>(&score, &score_cell)
            .await
            .unwrap(),
        42
    );
    // Deterministic: the explicit cell is the stored one.
    let explicit = client
        .encrypt_for(&ssn, &"111-11-1111")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explicit, ssn_cell);
    assert_eq!(
        client.encrypt_for(&ssn, &None::<String>).await.unwrap(),
        None
    );

    // Encrypted explicitly, stored without aepg, read through it.
    let cell = client.encrypt_for(&score, &7i32).await.unwrap().unwrap();
    let ssn_cell = client
        .encrypt_for(&ssn, &"222-22-2222")
        .await
        .unwrap()
        .unwrap();
    db.plain
        .execute(
            "INSERT INTO people (id, ssn, score) VALUES (2, $1::bytea::aepg.ciphertext, $2::bytea::aepg.ciphertext)",
            &[&ssn_cell, &cell],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT score FROM people WHERE ssn = $1", &[&"222-22-2222"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("score"), 7);

    // What the transparent path refuses, the explicit one refuses.
    let error = client.encrypt_for(&score, &7i64).await.unwrap_err();
    assert!(matches!(error, Error::Value { .. }), "{error}");
    let note = ColumnName::new("public", "people", "note");
    let error = client.encrypt_for(&note, &"x").await.unwrap_err();
    assert!(
        error.to_string().contains("not an encrypted column"),
        "{error}"
    );
    // A cell of one column is not decrypted as another's.
    let error = client
        .decrypt_from::<i32>(&score, &ssn_cell)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Decrypt { .. }), "{error}");
    let error = client.decrypt_from::<i64>(&score, &cell).await.unwrap_err();
    assert!(matches!(error, Error::ResultType { .. }), "{error}");
}
