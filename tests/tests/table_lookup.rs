//! Tables without encrypted columns are read when a statement first names
//! them, not with every catalog load: counted in the server's log. What the
//! server lists on demand never makes a column usable or plaintext against
//! the signed records.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode;
use aepg::Error;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;

/// What the lookup of named tables starts with (its first logged line).
const LOOKUP: &str = "WITH named (schema_name, table_name)";

/// A server that logs every protocol step, and a database on it with
/// `people (id, ssn)` (ssn encrypted) and a plaintext `orders` table.
async fn logged_database(label: &str) -> (DedicatedServer, EncryptedDatabase) {
    let server = DedicatedServer::start(&[("log_min_duration_statement", "0")])
        .await
        .unwrap();
    let db = EncryptedDatabase::on(server.create_database(label).await.unwrap()).await;
    db.setting("ssn", "text", EncryptionMode::Deterministic)
        .await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext); \
         CREATE TABLE orders (id int, person int, total int)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    (server, db)
}

/// Inserts person 1 through `client`: its catalog is loaded.
async fn insert_first_person(client: &aepg::Client) {
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&1, &"123-45-6789"],
        )
        .await
        .unwrap();
}

/// Runs `work` between two markers in the server's log; how many lookups
/// of named tables the server parsed meanwhile.
async fn lookups_during<F: std::future::Future<Output = ()>>(
    server: &DedicatedServer,
    db: &EncryptedDatabase,
    marker: &str,
    work: F,
) -> usize {
    let (start, end) = (format!("{marker}-start"), format!("{marker}-end"));
    db.plain
        .batch_execute(&format!("SELECT '{start}'"))
        .await
        .unwrap();
    work.await;
    db.plain
        .batch_execute(&format!("SELECT '{end}'"))
        .await
        .unwrap();
    let log = server.server_log().await.unwrap();
    let mut inside = false;
    let mut count = 0;
    for line in log.lines() {
        if line.contains(&start) {
            inside = true;
        } else if line.contains(&end) {
            break;
        } else if inside && line.contains("parse") && line.contains(LOOKUP) {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn a_plaintext_table_is_read_once_when_a_statement_first_names_it() {
    let (server, db) = logged_database("table_lookup").await;
    let client = db.client().await;

    // The load and a statement on the encrypted table read no other table.
    let first = lookups_during(&server, &db, "load", async {
        insert_first_person(&client).await;
    })
    .await;
    assert_eq!(first, 0, "the load reads the encrypted tables only");

    // The first statement naming `orders` reads it; the analysis then knows
    // its columns (its values map to them), and later statements naming it
    // read nothing.
    let named = lookups_during(&server, &db, "orders", async {
        client
            .execute(
                "INSERT INTO orders VALUES ($1, $2, $3)",
                &[&1, &1, &250],
            )
            .await
            .unwrap();
        let rows = client
            .query(
                "SELECT p.ssn, total FROM people p JOIN orders o ON o.person = p.id WHERE total > $1",
                &[&100],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>("ssn"), "123-45-6789");
        assert_eq!(rows[0].get::<_, i32>("total"), 250);
    })
    .await;
    assert_eq!(named, 1, "one lookup for the first statement naming orders");

    // A name the server lacks is asked for once, then known absent.
    let absent = lookups_during(&server, &db, "absent", async {
        for _ in 0..3 {
            let error = client
                .query("SELECT * FROM no_such_table WHERE id = $1", &[&1])
                .await
                .unwrap_err();
            assert!(matches!(error, Error::Database(_)), "{error}");
        }
    })
    .await;
    assert_eq!(absent, 1, "an absent table is asked for once");

    // A table of the same shape created later is read on its first
    // statement, once the refusal or the server makes the client look again.
    db.plain
        .batch_execute("CREATE TABLE no_such_table (id int, note text)")
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO no_such_table (id, note) VALUES ($1, $2)",
            &[&1, &"created after"],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT note FROM no_such_table WHERE id = $1", &[&1])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("note"), "created after");
}

/// A text the analysis cannot read is refused before it reaches the
/// server, and the words of it (a literal's among them) are not sent as
/// table names to look up either.
#[tokio::test]
async fn the_words_of_a_refused_text_are_not_looked_up() {
    let (server, db) = logged_database("table_lookup_words").await;
    let client = db.client().await;
    insert_first_person(&client).await;
    for text in [
        "SELECT ssn FROM people WHERE ssn = 'zebraword quagga' OPERATOR(",
        "CREATE TABLE copied AS SELECT 'zebraword quagga' AS n, ssn FROM people",
    ] {
        let error = client.execute(text, &[]).await.unwrap_err();
        assert!(error.to_string().contains("refus"), "{error}");
    }
    // A recursive CTE's name is not a table to look up either.
    let error = client
        .query(
            "WITH RECURSIVE zebracte(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM zebracte WHERE n < 3) \
             SELECT ssn FROM people, zebracte WHERE ssn = $1",
            &[&"123-45-6789"],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("RECURSIVE"), "{error}");
    let log = server.server_log().await.unwrap();
    assert!(
        !log.contains("zebraword") && !log.contains("quagga") && !log.contains("zebracte"),
        "a refused text's words reached the server:\n{log}"
    );
}

/// A DBA gives a table an `aepg.ciphertext` column after the client loaded
/// its catalog, with no signed assignment: the table is read when a
/// statement names it, and the column is unusable, not plaintext.
#[tokio::test]
async fn a_ciphertext_column_of_a_table_read_on_demand_is_unusable() {
    let (_server, db) = logged_database("table_lookup_ciphertext").await;
    let client = db.client().await;
    insert_first_person(&client).await;
    db.plain
        .batch_execute(
            "CREATE TABLE later (id int, secret aepg.ciphertext); \
             INSERT INTO later VALUES (1, decode('01' || repeat('00', 40), 'hex'))",
        )
        .await
        .unwrap();

    let error = client
        .execute(
            "INSERT INTO later (id, secret) VALUES ($1, $2)",
            &[&2, &"plaintext"],
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("later") && message.contains("secret"),
        "names the table and column: {message}"
    );
    assert!(
        message.contains("no verified assignment"),
        "says why: {message}"
    );
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM later", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "nothing stored");

    // Read back, the cell is refused, never handed out as bytes.
    let row = client
        .query_one("SELECT id, secret FROM later", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("id"), 1);
    let refused = row.try_get::<_, Vec<u8>>("secret").unwrap_err();
    assert!(matches!(refused, Error::Decrypt { .. }), "{refused}");
}

/// The server lists a signed table on demand with its encrypted column
/// typed `text` (a lie, or a table replaced behind the client's back): the
/// load's view of the table wins, and nothing is sent in plaintext.
#[tokio::test]
async fn a_signed_table_is_never_taken_from_a_lookup() {
    let (_server, db) = logged_database("table_lookup_signed").await;
    let client = db.client().await;
    insert_first_person(&client).await;
    // Renamed away and replaced by a plaintext table of the same name: the
    // client's catalog still has `people` (the load's), which a lookup
    // never replaces.
    db.plain
        .batch_execute(
            "ALTER TABLE people RENAME TO people_moved; \
             CREATE TABLE people (id int, ssn text)",
        )
        .await
        .unwrap();
    // A new text is analyzed under the load's `people` (ssn encrypted) and
    // refused when the server types the parameter `text`.
    let error = client
        .execute(
            "INSERT INTO people (ssn, id) VALUES ($1, $2)",
            &[&"987-65-4321", &2],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ssn"), "{error}");
    // The cached text of the first insert sends a cell (the server
    // re-plans it against the new table, which stores the cell's bytes).
    let _ = client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&3, &"987-65-4321"],
        )
        .await;
    let leaked: i64 = db
        .plain
        .query_one(
            "SELECT (SELECT count(*) FROM people WHERE ssn LIKE '%987-65-4321%') \
                  + (SELECT count(*) FROM people_moved WHERE ssn::text LIKE '%987-65-4321%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no plaintext reached the server");
}
