//! The state a client keeps stays bounded and heals itself: old catalogs
//! are released, statements the server invalidated are prepared again, a
//! catalog refresh never stalls the pool, and errors name their cause.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::{Arc, Weak};
use std::time::Duration;

use aepg::catalog::Catalog;
use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::keystore::{KeyStoreRegistry, TrustedKeyPaths};
use aepg::{Client, Encryption, EncryptionConfig, Error};
use aepg_tests::fixture::{EncryptedDatabase, MASTER_KEY};

/// Generous bound on one operation: a stall is unbounded, this is not.
const NO_HANG: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NO_HANG, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {NO_HANG:?}"))
}

/// `people (id, name, ssn)` with ssn encrypted deterministically.
async fn people(label: &str) -> EncryptedDatabase {
    let db = EncryptedDatabase::new(label).await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int PRIMARY KEY, name text, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    db
}

async fn insert(client: &Client, id: i32, ssn: &str) {
    client
        .execute(
            "INSERT INTO people (id, name, ssn) VALUES ($1, 'n', $2)",
            &[&id, &ssn],
        )
        .await
        .unwrap();
}

const SELECT_ALL: &str = "SELECT * FROM people WHERE ssn = $1";

/// How many rows `SELECT *` finds for the first person's ssn.
async fn by_ssn(client: &Client) -> Result<usize, Error> {
    client
        .query(SELECT_ALL, &[&"111-11-1111"])
        .await
        .map(|rows| rows.len())
}

async fn ssn_of(client: &Client, id: i32) -> Result<String, Error> {
    let row = client
        .query_one("SELECT ssn FROM people WHERE id = $1", &[&id])
        .await?;
    row.try_get::<_, String>("ssn")
}

#[tokio::test]
async fn old_catalogs_are_released() {
    let db = people("client_state_catalogs").await;
    let encryption = db.encryption_with(|config| config);
    let clients = [
        db.client_with(encryption.clone()).await,
        db.client_with(encryption.clone()).await,
        db.unwatched_client_with(encryption.clone()).await,
    ];
    insert(&clients[0], 1, "111-11-1111").await;
    let mut catalogs: Vec<Weak<Catalog>> = Vec::new();
    for change in 0..20 {
        db.setting(&format!("extra{change}"), "int4", Randomized)
            .await;
        // Every client runs a cached statement, whose catalog moved on.
        for client in &clients {
            let catalog = client.refresh_catalog().await.unwrap();
            assert_eq!(ssn_of(client, 1).await.unwrap(), "111-11-1111");
            catalogs.push(Arc::downgrade(&catalog));
        }
    }
    let alive = catalogs
        .iter()
        .filter_map(Weak::upgrade)
        .map(|catalog| catalog.generation())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        alive.len(),
        1,
        "catalogs of generations {alive:?} are still held after 20 changes"
    );
}

/// A function that deallocates the session's prepared statements behind the
/// client's back (as a pool's reset, or anything on the server, can).
const DEALLOCATE_FUNCTION: &str = "CREATE FUNCTION deallocate_all() RETURNS void LANGUAGE plpgsql \
     AS $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$";

#[tokio::test]
async fn statements_the_server_invalidated_are_prepared_again() {
    let db = people("client_state_invalidated").await;
    db.plain.batch_execute(DEALLOCATE_FUNCTION).await.unwrap();
    let client = db.client().await;
    insert(&client, 1, "111-11-1111").await;
    assert_eq!(by_ssn(&client).await.unwrap(), 1);

    // Deallocated behind the client's back, through aepg's own statements.
    client.query("SELECT deallocate_all()", &[]).await.unwrap();
    assert_eq!(by_ssn(&client).await.unwrap(), 1, "after DEALLOCATE ALL");
    // A text new to the connection reads the session with a statement
    // prepared for it, which went too.
    client.query("SELECT deallocate_all()", &[]).await.unwrap();
    let rows = client
        .query(
            "SELECT id FROM people WHERE ssn = $1 AND id > 0",
            &[&"111-11-1111"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "a new text after DEALLOCATE ALL");
    insert(&client, 2, "222-22-2222").await;

    // Deallocated and discarded in the open: aepg forgets its statements
    // then, so even inside a transaction (where nothing is retried) the
    // next statement works.
    client.batch_execute("DEALLOCATE ALL").await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(by_ssn(&client).await.unwrap(), 1, "in a transaction");
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        by_ssn(&client).await.unwrap(),
        1,
        "after DEALLOCATE ALL text"
    );
    client.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(by_ssn(&client).await.unwrap(), 1, "after DISCARD ALL");
    insert(&client, 3, "333-33-3333").await;

    // The table changes shape under a cached `SELECT *`.
    db.plain
        .batch_execute("ALTER TABLE people ADD COLUMN note text DEFAULT 'x'")
        .await
        .unwrap();
    let rows = client.query(SELECT_ALL, &[&"111-11-1111"]).await.unwrap();
    assert_eq!(rows[0].columns().len(), 4, "after ADD COLUMN");
    assert_eq!(rows[0].get::<_, &str>("note"), "x");
    db.plain
        .batch_execute("ALTER TABLE people DROP COLUMN name")
        .await
        .unwrap();
    let rows = client.query(SELECT_ALL, &[&"111-11-1111"]).await.unwrap();
    assert_eq!(rows[0].columns().len(), 3, "after DROP COLUMN");
    assert_eq!(rows[0].get::<_, &str>("ssn"), "111-11-1111");
    // A cached INSERT naming the dropped column fails as it should (the
    // analysis, under the reloaded tables, or the server says so).
    let error = client
        .execute(
            "INSERT INTO people (id, name, ssn) VALUES ($1, 'n', $2)",
            &[&4, &"444-44-4444"],
        )
        .await
        .unwrap_err();
    assert!(
        error.code().map(|code| code.code()) == Some("42703")
            || error.to_string().contains("target column name"),
        "{error}"
    );

    // Inside a transaction the failure has aborted it: the error is
    // returned, nothing is retried, and the next use works again.
    let mut client = client;
    client.query("SELECT deallocate_all()", &[]).await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let error = transaction
        .query(SELECT_ALL, &[&"111-11-1111"])
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|code| code.code()), Some("26000"));
    transaction.rollback().await.unwrap();
    assert_eq!(by_ssn(&client).await.unwrap(), 1, "after the rollback");

    // A statement the application prepared itself heals too.
    let statement = client.prepare(SELECT_ALL).await.unwrap();
    client.query("SELECT deallocate_all()", &[]).await.unwrap();
    for _ in 0..2 {
        let rows = client.query(&statement, &[&"111-11-1111"]).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
    // Nothing was stored as plaintext on the way.
    let stored: Vec<Vec<u8>> = db
        .plain
        .query("SELECT ssn::bytea FROM people", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|cell| !cell
        .windows(4)
        .any(|window| window == b"-11-" || window == b"-22-")));
}

#[tokio::test]
async fn a_locked_catalog_stalls_no_one() {
    let db = people("client_state_locked").await;
    let encryption = db.encryption_with(|config| {
        config
            .catalog_ttl(Duration::from_millis(100))
            .catalog_refresh_timeout(Duration::from_millis(500))
            .catalog_max_staleness(Duration::from_secs(120))
    });
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(db.client_with(encryption.clone()).await);
    }
    insert(&clients[0], 1, "111-11-1111").await;
    for client in &clients {
        assert_eq!(ssn_of(client, 1).await.unwrap(), "111-11-1111");
    }

    // An administrator (or anyone) holds a lock that blocks readers of the catalog.
    let mut holder = db.database.connect().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE aepg.column_assignments IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The TTL ran out: every warm query still answers, none waits for the lock.
    for round in 0..5 {
        let answers = futures_util::future::join_all(
            clients
                .iter()
                .map(|client| tokio::time::timeout(Duration::from_secs(3), ssn_of(client, 1))),
        )
        .await;
        for answer in answers {
            let Ok(ssn) = answer else {
                panic!("round {round}: a query waited for the lock");
            };
            assert_eq!(ssn.unwrap(), "111-11-1111");
        }
    }
    let failure = encryption
        .refresh_failure()
        .expect("the failed check is reported");
    assert!(failure.contains("lock"), "{failure}");

    // Past the staleness limit, statements fail and say why.
    let strict = db.encryption_with(|config| {
        config
            .catalog_ttl(Duration::from_millis(100))
            .catalog_refresh_timeout(Duration::from_millis(300))
            .catalog_max_staleness(Duration::from_millis(100))
    });
    let strict_client = db.client_with(strict.clone()).await;
    // (It loaded its catalog before the lock? No: it must load now, and cannot.)
    let error = bounded("a first load under the lock", ssn_of(&strict_client, 1))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("lock"), "{error}");

    lock.rollback().await.unwrap();
    for client in &clients {
        assert_eq!(ssn_of(client, 1).await.unwrap(), "111-11-1111");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ssn_of(&clients[0], 1).await.unwrap(), "111-11-1111");
    assert_eq!(encryption.refresh_failure(), None);
    assert_eq!(ssn_of(&strict_client, 1).await.unwrap(), "111-11-1111");
}

#[tokio::test]
async fn a_statement_refused_under_an_old_catalog_looks_again() {
    let db = people("client_state_stale").await;
    db.plain
        .batch_execute("CREATE TABLE badges (id int, code aepg.ciphertext)")
        .await
        .unwrap();
    // The catalog is loaded, and kept for an hour, by a client that cannot
    // hear announcements.
    let encryption = db.encryption_with(|config| config.catalog_ttl(Duration::from_secs(3600)));
    let client = db.unwatched_client_with(encryption).await;
    insert(&client, 1, "111-11-1111").await;
    // Encrypted after the load.
    db.setting("badge", "text", Deterministic).await;
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &aepg::ColumnName::new("public", "badges", "code"),
            "badge",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO badges (id, code) VALUES ($1, $2)",
            &[&1, &"B-7"],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT code FROM badges WHERE code = $1", &[&"B-7"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("code"), "B-7");
}

#[tokio::test]
async fn a_missing_master_key_is_named() {
    let db = people("client_state_missing_key").await;
    insert(&db.client().await, 1, "111-11-1111").await;

    // The key is gone from its store.
    assert!(db.store.remove_key(&db.master_key.key_path));
    let client = db.client().await;
    let error = ssn_of(&client, 1).await.unwrap_err().to_string();
    eprintln!("key removed: {error}");
    assert!(error.contains(MASTER_KEY), "{error}");

    // The store is not there at all, or the key is not trusted.
    for (label, registry) in [
        ("no store", KeyStoreRegistry::new()),
        ("untrusted", {
            let mut registry = KeyStoreRegistry::new();
            registry
                .register(db.store.clone(), TrustedKeyPaths::only(["another"]))
                .unwrap();
            registry
        }),
    ] {
        let client = db
            .client_with(Encryption::new(EncryptionConfig::new(registry)))
            .await;
        let error = ssn_of(&client, 1).await.unwrap_err().to_string();
        eprintln!("{label}: {error}");
        assert!(error.contains(MASTER_KEY), "{label}: {error}");
        let error = client
            .execute(
                "INSERT INTO people (id, name, ssn) VALUES ($1, 'n', $2)",
                &[&2, &"222-22-2222"],
            )
            .await
            .unwrap_err()
            .to_string();
        eprintln!("{label}, insert: {error}");
        assert!(error.contains(MASTER_KEY), "{label}: {error}");
    }
}

#[tokio::test]
async fn a_refused_connection_says_why() {
    let encryption = Encryption::new(EncryptionConfig::new(KeyStoreRegistry::new()));
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = aepg::connect(
        &format!("host=127.0.0.1 port={port} user=nobody connect_timeout=5"),
        tokio_postgres::NoTls,
        encryption,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

/// A server that blocks every check of the catalog (a lock held on a catalog
/// table) keeps a client on its catalog only up to the staleness limit:
/// past it, statements fail before they send anything.
#[tokio::test]
async fn a_blocked_catalog_is_not_trusted_past_the_staleness_limit() {
    let db = people("client_state_staleness").await;
    let tap = aepg_tests::WireTap::start(&db.database.config()).await;
    let encryption = db.encryption_with(|config| {
        config
            .catalog_ttl(Duration::from_millis(100))
            .catalog_refresh_timeout(Duration::from_millis(300))
            .catalog_max_staleness(Duration::from_millis(800))
    });
    let client = db
        .client_at(&tap.route(&db.database.config()), encryption.clone())
        .await;
    let insert_name = "INSERT INTO people (id, name, ssn) VALUES ($1, $2, $3)";
    client
        .execute(insert_name, &[&1, &"warm", &"111-11-1111"])
        .await
        .unwrap();

    let mut holder = db.database.connect().await;
    let lock = holder.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE aepg.manifests IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let error = bounded(
        "a statement past the staleness limit",
        client.execute(insert_name, &[&2, &"NEVER-SENT-7", &"222-22-2222"]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Catalog(aepg::catalog::CatalogError::RefreshTimedOut { .. })
        ),
        "{error}"
    );
    eprintln!("first: {error}");
    assert!(
        !tap.saw(b"NEVER-SENT-7"),
        "a parameter was sent past the limit"
    );
    lock.rollback().await.unwrap();
    client
        .execute(insert_name, &[&2, &"sent-now", &"222-22-2222"])
        .await
        .unwrap();
    assert!(tap.saw(b"sent-now"));
}

/// A cell naming a setting the loaded catalog does not have makes the next
/// statement check the catalog, instead of waiting for the TTL.
#[tokio::test]
async fn a_cell_of_an_unknown_setting_prompts_a_check() {
    let db = people("client_state_unknown_setting").await;
    let encryption = db.encryption_with(|config| config.catalog_ttl(Duration::from_secs(3600)));
    // A client that hears no announcements, and a warm statement that sends
    // no plaintext: nothing but the cell tells it the catalog moved.
    let reader = db.unwatched_client_with(encryption.clone()).await;
    insert(&reader, 1, "111-11-1111").await;
    let read = "SELECT ssn FROM people WHERE id = 1";
    let first = reader.query_one(read, &[]).await.unwrap();
    assert_eq!(first.get::<_, &str>("ssn"), "111-11-1111");
    let loaded = reader.catalog().await.unwrap().generation();

    // A column encrypted under a setting created after the reader's load,
    // written by another application, and its cell copied (by the server)
    // into the reader's column.
    db.setting("badge", "text", Deterministic).await;
    db.table(
        "CREATE TABLE badges (id int, code aepg.ciphertext)",
        &[("badges", "code", "badge")],
    )
    .await;
    let writer = db.client().await;
    writer
        .execute(
            "INSERT INTO badges (id, code) VALUES ($1, $2)",
            &[&1, &"B-1"],
        )
        .await
        .unwrap();
    db.plain
        .batch_execute("UPDATE people SET ssn = (SELECT code FROM badges WHERE id = 1)")
        .await
        .unwrap();

    let row = reader.query_one(read, &[]).await.unwrap();
    let error = row.try_get::<_, String>("ssn").unwrap_err().to_string();
    assert!(error.contains("does not have"), "{error}");
    // The next statement checked the catalog: it knows the setting now, and
    // the cell is still refused as another column's.
    let row = reader.query_one(read, &[]).await.unwrap();
    let error = row.try_get::<_, String>("ssn").unwrap_err().to_string();
    assert!(error.contains("\"badge\""), "{error}");
    assert!(reader.catalog().await.unwrap().generation() > loaded);
}
