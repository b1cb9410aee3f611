//! Decrypting a long stream of rows (a binary `COPY … TO STDOUT`) batch by
//! batch as the rows arrive: the rows that are ready (at most [`BATCH`])
//! are decrypted together, in place, with their column keys looked up once
//! for the batch, never waiting for more rows to fill it. The batch's
//! decrypted values and plaintexts go in one allocation each, which its
//! rows share ([`Decrypted`]): a row costs no allocation of aepg's own.
//!
//! In place, not on another thread: handing batches to tokio's blocking
//! pool cost the client about 450 ns of CPU per cell (thread wake-ups, and
//! rows and plaintexts built on one thread and freed on another) and made
//! the scan no faster on the two-core machine it was measured on
//! (docs/BENCHMARKS.md, "Where a scan's client CPU goes").

use std::sync::Arc;

use futures_util::{stream, Stream, StreamExt};

use super::decryption::{QueryCiphers, ResultColumnPlan};
use super::encryption::Encryption;
use super::row::{Decrypted, Row, Source};
use crate::catalog::Catalog;
use crate::Error;

/// Rows taken at most into one batch.
const BATCH: usize = 512;

/// Plaintext bytes a batch's buffer starts with per row (it grows,
/// zeroizing what it leaves, when the cells are larger).
const PLAINTEXT_GUESS: usize = 32;

/// Plaintext bytes after which the next rows share a buffer of their own:
/// a row the application keeps keeps its buffer alive, and with it at most
/// this much of other rows' plaintexts (plus its own cells).
const SHARED_PLAINTEXT: usize = 64 * 1024;

/// What decrypting a stream's rows needs.
pub(crate) struct BatchDecryption {
    /// How each column is read.
    pub(crate) plans: Arc<[ResultColumnPlan]>,
    /// The client's keys and settings.
    pub(crate) encryption: Arc<Encryption>,
    /// The catalog the statement was planned under.
    pub(crate) catalog: Arc<Catalog>,
    /// The query's column keys.
    pub(crate) ciphers: Arc<QueryCiphers>,
}

impl BatchDecryption {
    /// Decrypts `rows`, each made a [`Source`] by `source`, in order.
    pub(crate) fn decrypt<R, E>(
        self,
        rows: impl Stream<Item = Result<R, E>> + Send + 'static,
        source: impl Fn(R) -> Source + Clone + Send + Sync + 'static,
    ) -> impl Stream<Item = Result<Row, Error>> + Send + 'static
    where
        R: Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        let this = Arc::new(self);
        rows.ready_chunks(BATCH)
            .then(move |batch| {
                let (this, source) = (this.clone(), source.clone());
                async move {
                    let mut rows = Vec::with_capacity(batch.len());
                    if !this.encryption.keeps_keys() {
                        // Keys not kept are asked for every row, as the
                        // configuration says.
                        for row in batch {
                            rows.push(match row {
                                Ok(row) => {
                                    Row::decrypt(
                                        source(row),
                                        this.plans.clone(),
                                        &this.encryption,
                                        &this.catalog,
                                        &this.ciphers,
                                    )
                                    .await
                                }
                                Err(error) => Err(error.into()),
                            });
                        }
                        return stream::iter(rows);
                    }
                    let keys = this
                        .ciphers
                        .for_row(&this.plans, |_| true, &this.encryption, &this.catalog)
                        .await;
                    // The batch's values and plaintexts in one allocation
                    // each, shared by its rows, until they hold
                    // SHARED_PLAINTEXT bytes: then the next rows share a
                    // new one.
                    let new_share = |rows: usize| {
                        Decrypted::with_capacity(
                            rows,
                            this.plans.len(),
                            rows.saturating_mul(PLAINTEXT_GUESS).min(SHARED_PLAINTEXT),
                        )
                    };
                    let mut decrypted = new_share(batch.len());
                    let mut sharing = Vec::new();
                    let mut left = batch.len();
                    for row in batch {
                        left -= 1;
                        let row = row.map_err(Into::into).and_then(|row| {
                            let inner = source(row);
                            let first = decrypted.push_row(
                                &inner,
                                &this.plans,
                                &this.encryption,
                                &this.catalog,
                                &keys,
                            )?;
                            Ok((inner, first))
                        });
                        sharing.push(row);
                        if decrypted.plaintext_len() >= SHARED_PLAINTEXT {
                            let full = std::mem::replace(&mut decrypted, new_share(left));
                            share(&mut rows, &mut sharing, full, &this.plans);
                        }
                        // A batch of large cells is long work: give the
                        // runtime its turn (the connection's task, timers)
                        // when this task's budget is spent.
                        tokio::task::consume_budget().await;
                    }
                    share(&mut rows, &mut sharing, decrypted, &this.plans);
                    stream::iter(rows)
                }
            })
            .flatten()
    }
}

/// Makes rows of `sharing`, which share `decrypted`, onto `rows`.
fn share(
    rows: &mut Vec<Result<Row, Error>>,
    sharing: &mut Vec<Result<(Source, usize), Error>>,
    decrypted: Decrypted,
    plans: &Arc<[ResultColumnPlan]>,
) {
    let decrypted = Arc::new(decrypted);
    rows.extend(sharing.drain(..).map(|row| {
        row.map(|(inner, first)| Row::with_values(inner, plans.clone(), decrypted.clone(), first))
    }));
}
