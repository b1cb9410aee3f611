//! A workload for tests of online operations (column migrations): a table
//! of people whose `ssn` a writer keeps changing through aepg (and one
//! through plain tokio-postgres), and a reader that looks rows up by
//! `ssn`, each recording what it did in a [`Ledger`] that the test checks
//! the table against afterwards.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: a test fails by panicking

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Rows [`people`] starts with.
pub const ROWS: i32 = 20_000;
/// Rows no writer touches: the reader looks them up by their `ssn`.
pub const STABLE: i32 = 1_000;

/// What the writers wrote, by id, and what went wrong.
#[derive(Default)]
pub struct Ledger {
    /// The value each row should hold, by id (rows with NULL left out).
    pub expected: Mutex<BTreeMap<i32, String>>,
    /// Writes that succeeded.
    pub writes: AtomicU64,
    /// Writes that failed.
    pub failed_writes: AtomicU64,
    /// Lookups made.
    pub reads: AtomicU64,
    /// Lookups that failed.
    pub failed_reads: AtomicU64,
    /// Lookups that found the wrong rows.
    pub misses: AtomicU64,
    /// The first failures, for messages.
    pub failures: Mutex<Vec<String>>,
}

impl Ledger {
    /// Asserts that no write or read failed and no lookup missed, and that
    /// there were some of each.
    pub fn assert_clean(&self) {
        let failures = self.failures.lock().unwrap().clone();
        assert_eq!(self.failed_writes.load(Ordering::SeqCst), 0, "{failures:?}");
        assert_eq!(self.failed_reads.load(Ordering::SeqCst), 0, "{failures:?}");
        assert_eq!(self.misses.load(Ordering::SeqCst), 0, "{failures:?}");
        assert!(self.writes.load(Ordering::SeqCst) > 10, "too few writes");
        assert!(self.reads.load(Ordering::SeqCst) > 10, "too few reads");
    }

    /// Records a lookup that found the wrong rows.
    pub fn miss(&self, what: String) {
        self.failed(&self.misses, what);
    }

    /// Records a lookup that failed.
    pub fn read_failed(&self, what: String) {
        self.failed(&self.failed_reads, what);
    }

    fn failed(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 10 {
            failures.push(what);
        }
    }
}

/// Creates table `people (id, name, ssn text UNIQUE)` with [`ROWS`] rows
/// (every 97th `ssn` NULL), and the ledger that expects them.
pub async fn people(plain: &tokio_postgres::Client) -> Arc<Ledger> {
    plain
        .batch_execute(&format!(
            "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, ssn text UNIQUE);
             INSERT INTO people SELECT i, 'name ' || i, 'ssn-' || i FROM generate_series(1, {ROWS}) i;
             UPDATE people SET ssn = NULL WHERE id % 97 = 0;"
        ))
        .await
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let mut expected = ledger.expected.lock().unwrap();
    for id in 1..=ROWS {
        if id % 97 != 0 {
            expected.insert(id, format!("ssn-{id}"));
        }
    }
    drop(expected);
    ledger
}

/// Through aepg: updates rows' `ssn` (ids above [`STABLE`], lower half)
/// and inserts new rows, until `stop`.
pub fn aepg_writer(
    client: aepg::Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    aepg_writer_from(client, ledger, stop, 0)
}

/// [`aepg_writer`] counting its writes from `first`: a writer that takes
/// over from another inserts rows of its own.
pub fn aepg_writer_from(
    client: aepg::Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    first: i32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n: i32 = first;
        while !stop.load(Ordering::SeqCst) {
            n = n.wrapping_add(1);
            let (result, id, value) = if n % 3 == 0 {
                let id = ROWS + n;
                let value = format!("new-{n}");
                let result = client
                    .execute(
                        "INSERT INTO people (id, name, ssn) VALUES ($1, $2, $3)",
                        &[&id, &format!("new {n}"), &value],
                    )
                    .await;
                (result, id, value)
            } else {
                let id = STABLE + 1 + (n.wrapping_mul(7919) & i32::MAX) % (ROWS / 2 - STABLE);
                let value = format!("upd-{n}");
                let result = client
                    .execute("UPDATE people SET ssn = $2 WHERE id = $1", &[&id, &value])
                    .await;
                (result, id, value)
            };
            match result {
                Ok(_) => {
                    ledger.writes.fetch_add(1, Ordering::SeqCst);
                    ledger.expected.lock().unwrap().insert(id, value);
                }
                Err(error) => {
                    ledger.failed(&ledger.failed_writes, format!("aepg write: {error}"));
                    // A closed connection fails at once: yield, so a test
                    // that failed can stop this task.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Through plain tokio-postgres, before the swap: plaintext into the
/// plaintext column, which the backfill must catch up with.
pub fn plain_writer(
    client: tokio_postgres::Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n: i32 = 0;
        while !stop.load(Ordering::SeqCst) {
            n = n.wrapping_add(1);
            let id = ROWS / 2 + 1 + (n.wrapping_mul(104_729) & i32::MAX) % (ROWS / 2);
            let value = format!("plain-{n}");
            match client
                .execute("UPDATE people SET ssn = $2 WHERE id = $1", &[&id, &value])
                .await
            {
                Ok(_) => {
                    ledger.writes.fetch_add(1, Ordering::SeqCst);
                    ledger.expected.lock().unwrap().insert(id, value);
                }
                Err(error) => {
                    ledger.failed(&ledger.failed_writes, format!("plain write: {error}"));
                    // A closed connection fails at once: yield, so a test
                    // that failed can stop this task.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Through aepg: equality lookups of the stable rows, and reads by id.
pub fn reader(
    client: aepg::Client,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n: i32 = 0;
        while !stop.load(Ordering::SeqCst) {
            n = n.wrapping_add(1);
            let id = 1 + (n.wrapping_mul(31) & i32::MAX) % STABLE;
            if id % 97 == 0 {
                continue;
            }
            let ssn = format!("ssn-{id}");
            ledger.reads.fetch_add(1, Ordering::SeqCst);
            match client
                .query("SELECT id, ssn FROM people WHERE ssn = $1", &[&ssn])
                .await
            {
                Ok(rows) if rows.len() == 1 && rows[0].get::<_, i32>(0) == id => {}
                Ok(rows) => ledger.failed(
                    &ledger.misses,
                    format!("lookup of {ssn}: {} rows", rows.len()),
                ),
                Err(error) => {
                    ledger.failed(&ledger.failed_reads, format!("lookup: {error}"));
                    // A closed connection fails at once: yield, so a test
                    // that failed can stop this task.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            let read = match client
                .query_one("SELECT ssn FROM people WHERE id = $1", &[&id])
                .await
            {
                Ok(row) => row.try_get::<_, Option<String>>(0),
                Err(error) => Err(error),
            };
            match read {
                Ok(Some(found)) if found == ssn => {}
                Ok(found) => ledger.failed(&ledger.misses, format!("row {id}: {found:?}")),
                Err(error) => {
                    ledger.failed(&ledger.failed_reads, format!("read: {error}"));
                    // A closed connection fails at once: yield, so a test
                    // that failed can stop this task.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// Asserts that every row, read through `client`, holds what the ledger expects.
pub async fn check_rows(client: &aepg::Client, ledger: &Ledger) {
    let rows = client
        .query("SELECT id, ssn FROM people", &[])
        .await
        .unwrap();
    let found: BTreeMap<i32, String> = rows
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(1).map(|ssn| (row.get(0), ssn)))
        .collect();
    let expected = ledger.expected.lock().unwrap().clone();
    assert_eq!(found.len(), expected.len());
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, ssn)| found.get(id) != Some(ssn))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "rows differ from their last write: {wrong:?}"
    );
}

/// The type of `people.ssn`, as SQL writes it (`text`, `aepg.ciphertext`).
pub async fn ssn_type(plain: &tokio_postgres::Client) -> String {
    plain
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'people'::regclass AND attname = 'ssn'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
