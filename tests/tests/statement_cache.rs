//! The statement cache stays bounded on both sides of the connection: many
//! distinct statement texts through one client (literals in the text, `IN`
//! lists of varying length) leave the client's memory and the server's
//! prepared statements flat.
//!
//! This binary holds one test: it counts every byte the process allocates,
//! so nothing else may run beside it. `AEPG_CACHE_TEXTS` sets how many
//! distinct texts run (default 100,000).
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode::Deterministic;
use aepg_tests::fixture::EncryptedDatabase;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// The system allocator, counting what is allocated and freed.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The heap in use now, in MiB.
fn live_mib() -> f64 {
    let stats = ALLOCATOR.stats();
    // A reallocation's growth counts as allocated, its shrinking as freed.
    let live = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
    live / (1024.0 * 1024.0)
}

/// The `i`-th distinct text: a literal in the text, or an `IN` list whose
/// length varies, over an encrypted column, as ORMs write them.
fn text(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("SELECT id, ssn FROM people WHERE id = $1 AND id <> {i}")
    } else {
        let list: Vec<String> = (1..=(i % 40) + 1).map(|n| format!("${n}")).collect();
        format!(
            "SELECT id, ssn FROM people WHERE ssn IN ({}) /* {i} */",
            list.join(", ")
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_texts_leave_memory_and_server_statements_flat() {
    const CAPACITY: usize = 64;
    let texts: usize = std::env::var("AEPG_CACHE_TEXTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let db = EncryptedDatabase::new("statement_cache").await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int PRIMARY KEY, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    let encryption = db.encryption_with(|config| config.statement_cache_capacity(CAPACITY));
    let client = db.client_with(encryption).await;
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&1, &"111-11-1111"],
        )
        .await
        .unwrap();

    let ssn = "111-11-1111";
    let run = |i: usize| {
        let client = &client;
        async move {
            let sql = text(i);
            let rows = if i.is_multiple_of(2) {
                client.query(&sql, &[&1]).await.unwrap()
            } else {
                let params: Vec<&(dyn aepg::types::ToSql + Sync)> =
                    (0..(i % 40) + 1).map(|_| &ssn as _).collect();
                client.query(&sql, &params).await.unwrap()
            };
            assert_eq!(rows.len(), 1, "{sql}");
            assert_eq!(rows[0].get::<_, &str>("ssn"), ssn);
        }
    };
    let prepared_on_server = || async {
        client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_prepared_statements",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // The server backend's memory, as its memory contexts count it.
    let backend_mib = || async {
        client
            .query_one(
                "SELECT sum(total_bytes)::int8 FROM pg_catalog.pg_backend_memory_contexts",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0) as f64
            / (1024.0 * 1024.0)
    };

    // Warm up: the caches of the client, tokio-postgres and the allocator fill.
    let warm_up = texts.min(2_000);
    for i in 0..warm_up {
        run(i).await;
    }
    let before = live_mib();
    let backend_before = backend_mib().await;
    let mut peak_server = prepared_on_server().await;
    for i in warm_up..texts {
        run(i).await;
        if i.is_multiple_of(10_000) {
            peak_server = peak_server.max(prepared_on_server().await);
        }
    }
    let after = live_mib();
    peak_server = peak_server.max(prepared_on_server().await);
    let backend_after = backend_mib().await;
    eprintln!(
        "{texts} distinct texts, cache capacity {CAPACITY}: client heap {before:.2} MiB after \
         {warm_up} texts, {after:.2} MiB after all; at most {peak_server} prepared statements \
         on the server; server backend {backend_before:.2} MiB after {warm_up} texts, \
         {backend_after:.2} MiB after all; {} cached",
        client.cached_statements()
    );
    assert!(client.cached_statements() <= CAPACITY);
    // The cache, tokio-postgres's own statements, and the count query itself.
    assert!(
        peak_server <= CAPACITY as i64 + 4,
        "{peak_server} prepared statements on the server"
    );
    assert!(
        backend_after - backend_before < 8.0,
        "the server backend grew from {backend_before:.2} MiB to {backend_after:.2} MiB"
    );
    assert!(
        after - before < 2.0,
        "the client's heap grew from {before:.2} MiB to {after:.2} MiB"
    );
}
