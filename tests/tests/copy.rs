//! Encrypted binary COPY: bulk loading and reading through aepg, against a
//! real server; what the server stores, and what is refused.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::Error;
use aepg_tests::fixture::EncryptedDatabase;
use futures_util::TryStreamExt;

const ROWS: i32 = 2_000;

async fn people() -> (EncryptedDatabase, aepg::Client) {
    let db = EncryptedDatabase::new("copy").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("balance", "int8", Randomized).await;
    db.setting("code", "varchar(3)", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int PRIMARY KEY, name text, ssn aepg.ciphertext, \
         balance aepg.ciphertext, code aepg.ciphertext)",
        &[
            ("people", "ssn", "ssn"),
            ("people", "balance", "balance"),
            ("people", "code", "code"),
        ],
    )
    .await;
    let client = db.client().await;
    (db, client)
}

/// The rows the server holds in `people`, as its owner sees them.
async fn stored_people(db: &EncryptedDatabase) -> i64 {
    db.plain
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0)
}

/// Every row of a binary `COPY … TO STDOUT` through `client`, decrypted.
async fn copied_out(client: &aepg::Client, sql: &str) -> Vec<aepg::Row> {
    client
        .copy_out(sql)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn ssn(id: i32) -> String {
    format!("{:03}-{:02}-{:04}", id % 1000, id % 100, id)
}

#[tokio::test]
async fn rows_copied_in_are_encrypted_and_copied_out_decrypted() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, name, ssn, balance, code) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    for id in 0..ROWS {
        let balance = i64::from(id) * 100;
        let code = if id % 2 == 0 { Some("ab") } else { None };
        writer
            .write(&[&id, &format!("name {id}"), &ssn(id), &balance, &code])
            .await
            .unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), u64::try_from(ROWS).unwrap());

    // Through a query: decrypted, and found by equality.
    let row = client
        .query_one(
            "SELECT id, balance, code FROM people WHERE ssn = $1",
            &[&ssn(1234)],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("id"), 1234);
    assert_eq!(row.get::<_, i64>("balance"), 123_400);
    assert_eq!(row.get::<_, Option<String>>("code").as_deref(), Some("ab"));
    // The server holds cells.
    let stored = db
        .plain
        .query_one(
            "SELECT ssn::bytea, balance::bytea FROM people WHERE id = 1234",
            &[],
        )
        .await
        .unwrap();
    for index in 0..2 {
        let cell: Vec<u8> = stored.get(index);
        assert_eq!(cell[0], 1, "a cell");
        assert!(!cell.windows(4).any(|w| w == b"1234"), "no plaintext");
    }

    // Out again, decrypted: a table's columns, and a query.
    let rows = copied_out(
        &client,
        "COPY people (id, ssn, balance) TO STDOUT (FORMAT binary)",
    )
    .await;
    assert_eq!(rows.len(), usize::try_from(ROWS).unwrap());
    for row in &rows {
        let id: i32 = row.get("id");
        assert_eq!(row.get::<_, String>("ssn"), ssn(id));
        assert_eq!(row.get::<_, i64>("balance"), i64::from(id) * 100);
    }
    let rows = copied_out(
        &client,
        "COPY (SELECT id, code FROM people WHERE id < 10 ORDER BY id) TO STDOUT (FORMAT binary)",
    )
    .await;
    let codes: Vec<Option<String>> = rows.iter().map(|row| row.get("code")).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes[0].as_deref(), Some("ab"));
    assert_eq!(codes[1], None);
}

#[tokio::test]
async fn a_value_that_does_not_fit_aborts_the_copy_and_names_the_column() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, ssn, code) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    writer.write(&[&1, &ssn(1), &"ok"]).await.unwrap();
    // varchar(3), as the server would enforce it on a plaintext column.
    let error = writer.write(&[&2, &ssn(2), &"toolong"]).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Value { .. }), "{message}");
    assert!(
        message.contains("public.people.code") && message.contains("3 characters"),
        "{message}"
    );
    assert!(!message.contains("toolong"), "{message}");
    // An int4 for the int8 column.
    let error = writer.write(&[&3, &ssn(3), &7i32]).await.unwrap_err();
    assert!(error.to_string().contains("public.people.code"), "{error}");
    let error = writer.write(&[&3]).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::CopyRowLength {
                expected: 3,
                given: 1
            }
        ),
        "{error}"
    );
    drop(writer);
    // Nothing of the aborted COPY is stored, and the connection goes on.
    assert_eq!(stored_people(&db).await, 0);
    let count: i64 = client
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

/// A row refused part way (its first values already taken) leaves nothing
/// of itself: the writer goes on, and the rows around it are stored whole,
/// each value in its own column, across several batches.
#[tokio::test]
async fn a_row_refused_part_way_leaves_nothing_and_the_writer_goes_on() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, name, ssn, balance, code) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    for id in 0..ROWS {
        let balance = i64::from(id) * 100;
        if id % 7 == 3 {
            // id, name, ssn and balance taken; code (varchar(3)) refused.
            let error = writer
                .write(&[&id, &format!("name {id}"), &ssn(id), &balance, &"toolong"])
                .await
                .unwrap_err();
            assert!(error.to_string().contains("public.people.code"), "{error}");
        }
        if id % 7 == 5 {
            // The plaintext name column refused after id was taken.
            let error = writer
                .write(&[&id, &7i64, &ssn(id), &balance, &"ab"])
                .await
                .unwrap_err();
            assert!(matches!(error, Error::CopyValue { .. }), "{error}");
        }
        if id % 7 != 3 {
            writer
                .write(&[&id, &format!("name {id}"), &ssn(id), &balance, &"ab"])
                .await
                .unwrap();
        }
    }
    let stored = writer.finish().await.unwrap();
    let expected = (0..ROWS).filter(|id| id % 7 != 3).count();
    assert_eq!(stored, u64::try_from(expected).unwrap());
    let rows = copied_out(
        &client,
        "COPY people (id, name, ssn, balance, code) TO STDOUT (FORMAT binary)",
    )
    .await;
    assert_eq!(rows.len(), expected);
    for row in &rows {
        let id: i32 = row.get("id");
        assert_ne!(id % 7, 3);
        assert_eq!(row.get::<_, String>("name"), format!("name {id}"));
        assert_eq!(row.get::<_, String>("ssn"), ssn(id));
        assert_eq!(row.get::<_, i64>("balance"), i64::from(id) * 100);
        assert_eq!(row.get::<_, String>("code"), "ab");
    }
    let cells: i64 = db
        .plain
        .query_one(
            "SELECT count(*) FROM people WHERE get_byte(code::bytea, 0) = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cells, i64::try_from(expected).unwrap());
}

/// A value whose encoder panics part way through its writes.
#[derive(Debug)]
struct PanickingValue;

impl aepg::types::ToSql for PanickingValue {
    fn to_sql(
        &self,
        _: &aepg::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<aepg::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(b"half");
        panic!("an application's encoder fails");
    }

    fn accepts(_: &aepg::types::Type) -> bool {
        true
    }

    aepg::types::to_sql_checked!();
}

/// An encoder that panics after the row's first values were taken: were
/// the writer to go on, every later value would land one column over (an
/// encrypted column's plaintext in a plaintext column). It refuses to go
/// on instead, and nothing of the COPY is stored.
#[tokio::test]
async fn a_value_whose_encoder_panics_ends_the_copy() {
    use futures_util::FutureExt;
    use std::panic::AssertUnwindSafe;

    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, ssn, name) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    writer.write(&[&1, &ssn(1), &"one"]).await.unwrap();
    let panicked = AssertUnwindSafe(writer.write(&[&2, &ssn(2), &PanickingValue]))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    let error = writer.write(&[&3, &ssn(3), &"three"]).await.unwrap_err();
    assert!(matches!(error, Error::CopyRefused { .. }), "{error}");
    let error = writer.finish().await.unwrap_err();
    assert!(matches!(error, Error::CopyRefused { .. }), "{error}");
    assert_eq!(stored_people(&db).await, 0);
}

#[tokio::test]
async fn copies_that_could_leak_or_cannot_be_decrypted_are_refused() {
    let (db, client) = people().await;
    for sql in [
        // Text: cells cannot travel, nor be decrypted.
        "COPY people (id, ssn) FROM STDIN",
        "COPY people (id, ssn) FROM STDIN (FORMAT csv)",
        // No column list: the server's column order is not signed.
        "COPY people FROM STDIN (FORMAT binary)",
        // Server files and programs.
        "COPY people (id, ssn) FROM '/tmp/people' (FORMAT binary)",
        "COPY people (id, ssn) FROM PROGRAM 'cat' (FORMAT binary)",
        // Not a COPY, or two statements.
        "INSERT INTO people (id) VALUES (1)",
        "COPY people (id) FROM STDIN (FORMAT binary); SELECT 1",
    ] {
        let error = client.copy_in(sql).await.unwrap_err();
        assert!(matches!(error, Error::CopyRefused { .. }), "{sql}: {error}");
    }
    for sql in [
        "COPY people (id, ssn) TO STDOUT",
        "COPY people (id, ssn) TO '/tmp/people' (FORMAT binary)",
        "COPY (SELECT ssn FROM people WHERE ssn = $1) TO STDOUT (FORMAT binary)",
    ] {
        assert!(client.copy_out(sql).await.is_err(), "{sql}");
    }
    // What the equivalent statement refuses, the COPY refuses: an
    // encrypted column compared with LIKE, a ciphertext column no signed
    // record names.
    assert!(matches!(
        client
            .copy_out("COPY (SELECT id FROM people WHERE ssn LIKE 'a%') TO STDOUT (FORMAT binary)")
            .await
            .unwrap_err(),
        Error::Refused(_)
    ));
    db.plain
        .batch_execute("ALTER TABLE people ADD COLUMN secret aepg.ciphertext")
        .await
        .unwrap();
    client.refresh_catalog().await.unwrap();
    let error = client
        .copy_in("COPY people (id, secret) FROM STDIN (FORMAT binary)")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("secret"), "{error}");
    // The plain client path still refuses COPY on encrypted tables.
    assert!(client
        .batch_execute("COPY people (id, ssn) FROM STDIN (FORMAT binary)")
        .await
        .is_err());
}

#[tokio::test]
async fn a_copy_never_goes_to_a_same_named_table_ahead_in_the_search_path() {
    let (db, client) = people().await;
    // A schema ahead of public in the search path, empty when the COPY is
    // first planned; a same-named table without encrypted columns appears
    // there afterwards.
    db.plain.batch_execute("CREATE SCHEMA decoy").await.unwrap();
    client
        .batch_execute("SET search_path = decoy, public")
        .await
        .unwrap();
    let copy = "COPY people (id, ssn) FROM STDIN (FORMAT binary)";
    let mut writer = client.copy_in(copy).await.unwrap();
    writer.write(&[&1, &ssn(1)]).await.unwrap();
    writer.finish().await.unwrap();
    db.plain
        .batch_execute("CREATE TABLE decoy.people (id int, ssn text)")
        .await
        .unwrap();
    // Planned afresh: the server now resolves `people` to the decoy, whose
    // ssn is text, where the analysis has an encrypted column: refused.
    let error = client.copy_in(copy).await.unwrap_err();
    assert!(
        matches!(error, Error::ParameterCrossCheck { number: 2, .. }),
        "{error}"
    );
    let decoy: i64 = db
        .plain
        .query_one("SELECT count(*) FROM decoy.people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(decoy, 0);
    let found = client
        .query("SELECT id FROM public.people WHERE ssn = $1", &[&ssn(1)])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// A column encrypted after a COPY was first planned: the next COPY (within
/// the catalog TTL, on a connection that hears no announcements) plans
/// afresh and encrypts it; the plaintext never reaches the column.
#[tokio::test]
async fn a_column_encrypted_after_a_copy_was_planned_never_receives_plaintext() {
    let (db, _client) = people().await;
    db.plain
        .batch_execute("CREATE TABLE contacts (id int, email text)")
        .await
        .unwrap();
    let encryption =
        db.encryption_with(|config| config.catalog_ttl(std::time::Duration::from_secs(3600)));
    let client = db.unwatched_client_with(encryption).await;
    let copy = "COPY contacts (id, email) FROM STDIN (FORMAT binary)";
    let mut writer = client.copy_in(copy).await.unwrap();
    writer.write(&[&1, &"first@example.com"]).await.unwrap();
    writer.finish().await.unwrap();

    // The administrator encrypts the (emptied) column.
    db.plain
        .batch_execute(
            "DELETE FROM contacts; \
             ALTER TABLE contacts ALTER COLUMN email TYPE aepg.ciphertext USING NULL",
        )
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &aepg::ColumnName::new("public", "contacts", "email"),
            "ssn",
        )
        .await
        .unwrap();

    let mut writer = client.copy_in(copy).await.unwrap();
    writer.write(&[&2, &"second@example.com"]).await.unwrap();
    writer.finish().await.unwrap();
    let cell: Vec<u8> = db
        .plain
        .query_one("SELECT email::bytea FROM contacts WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(cell[0], 1, "a cell");
    assert!(!cell.windows(6).any(|w| w == b"second"), "no plaintext");
}

#[tokio::test]
async fn copy_out_of_a_table_reads_it_alone_and_odd_names_are_refused() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, ssn) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    writer.write(&[&1, &ssn(1)]).await.unwrap();
    writer.finish().await.unwrap();
    // A table inheriting people, with a row of its own: COPY people TO
    // reads people alone, as PostgreSQL's COPY does.
    db.plain
        .batch_execute("CREATE TABLE people_child () INHERITS (people)")
        .await
        .unwrap();
    // (A DBA's row, made of the parent's cells: it would decrypt.)
    db.plain
        .batch_execute("INSERT INTO people_child SELECT * FROM people")
        .await
        .unwrap();
    let rows = copied_out(&client, "COPY people (id, ssn) TO STDOUT (FORMAT binary)").await;
    assert_eq!(rows.len(), 1);
    // Names sqlparser would print otherwise than written.
    for sql in [
        r#"COPY people (id, "s""sn") FROM STDIN (FORMAT binary)"#,
        r#"COPY "peo\ple" (id) FROM STDIN (FORMAT binary)"#,
    ] {
        let error = client.copy_in(sql).await.unwrap_err();
        assert!(matches!(error, Error::CopyRefused { .. }), "{sql}: {error}");
    }
}

/// A full scan is decrypted in batches on other threads while rows arrive:
/// rows keep their order, and a DBA's tampering fails only the cells it
/// touched, naming their columns, whether keys are kept or asked for each
/// row.
#[tokio::test]
async fn a_scan_decrypted_in_batches_keeps_order_and_fails_only_tampered_cells() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, ssn, balance) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    for id in 0..ROWS {
        writer
            .write(&[&id, &ssn(id), &(i64::from(id) * 3)])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    // One cell with a flipped byte, one moved from another setting's column.
    db.plain
        .batch_execute(
            "UPDATE people SET balance = set_byte(balance::bytea, 30, get_byte(balance::bytea, 30) # 1)::aepg.ciphertext \
             WHERE id = 500; \
             UPDATE people SET ssn = balance WHERE id = 1500",
        )
        .await
        .unwrap();
    let kept = db.client().await;
    let asked = db
        .client_with(db.encryption_with(|config| config.key_ttl(std::time::Duration::ZERO)))
        .await;
    // Asking the key store for every row is slow: that client reads the
    // rows around the tampered ones.
    let around: Vec<i32> = (490..510).chain(1490..1510).collect();
    for (client, ids, filter) in [
        (&kept, (0..ROWS).collect::<Vec<_>>(), "true"),
        (&asked, around, "id % 1000 BETWEEN 490 AND 509"),
    ] {
        let rows = copied_out(
            client,
            &format!(
                "COPY (SELECT id, ssn, balance FROM people WHERE {filter} ORDER BY id) \
                 TO STDOUT (FORMAT binary)"
            ),
        )
        .await;
        assert_eq!(rows.len(), ids.len());
        for (row, id) in rows.iter().zip(ids) {
            assert_eq!(row.get::<_, i32>("id"), id, "in order");
            let ssn_value = row.try_get::<_, String>("ssn");
            let balance = row.try_get::<_, i64>("balance");
            match id {
                500 => {
                    let error = balance.unwrap_err().to_string();
                    assert!(error.contains("public.people.balance"), "{error}");
                    assert_eq!(ssn_value.unwrap(), ssn(id));
                }
                1500 => {
                    let error = ssn_value.unwrap_err().to_string();
                    assert!(error.contains("public.people.ssn"), "{error}");
                    assert_eq!(balance.unwrap(), i64::from(id) * 3);
                }
                _ => {
                    assert_eq!(ssn_value.unwrap(), ssn(id));
                    assert_eq!(balance.unwrap(), i64::from(id) * 3);
                }
            }
        }
    }
}

/// A database with `docs (id, body)`, `body` randomized text, loaded with
/// `rows` rows through aepg's COPY, `body(id)` in each.
async fn docs(
    name: &str,
    rows: i32,
    body: impl Fn(i32) -> String,
) -> (EncryptedDatabase, aepg::Client) {
    let db = EncryptedDatabase::new(name).await;
    db.setting("body", "text", Randomized).await;
    db.table(
        "CREATE TABLE docs (id int PRIMARY KEY, body aepg.ciphertext)",
        &[("docs", "body", "body")],
    )
    .await;
    let client = db.client().await;
    let mut writer = client
        .copy_in("COPY docs (id, body) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    for id in 0..rows {
        writer.write(&[&id, &body(id)]).await.unwrap();
    }
    writer.finish().await.unwrap();
    (db, client)
}

/// Rows of a scan share their plaintext buffers (up to 64 KiB of plaintext
/// each): rows kept while the rows around them are dropped, across many
/// buffers, small and large cells mixed, still read their own plaintexts.
#[tokio::test]
async fn rows_kept_from_a_scan_outlive_the_rows_decrypted_with_them() {
    // From a few bytes to 40 KiB: a shared buffer fills every few rows.
    let body = |id: i32| {
        let len = if id % 5 == 0 {
            40_000
        } else {
            (id % 97) as usize
        };
        format!("{id}:").repeat(len / 4 + 1)
    };
    let (_db, client) = docs("copy_shared", 300, body).await;

    let mut kept = Vec::new();
    let rows = client
        .copy_out("COPY (SELECT id, body FROM docs ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await.unwrap() {
        let id: i32 = row.get("id");
        assert_eq!(row.get::<_, &str>("body"), body(id));
        if id % 7 == 3 {
            kept.push(row);
        }
    }
    assert_eq!(kept.len(), 43);
    for row in &kept {
        let id: i32 = row.get("id");
        assert_eq!(row.get::<_, String>("body"), body(id), "row {id}");
    }
}

/// A scan whose connection is killed under it reports that once and ends:
/// the rows before come out decrypted, then the error, then nothing (a
/// closed connection's rows would otherwise report it on every poll, and a
/// reader skipping errors would never stop).
#[tokio::test]
async fn a_scan_whose_connection_is_killed_ends_with_one_error() {
    // 24 MB: more than the socket's buffers hold, so the server is still
    // sending when it is told to stop.
    let body = |id: i32| format!("{id}:").repeat(10_000);
    let (db, client) = docs("copy_killed", 600, body).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let rows = client
        .copy_out("COPY (SELECT id, body FROM docs ORDER BY id) TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let first = rows.try_next().await.unwrap().unwrap();
    assert_eq!(first.get::<_, String>("body"), body(0));
    db.plain
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let (mut read, mut errors) = (1, 0);
    let drained = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(row) = futures_util::StreamExt::next(&mut rows).await {
            match row {
                Ok(row) => {
                    let id: i32 = row.get("id");
                    assert_eq!(id, read, "in order");
                    assert_eq!(row.get::<_, String>("body"), body(id));
                    read += 1;
                }
                Err(_) => errors += 1,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stream ended ({errors} errors so far)");
    assert_eq!(errors, 1, "one error, after {read} rows");
    assert!(read < 600, "the scan was cut short");
}

/// A value of the wrong Rust type for a plaintext column is refused by the
/// writer, naming the column and both types. Enough rows came before it
/// that batches were already sent: dropping the writer aborts the COPY,
/// and none of them is stored.
#[tokio::test]
async fn a_plaintext_value_of_the_wrong_type_is_refused_naming_the_column() {
    let (db, client) = people().await;
    let mut writer = client
        .copy_in("COPY people (id, name, ssn) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    // Batches of 1,024 rows: the first is sent when the third starts.
    for id in 0..3_100 {
        writer.write(&[&id, &"name", &ssn(id)]).await.unwrap();
    }
    let error = writer.write(&[&"two", &"two", &ssn(2)]).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::CopyValue { .. }), "{message}");
    assert!(
        message.contains("COPY column id (int4)") && message.contains("&str"),
        "{message}"
    );
    drop(writer);
    assert_eq!(stored_people(&db).await, 0);
}

/// A `COPY` row's plaintext columns read as a query row's do (types,
/// NULLs, conversions), a value of the wrong Rust type or a NULL read as
/// a non-`Option` is an error naming the column, and a client that asks
/// the key store for every row does not ask it for a row whose cells are
/// all NULL.
#[tokio::test]
async fn a_copy_rows_plaintext_columns_read_as_a_query_rows() {
    let (db, client) = people().await;
    client
        .execute(
            "INSERT INTO people (id, name, ssn, balance) VALUES (1, 'one', $1, $2), (2, NULL, NULL, NULL)",
            &[&ssn(1), &10_i64],
        )
        .await
        .unwrap();
    let select = "SELECT id, name, ssn, balance FROM people ORDER BY id";
    let queried = client.query(select, &[]).await.unwrap();
    let copied = copied_out(
        &client,
        &format!("COPY ({select}) TO STDOUT (FORMAT binary)"),
    )
    .await;
    assert_eq!(copied.len(), 2);
    for (query_row, copy_row) in queried.iter().zip(&copied) {
        for column in ["id", "name", "ssn", "balance"] {
            assert_eq!(query_row.value_type(column), copy_row.value_type(column));
        }
        assert_eq!(query_row.get::<_, i32>("id"), copy_row.get::<_, i32>("id"));
        assert_eq!(
            query_row.get::<_, Option<&str>>("name"),
            copy_row.get::<_, Option<&str>>("name")
        );
        assert_eq!(
            query_row.get::<_, Option<String>>("ssn"),
            copy_row.get::<_, Option<String>>("ssn")
        );
    }
    assert_eq!(copied[0].get::<_, &str>("name"), "one");
    assert_eq!(copied[0].get::<_, i64>("balance"), 10);
    let wrong_type = copied[0].try_get::<_, &str>("id").unwrap_err();
    assert!(
        matches!(wrong_type, Error::ResultType { .. }),
        "{wrong_type}"
    );
    assert!(wrong_type.to_string().contains("id"), "{wrong_type}");
    let null = copied[1].try_get::<_, &str>("name").unwrap_err();
    assert!(matches!(null, Error::ResultType { .. }), "{null}");
    // A query row's plaintext columns fail the same way.
    for (query_error, copy_error) in [
        (queried[0].try_get::<_, &str>("id").unwrap_err(), wrong_type),
        (queried[1].try_get::<_, &str>("name").unwrap_err(), null),
    ] {
        assert!(
            matches!(query_error, Error::ResultType { .. }),
            "{query_error}"
        );
        assert_eq!(query_error.to_string(), copy_error.to_string());
    }

    // Keys asked for every row: the row of NULL cells reads without one.
    let asked = db
        .client_with(db.encryption_with(|config| config.key_ttl(std::time::Duration::ZERO)))
        .await;
    let read = |id: i32| {
        let asked = &asked;
        async move {
            let sql = format!(
                "COPY (SELECT id, ssn FROM people WHERE id = {id}) TO STDOUT (FORMAT binary)"
            );
            copied_out(asked, &sql).await[0].get::<_, Option<String>>("ssn")
        }
    };
    let unwraps = db.store.operation_counts().unwrap;
    assert_eq!(read(2).await, None);
    assert_eq!(
        db.store.operation_counts().unwrap,
        unwraps,
        "no key asked for"
    );
    assert_eq!(read(1).await, Some(ssn(1)));
    assert_eq!(db.store.operation_counts().unwrap, unwraps + 1);
}

/// Large plaintext columns fill a batch's shared buffers after a few rows:
/// the rows after each split still read their own values, in order.
#[tokio::test]
async fn large_plaintext_columns_split_a_batch_and_read_back() {
    let (_db, client) = people().await;
    let name = |id: i32| format!("{id:05}").repeat(6_000);
    let mut writer = client
        .copy_in("COPY people (id, name, ssn) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    for id in 0..40 {
        writer.write(&[&id, &name(id), &ssn(id)]).await.unwrap();
    }
    writer.finish().await.unwrap();
    let rows = copied_out(
        &client,
        "COPY (SELECT id, name, ssn FROM people ORDER BY id) TO STDOUT (FORMAT binary)",
    )
    .await;
    assert_eq!(rows.len(), 40);
    for (id, row) in (0..).zip(&rows) {
        assert_eq!(row.get::<_, i32>("id"), id);
        assert!(row.get::<_, &str>("name") == name(id), "row {id}'s name");
        assert_eq!(row.get::<_, String>("ssn"), ssn(id));
    }
}

/// A batch of rows whose encrypted cells are all NULL asks the key store
/// for nothing, for a query's rows as for a COPY's (the keys of a cached
/// statement, expired since its prepare, are not asked again for them).
#[tokio::test]
async fn a_batch_of_null_cells_asks_no_key() {
    let (db, _) = people().await;
    let ttl = std::time::Duration::from_millis(200);
    let client = db
        .client_with(db.encryption_with(|config| config.key_ttl(ttl)))
        .await;
    db.plain
        .batch_execute("INSERT INTO people (id, name) VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let select = "SELECT id, ssn FROM people ORDER BY id";
    client.query(select, &[]).await.unwrap(); // prepared, its key unwrapped
    tokio::time::sleep(ttl * 2).await; // the kept key expires
    let unwraps = db.store.operation_counts().unwrap;
    let rows = client.query(select, &[]).await.unwrap(); // the cached statement
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].get::<_, Option<String>>("ssn"), None);
    assert_eq!(
        db.store.operation_counts().unwrap,
        unwraps,
        "no key asked for NULL cells"
    );
    // A row with a cell asks again.
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&3, &ssn(3)],
        )
        .await
        .unwrap();
    tokio::time::sleep(ttl * 2).await;
    let unwraps = db.store.operation_counts().unwrap;
    let rows = client.query(select, &[]).await.unwrap();
    assert_eq!(rows[2].get::<_, String>("ssn"), ssn(3));
    assert_eq!(db.store.operation_counts().unwrap, unwraps + 1);
}
