//! Decrypting a long stream of rows (a binary `COPY … TO STDOUT`) batch by
//! batch as the rows arrive: the rows that are ready (at most [`BATCH`])
//! are decrypted together, in place, with their column keys looked up once
//! for the batch, never waiting for more rows to fill it.
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
use super::row::{Row, Source};
use crate::catalog::Catalog;
use crate::Error;

/// Rows taken at most into one batch.
const BATCH: usize = 512;

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
                    for row in batch {
                        rows.push(row.map_err(Into::into).and_then(|row| {
                            Row::decrypt_with(
                                source(row),
                                this.plans.clone(),
                                &this.encryption,
                                &this.catalog,
                                &keys,
                            )
                        }));
                        // A batch of large cells is long work: give the
                        // runtime its turn (the connection's task, timers)
                        // when this task's budget is spent.
                        tokio::task::consume_budget().await;
                    }
                    stream::iter(rows)
                }
            })
            .flatten()
    }
}
