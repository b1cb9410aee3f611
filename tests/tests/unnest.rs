//! Bulk statements over array parameters, `unnest($1, $2, …)` in `FROM`:
//! each array bound for an encrypted column leaves the client as an array
//! of cells, against a real server; what the server stores and sees on the
//! wire, and what is refused.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::Error;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::WireTap;

const ROWS: i32 = 500;

async fn people() -> EncryptedDatabase {
    let db = EncryptedDatabase::new("unnest").await;
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
    db
}

/// A client whose every byte to the server passes a wire tap.
async fn tapped(db: &EncryptedDatabase) -> (WireTap, aepg::Client) {
    let tap = WireTap::start(&db.database.config()).await;
    let client = db
        .client_at(
            &tap.route(&db.database.config()),
            db.encryption_with(|config| config),
        )
        .await;
    (tap, client)
}

/// The rows the server holds, counted past aepg.
async fn stored_rows(db: &EncryptedDatabase) -> i64 {
    db.plain
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0)
}

fn ssn(id: i32) -> String {
    format!("{:03}-{:02}-{:04}", id % 1000, id % 100, id)
}

const INSERT: &str = "INSERT INTO people (id, name, ssn, balance, code) \
    SELECT * FROM unnest($1::int[], $2::text[], $3, $4, $5) AS u(id, name, ssn, balance, code)";

#[tokio::test]
async fn an_unnest_insert_stores_cells_and_no_plaintext_crosses_the_wire() {
    let db = people().await;
    let (tap, client) = tapped(&db).await;
    let ids: Vec<i32> = (0..ROWS).collect();
    let names: Vec<String> = ids.iter().map(|id| format!("name {id}")).collect();
    let ssns: Vec<String> = ids.iter().map(|id| ssn(*id)).collect();
    let balances: Vec<i64> = ids.iter().map(|id| i64::from(*id) * 1_000_003).collect();
    // NULL elements stay NULL; trailing spaces beyond varchar(3) are cut
    // as the server cuts them.
    let codes: Vec<Option<&str>> = ids
        .iter()
        .map(|id| (id % 3 != 0).then_some("ab   "))
        .collect();
    let inserted = client
        .execute(INSERT, &[&ids, &names, &ssns, &balances, &codes])
        .await
        .unwrap();
    assert_eq!(inserted, u64::try_from(ROWS).unwrap());

    // Read back through aepg, found by equality on the deterministic cells.
    let row = client
        .query_one(
            "SELECT id, balance, code FROM people WHERE ssn = $1",
            &[&ssn(431)],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("id"), 431);
    assert_eq!(row.get::<_, i64>("balance"), 431 * 1_000_003);
    assert_eq!(row.get::<_, Option<String>>("code").as_deref(), Some("ab "));
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM people WHERE code IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, i64::from(ROWS).div_euclid(3) + 1);

    // The server holds cells, and never saw a plaintext.
    let stored = db
        .plain
        .query_one(
            "SELECT ssn::bytea, balance::bytea FROM people WHERE id = 431",
            &[],
        )
        .await
        .unwrap();
    for index in 0..2 {
        let cell: Vec<u8> = stored.get(index);
        assert_eq!(cell[0], 1, "a cell");
    }
    for id in [0, 431, ROWS - 1] {
        assert!(!tap.saw(ssn(id).as_bytes()), "ssn {id} on the wire");
        assert!(
            !tap.saw(&(i64::from(id) * 1_000_003).to_be_bytes()) || id == 0,
            "balance {id} on the wire"
        );
    }
    assert!(!tap.saw(b"ab   "), "code on the wire");
    assert!(tap.saw(b"name 431"), "the plaintext column is plaintext");
}

#[tokio::test]
async fn unnest_updates_deletes_and_looks_up_by_an_encrypted_column() {
    let db = people().await;
    let client = db.client().await;
    let ids: Vec<i32> = (0..100).collect();
    let ssns: Vec<String> = ids.iter().map(|id| ssn(*id)).collect();
    client
        .execute(
            "INSERT INTO people (id, ssn) SELECT * FROM unnest($1::int[], $2) AS u(id, ssn)",
            &[&ids, &ssns],
        )
        .await
        .unwrap();

    // Update by the deterministic column: compared element by element, the
    // randomized values stored element by element.
    let some: Vec<String> = (10..20).map(ssn).collect();
    let balances: Vec<i64> = (10..20).map(|id| i64::from(id) * 7).collect();
    let updated = client
        .execute(
            "UPDATE people SET balance = u.balance FROM unnest($1, $2) AS u(ssn, balance) \
             WHERE people.ssn = u.ssn",
            &[&some, &balances],
        )
        .await
        .unwrap();
    assert_eq!(updated, 10);
    let rows = client
        .query(
            "SELECT p.id, p.balance FROM people p JOIN unnest($1) AS u(ssn) ON p.ssn = u.ssn \
             ORDER BY p.id",
            &[&some],
        )
        .await
        .unwrap();
    let found: Vec<(i32, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        found,
        (10..20)
            .map(|id| (id, i64::from(id) * 7))
            .collect::<Vec<_>>()
    );

    // Insert only the new ones: each element both stored and compared.
    let mixed: Vec<String> = (95..105).map(ssn).collect();
    let added = client
        .execute(
            "INSERT INTO people (id, ssn) SELECT 1000 + n, s FROM unnest($1) WITH ORDINALITY AS u(s, n) \
             WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.ssn = u.s)",
            &[&mixed],
        )
        .await
        .unwrap();
    assert_eq!(added, 5);

    let deleted = client
        .execute(
            "DELETE FROM people USING unnest($1) AS u(ssn) WHERE people.ssn = u.ssn",
            &[&mixed],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 10);
}

#[tokio::test]
async fn an_element_that_does_not_fit_refuses_the_statement_and_names_the_column() {
    let db = people().await;
    let (tap, client) = tapped(&db).await;
    let codes = vec![Some("ok"), None, Some("toolong")];
    let error = client
        .execute(
            "INSERT INTO people (id, code) SELECT * FROM unnest($1::int[], $2) AS u(id, code)",
            &[&vec![1, 2, 3], &codes],
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("public.people.code") && message.contains("3 characters"),
        "{message}"
    );
    // A scalar where an array belongs is named too.
    let error = client
        .execute(
            "INSERT INTO people (id, ssn) SELECT * FROM unnest($1::int[], $2) AS u(id, ssn)",
            &[&vec![1], &"123-45-6789"],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("public.people.ssn"), "{error}");
    assert!(!tap.saw(b"toolong") && !tap.saw(b"123-45-6789"));
    assert_eq!(stored_rows(&db).await, 0);
}

#[tokio::test]
async fn plaintext_arrays_meeting_encrypted_columns_are_refused_before_the_server() {
    let db = people().await;
    let (tap, client) = tapped(&db).await;
    let secrets = vec!["999-99-9999".to_owned()];
    for sql in [
        // A cast makes a plaintext array.
        "INSERT INTO people (id, ssn) SELECT 1, s FROM unnest($1::text[]) AS u(s)",
        "INSERT INTO people (id, ssn) SELECT 1, s FROM unnest(ARRAY[$1]) AS u(s)",
        // Computed from the elements.
        "INSERT INTO people (id, ssn) SELECT 1, upper(s) FROM unnest($1) AS u(s)",
        // One array for an encrypted and a plaintext column.
        "INSERT INTO people (id, ssn, name) SELECT 1, s, s FROM unnest($1) AS u(s)",
        // Compared with a randomized column.
        "SELECT id FROM people p JOIN unnest($1) AS u(b) ON p.balance = u.b",
    ] {
        let error = client.execute(sql, &[&secrets]).await.unwrap_err();
        assert!(matches!(error, Error::Refused(_)), "{sql}: {error}");
        let message = error.to_string();
        assert!(message.contains("public.people"), "{sql}: {message}");
    }
    assert!(!tap.saw(b"999-99-9999"), "a refused statement sent it");
    // Elements read back out are plaintext, as a bare parameter read back is.
    let echoed: Vec<String> = client
        .query("SELECT x FROM unnest($1::text[]) AS u(x)", &[&secrets])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(echoed, secrets);
    // Only that last statement sent it.
    assert_eq!(stored_rows(&db).await, 0);
    assert!(tap.saw(b"999-99-9999"));
}

#[tokio::test]
async fn a_dba_cannot_learn_the_elements_from_a_function_named_unnest() {
    // A DBA with full control of the server shadows `unnest` with a function
    // that keeps whatever it is given. It only ever gets cells.
    let db = people().await;
    db.plain
        .batch_execute(&format!(
            "CREATE TABLE public.seen (arg bytea[]); \
             CREATE FUNCTION public.unnest(bytea[]) RETURNS SETOF bytea LANGUAGE sql AS \
             $$ INSERT INTO public.seen VALUES ($1); SELECT pg_catalog.unnest($1) $$; \
             ALTER DATABASE \"{}\" SET search_path = public, pg_catalog",
            db.database.name()
        ))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let client = db.client().await;
    let ssns: Vec<String> = (0..5).map(ssn).collect();
    let inserted = client
        .execute(
            "INSERT INTO people (id, ssn) SELECT 1 + n::int, s FROM unnest($1) WITH ORDINALITY AS u(s, n)",
            &[&ssns],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 5);
    // The DBA's function ran, and saw only cells.
    let seen = db
        .plain
        .query("SELECT arg FROM public.seen", &[])
        .await
        .unwrap();
    assert_eq!(seen.len(), 1, "the shadowing function ran");
    for row in &seen {
        let arg: Vec<Vec<u8>> = row.get(0);
        for cell in arg {
            assert_eq!(cell[0], 1, "a cell");
            assert!(!ssns
                .iter()
                .any(|s| cell.windows(s.len()).any(|w| w == s.as_bytes())));
        }
    }
    let found: i32 = client
        .query_one("SELECT id FROM people WHERE ssn = $1", &[&ssn(3)])
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 5, "1 + its ordinality");
}

/// `unnest` spreads an array of a composite type over one column per
/// field. A DBA (or the application's own types) could make an argument
/// the analysis counts as one column give two, the second landing in (or
/// compared with) an encrypted column as plaintext. Each shape is refused
/// before any value is sent.
#[tokio::test]
async fn arrays_that_unnest_into_several_columns_are_refused_before_anything_is_sent() {
    let db = people().await;
    db.plain
        .batch_execute(&format!(
            "CREATE TYPE public.pair AS (id int, ssn bytea); \
             CREATE TYPE public.int4 AS (id int, ssn bytea); \
             ALTER DATABASE \"{}\" SET search_path = public, pg_catalog",
            db.database.name()
        ))
        .await
        .unwrap();
    let (tap, client) = tapped(&db).await;
    let secret: &[u8] = b"123-45-6789";
    // Refused by the analysis: a cast to a type that is not built in.
    let error = client
        .prepare("INSERT INTO people (id, ssn) SELECT * FROM unnest($1::pair[])")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refused(_)), "{error}");
    // `$1` typed `pair[]` by another appearance, bare in unnest: the
    // server joins the plaintext field with the ciphertext column.
    let error = client
        .prepare(
            "WITH t AS (SELECT $1::pair[] AS a) \
             SELECT p.id FROM people p NATURAL JOIN unnest($1) u",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ParameterCrossCheck { number: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("public._pair"), "{error}");
    // A built-in type's name shadowed by a composite type ahead of
    // pg_catalog in the search path.
    let error = client
        .prepare(
            "INSERT INTO people (id, ssn) SELECT u.id, u.ssn FROM unnest($1::int4[], $2) AS u(id, ssn)",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ParameterCrossCheck { number: 1, .. }),
        "{error}"
    );
    // Nothing was bound, so no value went anywhere.
    assert!(!tap.saw(secret));
    assert_eq!(stored_rows(&db).await, 0);
    // Qualified, the built-in type still works.
    let ids = vec![1, 2];
    let ssns = vec![ssn(1), ssn(2)];
    let inserted = client
        .execute(
            "INSERT INTO people (id, ssn) SELECT * FROM unnest($1::pg_catalog.int4[], $2) AS u(id, ssn)",
            &[&ids, &ssns],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 2);
}
