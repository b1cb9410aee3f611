//! Decrypting a stream of rows (a query's, a binary `COPY … TO STDOUT`'s)
//! batch by batch as the rows arrive: the rows that are ready (at most
//! [`BATCH`]) are decrypted together, in place, with their column keys
//! looked up once for the batch, never waiting for more rows to fill it. The batch's
//! decrypted values, plaintexts and plaintext columns' values go in one
//! allocation each, which its rows share ([`Decrypted`]): a row costs no
//! allocation of aepg's own.
//! The stream's own buffers (rows received, rows decrypted) are kept from
//! batch to batch: a profile showed a batch's large, short-lived
//! allocations (`ready_chunks`' vector, the decrypted rows' vector) making
//! the allocator consolidate its free lists every batch.
//!
//! In place, not on another thread: handing batches to tokio's blocking
//! pool cost the client about 450 ns of CPU per cell (thread wake-ups, and
//! rows and plaintexts built on one thread and freed on another) and made
//! the scan no faster on the two-core machine it was measured on
//! (docs/BENCHMARKS.md, "Where a scan's client CPU goes"); reading the
//! whole stream ahead on a task of its own made it no faster either, and
//! cost small rows more CPU ("Reading a scan ahead, tried").

use std::collections::VecDeque;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use tracing::Instrument;

use super::decryption::{QueryCiphers, ResultColumnPlan};
use super::encryption::Encryption;
use super::row::{Decrypted, Row, Source};
use super::statement::PreparedStatement;
use crate::catalog::Catalog;
use crate::Error;

/// Rows taken at most into one batch.
const BATCH: usize = 512;

/// Plaintext bytes a batch's buffer starts with per row (it grows,
/// zeroizing what it leaves, when the cells are larger).
const PLAINTEXT_GUESS: usize = 32;

/// Bytes of values after which the next rows share buffers of their own:
/// a row the application keeps keeps its buffers alive, and with them at
/// most this much of other rows' values (plaintexts, and the plaintext
/// columns of `COPY` rows; plus its own).
const SHARED_VALUES: usize = 64 * 1024;

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
    /// The prepared query whose columns describe the rows.
    pub(crate) described_by: tokio_postgres::Statement,
}

impl BatchDecryption {
    /// What decrypting the rows of `prepared` needs, with `encryption`'s
    /// keys.
    pub(crate) fn of(prepared: &PreparedStatement, encryption: Arc<Encryption>) -> Self {
        Self {
            ciphers: Arc::new(QueryCiphers::for_plans(&prepared.columns, &encryption)),
            plans: prepared.columns.clone(),
            encryption,
            catalog: prepared.catalog.clone(),
            described_by: prepared.inner.clone(),
        }
    }

    /// Decrypts `rows`, each made a [`Source`] by `source`, in order. An
    /// error of `rows` itself is the last item: nothing is read after it.
    pub(crate) fn decrypt<R, E>(
        self,
        rows: impl Stream<Item = Result<R, E>> + Send + 'static,
        source: impl Fn(R) -> Source + Clone + Send + Sync + 'static,
    ) -> impl Stream<Item = Result<Row, Error>> + Send + 'static
    where
        R: Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        DecryptedRows {
            rows: Box::pin(rows),
            source,
            decryption: Arc::new(self),
            buffers: Buffers::default(),
            decrypting: None,
            ended: false,
        }
    }
}

/// The rows of a stream, decrypted batch by batch: the stream
/// [`BatchDecryption::decrypt`] returns. Its buffers of rows live as long
/// as the stream and go back and forth between it and the batch being
/// decrypted; a batch allocates its rows' shared values and plaintexts and
/// a few small things (its future, its keys), nothing per row.
struct DecryptedRows<R, E, F> {
    /// The rows as they arrive.
    rows: Pin<Box<dyn Stream<Item = Result<R, E>> + Send>>,
    /// Makes a [`Source`] of a row.
    source: F,
    /// What decrypting needs.
    decryption: Arc<BatchDecryption>,
    /// The buffers, while no batch is being decrypted.
    buffers: Buffers<R, E>,
    /// The batch being decrypted, which hands the buffers back.
    decrypting: Option<Batch<R, E>>,
    /// Whether `rows` has ended.
    ended: bool,
}

/// A batch being decrypted: it hands the stream's buffers back.
type Batch<R, E> = Pin<Box<dyn Future<Output = Buffers<R, E>> + Send>>;

/// A stream's buffers, reused from batch to batch.
struct Buffers<R, E> {
    /// Rows received, not yet decrypted.
    received: Vec<Result<R, E>>,
    /// Rows decrypted, not yet taken.
    ready: VecDeque<Result<Row, Error>>,
    /// Rows decrypted into the values and plaintexts not yet shared.
    sharing: Vec<Result<(Source, usize), Error>>,
    /// The received rows as sources, while a batch looks its keys up.
    sources: Vec<Result<Source, Error>>,
}

// Nothing of it is ever pinned but the boxed stream and batch, which are
// pinned in their boxes.
impl<R, E, F> Unpin for DecryptedRows<R, E, F> {}

impl<R, E> Default for Buffers<R, E> {
    fn default() -> Self {
        Self {
            received: Vec::new(),
            ready: VecDeque::new(),
            sharing: Vec::new(),
            sources: Vec::new(),
        }
    }
}

impl<R, E, F> Stream for DecryptedRows<R, E, F>
where
    R: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(R) -> Source + Clone + Send + Sync + 'static,
{
    type Item = Result<Row, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(batch) = &mut this.decrypting {
                this.buffers = ready!(batch.as_mut().poll(cx));
                this.decrypting = None;
            }
            if let Some(row) = this.buffers.ready.pop_front() {
                return Poll::Ready(Some(row));
            }
            // The rows that are ready, never waiting for more to fill
            // the batch. Where keys are not kept every row asks the store,
            // so each row is its own batch: the first is not held back
            // while the store is asked for the others.
            let batch = if this.decryption.encryption.keeps_keys() {
                BATCH
            } else {
                1
            };
            while !this.ended && this.buffers.received.len() < batch {
                match this.rows.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(row))) => this.buffers.received.push(Ok(row)),
                    // The rows' stream failed (the connection, the COPY):
                    // its error is the stream's last item, after the rows
                    // before it. A stream of a closed connection would
                    // report it again on every poll.
                    Poll::Ready(Some(Err(error))) => {
                        this.buffers.received.push(Err(error));
                        this.ended = true;
                    }
                    Poll::Ready(None) => this.ended = true,
                    Poll::Pending => break,
                }
            }
            if this.buffers.received.is_empty() {
                return if this.ended {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            let span = tracing::trace_span!(
                "aepg.decrypt",
                rows = this.buffers.received.len(),
                columns = this.decryption.plans.len()
            );
            this.decrypting = Some(Box::pin(
                decrypt_batch(
                    this.decryption.clone(),
                    this.source.clone(),
                    mem::take(&mut this.buffers),
                )
                .instrument(span),
            ));
        }
    }
}

/// Decrypts the rows of `buffers.received` onto `buffers.ready`, in order,
/// and hands the buffers back.
async fn decrypt_batch<R, E>(
    this: Arc<BatchDecryption>,
    source: impl Fn(R) -> Source,
    mut buffers: Buffers<R, E>,
) -> Buffers<R, E>
where
    E: Into<Error>,
{
    let Buffers {
        received,
        ready,
        sharing,
        sources,
    } = &mut buffers;
    if !this.encryption.keeps_keys() {
        // Keys not kept are asked for every row, as the configuration
        // says.
        for row in received.drain(..) {
            ready.push_back(match row {
                Ok(row) => {
                    Row::decrypt(
                        source(row),
                        this.plans.clone(),
                        Some(this.described_by.clone()),
                        &this.encryption,
                        &this.catalog,
                        &this.ciphers,
                    )
                    .await
                }
                Err(error) => Err(error.into()),
            });
        }
        return buffers;
    }
    sources.extend(
        received
            .drain(..)
            .map(|row| row.map(&source).map_err(Into::into)),
    );
    // The keys of the columns some row has a value in: a batch of NULL
    // cells (an outer join's), or of nothing but an error, asks no store.
    let columns = this.plans.len();
    let keys = this
        .ciphers
        .for_row(
            &this.plans,
            |index| {
                sources
                    .iter()
                    .flatten()
                    .any(|row| row.has_value(index, columns))
            },
            &this.encryption,
            &this.catalog,
        )
        .await;
    // The batch's values, plaintexts and copied plaintext columns in one
    // allocation each, shared by its rows, until they hold SHARED_VALUES
    // bytes: then the next rows share new ones, sized for no more rows than
    // filled the last (rows of large values would otherwise each reserve
    // room for the rest of the batch), and never for more rows than their
    // value slots fit in SHARED_VALUES (a wide row's slots count too).
    let most_rows = (SHARED_VALUES / (columns.max(1) * Decrypted::SLOT_BYTES)).max(1);
    let new_share = |rows: usize| {
        let rows = rows.min(most_rows);
        Decrypted::new(
            this.plans.clone(),
            Some(this.described_by.clone()),
            rows,
            rows.saturating_mul(PLAINTEXT_GUESS).min(SHARED_VALUES),
        )
    };
    let mut decrypted = new_share(sources.len());
    let mut left = sources.len();
    for row in sources.drain(..) {
        left -= 1;
        let row = row.and_then(|inner| {
            let first = decrypted.push_row(&inner, &this.encryption, &this.catalog, &keys)?;
            Ok((inner, first))
        });
        sharing.push(row);
        if decrypted.values_len() >= SHARED_VALUES {
            let full = mem::replace(&mut decrypted, new_share(left.min(sharing.len())));
            share(ready, sharing, full);
        }
        // A batch of large cells is long work: give the runtime its turn
        // (the connection's task, timers) when this task's budget is spent.
        tokio::task::consume_budget().await;
    }
    share(ready, sharing, decrypted);
    buffers
}

/// Makes rows of `sharing`, which share `decrypted`, onto `ready`.
fn share(
    ready: &mut VecDeque<Result<Row, Error>>,
    sharing: &mut Vec<Result<(Source, usize), Error>>,
    decrypted: Decrypted,
) {
    if sharing.is_empty() {
        return;
    }
    let decrypted = Arc::new(decrypted);
    ready.extend(
        sharing
            .drain(..)
            .map(|row| row.map(|(inner, first)| Row::with_values(inner, decrypted.clone(), first))),
    );
}
