//! Everyday statements beyond the point workloads, aepg against plain
//! tokio-postgres alone, in turns: a statement text not seen before (each
//! prepared afresh, as an application building SQL does), a point select
//! on a table with no encrypted column, a transaction of a point select
//! and an update, a `SELECT` of a few dozen rows read column by column,
//! and single-row inserts batched in transactions.

use std::time::{Duration, Instant};

use aepg_tests::fixture::EncryptedDatabase;

use crate::point::existing_ssn as ssn;
use crate::{in_turns, Failure, Ratios};

/// `operations` point selects, each text new to the connection.
async fn new_texts_plain(
    client: &tokio_postgres::Client,
    from: usize,
    operations: usize,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    for n in from..from + operations {
        let sql = format!("SELECT note FROM plain_people WHERE ssn = $1 AND id <> -{n} LIMIT 1");
        let row = client.query_one(&sql, &[&ssn(n)]).await?;
        let _: &str = row.try_get(0)?;
    }
    Ok(started.elapsed())
}

async fn new_texts_aepg(
    client: &aepg::Client,
    from: usize,
    operations: usize,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    for n in from..from + operations {
        let sql = format!("SELECT note FROM enc_people WHERE ssn = $1 AND id <> -{n} LIMIT 1");
        let row = client.query_one(&sql, &[&ssn(n)]).await?;
        let _: &str = row.try_get(0)?;
    }
    Ok(started.elapsed())
}

/// `operations` point selects by `id` on the plaintext table.
async fn plaintext_plain(
    client: &tokio_postgres::Client,
    operations: usize,
) -> Result<Duration, Failure> {
    let statement = client
        .prepare("SELECT name FROM plain_people WHERE id = $1")
        .await?;
    let started = Instant::now();
    for n in 0..operations {
        let id = i32::try_from(n % 10_000)?;
        let row = client.query_one(&statement, &[&id]).await?;
        let _: &str = row.try_get(0)?;
    }
    Ok(started.elapsed())
}

async fn plaintext_aepg(client: &aepg::Client, operations: usize) -> Result<Duration, Failure> {
    let started = Instant::now();
    for n in 0..operations {
        let id = i32::try_from(n % 10_000)?;
        let row = client
            .query_one("SELECT name FROM plain_people WHERE id = $1", &[&id])
            .await?;
        let _: &str = row.try_get(0)?;
    }
    Ok(started.elapsed())
}

/// `operations` transactions, each a point select and an update of the
/// row it found (plaintext parameters: aepg prepares such a statement
/// again inside a transaction, where catalog announcements do not reach
/// it).
async fn transactions_plain(
    client: &mut tokio_postgres::Client,
    operations: usize,
) -> Result<Duration, Failure> {
    let select = client
        .prepare("SELECT id, note FROM plain_people WHERE ssn = $1 LIMIT 1")
        .await?;
    let update = client
        .prepare("UPDATE plain_people SET name = $1 WHERE id = $2")
        .await?;
    let started = Instant::now();
    for n in 0..operations {
        let transaction = client.transaction().await?;
        let row = transaction.query_one(&select, &[&ssn(n)]).await?;
        let id: i32 = row.try_get(0)?;
        let _: &str = row.try_get(1)?;
        transaction.execute(&update, &[&"seen", &id]).await?;
        transaction.commit().await?;
    }
    Ok(started.elapsed())
}

async fn transactions_aepg(
    client: &mut aepg::Client,
    operations: usize,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    for n in 0..operations {
        let transaction = client.transaction().await?;
        let row = transaction
            .query_one(
                "SELECT id, note FROM enc_people WHERE ssn = $1 LIMIT 1",
                &[&ssn(n)],
            )
            .await?;
        let id: i32 = row.try_get(0)?;
        let _: &str = row.try_get(1)?;
        transaction
            .execute(
                "UPDATE enc_people SET name = $1 WHERE id = $2",
                &[&"seen", &id],
            )
            .await?;
        transaction.commit().await?;
    }
    Ok(started.elapsed())
}

/// Rows inserted in each transaction of the batched-insert workload.
const BATCH: usize = 50;

/// `operations` single-row inserts, [`BATCH`] to a transaction, ids from
/// `first_id`.
async fn batches_plain(
    client: &mut tokio_postgres::Client,
    first_id: i32,
    operations: usize,
) -> Result<Duration, Failure> {
    let insert = client
        .prepare("INSERT INTO plain_people (id, name, ssn, note) VALUES ($1, $2, $3, $4)")
        .await?;
    let started = Instant::now();
    let mut ids = first_id..;
    for _ in 0..operations.div_ceil(BATCH) {
        let transaction = client.transaction().await?;
        for (n, id) in ids.by_ref().take(BATCH).enumerate() {
            transaction
                .execute(&insert, &[&id, &"batched", &ssn(n), &"inserted in a batch"])
                .await?;
        }
        transaction.commit().await?;
    }
    Ok(started.elapsed())
}

async fn batches_aepg(
    client: &mut aepg::Client,
    first_id: i32,
    operations: usize,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let mut ids = first_id..;
    for _ in 0..operations.div_ceil(BATCH) {
        let transaction = client.transaction().await?;
        for (n, id) in ids.by_ref().take(BATCH).enumerate() {
            transaction
                .execute(
                    "INSERT INTO enc_people (id, name, ssn, note) VALUES ($1, $2, $3, $4)",
                    &[&id, &"batched", &ssn(n), &"inserted in a batch"],
                )
                .await?;
        }
        transaction.commit().await?;
    }
    Ok(started.elapsed())
}

/// `operations` selects of every row with an `ssn`, every column read.
async fn many_rows_plain(
    client: &tokio_postgres::Client,
    operations: usize,
) -> Result<(Duration, usize), Failure> {
    let statement = client
        .prepare("SELECT id, name, ssn, note FROM plain_people WHERE ssn = $1")
        .await?;
    let started = Instant::now();
    let mut count = 0;
    for n in 0..operations {
        for row in client.query(&statement, &[&ssn(n)]).await? {
            let _: i32 = row.try_get(0)?;
            let _: &str = row.try_get(1)?;
            let _: &str = row.try_get(2)?;
            let _: &str = row.try_get(3)?;
            count += 1;
        }
    }
    Ok((started.elapsed(), count))
}

async fn many_rows_aepg(
    client: &aepg::Client,
    operations: usize,
) -> Result<(Duration, usize), Failure> {
    let started = Instant::now();
    let mut count = 0;
    for n in 0..operations {
        let rows = client
            .query(
                "SELECT id, name, ssn, note FROM enc_people WHERE ssn = $1",
                &[&ssn(n)],
            )
            .await?;
        for row in rows {
            let _: i32 = row.try_get(0)?;
            let _: &str = row.try_get(1)?;
            let _: &str = row.try_get(2)?;
            let _: &str = row.try_get(3)?;
            count += 1;
        }
    }
    Ok((started.elapsed(), count))
}

/// Each workload, `operations` statements a block, in `blocks` blocks,
/// aepg and plain in turns ([`in_turns`]), after indexing
/// both tables by `id` through `plain` (the tables' `ssn` indexed before).
pub async fn run(
    db: &EncryptedDatabase,
    plain: &tokio_postgres::Client,
    blocks: usize,
    operations: usize,
) -> Result<Vec<Ratios>, Failure> {
    plain
        .batch_execute("CREATE INDEX ON plain_people (id); CREATE INDEX ON enc_people (id)")
        .await?;
    plain
        .batch_execute("VACUUM ANALYZE plain_people, enc_people")
        .await?;
    let mut aepg = db.client().await;
    let mut plain = db.database.try_connect().await?;
    let mut new_texts = Ratios::new("a statement text not seen before");
    let mut plaintext = Ratios::new("point select, no encrypted column");
    let mut transactions = Ratios::new("select and update, a transaction");
    let mut many_rows = Ratios::new("select of rows sharing an ssn");
    let mut batches = Ratios::new("inserts, 50 to a transaction");
    // Ids far above the loaded rows' and the point workloads'.
    let mut next_id = 1_500_000_000_i32;
    // Warm up: pages cached, the key unwrapped.
    plaintext_aepg(&aepg, 10).await?;
    many_rows_aepg(&aepg, 10).await?;
    for block in 0..blocks {
        let from = block * operations;
        let (p, a) = in_turns(
            block,
            || new_texts_plain(&plain, from, operations),
            || new_texts_aepg(&aepg, from, operations),
        )
        .await?;
        new_texts.add_aepg(p, a);
        let (p, a) = in_turns(
            block,
            || plaintext_plain(&plain, operations),
            || plaintext_aepg(&aepg, operations),
        )
        .await?;
        plaintext.add_aepg(p, a);
        let (p, a) = in_turns(
            block,
            || transactions_plain(&mut plain, operations),
            || transactions_aepg(&mut aepg, operations),
        )
        .await?;
        transactions.add_aepg(p, a);
        let ((p, p_rows), (a, a_rows)) = in_turns(
            block,
            || many_rows_plain(&plain, operations / 4),
            || many_rows_aepg(&aepg, operations / 4),
        )
        .await?;
        if p_rows != a_rows {
            return Err(format!("plain read {p_rows} rows sharing an ssn, aepg {a_rows}").into());
        }
        many_rows.add_aepg(p, a);
        let count = i32::try_from(operations)?;
        let (plain_first, aepg_first) = (next_id, next_id + count);
        next_id += 2 * count;
        let (p, a) = in_turns(
            block,
            || batches_plain(&mut plain, plain_first, operations),
            || batches_aepg(&mut aepg, aepg_first, operations),
        )
        .await?;
        batches.add_aepg(p, a);
    }
    Ok(vec![new_texts, plaintext, transactions, many_rows, batches])
}
