//! The third contender: pgcrypto, what a PostgreSQL user picks instead of
//! client-side encryption. The server encrypts and decrypts
//! (`pgp_sym_encrypt` / `pgp_sym_decrypt`, AES-256, pgcrypto's default
//! string-to-key settings), so the key and every plaintext cross the wire
//! and live in the server's memory: a speed comparison, not a security one.
//!
//! `pgp_sym_encrypt` is randomized, so a lookup by `ssn` needs a blind
//! index beside it, `hmac(ssn, key, 'sha256')`, as applications build one.
//! Table: `pgc_people (id int, name text, ssn bytea, ssn_hmac bytea, note
//! bytea)`. Bulk load: `INSERT … SELECT … FROM unnest(…)` (COPY cannot call
//! a function), in chunks.

use std::time::{Duration, Instant};

use aepg_tests::fixture::EncryptedDatabase;

use crate::{Failure, Person};

/// The passphrase: sent with every statement, as pgcrypto needs it.
const KEY: &str = "aepg-bench pgcrypto passphrase";
/// Rows per `INSERT … SELECT … FROM unnest(…)` of the bulk load.
const CHUNK: usize = 5_000;

/// Creates the extension and the table.
pub async fn create(client: &tokio_postgres::Client) -> Result<(), Failure> {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pgcrypto; \
             CREATE TABLE pgc_people (id int, name text, ssn bytea, ssn_hmac bytea, note bytea)",
        )
        .await?;
    Ok(())
}

/// The blind index the point selects use, built after the load.
pub async fn index(client: &tokio_postgres::Client) -> Result<(), Failure> {
    client
        .batch_execute("CREATE INDEX ON pgc_people (ssn_hmac)")
        .await?;
    Ok(())
}

/// Loads `rows`, encrypted by the server, in one transaction.
pub async fn load(
    client: &mut tokio_postgres::Client,
    rows: &[Person],
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let transaction = client.transaction().await?;
    let insert = transaction
        .prepare(
            "INSERT INTO pgc_people (id, name, ssn, ssn_hmac, note) \
             SELECT id, name, pgp_sym_encrypt(ssn, $5, 'cipher-algo=aes256'), \
                    hmac(ssn, $5, 'sha256'), pgp_sym_encrypt(note, $5, 'cipher-algo=aes256') \
             FROM unnest($1::int[], $2::text[], $3::text[], $4::text[]) AS u(id, name, ssn, note)",
        )
        .await?;
    for chunk in rows.chunks(CHUNK) {
        let ids: Vec<i32> = chunk.iter().map(|row| row.id).collect();
        let names: Vec<&str> = chunk.iter().map(|row| row.name.as_str()).collect();
        let ssns: Vec<&str> = chunk.iter().map(|row| row.ssn.as_str()).collect();
        let notes: Vec<&str> = chunk.iter().map(|row| row.note.as_str()).collect();
        transaction
            .execute(&insert, &[&ids, &names, &ssns, &notes, &KEY])
            .await?;
    }
    transaction.commit().await?;
    Ok(started.elapsed())
}

/// Reads every row, each column decrypted by the server and decoded.
pub async fn scan(client: &tokio_postgres::Client) -> Result<(Duration, usize), Failure> {
    // COPY takes no parameters: the key is in the text.
    crate::copy_out_people(
        client,
        &format!(
            "COPY (SELECT id, name, pgp_sym_decrypt(ssn, '{KEY}'), pgp_sym_decrypt(note, '{KEY}') \
             FROM pgc_people) TO STDOUT (FORMAT binary)"
        ),
    )
    .await
}

const SELECT: &str = "SELECT pgp_sym_decrypt(note, $2) FROM pgc_people \
    WHERE ssn_hmac = hmac($1, $2, 'sha256') LIMIT 1";

/// A new connection and its first query.
pub async fn cold(db: &EncryptedDatabase) -> Result<Duration, Failure> {
    let started = Instant::now();
    let client = db.database.try_connect().await?;
    let row = client.query_one(SELECT, &[&"001-01-0001", &KEY]).await?;
    let _: &str = row.try_get(0)?;
    Ok(started.elapsed())
}

/// A connection with its statements prepared once.
pub struct Pgcrypto {
    client: tokio_postgres::Client,
    insert: tokio_postgres::Statement,
    select: tokio_postgres::Statement,
}

impl Pgcrypto {
    /// Connects and prepares.
    pub async fn connect(db: &EncryptedDatabase) -> Result<Self, Failure> {
        let client = db.database.try_connect().await?;
        let insert = client
            .prepare(
                "INSERT INTO pgc_people (id, name, ssn, ssn_hmac, note) VALUES ($1, $2, \
                 pgp_sym_encrypt($3, $5, 'cipher-algo=aes256'), hmac($3, $5, 'sha256'), \
                 pgp_sym_encrypt($4, $5, 'cipher-algo=aes256'))",
            )
            .await?;
        let select = client.prepare(SELECT).await?;
        Ok(Self {
            client,
            insert,
            select,
        })
    }
}

impl crate::point::Side for Pgcrypto {
    async fn insert(&self, id: i32, ssn: &str, note: &str) -> Result<(), Failure> {
        self.client
            .execute(&self.insert, &[&id, &"inserted", &ssn, &note, &KEY])
            .await?;
        Ok(())
    }

    async fn select(&self, ssn: &str) -> Result<(), Failure> {
        let row = self.client.query_one(&self.select, &[&ssn, &KEY]).await?;
        let _: &str = row.try_get(0)?;
        Ok(())
    }
}
