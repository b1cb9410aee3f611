//! `cargo run --release -p aepg-bench`: aepg against plain tokio-postgres
//! on the same rows, in the same run, interleaved in blocks so that the
//! machine's noise falls on both alike; prints each workload's ratio
//! (aepg's throughput over plain's: 1.0 is parity) with its spread.
//!
//! It starts its own PostgreSQL through the test harness (a container, or
//! a local cluster) with `fsync`, `synchronous_commit` and
//! `full_page_writes` on. The table: `id int, name text`, and `ssn`
//! (deterministic `text`) and `note` (randomized `text`, ~100 bytes),
//! encrypted for aepg and plain `text` for tokio-postgres.
//!
//! Workloads: binary `COPY … FROM STDIN` (bulk load), binary
//! `COPY … TO STDOUT` (a full decrypting scan), a cold start (a new
//! connection's first query reading a row by its deterministic column; for
//! aepg with a new `Encryption`: the catalog loaded and verified, the
//! column key unwrapped), and small statements (`point`): a single-row
//! insert, and a point select by the deterministic column one at a time,
//! 64 in flight on one connection, and over 8 connections. Then, on the plain table, an online column
//! migration (`column encrypt` and `column decrypt`) under a light load,
//! in rows per second. Options: `--rows N`
//! (default 1,000,000), `--blocks B` (default 10), `--ops N` (small
//! statements per block and workload, default 1,000), `--quick` (20,000
//! rows in 2 blocks, 50 statements: checks that the program works, as CI
//! runs it), `--migration-only`.

mod point;

use std::time::{Duration, Instant};

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;

/// A failed run.
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// What to run.
struct Options {
    rows: usize,
    blocks: usize,
    /// Small statements per block and workload.
    ops: usize,
    /// Only the column migration.
    migration_only: bool,
}

impl Options {
    fn from_args() -> Result<Self, Failure> {
        let mut options = Self {
            rows: 1_000_000,
            blocks: 10,
            ops: 1_000,
            migration_only: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = || -> Result<usize, Failure> {
                Ok(args.next().ok_or("a number must follow")?.parse()?)
            };
            match arg.as_str() {
                "--rows" => options.rows = number()?,
                "--blocks" => options.blocks = number()?,
                "--ops" => options.ops = number()?,
                "--migration-only" => options.migration_only = true,
                "--quick" => {
                    options.rows = 20_000;
                    options.blocks = 2;
                    options.ops = 50;
                }
                other => {
                    return Err(format!(
                        "unknown option {other}: --rows N, --blocks B, --ops N, --quick, --migration-only"
                    )
                    .into())
                }
            }
        }
        if options.blocks == 0 || options.rows < options.blocks || options.ops == 0 {
            return Err("need at least one row per block, and --ops above 0".into());
        }
        Ok(options)
    }
}

/// One row of the table.
struct Person {
    id: i32,
    name: String,
    ssn: String,
    note: String,
}

fn people(rows: usize) -> Vec<Person> {
    (0..rows)
        .map(|index| {
            let id = i32::try_from(index).unwrap_or(i32::MAX);
            Person {
                id,
                name: format!("person {id}"),
                ssn: format!("{:03}-{:02}-{:04}", id % 1000, id % 100, id % 10_000),
                note: format!("{id:08} seen for a routine check-up; no findings; next visit in twelve months. "),
            }
        })
        .collect()
}

/// Per-block ratios of one workload.
struct Ratios {
    name: &'static str,
    values: Vec<f64>,
}

impl Ratios {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            values: Vec::new(),
        }
    }

    /// aepg's throughput over plain's for one block: plain time ÷ aepg time.
    fn add(&mut self, plain: Duration, aepg: Duration) {
        if std::env::var_os("AEPG_BENCH_VERBOSE").is_some() {
            eprintln!("{}: plain {plain:?}, aepg {aepg:?}", self.name);
        }
        self.values.push(plain.as_secs_f64() / aepg.as_secs_f64());
    }

    fn print(&self) {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        println!(
            "{:<28} {:>6.2}   ({:.2} .. {:.2}, {} blocks)",
            self.name,
            median,
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        );
    }
}

async fn copy_in_plain(
    client: &tokio_postgres::Client,
    rows: &[Person],
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let sink = client
        .copy_in("COPY plain_people (id, name, ssn, note) FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT, Type::TEXT, Type::TEXT]);
    pin_mut!(writer);
    for row in rows {
        writer
            .as_mut()
            .write(&[&row.id, &row.name, &row.ssn, &row.note])
            .await?;
    }
    writer.finish().await?;
    Ok(started.elapsed())
}

async fn copy_in_aepg(client: &aepg::Client, rows: &[Person]) -> Result<Duration, Failure> {
    let started = Instant::now();
    let mut writer = client
        .copy_in("COPY enc_people (id, name, ssn, note) FROM STDIN (FORMAT binary)")
        .await?;
    for row in rows {
        writer
            .write(&[&row.id, &row.name, &row.ssn, &row.note])
            .await?;
    }
    writer.finish().await?;
    Ok(started.elapsed())
}

/// Reads every row of `plain_people`, each column decoded.
async fn scan_plain(client: &tokio_postgres::Client) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let stream = client
        .copy_out("COPY plain_people (id, name, ssn, note) TO STDOUT (FORMAT binary)")
        .await?;
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::TEXT, Type::TEXT, Type::TEXT]);
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let _: (i32, &str, &str, &str) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        count += 1;
    }
    Ok((started.elapsed(), count))
}

/// Reads every row of `enc_people`, each column decrypted and decoded.
async fn scan_aepg(client: &aepg::Client) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let rows = client
        .copy_out("COPY enc_people (id, name, ssn, note) TO STDOUT (FORMAT binary)")
        .await?;
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let _: (i32, &str, &str, &str) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        );
        count += 1;
    }
    Ok((started.elapsed(), count))
}

/// A new connection and its first query: plain.
async fn cold_plain(db: &EncryptedDatabase) -> Result<Duration, Failure> {
    let started = Instant::now();
    let client = db.database.try_connect().await?;
    let row = client
        .query_one(
            "SELECT note FROM plain_people WHERE ssn = $1 LIMIT 1",
            &[&"001-01-0001"],
        )
        .await?;
    let _: &str = row.try_get(0)?;
    Ok(started.elapsed())
}

/// A new connection and its first query through a new `Encryption`: the
/// catalog loaded and verified, the column key unwrapped, the cell decrypted.
async fn cold_aepg(db: &EncryptedDatabase) -> Result<Duration, Failure> {
    let started = Instant::now();
    let client = db.client_with(db.encryption_with(|config| config)).await;
    let row = client
        .query_one(
            "SELECT note FROM enc_people WHERE ssn = $1 LIMIT 1",
            &[&"001-01-0001"],
        )
        .await?;
    let _: &str = row.try_get(0)?;
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let options = Options::from_args()?;
    let durable = [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
    ];
    let server = DedicatedServer::start(&durable).await?;
    println!("server: {}", server.info().description);
    let db = EncryptedDatabase::on(server.create_database("bench").await?).await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("note", "text", Randomized).await;
    db.table(
        "CREATE TABLE enc_people (id int, name text, ssn aepg.ciphertext, note aepg.ciphertext); \
         CREATE TABLE plain_people (id int, name text, ssn text, note text)",
        &[("enc_people", "ssn", "ssn"), ("enc_people", "note", "note")],
    )
    .await;
    let aepg = db.client().await;
    let plain = db.database.connect().await;
    let fsync: String = plain.query_one("SHOW fsync", &[]).await?.get(0);
    if fsync != "on" {
        return Err("the server runs with fsync off".into());
    }
    let rows = people(options.rows);
    println!(
        "{} rows in {} blocks; ratio = aepg throughput / plain tokio-postgres throughput (median, min .. max)\n",
        options.rows, options.blocks
    );

    if options.migration_only {
        copy_in_plain(&plain, &rows).await?;
        plain
            .batch_execute("CREATE INDEX ON plain_people (ssn)")
            .await?;
        return migration(&db, options.rows).await;
    }
    let mut load = Ratios::new("binary COPY in (bulk load)");
    let block = options.rows.div_ceil(options.blocks);
    for (index, chunk) in rows.chunks(block).enumerate() {
        // Alternate who goes first, so that neither always meets a warm
        // (or a busy) server.
        let (plain_time, aepg_time) = if index % 2 == 0 {
            (
                copy_in_plain(&plain, chunk).await?,
                copy_in_aepg(&aepg, chunk).await?,
            )
        } else {
            let aepg_time = copy_in_aepg(&aepg, chunk).await?;
            (copy_in_plain(&plain, chunk).await?, aepg_time)
        };
        load.add(plain_time, aepg_time);
    }

    let mut scan = Ratios::new("binary COPY out (full scan)");
    for index in 0..options.blocks {
        let ((plain_time, plain_rows), (aepg_time, aepg_rows)) = if index % 2 == 0 {
            (scan_plain(&plain).await?, scan_aepg(&aepg).await?)
        } else {
            let aepg_scan = scan_aepg(&aepg).await?;
            (scan_plain(&plain).await?, aepg_scan)
        };
        if plain_rows != options.rows || aepg_rows != options.rows {
            return Err(format!(
                "scanned {plain_rows} plain and {aepg_rows} aepg rows of {}",
                options.rows
            )
            .into());
        }
        scan.add(plain_time, aepg_time);
    }

    // Point lookups by the deterministic column use an index, as a real
    // table's would (built after the load, which is measured without it).
    plain
        .batch_execute("CREATE INDEX ON plain_people (ssn); CREATE INDEX ON enc_people (ssn)")
        .await?;
    let stored = stored_bytes(&plain).await?;
    let mut cold = Ratios::new("cold start, first query");
    for index in 0..options.blocks * 3 {
        let (plain_time, aepg_time) = if index % 2 == 0 {
            (cold_plain(&db).await?, cold_aepg(&db).await?)
        } else {
            let aepg_time = cold_aepg(&db).await?;
            (cold_plain(&db).await?, aepg_time)
        };
        cold.add(plain_time, aepg_time);
    }

    let first_id = i32::try_from(options.rows)?;
    let small = point::run(&db, options.blocks, options.ops, first_id).await?;

    println!("{:<28} {:>6}   spread", "workload", "ratio");
    for ratios in [&load, &scan, &cold].into_iter().chain(&small) {
        ratios.print();
    }
    println!();
    println!("{stored}");
    migration(&db, options.rows).await?;
    Ok(())
}

/// What the same rows take on disk, encrypted and plain: the mean stored
/// size of each encrypted column's values (`pg_column_size`), and the
/// tables' heap and total (with indexes and TOAST) sizes.
async fn stored_bytes(plain: &tokio_postgres::Client) -> Result<String, Failure> {
    plain
        .batch_execute("VACUUM ANALYZE plain_people, enc_people")
        .await?;
    let sizes = |table: &str| {
        format!(
            "SELECT avg(pg_column_size(ssn))::float8, avg(pg_column_size(note))::float8,
                    pg_relation_size('{table}')::float8, pg_total_relation_size('{table}')::float8
             FROM {table}"
        )
    };
    let plain_row = plain.query_one(&sizes("plain_people"), &[]).await?;
    let aepg_row = plain.query_one(&sizes("enc_people"), &[]).await?;
    let mut report = String::from("stored bytes (aepg vs plain):\n");
    for (index, what) in [
        (0, "ssn, mean per value"),
        (1, "note, mean per value"),
        (2, "table heap"),
        (3, "table with indexes"),
    ] {
        let (aepg, plain): (f64, f64) = (aepg_row.try_get(index)?, plain_row.try_get(index)?);
        report.push_str(&format!(
            "  {what:<22} {aepg:>14.1} {plain:>14.1}   {:.2}x\n",
            aepg / plain
        ));
    }
    Ok(report)
}

/// `column encrypt`, `rotate cek start` + `complete`, then `column
/// decrypt`, of the plain table's `ssn`
/// (indexed) while a light load reads and writes the table through aepg:
/// rows per second, and against the database's own cost of touching every
/// row (`UPDATE … SET name = name`, no encryption), measured just before.
async fn migration(db: &EncryptedDatabase, rows: usize) -> Result<(), Failure> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    use aepg::migration::MigrationOptions;
    use aepg::ColumnName;

    let mut admin = db.database.connect().await;
    let started = Instant::now();
    admin
        .batch_execute("UPDATE plain_people SET name = name")
        .await?;
    admin.batch_execute("VACUUM plain_people").await?;
    let baseline = started.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let (statements, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop) = (db.client().await, stop.clone());
        let (statements, failed) = (statements.clone(), failed.clone());
        let rows = i32::try_from(rows)?;
        tokio::spawn(async move {
            let mut n: i32 = 0;
            while !stop.load(Ordering::SeqCst) {
                n = n.wrapping_add(1);
                let id = (n.wrapping_mul(7919) & i32::MAX) % rows;
                let outcome = if n % 2 == 0 {
                    client
                        .execute(
                            "UPDATE plain_people SET ssn = $2 WHERE id = $1",
                            &[&id, &format!("load-{n}")],
                        )
                        .await
                } else {
                    client
                        .query("SELECT ssn FROM plain_people WHERE id = $1", &[&id])
                        .await
                        .map(|_| 0)
                };
                statements.fetch_add(1, Ordering::SeqCst);
                if outcome.is_err() {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let column = ColumnName::new("public", "plain_people", "ssn");
    let options = MigrationOptions::default().grace(Duration::from_secs(1));
    let started = Instant::now();
    let encrypted = db
        .admin
        .encrypt_column(&mut admin, &column, "ssn", &options, &mut |_| {})
        .await?;
    let encrypt_time = started.elapsed();
    let started = Instant::now();
    db.admin
        .start_key_rotation(&mut admin, "ssn", &options, &mut |_| {})
        .await?;
    let rotated = db
        .admin
        .complete_key_rotation(&mut admin, "ssn", &options, &mut |_| {})
        .await?;
    let rotate_time = started.elapsed();
    let started = Instant::now();
    let decrypted = db
        .admin
        .decrypt_column(&mut admin, &column, &options, &mut |_| {})
        .await?;
    let decrypt_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    load.await?;
    println!(
        "online column migration of {rows} rows (indexed deterministic text), under a light load \
         ({} statements through aepg, {} failed):",
        statements.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    for (name, rows, time) in [
        ("column encrypt", encrypted.rows_converted, encrypt_time),
        ("rotate cek", rotated.rows_converted, rotate_time),
        ("column decrypt", decrypted.rows_converted, decrypt_time),
    ] {
        #[allow(clippy::cast_precision_loss)]
        let rate = rows as f64 / time.as_secs_f64();
        println!(
            "  {name:<15} {:>9.0} rows/s   {:.2}x the time of UPDATE … SET name = name",
            rate,
            time.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    Ok(())
}
