//! The mission: with the server logging every statement and parameter, no
//! plaintext of an encrypted column appears in the server's log, data
//! directory or WAL. A plaintext control value must be found, which proves
//! the search works.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;

use aepg::cell::EncryptionMode;
use aepg::types::ToSql;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;

/// One value stored in an encrypted column, and the byte strings that would
/// betray it (its text form, its binary form when long enough to be
/// distinctive, and the hex of each).
struct Secret {
    sql_type: &'static str,
    value: Box<dyn ToSql + Sync + Send>,
    needles: Vec<Vec<u8>>,
}

fn secret(
    sql_type: &'static str,
    value: impl ToSql + Sync + Send + 'static,
    text: &str,
    binary: &[u8],
) -> Secret {
    let mut needles = Vec::new();
    if !text.is_empty() {
        needles.push(text.as_bytes().to_vec());
        needles.push(hex::encode(text).into_bytes());
    }
    if binary.len() >= 8 {
        needles.push(binary.to_vec());
        needles.push(hex::encode(binary).into_bytes());
    }
    Secret {
        sql_type,
        value: Box::new(value),
        needles,
    }
}

fn secrets() -> Vec<Secret> {
    let uuid = uuid::Uuid::from_u128(0x5ec2_e7a1_d00d_4f00_9abc_de01_2345_6789);
    let json = serde_json::json!({"diagnosis": "MISSION-JSON-arrhythmia"});
    let jsonb = serde_json::json!({"diagnosis": "MISSION-JSONB-nephritis"});
    vec![
        secret(
            "text",
            "MISSION-TEXT-Lovelace".to_owned(),
            "MISSION-TEXT-Lovelace",
            b"",
        ),
        secret(
            "varchar(40)",
            "MISSION-VARCHAR-Babbage".to_owned(),
            "MISSION-VARCHAR-Babbage",
            b"",
        ),
        secret(
            "bytea",
            b"MISSION-BYTEA-Menabrea".to_vec(),
            "MISSION-BYTEA-Menabrea",
            b"",
        ),
        secret("json", json.clone(), "MISSION-JSON-arrhythmia", b""),
        secret("jsonb", jsonb, "MISSION-JSONB-nephritis", b""),
        secret(
            "int8",
            7_310_592_846_113_579i64,
            "7310592846113579",
            &7_310_592_846_113_579i64.to_be_bytes(),
        ),
        secret("int4", 1_987_654_321i32, "1987654321", b""),
        secret(
            "float8",
            31_415.926_535_897_93f64,
            "31415.92653589793",
            &31_415.926_535_897_93f64.to_be_bytes(),
        ),
        secret(
            "numeric(20,4)",
            rust_decimal::Decimal::new(98_765_432_109_876, 4),
            "9876543210.9876",
            b"",
        ),
        secret("uuid", uuid, &uuid.to_string(), uuid.as_bytes()),
        secret("float4", 2.718_281_7f32, "2.7182817", b""),
        secret(
            "date",
            chrono::NaiveDate::from_ymd_opt(1815, 12, 10).unwrap(),
            "1815-12-10",
            b"",
        ),
        secret(
            "timestamp",
            chrono::NaiveDate::from_ymd_opt(1843, 7, 1)
                .unwrap()
                .and_hms_opt(12, 30, 5)
                .unwrap(),
            "1843-07-01 12:30:05",
            b"",
        ),
        // Too short to search for without false hits, but part of the workload.
        secret("bool", true, "", b""),
        secret("int2", 31_337i16, "", b""),
        secret(
            "timestamptz",
            chrono::DateTime::from_timestamp(1_234_567_891, 0).unwrap(),
            "2009-02-13 23:31:31",
            b"",
        ),
    ]
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path, files: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, files);
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path.display().to_string(), bytes));
        }
    }
}

/// The files that hold `needle`.
fn holding<'f>(files: &'f [(String, Vec<u8>)], needle: &[u8]) -> Vec<&'f str> {
    let finder = memchr::memmem::Finder::new(needle);
    files
        .iter()
        .filter(|(_, bytes)| finder.find(bytes).is_some())
        .map(|(path, _)| path.as_str())
        .collect()
}

#[tokio::test]
async fn no_plaintext_reaches_the_server_log_data_directory_or_wal() {
    let mut server = DedicatedServer::start(&[
        ("log_statement", "all"),
        ("log_parameter_max_length", "-1"),
        ("log_min_duration_statement", "0"),
    ])
    .await
    .unwrap();
    let db = EncryptedDatabase::on(server.create_database("mission").await.unwrap()).await;
    let secrets = secrets();
    let control = "MISSION-CONTROL-plaintext-column";
    let mut tables = Vec::new();
    for (index, secret) in secrets.iter().enumerate() {
        for mode in [EncryptionMode::Deterministic, EncryptionMode::Randomized] {
            let name = format!("secret_{index}_{mode}");
            db.setting(&name, secret.sql_type, mode).await;
            db.table(
                &format!("CREATE TABLE {name} (id int, control text, v aepg.ciphertext)"),
                &[(&name, "v", &name)],
            )
            .await;
            tables.push((name, index, mode));
        }
    }
    let client = db.client().await;
    for (name, index, mode) in &tables {
        let value = secrets[*index].value.as_ref();
        client
            .execute(
                &format!("INSERT INTO {name} (id, control, v) VALUES ($1, $2, $3)"),
                &[&1, &control, value],
            )
            .await
            .unwrap();
        client
            .execute(
                &format!("UPDATE {name} SET v = $1 WHERE id = $2"),
                &[value, &1],
            )
            .await
            .unwrap();
        if *mode == EncryptionMode::Deterministic {
            let rows = client
                .query(&format!("SELECT v FROM {name} WHERE v = $1"), &[value])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{name}");
        }
        let rows = client
            .query(&format!("SELECT id, v FROM {name}"), &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{name}");
    }
    db.plain.batch_execute("CHECKPOINT").await.unwrap();
    let log = server.server_log().await.unwrap();
    server.stop().await.unwrap();
    let copy = tempfile::tempdir().unwrap();
    let data = server
        .copy_data_dir(copy.path().join("data"))
        .await
        .unwrap();
    assert!(data.join("pg_wal").is_dir(), "the copy holds the WAL");

    // The search works: the control value, sent as a plaintext parameter, is everywhere.
    assert!(log.contains(control), "control value missing from the log");
    let mut files = Vec::new();
    files_under(&data, &mut files);
    let hits = holding(&files, control.as_bytes());
    assert!(
        !hits.is_empty(),
        "control value missing from the data directory"
    );
    assert!(
        hits.iter().any(|path| path.contains("pg_wal")),
        "control value missing from the WAL: {hits:?}"
    );

    let mut leaks = Vec::new();
    for secret in &secrets {
        for needle in &secret.needles {
            let shown = String::from_utf8_lossy(needle).into_owned();
            if memchr::memmem::find(log.as_bytes(), needle).is_some() {
                leaks.push(format!(
                    "{} value {shown:?} in the server log",
                    secret.sql_type
                ));
            }
            for hit in holding(&files, needle) {
                leaks.push(format!("{} value {shown:?} in {hit}", secret.sql_type));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "plaintext reached the server:\n{}",
        leaks.join("\n")
    );
}
