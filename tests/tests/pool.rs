//! Pools of aepg clients (deadpool and bb8) against a real server: every
//! connection shares one catalog load and one unwrap per column key, and a
//! reset through the pool leaves no session state behind.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;

use aepg::cell::EncryptionMode::Deterministic;
use aepg::pool::{Bb8Pool, ClientManager, DeadpoolPool, Recycling};
use aepg::Encryption;
use aepg_keystore::OperationCounts;
use aepg_tests::fixture::EncryptedDatabase;

const CONNECTIONS: usize = 4;

/// `people (id, ssn)` with ssn encrypted, two rows written.
async fn people(label: &str) -> EncryptedDatabase {
    let db = EncryptedDatabase::new(label).await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int PRIMARY KEY, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    let client = db.client().await;
    for (id, ssn) in [(1, "111-11-1111"), (2, "222-22-2222")] {
        client
            .execute("INSERT INTO people (id, ssn) VALUES ($1, $2)", &[&id, &ssn])
            .await
            .unwrap();
    }
    db
}

fn delta(after: OperationCounts, before: OperationCounts) -> (usize, usize) {
    (after.verify - before.verify, after.unwrap - before.unwrap)
}

/// What one client costs the key store: one catalog load's verifications,
/// one unwrap of the column key.
async fn one_client_costs(db: &EncryptedDatabase) -> (usize, usize) {
    let before = db.store.operation_counts();
    let client = db.client().await;
    let row = client
        .query_one("SELECT ssn FROM people WHERE id = $1", &[&1])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("ssn"), "111-11-1111");
    delta(db.store.operation_counts(), before)
}

fn manager(
    db: &EncryptedDatabase,
    encryption: &Arc<Encryption>,
) -> ClientManager<tokio_postgres::NoTls> {
    ClientManager::new(
        db.database.config(),
        tokio_postgres::NoTls,
        encryption.clone(),
    )
}

#[tokio::test]
async fn a_deadpool_pool_loads_the_catalog_and_unwraps_keys_once() {
    let db = people("pool_deadpool").await;
    let one = one_client_costs(&db).await;
    assert!(one.0 > 0 && one.1 == 1, "{one:?}");

    let encryption = db.encryption_with(|config| config);
    let pool = DeadpoolPool::builder(manager(&db, &encryption))
        .max_size(CONNECTIONS)
        .build()
        .unwrap();
    let before = db.store.operation_counts();
    // Every connection of the pool in use at once.
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(pool.get().await.unwrap());
    }
    let reads = futures_util::future::join_all(held.iter().enumerate().map(|(n, client)| {
        let id = 1 + (n % 2) as i32;
        async move {
            client
                .query_one("SELECT ssn FROM people WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, String>("ssn")
        }
    }))
    .await;
    assert_eq!(reads[0], "111-11-1111");
    assert_eq!(reads[1], "222-22-2222");
    assert_eq!(pool.status().size, CONNECTIONS);
    assert_eq!(
        delta(db.store.operation_counts(), before),
        one,
        "{CONNECTIONS} pooled connections cost more than one client"
    );
}

#[tokio::test]
async fn a_bb8_pool_loads_the_catalog_and_unwraps_keys_once() {
    let db = people("pool_bb8").await;
    let one = one_client_costs(&db).await;

    let encryption = db.encryption_with(|config| config);
    let pool = Bb8Pool::builder()
        .max_size(CONNECTIONS as u32)
        .min_idle(Some(CONNECTIONS as u32))
        .build(manager(&db, &encryption))
        .await
        .unwrap();
    let before = db.store.operation_counts();
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(pool.get().await.unwrap());
    }
    for client in &held {
        let row = client
            .query_one("SELECT ssn FROM people WHERE ssn = $1", &[&"222-22-2222"])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>("ssn"), "222-22-2222");
    }
    assert_eq!(pool.state().connections, CONNECTIONS as u32);
    assert_eq!(delta(db.store.operation_counts(), before), one);
}

/// A connection handed back with its search path changed comes out clean:
/// the server's session is reset and aepg reads it again, so a name
/// resolves where the reset session resolves it.
#[tokio::test]
async fn a_clean_reset_leaves_no_search_path_behind() {
    let db = people("pool_reset").await;
    // A plaintext table of the same name, in a schema a user may put first.
    db.plain
        .batch_execute(
            "CREATE SCHEMA other; CREATE TABLE other.people (id int, ssn text);
             INSERT INTO other.people VALUES (1, 'decoy')",
        )
        .await
        .unwrap();
    let encryption = db.encryption_with(|config| config);
    for recycling in [Recycling::Clean, Recycling::Verified] {
        let pool = DeadpoolPool::builder(manager(&db, &encryption).recycling(recycling))
            .max_size(1)
            .build()
            .unwrap();
        {
            let client = pool.get().await.unwrap();
            // Warm statements, then the search path moves.
            let row = client
                .query_one("SELECT ssn FROM people WHERE id = $1", &[&1])
                .await
                .unwrap();
            assert_eq!(row.get::<_, &str>("ssn"), "111-11-1111");
            client
                .batch_execute("SET search_path = other, public")
                .await
                .unwrap();
        }
        let client = pool.get().await.unwrap();
        let search_path: String = client
            .query_one("SHOW search_path", &[])
            .await
            .unwrap()
            .get(0);
        if recycling == Recycling::Clean {
            assert_eq!(search_path, "\"$user\", public");
            let row = client
                .query_one("SELECT ssn FROM people WHERE id = $1", &[&1])
                .await
                .unwrap();
            assert_eq!(row.get::<_, &str>("ssn"), "111-11-1111");
        } else {
            // Kept: aepg read the session again, and refuses the name that
            // now resolves to the decoy, rather than answer from it.
            assert_eq!(search_path, "other, public");
            let error = client
                .query_one("SELECT ssn FROM people WHERE id = $1", &[&1])
                .await
                .unwrap_err();
            assert!(error.to_string().contains("other.people"), "{error}");
            client
                .batch_execute("SET search_path = public")
                .await
                .unwrap();
        }
        // tokio-postgres can still look types up (the reset kept its
        // statements): an array of ciphertext is a type it meets only now.
        let rows = client
            .query(
                "SELECT ssn FROM people WHERE ssn = ANY($1)",
                &[&vec!["111-11-1111", "222-22-2222"]],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        // Handed back inside a transaction block, the connection is dropped.
        client.batch_execute("BEGIN").await.unwrap();
        drop(client);
        let client = pool.get().await.unwrap();
        let row = client
            .query_one("SELECT ssn FROM people WHERE id = $1", &[&2])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>("ssn"), "222-22-2222");
    }
}

/// Code written once against `aepg::GenericClient` runs on a client, a
/// transaction and the clients of both pools.
#[tokio::test]
async fn generic_code_runs_on_clients_transactions_and_pooled_clients() {
    use aepg::GenericClient;

    async fn renumber(client: &impl GenericClient, from: i32, to: i32) -> String {
        client
            .execute("UPDATE people SET id = $1 WHERE id = $2", &[&to, &from])
            .await
            .unwrap();
        let statement = client
            .prepare("SELECT ssn FROM people WHERE id = $1")
            .await
            .unwrap();
        let row = client.query_one(&statement, &[&to]).await.unwrap();
        assert!(client
            .query_opt("SELECT ssn FROM people WHERE id = $1", &[&from])
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            client
                .query("SELECT ssn FROM people WHERE id = $1", &[&to])
                .await
                .unwrap()
                .len(),
            1
        );
        client.batch_execute("SELECT 1").await.unwrap();
        row.get("ssn")
    }

    let db = people("pool_generic").await;
    let encryption = db.encryption_with(|config| config);
    let mut client = db.client_with(encryption.clone()).await;
    assert_eq!(renumber(&client, 1, 10).await, "111-11-1111");
    let transaction = client.transaction().await.unwrap();
    assert_eq!(renumber(&transaction, 10, 11).await, "111-11-1111");
    transaction.commit().await.unwrap();
    let deadpool = DeadpoolPool::builder(manager(&db, &encryption))
        .max_size(1)
        .build()
        .unwrap();
    assert_eq!(
        renumber(&deadpool.get().await.unwrap(), 11, 12).await,
        "111-11-1111"
    );
    let bb8 = Bb8Pool::builder()
        .max_size(1)
        .build(manager(&db, &encryption))
        .await
        .unwrap();
    assert_eq!(
        renumber(&bb8.get().await.unwrap(), 12, 13).await,
        "111-11-1111"
    );
}
