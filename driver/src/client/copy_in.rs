//! The writer of an encrypted binary `COPY … FROM STDIN`.
//!
//! Each row is encoded when it is written: plaintext columns in their
//! server types, encrypted columns in their plaintext types, checked and
//! coerced as the server would (so a value that does not fit is refused at
//! once, naming its column). Rows are then encrypted and laid out in the
//! binary COPY format in batches, on tokio's blocking pool, while the
//! caller writes the next batch and the previous one is sent: on a loaded
//! client the cell cipher, not the protocol, is most of a bulk load's time.
//! A batch's plaintexts wait in one zeroizing buffer until it is
//! encrypted, and its cells are written straight into the batch's COPY
//! data: a batch costs a few allocations, not a few per value.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use postgres_types::{IsNull, ToSql, Type};
use tokio::task::JoinHandle;
use tokio_postgres::CopyInSink;
use zeroize::{Zeroize, Zeroizing};

use super::parameter::{append_cell_plaintext, encode_problem_for};
use crate::catalog::EncryptionSetting;
use crate::cell::{append_zeroizing, CellCipher, Coercion};
use crate::error::ParameterProblem;
use crate::names::ColumnName;
use crate::Error;

/// Rows encrypted together.
const BATCH: usize = 1_024;
/// The most value slots reserved ahead for a batch (384 KiB).
const MAX_VALUES_RESERVED: usize = 1 << 14;
/// A last batch of fewer rows is encrypted in place.
const OFFLOAD_AT: usize = 64;
/// The largest value a row may carry: PostgreSQL's limit for one value
/// (1 GB), checked on write so a batch cannot fail for it later.
const MAX_VALUE: usize = (1 << 30) - 1;
/// The binary COPY signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One column of a `COPY FROM STDIN`: sent as given, or encrypted.
pub(super) enum CopyColumn {
    /// A plaintext column.
    Plain {
        /// Its name in the COPY, for errors.
        name: String,
        /// Its type, as the server reports it.
        ty: Type,
    },
    /// An encrypted column.
    Encrypted {
        /// The column.
        column: ColumnName,
        /// Its setting.
        setting: Arc<EncryptionSetting>,
        /// Its key's cipher.
        cipher: Arc<CellCipher>,
    },
}

/// Rows written and not yet encrypted: each value encoded (a plaintext
/// column's as sent, an encrypted column's as the plaintext of its cell),
/// back to back in one zeroizing buffer.
struct PendingRows {
    /// The number of rows.
    rows: usize,
    /// Where each value is in `encoded`, row by row, a value per column;
    /// `None` for NULL.
    values: Vec<Option<Range<usize>>>,
    /// The values' encodings.
    encoded: Zeroizing<Vec<u8>>,
}

impl PendingRows {
    /// Room for a batch of rows of `columns` values, `bytes` of them
    /// encoded (a guess: the buffer grows, zeroizing what it leaves).
    fn with_capacity(columns: usize, bytes: usize) -> Self {
        Self {
            rows: 0,
            // Wide rows' values grow the vector as they come.
            values: Vec::with_capacity((BATCH * columns).min(MAX_VALUES_RESERVED)),
            encoded: Zeroizing::new(Vec::with_capacity(bytes)),
        }
    }

    /// Drops the values of a row that failed part way, from `values` and
    /// `bytes` on (the lengths before it): zeroized, as if never written.
    fn discard_from(&mut self, values: usize, bytes: usize) {
        self.values.truncate(values);
        self.encoded[bytes..].zeroize();
        self.encoded.truncate(bytes);
    }
}

/// Writes the rows of a binary `COPY … FROM STDIN`, encrypting the values
/// of encrypted columns as they go, from [`Client::copy_in`](crate::Client::copy_in).
///
/// Call [`finish`](Self::finish) at the end: a writer dropped before it
/// aborts the `COPY`, and no row of it is stored.
pub struct CopyInWriter {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    columns: Arc<[CopyColumn]>,
    pending: PendingRows,
    /// The encoder's buffer, reused for every value (zeroized after each
    /// encrypted column's, emptied after a plaintext column's).
    scratch: BytesMut,
    /// The batch being encrypted, sent before the next one.
    in_flight: Option<JoinHandle<Result<Vec<u8>, Error>>>,
    /// Whether the COPY header is still to be sent (with the first batch).
    header: bool,
    /// Set while a row is taken and a batch handed on, cleared when that
    /// succeeded (or a refused row was cut out again): a failed or
    /// cancelled hand-off loses rows already accepted, and an encoder's
    /// panic leaves part of a row, so the writer refuses to go on (and to
    /// finish) after one.
    broken: bool,
}

impl CopyInWriter {
    pub(super) fn new(sink: CopyInSink<Bytes>, columns: Vec<CopyColumn>) -> Self {
        Self {
            sink: Box::pin(sink),
            pending: PendingRows::with_capacity(columns.len(), 0),
            columns: columns.into(),
            scratch: BytesMut::new(),
            in_flight: None,
            header: true,
            broken: false,
        }
    }

    /// Writes one row: a value per column of the `COPY`, in its order, of
    /// the Rust types a statement's parameters for those columns take.
    ///
    /// # Errors
    /// [`Error::CopyRowLength`]; [`Error::Value`] naming the encrypted
    /// column whose value does not fit its type, [`Error::CopyValue`] for a
    /// plaintext column (never the value): that row is not written, and
    /// the writer may go on. Database errors, a write cancelled while it
    /// handed on a batch, or a value whose `ToSql` panicked: rows already
    /// written may be lost or out of line, so every later call fails with
    /// [`Error::CopyRefused`]; drop the writer, and the `COPY` is aborted.
    pub async fn write(&mut self, values: &[&(dyn ToSql + Sync)]) -> Result<(), Error> {
        self.usable()?;
        if values.len() != self.columns.len() {
            return Err(Error::CopyRowLength {
                expected: self.columns.len(),
                given: values.len(),
            });
        }
        // Until the row is taken whole or cut out again: a value's encoder
        // that panics leaves part of a row behind, which would shift every
        // later value into another column, so the writer goes no further.
        self.broken = true;
        let pending = &mut self.pending;
        let (first_value, first_byte) = (pending.values.len(), pending.encoded.len());
        for (value, column) in values.iter().zip(self.columns.iter()) {
            let encoded = match column {
                CopyColumn::Plain { name, ty } => {
                    append_plain(*value, ty, &mut self.scratch, &mut pending.encoded)
                        .and_then(at_most_max)
                        .map_err(|problem| Error::CopyValue {
                            column: name.clone(),
                            sql_type: ty.name().to_owned(),
                            problem,
                        })
                }
                CopyColumn::Encrypted {
                    column, setting, ..
                } => append_cell_plaintext(
                    *value,
                    setting,
                    Coercion::Store,
                    &mut self.scratch,
                    &mut pending.encoded,
                )
                .and_then(at_most_max)
                .map_err(|problem| value_error(column, setting, problem)),
            };
            match encoded {
                Ok(range) => pending.values.push(range),
                Err(error) => {
                    pending.discard_from(first_value, first_byte);
                    self.broken = false;
                    return Err(error);
                }
            }
        }
        pending.rows += 1;
        // A batch handed on may be lost if this call fails or is
        // cancelled meanwhile: the writer stays broken until it is done.
        if pending.rows >= BATCH {
            let batch = self.take_batch(true);
            let next = tokio::task::spawn_blocking(batch);
            if let Some(previous) = self.in_flight.replace(next) {
                self.send(joined(previous).await?).await?;
            }
        }
        self.broken = false;
        Ok(())
    }

    /// Refuses to go on after a batch was lost.
    fn usable(&self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::CopyRefused {
                reason: "an earlier write failed, panicked or was cancelled while it took a row \
                         or handed on a batch of rows: the COPY is aborted when the writer is \
                         dropped"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// Ends the `COPY`; returns the number of rows stored.
    ///
    /// # Errors
    /// [`Error::CopyRefused`] after a write that lost a batch; database
    /// errors (a constraint, a type the server refuses).
    pub async fn finish(mut self) -> Result<u64, Error> {
        self.usable()?;
        if let Some(previous) = self.in_flight.take() {
            self.send(joined(previous).await?).await?;
        }
        let offload = self.pending.rows >= OFFLOAD_AT;
        let batch = self.take_batch(false);
        let mut last = if offload {
            joined(tokio::task::spawn_blocking(batch)).await?
        } else {
            batch()?
        };
        last.put_i16(-1);
        self.send(last).await?;
        Ok(self.sink.as_mut().finish().await?)
    }

    /// The pending rows (and the header, the first time), as a job that
    /// encrypts them and lays them out; room for a `next` batch like it
    /// (none after the last: a zeroizing buffer is wiped, all of it, when
    /// dropped).
    fn take_batch(
        &mut self,
        next: bool,
    ) -> impl FnOnce() -> Result<Vec<u8>, Error> + Send + 'static {
        let (columns, bytes) = if next {
            (self.columns.len(), self.pending.encoded.len())
        } else {
            (0, 0)
        };
        let next = PendingRows::with_capacity(columns, bytes);
        let rows = std::mem::replace(&mut self.pending, next);
        let header = std::mem::take(&mut self.header);
        let columns = self.columns.clone();
        move || encode_batch(&columns, rows, header)
    }

    async fn send(&mut self, data: Vec<u8>) -> Result<(), Error> {
        Ok(self.sink.send(Bytes::from(data)).await?)
    }
}

impl std::fmt::Debug for CopyInWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyInWriter")
            .field("columns", &self.columns.len())
            .field("pending", &self.pending.rows)
            .finish_non_exhaustive()
    }
}

/// A plaintext column's value in its server type, encoded in `scratch`
/// and appended to `encoded`: where it is there, `None` for NULL.
fn append_plain(
    value: &(dyn ToSql + Sync),
    ty: &Type,
    scratch: &mut BytesMut,
    encoded: &mut Zeroizing<Vec<u8>>,
) -> Result<Option<Range<usize>>, ParameterProblem> {
    // The encoder appends to what the buffer holds.
    scratch.clear();
    let appended = match value.to_sql_checked(ty, scratch) {
        Ok(IsNull::Yes) => Ok(None),
        Ok(IsNull::No) => Ok(Some(append_zeroizing(encoded, scratch))),
        Err(error) => Err(encode_problem_for(&*error, || ty.name().to_owned())),
    };
    scratch.clear();
    appended
}

/// A value within [`MAX_VALUE`] (the cell it makes stays far below
/// `i32::MAX`, the format's limit).
fn at_most_max(value: Option<Range<usize>>) -> Result<Option<Range<usize>>, ParameterProblem> {
    match value {
        Some(value) if value.len() > MAX_VALUE => Err(ParameterProblem::TooLarge),
        value => Ok(value),
    }
}

fn value_error(
    column: &ColumnName,
    setting: &EncryptionSetting,
    problem: ParameterProblem,
) -> Error {
    Error::Value {
        column: Box::new(column.clone()),
        sql_type: setting.type_name(),
        problem,
    }
}

/// `rows` in the binary COPY format, each encrypted column's cell sealed
/// straight into it.
fn encode_batch(columns: &[CopyColumn], rows: PendingRows, header: bool) -> Result<Vec<u8>, Error> {
    if rows.values.len() != rows.rows.saturating_mul(columns.len()) {
        // Never so: a row is counted only when all its values are taken.
        return Err(Error::CopyRefused {
            reason: "a batch's values do not make whole rows".to_owned(),
        });
    }
    // Each value's length, a cell's header, tag and padding, each row's
    // column count: the guess grows with the batch, the buffer if it errs.
    let capacity = HEADER.len() + rows.encoded.len() + rows.values.len() * 64 + rows.rows * 2;
    let mut out = Vec::with_capacity(capacity);
    if header {
        out.put_slice(HEADER);
    }
    // At most 1,600 columns (PostgreSQL's limit), checked when planned.
    let count = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    let mut values = rows.values.iter();
    for _ in 0..rows.rows {
        out.put_i16(count);
        for (value, column) in values.by_ref().take(columns.len()).zip(columns) {
            let Some(value) = value else {
                out.put_i32(-1);
                continue;
            };
            let value = &rows.encoded[value.clone()];
            match column {
                CopyColumn::Plain { name, ty } => {
                    let len = i32::try_from(value.len()).map_err(|_| Error::CopyValue {
                        column: name.clone(),
                        sql_type: ty.name().to_owned(),
                        problem: ParameterProblem::TooLongToEncrypt,
                    })?;
                    out.put_i32(len);
                    out.put_slice(value);
                }
                CopyColumn::Encrypted {
                    column,
                    setting,
                    cipher,
                } => {
                    let too_long =
                        || value_error(column, setting, ParameterProblem::TooLongToEncrypt);
                    let length_at = out.len();
                    out.put_i32(0);
                    let cell = cipher
                        .encrypt_into(&setting.cell, value, &mut out)
                        .map_err(|_| too_long())?;
                    let len = i32::try_from(cell.len()).map_err(|_| too_long())?;
                    out[length_at..cell.start].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// The result of a batch job; a panic in it goes on here.
async fn joined(job: JoinHandle<Result<Vec<u8>, Error>>) -> Result<Vec<u8>, Error> {
    match job.await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::CopyRefused {
            reason: "the runtime shut down while rows were encrypted".to_owned(),
        }),
    }
}
