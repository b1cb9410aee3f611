//! Small-statement workloads, aepg and pgcrypto against plain
//! tokio-postgres on the same rows, interleaved in blocks: a single-row insert (each its own
//! committed transaction), a point select by the deterministic column (one
//! at a time, 64 in flight on one connection, and 8 connections at once).

use std::time::{Duration, Instant};

use aepg_tests::fixture::EncryptedDatabase;
use futures_util::future::try_join_all;

use crate::pgcrypto::Pgcrypto;
use crate::{in_turn, Failure, Ratios};

/// Statements in flight on one connection in the pipelined workload.
const IN_FLIGHT: usize = 64;
/// Connections in the concurrent workload.
const CLIENTS: usize = 8;

/// One side of a comparison: the table and a connection to run on.
pub trait Side {
    /// Inserts one row, its own transaction.
    async fn insert(&self, id: i32, ssn: &str, note: &str) -> Result<(), Failure>;
    /// Reads the note of the first row with this `ssn`.
    async fn select(&self, ssn: &str) -> Result<(), Failure>;
}

/// Plain tokio-postgres with its statements prepared once, as a careful
/// application would (aepg keeps its own prepared statements cached).
struct Plain {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    select: tokio_postgres::Statement,
}

impl Plain {
    async fn connect(db: &EncryptedDatabase) -> Result<Self, Failure> {
        let client = db.database.try_connect().await?;
        let insert = client
            .prepare("INSERT INTO plain_people (id, name, ssn, note) VALUES ($1, $2, $3, $4)")
            .await?;
        let select = client
            .prepare("SELECT note FROM plain_people WHERE ssn = $1 LIMIT 1")
            .await?;
        Ok(Self {
            client,
            insert,
            select,
        })
    }
}

impl Side for Plain {
    async fn insert(&self, id: i32, ssn: &str, note: &str) -> Result<(), Failure> {
        self.client
            .execute(&self.insert, &[&id, &"inserted", &ssn, &note])
            .await?;
        Ok(())
    }

    async fn select(&self, ssn: &str) -> Result<(), Failure> {
        let row = self.client.query_one(&self.select, &[&ssn]).await?;
        let _: &str = row.try_get(0)?;
        Ok(())
    }
}

impl Side for aepg::Client {
    async fn insert(&self, id: i32, ssn: &str, note: &str) -> Result<(), Failure> {
        self.execute(
            "INSERT INTO enc_people (id, name, ssn, note) VALUES ($1, $2, $3, $4)",
            &[&id, &"inserted", &ssn, &note],
        )
        .await?;
        Ok(())
    }

    async fn select(&self, ssn: &str) -> Result<(), Failure> {
        let row = self
            .query_one(
                "SELECT note FROM enc_people WHERE ssn = $1 LIMIT 1",
                &[&ssn],
            )
            .await?;
        let _: &str = row.try_get(0)?;
        Ok(())
    }
}

/// An `ssn` the loaded rows hold (as `people` makes them), from a counter.
pub(crate) fn existing_ssn(n: usize) -> String {
    let id = (n * 7919) % 10_000;
    format!("{:03}-{:02}-{:04}", id % 1000, id % 100, id % 10_000)
}

/// `operations` single-row inserts, ids from `first_id`.
async fn inserts(side: &impl Side, first_id: i32, operations: usize) -> Result<Duration, Failure> {
    let started = Instant::now();
    for (offset, id) in (first_id..).take(operations).enumerate() {
        let ssn = existing_ssn(offset);
        side.insert(id, &ssn, "inserted by the single-row insert workload")
            .await?;
    }
    Ok(started.elapsed())
}

/// `operations` point selects, one at a time.
async fn selects(side: &impl Side, operations: usize) -> Result<Duration, Failure> {
    let started = Instant::now();
    for n in 0..operations {
        side.select(&existing_ssn(n)).await?;
    }
    Ok(started.elapsed())
}

/// `operations` point selects, [`IN_FLIGHT`] at a time on one connection.
async fn pipelined(side: &impl Side, operations: usize) -> Result<Duration, Failure> {
    let started = Instant::now();
    let ssns: Vec<String> = (0..operations).map(existing_ssn).collect();
    for chunk in ssns.chunks(IN_FLIGHT) {
        try_join_all(chunk.iter().map(|ssn| side.select(ssn))).await?;
    }
    Ok(started.elapsed())
}

/// `operations` point selects spread over the connections of `sides`, all
/// running at once.
async fn concurrent<S: Side>(sides: &[S], operations: usize) -> Result<Duration, Failure> {
    let started = Instant::now();
    let each = operations.div_ceil(sides.len());
    try_join_all(sides.iter().enumerate().map(|(index, side)| async move {
        for n in 0..each {
            side.select(&existing_ssn(index * each + n)).await?;
        }
        Ok::<(), Failure>(())
    }))
    .await?;
    Ok(started.elapsed())
}

/// Every small-statement workload, `operations` statements per block, in
/// `blocks` blocks; inserted rows take ids from `first_id`. Returns the
/// ratios, one per workload.
pub async fn run(
    db: &EncryptedDatabase,
    blocks: usize,
    operations: usize,
    first_id: i32,
) -> Result<Vec<Ratios>, Failure> {
    let aepg = db.client().await;
    let plain = Plain::connect(db).await?;
    let pgc = Pgcrypto::connect(db).await?;
    let mut aepgs = Vec::new();
    let mut plains = Vec::new();
    let mut pgcs = Vec::new();
    for _ in 0..CLIENTS {
        aepgs.push(db.client().await);
        plains.push(Plain::connect(db).await?);
        pgcs.push(Pgcrypto::connect(db).await?);
    }
    // Warm up: statements prepared, keys unwrapped, pages cached.
    selects(&plain, IN_FLIGHT).await?;
    selects(&aepg, IN_FLIGHT).await?;
    selects(&pgc, IN_FLIGHT).await?;
    concurrent(&plains, CLIENTS).await?;
    concurrent(&aepgs, CLIENTS).await?;
    concurrent(&pgcs, CLIENTS).await?;

    let mut insert = Ratios::new("single-row insert");
    let mut select = Ratios::new("point select, 1 client");
    let mut in_flight = Ratios::new("point select, 64 in flight");
    let mut clients = Ratios::new("point select, 8 clients");
    let mut next_id = first_id;
    for block in 0..blocks {
        let count = i32::try_from(operations)?;
        let (plain_first, aepg_first, pgc_first) = (next_id, next_id + count, next_id + 2 * count);
        next_id += 3 * count;
        let (p, a, g) = in_turn(
            block,
            || inserts(&plain, plain_first, operations),
            || inserts(&aepg, aepg_first, operations),
            || inserts(&pgc, pgc_first, operations),
        )
        .await?;
        insert.add(p, a, g);
        let (p, a, g) = in_turn(
            block,
            || selects(&plain, operations),
            || selects(&aepg, operations),
            || selects(&pgc, operations),
        )
        .await?;
        select.add(p, a, g);
        let (p, a, g) = in_turn(
            block,
            || pipelined(&plain, operations * 4),
            || pipelined(&aepg, operations * 4),
            || pipelined(&pgc, operations * 4),
        )
        .await?;
        in_flight.add(p, a, g);
        let (p, a, g) = in_turn(
            block,
            || concurrent(&plains, operations * 4),
            || concurrent(&aepgs, operations * 4),
            || concurrent(&pgcs, operations * 4),
        )
        .await?;
        clients.add(p, a, g);
    }
    Ok(vec![insert, select, in_flight, clients])
}
