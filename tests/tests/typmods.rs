//! Type modifiers on encrypted columns behave as on plaintext columns.
//!
//! The server cannot apply `numeric(p,s)`, `varchar(n)`, `char(n)` or
//! `timestamp(p)` to ciphertext, so aepg applies them before encrypting.
//! Each test here stores the same values through aepg into an encrypted
//! column and through plain tokio-postgres into a plaintext column of the
//! same type, and requires the same outcome: the same refusals, the same
//! values read back (rounded, padded, cut), and the same rows found by
//! equality for every value.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::fmt::Debug;

use aepg::cell::EncryptionMode::Deterministic;
use aepg::types::{FromSql, ToSql};
use aepg::Client;
use aepg_tests::fixture::EncryptedDatabase;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;

/// Stores `values` in both columns and compares everything the server would show.
async fn same_as_plaintext<T>(db: &EncryptedDatabase, client: &Client, sql_type: &str, values: &[T])
where
    T: ToSql + Sync + for<'a> FromSql<'a> + PartialEq + Debug,
{
    let name = sql_type.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let (encrypted, plain) = (format!("e_{name}"), format!("p_{name}"));
    db.setting(&name, sql_type, Deterministic).await;
    db.table(
        &format!("CREATE TABLE {encrypted} (id int, v aepg.ciphertext)"),
        &[(&encrypted, "v", &name)],
    )
    .await;
    db.plain
        .batch_execute(&format!("CREATE TABLE {plain} (id int, v {sql_type})"))
        .await
        .unwrap();
    client.refresh_catalog().await.unwrap();
    for (id, value) in (0..).zip(values) {
        let insert = |table: &str| format!("INSERT INTO {table} (id, v) VALUES ($1, $2)");
        let server = db.plain.execute(&insert(&plain), &[&id, value]).await;
        let ours = client.execute(&insert(&encrypted), &[&id, value]).await;
        assert_eq!(
            server.is_ok(),
            ours.is_ok(),
            "{sql_type} {value:?}: the server says {server:?}, aepg {ours:?}"
        );
        if let Err(error) = ours {
            let message = error.to_string();
            assert!(
                message.contains(&format!("public.{encrypted}.v")),
                "names the column: {message}"
            );
            let shown = format!("{value:?}");
            assert!(
                shown.len() < 4 || !message.contains(shown.trim_matches('"')),
                "quotes the value: {message}"
            );
        }
    }
    let read = |table: &str| format!("SELECT id, v FROM {table} ORDER BY id");
    let expected: Vec<(i32, T)> = rows(db.plain.query(&read(&plain), &[]).await.unwrap());
    let stored = client.query(&read(&encrypted), &[]).await.unwrap();
    let stored: Vec<(i32, T)> = stored.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(stored, expected, "{sql_type}: values as stored");
    for value in values {
        let find = |table: &str| format!("SELECT id FROM {table} WHERE v = $1 ORDER BY id");
        let expected: Vec<i32> = db
            .plain
            .query(&find(&plain), &[value])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let found: Vec<i32> = client
            .query(&find(&encrypted), &[value])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(found, expected, "{sql_type}: rows equal to {value:?}");
    }
}

fn rows<T: for<'a> FromSql<'a>>(rows: Vec<tokio_postgres::Row>) -> Vec<(i32, T)> {
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

fn decimals(values: &[&str]) -> Vec<Decimal> {
    values.iter().map(|value| value.parse().unwrap()).collect()
}

#[tokio::test]
async fn numeric_precision_and_scale_round_and_overflow_as_on_the_server() {
    let db = EncryptedDatabase::new("typmod_numeric").await;
    let client = db.client().await;
    let values = decimals(&[
        "12.345",
        "12.5",
        "12.50",
        "12.35",
        "-12.345",
        "0.005",
        "-0.004",
        "0",
        "0.00",
        "9999.994",
        "9999.995",
        "12345.6",
        "99.999",
        "100.00",
        "0.0000000001",
        "-9999.99",
        "1.00000000000000000001",
    ]);
    same_as_plaintext(&db, &client, "numeric(6,2)", &values).await;
    let values = decimals(&["0.9994", "0.9995", "0.5", "-0.0005", "1", "0.1239"]);
    same_as_plaintext(&db, &client, "numeric(3,3)", &values).await;
    let values = decimals(&["1234.5", "9999.4", "9999.5", "-9999.5", "0.4", "10000"]);
    same_as_plaintext(&db, &client, "numeric(4)", &values).await;
    let values = decimals(&["123456789012.3456", "1e-20", "7.00000", "-0.0"]);
    same_as_plaintext(&db, &client, "numeric(20,8)", &values).await;
}

#[tokio::test]
async fn character_lengths_cut_pad_and_refuse_as_on_the_server() {
    let db = EncryptedDatabase::new("typmod_chars").await;
    let client = db.client().await;
    let values: Vec<String> = [
        "abc", "abcd", "ab  ", "abc ", "abc     ", "ü✓é", "ü✓éx", "a", "", " ", "ab",
    ]
    .map(str::to_owned)
    .to_vec();
    same_as_plaintext(&db, &client, "varchar(3)", &values).await;
    same_as_plaintext(&db, &client, "char(3)", &values).await;
    same_as_plaintext(&db, &client, "char", &values).await;
    same_as_plaintext(
        &db,
        &client,
        "varchar(3)[]",
        &[
            vec!["ab".to_owned()],
            vec!["abcd".to_owned()],
            vec!["ab  ".to_owned()],
        ],
    )
    .await;
    same_as_plaintext(
        &db,
        &client,
        "char(2)[]",
        &[
            vec!["a".to_owned(), "b ".to_owned()],
            vec!["abc".to_owned()],
        ],
    )
    .await;
}

#[tokio::test]
async fn fractional_seconds_round_as_on_the_server() {
    let db = EncryptedDatabase::new("typmod_time").await;
    let client = db.client().await;
    let at = |date: (i32, u32, u32), micros: u32| -> NaiveDateTime {
        NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .unwrap()
            .and_hms_micro_opt(12, 30, 5, micros)
            .unwrap()
    };
    let timestamps: Vec<NaiveDateTime> = [
        ((2024, 2, 29), 500_000),
        ((2024, 2, 29), 499_999),
        ((1843, 7, 1), 500_000),
        ((1843, 7, 1), 499_999),
        ((1999, 12, 31), 123_456),
        ((2000, 1, 1), 0),
        ((2000, 1, 1), 5),
    ]
    .into_iter()
    .map(|(date, micros)| at(date, micros))
    .collect();
    same_as_plaintext(&db, &client, "timestamp(0)", &timestamps).await;
    same_as_plaintext(&db, &client, "timestamp(3)", &timestamps).await;
    same_as_plaintext(&db, &client, "timestamp", &timestamps).await;
    let instants: Vec<_> = timestamps.iter().map(|t| t.and_utc()).collect();
    same_as_plaintext(&db, &client, "timestamptz(2)", &instants).await;
    let times: Vec<NaiveTime> = [(1, 250_000), (2, 249_999), (3, 750_001), (0, 0)]
        .into_iter()
        .map(|(second, micros)| NaiveTime::from_hms_micro_opt(8, 15, second, micros).unwrap())
        .collect();
    same_as_plaintext(&db, &client, "time(1)", &times).await;
    same_as_plaintext(&db, &client, "time(0) without time zone", &times).await;
}

/// One parameter stored into a column and compared with it in the same
/// statement: the server would store the rounded value and compare the
/// value as given; one cell cannot be both, so a value the typmod changes
/// is refused, and one it does not change works both ways.
#[tokio::test]
async fn a_value_both_stored_and_compared_must_fit_the_typmod_unchanged() {
    let db = EncryptedDatabase::new("typmod_both").await;
    db.setting("amount", "numeric(6,2)", Deterministic).await;
    db.table(
        "CREATE TABLE ledger (id int, v aepg.ciphertext)",
        &[("ledger", "v", "amount")],
    )
    .await;
    let client = db.client().await;
    let once = "INSERT INTO ledger (id, v) SELECT $1, $2 \
                WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE v = $2)";
    let amount: Decimal = "12.5".parse().unwrap();
    assert_eq!(client.execute(once, &[&1, &amount]).await.unwrap(), 1);
    assert_eq!(client.execute(once, &[&2, &amount]).await.unwrap(), 0);
    let rounded: Decimal = "12.345".parse().unwrap();
    let error = client.execute(once, &[&3, &rounded]).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("public.ledger.v") && message.contains("type modifier"),
        "{message}"
    );
    assert!(!message.contains("12.345"), "{message}");
    let stored: Vec<Decimal> = client
        .query("SELECT v FROM ledger", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["12.50".parse::<Decimal>().unwrap()]);
}
