//! The client's CPU per decrypted cell, against the cell cipher's own
//! decrypt time, in the same run.
//!
//! Plain tokio-postgres and aepg read the same encrypted column
//! (`enc_people.ssn`, deterministic `text` of 11 bytes: one 16-byte block
//! of ciphertext) with a binary `COPY … TO STDOUT`: plain takes the cells
//! as bytes, aepg decrypts them. The difference of the process's CPU time
//! (user and system, every thread: the runtime's and the blocking pool's)
//! divided by the rows is what aepg spends per cell: the cipher, and the
//! bookkeeping around it. Then the program decrypts one such cell as many
//! times with [`CellCipher`] directly, under the same clock: the cipher
//! alone. The ratio of the two is the per-cell overhead (1.0: none).

use std::time::Duration;

use aepg::cell::{CellCipher, CellSetting, EncryptionMode, PaddingPolicy, PlaintextType};
use aepg::keystore::ColumnKey;
use futures_util::{pin_mut, TryStreamExt};
use nix::time::{clock_gettime, ClockId};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;

use crate::{in_turn, Failure};

/// The column read, alone.
const COPY: &str = "COPY enc_people (ssn) TO STDOUT (FORMAT binary)";

/// What one run measured: medians over the blocks, per cell.
pub struct CellCpu {
    /// aepg's client CPU per cell beyond plain's for the same rows.
    pub per_cell: Duration,
    /// [`CellCipher::decrypt`] of one such cell.
    pub cipher: Duration,
}

impl CellCpu {
    /// The line the program prints.
    pub fn summary(&self) -> String {
        format!(
            "client CPU per decrypted 16-byte cell: {} ns (aepg − plain, same rows), \
             cell cipher alone {} ns: {:.2}× the cipher",
            self.per_cell.as_nanos(),
            self.cipher.as_nanos(),
            self.per_cell.as_secs_f64() / self.cipher.as_secs_f64()
        )
    }
}

/// Measures `blocks` times, alternating who reads first, `rows` cells each.
pub async fn run(
    plain: &tokio_postgres::Client,
    aepg: &aepg::Client,
    blocks: usize,
    rows: usize,
) -> Result<CellCpu, Failure> {
    let mut per_cell = Vec::new();
    let mut cipher = Vec::new();
    for block in 0..blocks {
        let (plain_cpu, aepg_cpu, cipher_cpu) = in_turn(
            block,
            || cpu_of(read_plain(plain, rows)),
            || cpu_of(read_aepg(aepg, rows)),
            || cipher_alone(rows),
        )
        .await?;
        if std::env::var_os("AEPG_BENCH_VERBOSE").is_some() {
            eprintln!(
                "client CPU: plain {plain_cpu:?}, aepg {aepg_cpu:?}, cipher alone {cipher_cpu:?}"
            );
        }
        per_cell.push(aepg_cpu.saturating_sub(plain_cpu) / u32::try_from(rows)?);
        cipher.push(cipher_cpu / u32::try_from(rows)?);
    }
    Ok(CellCpu {
        per_cell: median(per_cell),
        cipher: median(cipher),
    })
}

/// The middle value.
fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// The process's CPU time spent while `work` ran.
async fn cpu_of(
    work: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<Duration, Failure> {
    let before = process_cpu()?;
    work.await?;
    Ok(process_cpu()?.saturating_sub(before))
}

/// User plus system CPU time of every thread of this process so far
/// (`CLOCK_PROCESS_CPUTIME_ID`, nanoseconds).
pub fn process_cpu() -> Result<Duration, Failure> {
    Ok(clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)?.into())
}

/// Reads the cells as bytes through plain tokio-postgres.
async fn read_plain(client: &tokio_postgres::Client, rows: usize) -> Result<(), Failure> {
    let stream = client.copy_out(COPY).await?;
    let cells = BinaryCopyOutStream::new(stream, &[Type::BYTEA]);
    pin_mut!(cells);
    let mut count = 0;
    while let Some(row) = cells.try_next().await? {
        let _: &[u8] = row.try_get(0)?;
        count += 1;
    }
    expect_rows(count, rows)
}

/// Reads and decrypts the cells through aepg.
async fn read_aepg(client: &aepg::Client, rows: usize) -> Result<(), Failure> {
    let values = client.copy_out(COPY).await?;
    pin_mut!(values);
    let mut count = 0;
    while let Some(row) = values.try_next().await? {
        let _: &str = row.try_get(0)?;
        count += 1;
    }
    expect_rows(count, rows)
}

/// An error unless `read` is `rows`.
fn expect_rows(read: usize, rows: usize) -> Result<(), Failure> {
    if read == rows {
        Ok(())
    } else {
        Err(format!("read {read} cells of {rows}").into())
    }
}

/// The CPU time of decrypting a cell like `ssn`'s `rows` times with the
/// cell cipher directly.
async fn cipher_alone(rows: usize) -> Result<Duration, Failure> {
    let setting = CellSetting {
        setting_id: 1,
        mode: EncryptionMode::Deterministic,
        plaintext_type: PlaintextType {
            oid: 25,
            typmod: -1,
        },
        padding: PaddingPolicy::Block16,
    };
    let cipher = CellCipher::new(1, &ColumnKey::generate()?);
    let cell = cipher.encrypt(&setting, b"001-01-0001")?;
    let before = process_cpu()?;
    for _ in 0..rows {
        let plaintext = cipher.decrypt(&setting, std::hint::black_box(&cell))?;
        std::hint::black_box(&plaintext);
    }
    Ok(process_cpu()?.saturating_sub(before))
}
