//! Soak: concurrent clients sharing one `Encryption` run mixed statements
//! with a rolling set of texts (more than their statement caches hold)
//! while the server is crash-restarted, their connections are terminated,
//! and the catalog changes. Afterwards every row matches the model the test
//! kept, the heap is flat, and no operation hung.
//!
//! A short run by default (CI); `AEPG_SOAK_SECONDS` runs longer. Runs on a
//! server of its own: a crash restart ends every session on the server.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aepg::catalog::{CatalogError, NewEncryptionSetting};
use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::cell::PlaintextType;
use aepg::{Client, Encryption, Error};
use aepg_tests::faults::{crash_restart, plain};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio_postgres::Config;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn live_mib() -> f64 {
    let stats = ALLOCATOR.stats();
    (stats.bytes_allocated as f64 - stats.bytes_deallocated as f64) / (1024.0 * 1024.0)
}

/// Any single operation taking longer than this is a hang.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
const WORKERS: i32 = 6;
const ROWS_PER_WORKER: i32 = 40;
/// Smaller than the number of distinct texts the workers use.
const CACHE_CAPACITY: usize = 32;

/// What a row holds: its ssn (deterministic) and balance (randomized).
type Value = Option<(String, i64)>;

/// The model of one row: known, or one of two values after a write whose
/// outcome is unknown (its connection died before the answer).
#[derive(Clone, Debug)]
enum Known {
    Is(Value),
    EitherOf(Value, Value),
}

impl Known {
    fn settle(&mut self, read: &Value, id: i32) {
        let ok = match self {
            Known::Is(value) => value == read,
            Known::EitherOf(before, after) => before == read || after == read,
        };
        assert!(ok, "row {id} reads {read:?}, the model says {self:?}");
        *self = Known::Is(read.clone());
    }
}

/// Counts of what the run did and met.
#[derive(Default)]
struct Tally {
    operations: AtomicU64,
    expected_errors: AtomicU64,
    reconnects: AtomicU64,
    restarts: AtomicU64,
    terminations: AtomicU64,
    catalog_changes: AtomicU64,
}

/// Errors a disruption explains: the connection went, the server is
/// restarting, or a catalog check could not finish meanwhile. Anything
/// else (a refusal, a decryption failure, a wrong row) fails the test.
fn disruption(error: &Error) -> bool {
    match error {
        Error::Database(database) => {
            database.is_closed()
                || database.as_db_error().is_none_or(|db| {
                    let code = db.code().code();
                    code.starts_with("57") || code.starts_with("08")
                })
        }
        Error::Catalog(CatalogError::RefreshTimedOut { .. } | CatalogError::Unsettled) => true,
        _ => false,
    }
}

/// A tiny deterministic generator (xorshift), seeded per worker.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An aepg client sharing `encryption`, if the server takes one now.
async fn connect(database: &Config, encryption: &Arc<Encryption>) -> Option<Client> {
    let (inner, connection) = database.connect(tokio_postgres::NoTls).await.ok()?;
    let (client, connection) = Client::with_connection(inner, connection, encryption.clone());
    tokio::spawn(connection);
    Some(client)
}

async fn read_row(client: &Client, id: i32, text: u64) -> Result<Value, Error> {
    let sql = format!("SELECT ssn, balance FROM accounts WHERE id = $1 /* r{text} */");
    let row = client.query_opt(&sql, &[&id]).await?;
    Ok(row.map(|row| (row.get::<_, String>("ssn"), row.get::<_, i64>("balance"))))
}

/// One worker: its own rows, its own client (reconnected when it dies).
async fn worker(
    worker: i32,
    database: Arc<Config>,
    encryption: Arc<Encryption>,
    model: Arc<Mutex<HashMap<i32, Known>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (worker as u64 + 1));
    let mut client: Option<Client> = None;
    let mut version = 0i64;
    while !stop.load(Ordering::SeqCst) {
        let live = match client.take().filter(|client| !client.is_closed()) {
            Some(live) => live,
            None => match connect(&database, &encryption).await {
                Some(live) => {
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    live
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let id = worker * 1000 + dice.below(ROWS_PER_WORKER as u64) as i32;
        // A rolling set of texts: more than the cache holds.
        let text = dice.below(3 * CACHE_CAPACITY as u64);
        let known = model
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or(Known::Is(None));
        let operation = async {
            match (&known, dice.below(5)) {
                // Unknown outcome, or a read: read it and check.
                (Known::EitherOf(..), _) | (_, 0) => {
                    let read = read_row(&live, id, text).await?;
                    model
                        .lock()
                        .unwrap()
                        .entry(id)
                        .or_insert(Known::Is(None))
                        .settle(&read, id);
                }
                // Equality on the deterministic column, with an IN list of
                // varying length.
                (Known::Is(Some((ssn, balance))), 1) => {
                    let others = (text % 5) as usize;
                    let decoys: Vec<String> = (0..others).map(|n| format!("none-{n}")).collect();
                    let mut params: Vec<&(dyn aepg::types::ToSql + Sync)> = vec![ssn];
                    params.extend(decoys.iter().map(|d| d as &(dyn aepg::types::ToSql + Sync)));
                    let list: Vec<String> = (1..=params.len()).map(|n| format!("${n}")).collect();
                    let sql = format!(
                        "SELECT id, balance FROM accounts WHERE ssn IN ({}) /* e{text} */",
                        list.join(", ")
                    );
                    let rows = live.query(&sql, &params).await?;
                    assert_eq!(rows.len(), 1, "row {id} by its ssn");
                    assert_eq!(rows[0].get::<_, i32>("id"), id);
                    assert_eq!(rows[0].get::<_, i64>("balance"), *balance);
                }
                (Known::Is(before), choice) => {
                    version += 1;
                    let after: Value = if choice == 2 && before.is_some() {
                        None
                    } else {
                        Some((format!("{id}-{version}"), version * 100 + i64::from(worker)))
                    };
                    // The outcome is unknown until the answer arrives.
                    model
                        .lock()
                        .unwrap()
                        .insert(id, Known::EitherOf(before.clone(), after.clone()));
                    match (before, &after) {
                        (_, None) => {
                            let sql = format!("DELETE FROM accounts WHERE id = $1 /* d{text} */");
                            live.execute(&sql, &[&id]).await?;
                        }
                        (None, Some((ssn, balance))) => {
                            let sql = format!(
                                "INSERT INTO accounts (id, owner, ssn, balance) \
                                 VALUES ($1, $2, $3, $4) /* i{text} */"
                            );
                            live.execute(&sql, &[&id, &format!("w{worker}"), ssn, balance])
                                .await?;
                        }
                        (Some(_), Some((ssn, balance))) => {
                            let sql = format!(
                                "UPDATE accounts SET ssn = $1, balance = $2 WHERE id = $3 /* u{text} */"
                            );
                            live.execute(&sql, &[ssn, balance, &id]).await?;
                        }
                    }
                    model.lock().unwrap().insert(id, Known::Is(after));
                }
            }
            Ok::<(), Error>(())
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Err(_) => panic!("worker {worker}: an operation on row {id} hung"),
            Ok(Ok(())) => {
                tally.operations.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => {
                assert!(
                    disruption(&error),
                    "worker {worker}, row {id}: an error no disruption explains: {error}"
                );
                tally.expected_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        client = Some(live);
    }
}

async fn terminate_sessions(database: &Config) -> bool {
    let Some(session) = plain(database).await else {
        return false;
    };
    session
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .is_ok()
}

/// A new setting: the catalog's generation moves, every client reloads.
async fn change_catalog(db: &EncryptedDatabase, database: &Config, change: u64) -> bool {
    let Some(mut admin) = plain(database).await else {
        return false;
    };
    let setting = NewEncryptionSetting::new(
        format!("soak{change}"),
        PlaintextType::parse("int4").unwrap(),
        Randomized,
        db.key_id,
    );
    db.admin.create_setting(&mut admin, &setting).await.is_ok()
}

/// Reads every row of the model and checks it; returns how many exist.
async fn verify(checker: &Client, mut model: HashMap<i32, Known>) -> Result<usize, Error> {
    let mut rows = 0;
    for (id, known) in &mut model {
        let read = read_row(checker, *id, 0).await?;
        known.settle(&read, *id);
        rows += usize::from(read.is_some());
    }
    let stored: i64 = checker
        .query_one("SELECT count(*) FROM accounts", &[])
        .await?
        .get(0);
    assert_eq!(stored as usize, rows, "rows the model does not know of");
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_survive_restarts_terminations_and_catalog_changes() {
    let seconds: u64 = std::env::var("AEPG_SOAK_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let server = DedicatedServer::start(&[]).await.unwrap();
    let db = EncryptedDatabase::on(server.create_database("soak").await.unwrap()).await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("balance", "int8", Randomized).await;
    db.table(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text, ssn aepg.ciphertext UNIQUE, \
         balance aepg.ciphertext)",
        &[
            ("accounts", "ssn", "ssn"),
            ("accounts", "balance", "balance"),
        ],
    )
    .await;
    let encryption = db.encryption_with(|config| {
        config
            .statement_cache_capacity(CACHE_CAPACITY)
            .catalog_ttl(Duration::from_secs(1))
    });
    let database = Arc::new(db.database.config());
    let model = Arc::new(Mutex::new(HashMap::new()));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|n| {
            tokio::spawn(worker(
                n,
                database.clone(),
                encryption.clone(),
                model.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let run = Duration::from_secs(seconds);
    let mut heap_after_warm_up = None;
    let mut step = 0u64;
    while started.elapsed() + Duration::from_secs(2) < run {
        tokio::time::sleep(Duration::from_millis(700)).await;
        step += 1;
        if heap_after_warm_up.is_none() && started.elapsed() > run / 4 {
            heap_after_warm_up = Some(live_mib());
        }
        match step % 4 {
            0 => {
                if crash_restart(&database).await {
                    tally.restarts.fetch_add(1, Ordering::Relaxed);
                }
            }
            1 | 3 => {
                if change_catalog(&db, &database, step).await {
                    tally.catalog_changes.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                if terminate_sessions(&database).await {
                    tally.terminations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        tokio::time::timeout(OPERATION_TIMEOUT * 2, worker)
            .await
            .expect("a worker hung")
            .expect("a worker failed");
    }
    let heap_at_end = live_mib();

    // Every row as the model says, read by a fresh client once the server
    // is back (a crash restart at the end may still be ending sessions).
    let model = model.lock().unwrap().clone();
    let mut rows = 0;
    let mut attempts = 0;
    while rows == 0 {
        attempts += 1;
        assert!(attempts <= 60, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(checker) = connect(&database, &encryption).await else {
            continue;
        };
        match verify(&checker, model.clone()).await {
            Ok(matched) => rows = matched.max(1),
            Err(error) => assert!(disruption(&error), "verifying: {error}"),
        }
    }
    let warm = heap_after_warm_up.unwrap_or(heap_at_end);
    eprintln!(
        "soak {seconds} s: {} operations, {} disrupted, {} reconnects; {} crash restarts, {} \
         terminations, {} catalog changes; {rows} rows match the model; heap {warm:.2} MiB \
         after warm-up, {heap_at_end:.2} MiB at the end",
        tally.operations.load(Ordering::Relaxed),
        tally.expected_errors.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
        tally.restarts.load(Ordering::Relaxed),
        tally.terminations.load(Ordering::Relaxed),
        tally.catalog_changes.load(Ordering::Relaxed),
    );
    assert!(tally.restarts.load(Ordering::Relaxed) >= 1);
    assert!(tally.operations.load(Ordering::Relaxed) > 100);
    assert!(
        heap_at_end - warm < 4.0,
        "the heap grew from {warm:.2} MiB to {heap_at_end:.2} MiB"
    );
}
