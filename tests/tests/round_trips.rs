//! A warm statement through aepg costs the server what a reused prepared
//! statement costs in plain tokio-postgres: counted in the server's log.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;

const REPEATS: usize = 20;

/// Protocol steps (parse, bind, execute) and simple statements the server
/// logged between two markers.
fn steps_between(log: &str, start: &str, end: &str) -> Vec<String> {
    let mut inside = false;
    let mut steps = Vec::new();
    for line in log.lines() {
        if line.contains(start) {
            inside = true;
            continue;
        }
        if line.contains(end) {
            break;
        }
        if inside && line.contains("duration:") {
            steps.push(line.to_owned());
        }
    }
    steps
}

/// A server that logs every protocol step, and a database on it with a
/// `people (id, ssn)` table whose `ssn` is encrypted (deterministic).
async fn logged_people(label: &str) -> (DedicatedServer, EncryptedDatabase) {
    let server = DedicatedServer::start(&[("log_min_duration_statement", "0")])
        .await
        .unwrap();
    let db = EncryptedDatabase::on(server.create_database(label).await.unwrap()).await;
    db.setting("ssn", "text", EncryptionMode::Deterministic)
        .await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    (server, db)
}

/// Whether a logged step is the parse of a text containing `needle`.
fn parses(line: &str, needle: &str) -> bool {
    line.contains("parse") && line.contains(needle)
}

/// Inserts person 1, whose ssn is 123-45-6789.
async fn insert_person(client: &aepg::Client) {
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&1, &"123-45-6789"],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_warm_statement_costs_what_a_prepared_tokio_postgres_statement_costs() {
    let (server, db) = logged_people("round_trips").await;
    let client = db.client().await;
    // One encrypted and one plaintext parameter: a client that hears catalog
    // announcements checks nothing more before sending the plaintext one.
    let sql = "SELECT id, ssn FROM people WHERE ssn = $1 AND id = $2";
    insert_person(&client).await;
    client.query(sql, &[&"123-45-6789", &1]).await.unwrap(); // warm: analysis, prepare, keys

    db.plain.batch_execute("SELECT 'aepg-start'").await.unwrap();
    for _ in 0..REPEATS {
        let rows = client.query(sql, &[&"123-45-6789", &1]).await.unwrap();
        assert_eq!(rows[0].get::<_, String>(1), "123-45-6789");
    }
    db.plain.batch_execute("SELECT 'aepg-end'").await.unwrap();

    let plain = db.database.connect().await;
    let statement = plain
        .prepare("SELECT id, ssn FROM people WHERE id = $1")
        .await
        .unwrap();
    db.plain
        .batch_execute("SELECT 'plain-start'")
        .await
        .unwrap();
    for _ in 0..REPEATS {
        plain.query(&statement, &[&1]).await.unwrap();
    }
    db.plain.batch_execute("SELECT 'plain-end'").await.unwrap();

    let log = server.server_log().await.unwrap();
    let aepg_steps = steps_between(&log, "aepg-start", "aepg-end");
    let plain_steps = steps_between(&log, "plain-start", "plain-end");
    eprintln!(
        "server-side steps for {REPEATS} warm executions: aepg {}, tokio-postgres {}",
        aepg_steps.len(),
        plain_steps.len()
    );
    assert!(
        !plain_steps.is_empty(),
        "the log must show the plain executions"
    );
    assert_eq!(
        aepg_steps.len(),
        plain_steps.len(),
        "aepg steps:\n{}",
        aepg_steps.join("\n")
    );
    assert!(
        aepg_steps.iter().all(|line| !line.contains("parse")),
        "no re-prepare when warm"
    );
}

/// A new connection's first statement: tokio-postgres learns
/// `aepg.ciphertext` beside the catalog and session reads, not in two
/// round trips of its own between the statement's prepare and its run.
#[tokio::test]
async fn a_first_statement_looks_its_ciphertext_type_up_before_its_prepare() {
    let (server, db) = logged_people("first_statement").await;
    db.plain
        .batch_execute("SELECT 'first-start'")
        .await
        .unwrap();
    let client = db.client().await;
    insert_person(&client).await;
    db.plain.batch_execute("SELECT 'first-end'").await.unwrap();

    let log = server.server_log().await.unwrap();
    let steps = steps_between(&log, "first-start", "first-end");
    let position = |needle: &str| {
        steps
            .iter()
            .position(|line| parses(line, needle))
            .unwrap_or_else(|| panic!("no parse of {needle:?} in:\n{}", steps.join("\n")))
    };
    let type_lookup = position("SELECT t.typname");
    let insert = position("INSERT INTO people");
    assert!(
        type_lookup < insert,
        "the type lookup comes before the statement's prepare:\n{}",
        steps.join("\n")
    );
    let lookups = steps
        .iter()
        .filter(|line| parses(line, "SELECT t.typname"))
        .count();
    assert_eq!(lookups, 1, "one type lookup:\n{}", steps.join("\n"));
}

/// A statement text new to the connection costs the server what plain
/// tokio-postgres's `query` of a text costs (a parse, a bind, an execute),
/// and one run of the session read, prepared once per connection: no
/// second parse and plan of it for every new text.
#[tokio::test]
async fn a_new_statement_text_parses_only_itself() {
    let (server, db) = logged_people("new_text").await;
    let client = db.client().await;
    insert_person(&client).await;
    db.plain.batch_execute("SELECT 'new-start'").await.unwrap();
    for n in 0..REPEATS {
        let sql = format!("SELECT id FROM people WHERE ssn = $1 AND id <> -{n}");
        let rows = client.query(&sql, &[&"123-45-6789"]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    db.plain.batch_execute("SELECT 'new-end'").await.unwrap();

    let log = server.server_log().await.unwrap();
    let steps = steps_between(&log, "new-start", "new-end");
    eprintln!("{}", steps.join("\n"));
    let parsed = steps.iter().filter(|line| line.contains("parse")).count();
    assert_eq!(
        parsed,
        REPEATS,
        "one parse a new text, its own:\n{}",
        steps.join("\n")
    );
}
