//! Every supported plaintext type, in both modes, NULL included.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::fmt::Debug;

use aepg::cell::EncryptionMode;
use aepg::types::{FromSql, ToSql};
use aepg::Client;
use aepg_tests::fixture::EncryptedDatabase;

/// Stores `value` (and NULL) in an encrypted column of `sql_type` in both
/// modes, reads it back, and, for deterministic columns, finds it by equality.
async fn round_trip<T>(db: &EncryptedDatabase, client: &Client, sql_type: &str, value: T)
where
    T: ToSql + Sync + for<'a> FromSql<'a> + PartialEq + Debug,
{
    for mode in [EncryptionMode::Deterministic, EncryptionMode::Randomized] {
        let name = format!(
            "{}_{}",
            sql_type.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            mode
        );
        db.setting(&name, sql_type, mode).await;
        db.table(
            &format!("CREATE TABLE {name} (id int, v aepg.ciphertext)"),
            &[(&name, "v", &name)],
        )
        .await;
        client.refresh_catalog().await.unwrap();
        client
            .execute(
                &format!("INSERT INTO {name} (id, v) VALUES ($1, $2), ($3, $4)"),
                &[&1, &value, &2, &None::<T>],
            )
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let row = client
            .query_one(&format!("SELECT v FROM {name} WHERE id = $1"), &[&1])
            .await
            .unwrap();
        assert_eq!(row.get::<_, T>(0), value, "{name}");
        let row = client
            .query_one(&format!("SELECT v FROM {name} WHERE id = $1"), &[&2])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<T>>(0), None, "{name}");
        if mode == EncryptionMode::Deterministic {
            let found = client
                .query(&format!("SELECT id FROM {name} WHERE v = $1"), &[&value])
                .await
                .unwrap();
            assert_eq!(found.len(), 1, "{name}");
        }
        let stored: Vec<u8> = db
            .plain
            .query_one(&format!("SELECT v::bytea FROM {name} WHERE id = 1"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored[0], 1, "{name}: a cell is stored");
    }
}

#[tokio::test]
async fn every_type_round_trips_in_both_modes() {
    let db = EncryptedDatabase::new("types").await;
    let client = db.client().await;
    round_trip(&db, &client, "bool", true).await;
    round_trip(&db, &client, "int2", -12i16).await;
    round_trip(&db, &client, "int4", 1_815_000i32).await;
    round_trip(&db, &client, "int8", -9_007_199_254_740_993i64).await;
    round_trip(&db, &client, "float4", 1.5f32).await;
    round_trip(&db, &client, "float8", -2.25e100f64).await;
    round_trip(
        &db,
        &client,
        "numeric(12,2)",
        rust_decimal::Decimal::new(123_456_789, 2),
    )
    .await;
    round_trip(&db, &client, "text", "Ada Lovelace ✓".to_owned()).await;
    round_trip(&db, &client, "varchar(20)", "short enough".to_owned()).await;
    round_trip(&db, &client, "bytea", vec![0u8, 1, 2, 0x80, 0, 0]).await;
    round_trip(
        &db,
        &client,
        "uuid",
        uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
    )
    .await;
    round_trip(
        &db,
        &client,
        "date",
        chrono::NaiveDate::from_ymd_opt(1815, 12, 10).unwrap(),
    )
    .await;
    let timestamp = chrono::NaiveDate::from_ymd_opt(1843, 7, 1)
        .unwrap()
        .and_hms_micro_opt(12, 30, 5, 123_456)
        .unwrap();
    round_trip(&db, &client, "timestamp", timestamp).await;
    round_trip(&db, &client, "timestamptz", timestamp.and_utc()).await;
    round_trip(
        &db,
        &client,
        "json",
        serde_json::json!({"engine": "analytical", "year": 1843}),
    )
    .await;
    round_trip(
        &db,
        &client,
        "jsonb",
        serde_json::json!({"notes": ["G", "Bernoulli"]}),
    )
    .await;
}

#[tokio::test]
async fn varchar_length_is_enforced_before_sending() {
    let db = EncryptedDatabase::new("varchar").await;
    db.setting("code", "varchar(3)", EncryptionMode::Deterministic)
        .await;
    db.table(
        "CREATE TABLE codes (v aepg.ciphertext)",
        &[("codes", "v", "code")],
    )
    .await;
    let client = db.client().await;
    client
        .execute("INSERT INTO codes (v) VALUES ($1)", &[&"abc"])
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO codes (v) VALUES ($1)", &[&"abcd"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("longer than 3 characters"),
        "{err}"
    );
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn reading_with_the_wrong_rust_type_is_an_error() {
    let db = EncryptedDatabase::new("read_type").await;
    db.setting("n", "int8", EncryptionMode::Randomized).await;
    db.table(
        "CREATE TABLE numbers (v aepg.ciphertext)",
        &[("numbers", "v", "n")],
    )
    .await;
    let client = db.client().await;
    client
        .execute("INSERT INTO numbers (v) VALUES ($1)", &[&7i64])
        .await
        .unwrap();
    let row = client
        .query_one("SELECT v FROM numbers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(err.to_string().contains("bigint"), "{err}");
}
