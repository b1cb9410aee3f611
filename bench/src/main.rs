//! `cargo run --release -p aepg-bench`: aepg against plain tokio-postgres
//! on the same rows, in the same run, interleaved in blocks so that the
//! machine's noise falls on both alike; prints each workload's ratio
//! (aepg's and pgcrypto's throughput over plain's: 1.0 is parity) with its
//! spread.
//!
//! It starts its own PostgreSQL through the test harness (a container, or
//! a local cluster) with `fsync`, `synchronous_commit` and
//! `full_page_writes` on. The table: `id int, name text`, and `ssn`
//! (deterministic `text`) and `note` (randomized `text`, ~100 bytes),
//! encrypted for aepg and plain `text` for tokio-postgres.
//!
//! pgcrypto runs beside them (`pgp_sym_encrypt`/`pgp_sym_decrypt` on the
//! server, with an HMAC blind index for lookups: the `pgcrypto` module), on
//! a share of the rows for the bulk workloads, scaled to the same count.
//!
//! Workloads: binary `COPY … FROM STDIN` (bulk load), binary
//! `COPY … TO STDOUT` (a full decrypting scan), a cold start (a new
//! connection's first query reading a row by its deterministic column; for
//! aepg with a new `Encryption`: the catalog loaded and verified, the
//! column key unwrapped), and small statements (`point`): a single-row
//! insert, and a point select by the deterministic column one at a time,
//! 64 in flight on one connection, and over 8 connections. Beside the
//! ratios, the client's CPU per decrypted cell against the cell cipher's
//! own decrypt time (`cell_cpu`). Then, on the plain table, an online column
//! migration (`column encrypt` and `column decrypt`) under a light load,
//! in rows per second. Options: `--rows N`
//! (default 1,000,000), `--blocks B` (default 10), `--ops N` (small
//! statements per block and workload, default 1,000), `--quick` (20,000
//! rows in 2 blocks, 50 statements: checks that the program works, as CI
//! runs it), `--migration-only`, `--cell-cpu-only` (the load, then only
//! the client CPU per cell), `--bulk-only` (the load and the scans, by COPY
//! and by `SELECT`, of aepg and plain alone, with the client's and the
//! server's CPU: `bulk_cpu`),
//! `--cold-only` (the load, then only aepg's and plain's cold starts),
//! `--statements-only` (the load, then only the everyday statements of
//! `statements`: a text not seen before, a table without encrypted
//! columns, a transaction, a select of several rows), and
//! `--schema-tables N` (N plain tables of ten columns created before the
//! cold starts: a database's schema is rarely two tables).

mod bulk_cpu;
mod cell_cpu;
mod pgcrypto;
mod point;
mod statements;

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
    /// Only the load and the client CPU per cell.
    cell_cpu_only: bool,
    /// Only the load and the scan, with their CPU.
    bulk_only: bool,
    /// Only the cold start (after the load).
    cold_only: bool,
    /// Only the everyday statements of `statements` (after the load).
    statements_only: bool,
    /// Plain tables of ten columns created before the cold start, in a
    /// schema of their own: a catalog load reads the whole schema.
    schema_tables: usize,
}

impl Options {
    fn from_args() -> Result<Self, Failure> {
        let mut options = Self {
            rows: 1_000_000,
            blocks: 10,
            ops: 1_000,
            migration_only: false,
            cell_cpu_only: false,
            bulk_only: false,
            cold_only: false,
            statements_only: false,
            schema_tables: 0,
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
                "--cell-cpu-only" => options.cell_cpu_only = true,
                "--bulk-only" => options.bulk_only = true,
                "--cold-only" => options.cold_only = true,
                "--statements-only" => options.statements_only = true,
                "--schema-tables" => options.schema_tables = number()?,
                "--quick" => {
                    options.rows = 20_000;
                    options.blocks = 2;
                    options.ops = 50;
                }
                other => {
                    return Err(format!(
                        "unknown option {other}: --rows N, --blocks B, --ops N, --quick, --migration-only, \
                         --cell-cpu-only, --bulk-only, --cold-only, --statements-only, --schema-tables N"
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

/// Per-block ratios of one workload: aepg's and pgcrypto's throughput
/// over plain tokio-postgres's.
struct Ratios {
    name: &'static str,
    aepg: Vec<f64>,
    pgcrypto: Vec<f64>,
}

impl Ratios {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            aepg: Vec::new(),
            pgcrypto: Vec::new(),
        }
    }

    /// One block: each contender's time for the same work (pgcrypto's
    /// scaled to it where it did a share of the rows).
    fn add(&mut self, plain: Duration, aepg: Duration, pgcrypto: Duration) {
        if std::env::var_os("AEPG_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{}: plain {plain:?}, aepg {aepg:?}, pgcrypto {pgcrypto:?}",
                self.name
            );
        }
        self.aepg.push(plain.as_secs_f64() / aepg.as_secs_f64());
        self.pgcrypto
            .push(plain.as_secs_f64() / pgcrypto.as_secs_f64());
    }

    /// One block of aepg and plain alone.
    fn add_aepg(&mut self, plain: Duration, aepg: Duration) {
        if std::env::var_os("AEPG_BENCH_VERBOSE").is_some() {
            eprintln!("{}: plain {plain:?}, aepg {aepg:?}", self.name);
        }
        self.aepg.push(plain.as_secs_f64() / aepg.as_secs_f64());
    }

    /// The name and aepg's ratios.
    fn print_aepg(&self) {
        println!("{:<36} {}", self.name, spread(&self.aepg));
    }

    fn print(&self) {
        println!(
            "{:<36} {}   {}",
            self.name,
            spread(&self.aepg),
            spread(&self.pgcrypto)
        );
    }
}

/// `median (min .. max)` of per-block ratios; three places below 0.1,
/// where two would print pgcrypto's ratios as zeros.
fn spread(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (median, low, high) = (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    );
    if median < 0.1 {
        format!("{median:>6.3} ({low:.3} .. {high:.3})")
    } else {
        format!("{median:>6.2} ({low:.2} .. {high:.2})")
    }
}

/// Runs the three contenders one after the other, first the one whose turn
/// `block` makes it, so that none always meets a warm (or a busy) server.
/// Returns plain's, aepg's and pgcrypto's results.
async fn in_turn<P, A, G, T>(
    block: usize,
    plain: impl FnOnce() -> P,
    aepg: impl FnOnce() -> A,
    pgcrypto: impl FnOnce() -> G,
) -> Result<(T, T, T), Failure>
where
    P: std::future::Future<Output = Result<T, Failure>>,
    A: std::future::Future<Output = Result<T, Failure>>,
    G: std::future::Future<Output = Result<T, Failure>>,
{
    Ok(match block % 3 {
        0 => {
            let plain = plain().await?;
            let aepg = aepg().await?;
            (plain, aepg, pgcrypto().await?)
        }
        1 => {
            let aepg = aepg().await?;
            let pgcrypto = pgcrypto().await?;
            (plain().await?, aepg, pgcrypto)
        }
        _ => {
            let pgcrypto = pgcrypto().await?;
            let plain = plain().await?;
            (plain, aepg().await?, pgcrypto)
        }
    })
}

/// Runs plain's and aepg's work, first the one whose turn `block` makes it.
pub(crate) async fn in_turns<T, P, A>(
    block: usize,
    plain: impl FnOnce() -> P,
    aepg: impl FnOnce() -> A,
) -> Result<(T, T), Failure>
where
    P: std::future::Future<Output = Result<T, Failure>>,
    A: std::future::Future<Output = Result<T, Failure>>,
{
    if block.is_multiple_of(2) {
        let plain = plain().await?;
        Ok((plain, aepg().await?))
    } else {
        let aepg = aepg().await?;
        Ok((plain().await?, aepg))
    }
}

/// `time` for `done` rows, scaled to `wanted` rows.
fn scaled(time: Duration, done: usize, wanted: usize) -> Duration {
    #[allow(clippy::cast_precision_loss)]
    time.mul_f64(wanted as f64 / done.max(1) as f64)
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
    copy_out_people(
        client,
        "COPY plain_people (id, name, ssn, note) TO STDOUT (FORMAT binary)",
    )
    .await
}

/// Runs a binary `COPY … TO STDOUT` of `(id int, name, ssn, note text)`
/// rows through plain tokio-postgres, decoding every column: the time and
/// the rows read.
async fn copy_out_people(
    client: &tokio_postgres::Client,
    copy: &str,
) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let stream = client.copy_out(copy).await?;
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

/// The statement both SELECT scans run, on their own table.
const SELECT_SCAN: &str = "SELECT id, name, ssn, note FROM ";

/// Reads every row of `plain_people` by a streamed `SELECT`, each column
/// decoded.
async fn select_scan_plain(client: &tokio_postgres::Client) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let no_parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 0] = [];
    let rows = client
        .query_raw(&format!("{SELECT_SCAN}plain_people"), no_parameters)
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

/// Reads every row of `enc_people` by a streamed `SELECT`, each column
/// decrypted and decoded.
async fn select_scan_aepg(client: &aepg::Client) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let rows = client
        .query_raw(&format!("{SELECT_SCAN}enc_people"), &[])
        .await?;
    let count = decode_people(rows).await?;
    Ok((started.elapsed(), count))
}

/// Reads every row of `enc_people`, each column decrypted and decoded.
async fn scan_aepg(client: &aepg::Client) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let rows = client
        .copy_out("COPY enc_people (id, name, ssn, note) TO STDOUT (FORMAT binary)")
        .await?;
    let count = decode_people(rows).await?;
    Ok((started.elapsed(), count))
}

/// Reads aepg's `(id int, name, ssn, note text)` rows to the end, each
/// column decoded: how many.
async fn decode_people(rows: aepg::RowStream<'_>) -> Result<usize, Failure> {
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
    Ok(count)
}

/// Three cold starts a block (pgcrypto's too, unless `--cold-only`), after
/// creating `--schema-tables` plain tables.
async fn cold_starts(
    db: &EncryptedDatabase,
    plain: &tokio_postgres::Client,
    options: &Options,
) -> Result<Ratios, Failure> {
    if options.schema_tables > 0 {
        let columns: Vec<String> = (1..=10).map(|column| format!("c{column} text")).collect();
        let tables: Vec<String> = (0..options.schema_tables)
            .map(|table| format!("CREATE TABLE extra.t{table} ({});", columns.join(", ")))
            .collect();
        plain
            .batch_execute(&format!("CREATE SCHEMA extra; {}", tables.concat()))
            .await?;
        println!(
            "cold start with {} more tables of 10 columns in the database",
            options.schema_tables
        );
    }
    let mut cold = Ratios::new("cold start, first query");
    for index in 0..options.blocks * 3 {
        if options.cold_only {
            let (plain_time, aepg_time) =
                in_turns(index, || cold_plain(db), || cold_aepg(db)).await?;
            cold.add_aepg(plain_time, aepg_time);
            continue;
        }
        let (plain_time, aepg_time, pgcrypto_time) = in_turn(
            index,
            || cold_plain(db),
            || cold_aepg(db),
            || pgcrypto::cold(db),
        )
        .await?;
        cold.add(plain_time, aepg_time, pgcrypto_time);
    }
    Ok(cold)
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
        "{} rows in {} blocks; ratio = throughput / plain tokio-postgres throughput (median, min .. max); pgcrypto on a share of the bulk rows, scaled\n",
        options.rows, options.blocks
    );

    if options.cell_cpu_only {
        copy_in_aepg(&aepg, &rows).await?;
        let cell_cpu = cell_cpu::run(&plain, &aepg, options.blocks, options.rows).await?;
        println!("{}", cell_cpu.summary());
        return Ok(());
    }
    if options.bulk_only {
        return bulk_cpu::run(&plain, &aepg, &rows, options.blocks).await;
    }
    if options.cold_only {
        copy_in_plain(&plain, &rows).await?;
        copy_in_aepg(&aepg, &rows).await?;
        plain
            .batch_execute("CREATE INDEX ON plain_people (ssn); CREATE INDEX ON enc_people (ssn)")
            .await?;
        let cold = cold_starts(&db, &plain, &options).await?;
        cold.print_aepg();
        return Ok(());
    }
    if options.statements_only {
        copy_in_plain(&plain, &rows).await?;
        copy_in_aepg(&aepg, &rows).await?;
        plain
            .batch_execute("CREATE INDEX ON plain_people (ssn); CREATE INDEX ON enc_people (ssn)")
            .await?;
        for ratios in statements::run(&db, &plain, options.blocks, options.ops).await? {
            ratios.print_aepg();
        }
        return Ok(());
    }
    if options.migration_only {
        copy_in_plain(&plain, &rows).await?;
        plain
            .batch_execute("CREATE INDEX ON plain_people (ssn)")
            .await?;
        return migration(&db, options.rows).await;
    }
    // pgcrypto encrypts each value with its own string-to-key derivation,
    // hundreds of times slower per value: it loads and scans a share of the
    // rows, and its times are scaled to the same number of rows.
    let pgcrypto_rows = options.rows.min((options.rows / 20).max(10_000));
    let mut pgc = db.database.connect().await;
    pgcrypto::create(&pgc).await?;
    let mut load = Ratios::new("bulk load (COPY; pgcrypto: unnest)");
    let block = options.rows.div_ceil(options.blocks);
    let pgcrypto_block = pgcrypto_rows.div_ceil(options.blocks);
    for (index, (chunk, pgcrypto_chunk)) in rows
        .chunks(block)
        .zip(rows[..pgcrypto_rows].chunks(pgcrypto_block))
        .enumerate()
    {
        let (plain_time, aepg_time, pgcrypto_time) = in_turn(
            index,
            || copy_in_plain(&plain, chunk),
            || copy_in_aepg(&aepg, chunk),
            || pgcrypto::load(&mut pgc, pgcrypto_chunk),
        )
        .await?;
        let pgcrypto_time = scaled(pgcrypto_time, pgcrypto_chunk.len(), chunk.len());
        load.add(plain_time, aepg_time, pgcrypto_time);
    }

    let mut scan = Ratios::new("binary COPY out (full scan)");
    for index in 0..options.blocks {
        let ((plain_time, plain_rows), (aepg_time, aepg_rows), (pgcrypto_time, pgcrypto_scanned)) =
            in_turn(
                index,
                || scan_plain(&plain),
                || scan_aepg(&aepg),
                || pgcrypto::scan(&pgc),
            )
            .await?;
        if plain_rows != options.rows
            || aepg_rows != options.rows
            || pgcrypto_scanned != pgcrypto_rows
        {
            return Err(format!(
                "scanned {plain_rows} plain, {aepg_rows} aepg and {pgcrypto_scanned} pgcrypto rows \
                 of {} ({pgcrypto_rows} for pgcrypto)",
                options.rows
            )
            .into());
        }
        let pgcrypto_time = scaled(pgcrypto_time, pgcrypto_rows, options.rows);
        scan.add(plain_time, aepg_time, pgcrypto_time);
    }

    let cell_cpu = cell_cpu::run(&plain, &aepg, options.blocks, options.rows).await?;

    // Point lookups by the deterministic column use an index, as a real
    // table's would (built after the load, which is measured without it).
    plain
        .batch_execute("CREATE INDEX ON plain_people (ssn); CREATE INDEX ON enc_people (ssn)")
        .await?;
    pgcrypto::index(&pgc).await?;
    let stored = stored_bytes(&plain).await?;
    let cold = cold_starts(&db, &plain, &options).await?;

    let first_id = i32::try_from(options.rows)?;
    let small = point::run(&db, options.blocks, options.ops, first_id).await?;
    let everyday = statements::run(&db, &plain, options.blocks, options.ops).await?;

    println!(
        "{:<36} {:<22}   pgcrypto ÷ plain",
        "workload", "aepg ÷ plain"
    );
    for ratios in [&load, &scan, &cold].into_iter().chain(&small) {
        ratios.print();
    }
    for ratios in &everyday {
        ratios.print_aepg();
    }
    println!("{}", cell_cpu.summary());
    println!();
    println!("{stored}");
    migration(&db, options.rows).await?;
    Ok(())
}

/// What the same rows take on disk, encrypted (aepg, pgcrypto) and plain:
/// the mean stored size of each encrypted column's values
/// (`pg_column_size`; pgcrypto's `ssn` with its blind index), and the
/// tables' heap and total (with indexes and TOAST) sizes. pgcrypto's table
/// holds fewer rows: its table sizes are scaled to the same count.
async fn stored_bytes(plain: &tokio_postgres::Client) -> Result<String, Failure> {
    plain
        .batch_execute("VACUUM ANALYZE plain_people, enc_people, pgc_people")
        .await?;
    let sizes = |table: &str, ssn: &str, rows: &str| {
        format!(
            "SELECT avg({ssn})::float8, avg(pg_column_size(note))::float8,
                    pg_relation_size('{table}')::float8 / {rows},
                    pg_total_relation_size('{table}')::float8 / {rows}
             FROM {table}"
        )
    };
    let (rows, scale): (i64, i64) = {
        let row = plain
            .query_one(
                "SELECT (SELECT count(*) FROM plain_people), (SELECT count(*) FROM pgc_people)",
                &[],
            )
            .await?;
        (row.try_get(0)?, row.try_get(1)?)
    };
    let same = "1";
    let plain_row = plain
        .query_one(&sizes("plain_people", "pg_column_size(ssn)", same), &[])
        .await?;
    let aepg_row = plain
        .query_one(&sizes("enc_people", "pg_column_size(ssn)", same), &[])
        .await?;
    let pgcrypto_row = plain
        .query_one(
            &sizes(
                "pgc_people",
                "pg_column_size(ssn) + pg_column_size(ssn_hmac)",
                &format!("({scale}::float8 / {rows})"),
            ),
            &[],
        )
        .await?;
    let mut report = format!(
        "stored bytes{:>27}{:>15}{:>15}{:>12}{:>12}\n",
        "aepg", "pgcrypto", "plain", "aepg÷plain", "pgc÷plain"
    );
    for (index, what) in [
        (0, "ssn, mean per value"),
        (1, "note, mean per value"),
        (2, "table heap"),
        (3, "table with indexes"),
    ] {
        let (aepg, pgcrypto, plain): (f64, f64, f64) = (
            aepg_row.try_get(index)?,
            pgcrypto_row.try_get(index)?,
            plain_row.try_get(index)?,
        );
        report.push_str(&format!(
            "  {what:<22} {aepg:>15.1}{pgcrypto:>15.1}{plain:>15.1}{:>11.2}x{:>11.2}x\n",
            aepg / plain,
            pgcrypto / plain
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
