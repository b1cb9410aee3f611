//! Decrypting a long stream of rows in batches, on tokio's blocking pool,
//! while the next rows arrive: a full scan spends most of its client time
//! in the cell cipher, and on the task that also reads the socket that time
//! would stop the rows from coming in.
//!
//! Rows are taken as they are ready (never waiting to fill a batch); a
//! batch of at least [`OFFLOAD_AT`] rows is decrypted on the blocking pool,
//! up to [`IN_FLIGHT`] batches at a time, and rows come out in their order.
//! A smaller batch (a result that arrives a few rows at a time, a point
//! query) is decrypted in place: handing it to another thread would cost
//! more than it saves. The column keys are looked up once per batch.

use std::sync::Arc;

use futures_util::{future, stream, Stream, StreamExt};

use super::decryption::{QueryCiphers, ResultColumnPlan};
use super::encryption::Encryption;
use super::row::{Row, Source};
use crate::catalog::Catalog;
use crate::error::DecryptError;
use crate::Error;

/// Rows taken at most into one batch.
const BATCH: usize = 512;
/// Batches of fewer rows are decrypted in place.
const OFFLOAD_AT: usize = 64;
/// Batches decrypting at once.
const IN_FLIGHT: usize = 2;

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
            .map(move |batch| {
                let (this, source) = (this.clone(), source.clone());
                async move {
                    if !this.encryption.keeps_keys() {
                        // Keys not kept are asked for every row, as the
                        // configuration says: row by row, in place.
                        let mut rows = Vec::with_capacity(batch.len());
                        for row in batch {
                            rows.push(match row {
                                Ok(row) => {
                                    let (plans, encryption) =
                                        (this.plans.clone(), &this.encryption);
                                    Row::decrypt(
                                        source(row),
                                        plans,
                                        encryption,
                                        &this.catalog,
                                        &this.ciphers,
                                    )
                                    .await
                                }
                                Err(error) => Err(error.into()),
                            });
                        }
                        return (rows, false);
                    }
                    let keys = this
                        .ciphers
                        .for_row(&this.plans, |_| true, &this.encryption, &this.catalog)
                        .await;
                    let offload = batch.len() >= OFFLOAD_AT;
                    let decrypt = move || -> Vec<Result<Row, Error>> {
                        batch
                            .into_iter()
                            .map(|row| {
                                Row::decrypt_with(
                                    source(row.map_err(Into::into)?),
                                    this.plans.clone(),
                                    &this.encryption,
                                    &this.catalog,
                                    &keys,
                                )
                            })
                            .collect()
                    };
                    if !offload {
                        return (decrypt(), false);
                    }
                    match tokio::task::spawn_blocking(decrypt).await {
                        Ok(rows) => (rows, false),
                        Err(error) if error.is_panic() => {
                            std::panic::resume_unwind(error.into_panic())
                        }
                        // The batch is lost (the runtime is shutting down):
                        // the stream ends with this error, rather than go
                        // on without those rows.
                        Err(_) => (
                            vec![Err(Error::Decrypt {
                                column: "(a batch of rows)".to_owned(),
                                source: Arc::new(DecryptError::Unusable {
                                    reason: "the runtime shut down while it was decrypted"
                                        .to_owned(),
                                }),
                            })],
                            true,
                        ),
                    }
                }
            })
            .buffered(IN_FLIGHT)
            .flat_map(|(rows, last)| stream::iter(rows.into_iter().map(move |row| (row, last))))
            .scan(false, |ended, (row, last)| {
                let row = (!*ended).then_some(row);
                *ended |= last;
                future::ready(row)
            })
    }
}
