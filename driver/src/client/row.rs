//! Result rows with encrypted columns already decrypted.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use postgres_types::{FromSql, Type};
use zeroize::{Zeroize, Zeroizing};

use super::column_index::ColumnIndex;
use super::copy_out_format::{of_column, Fields};
use super::decryption::{
    decrypt_into, ColumnDecryption, QueryCiphers, RawValue, ResultColumnPlan, RowCiphers,
};
use super::encryption::Encryption;
use crate::catalog::Catalog;
use crate::error::{DecryptError, ResultTypeProblem};
use crate::Error;

/// Where a row's values come from: what a row is decrypted from.
pub(crate) enum Source {
    /// A row of a query's result.
    Query(tokio_postgres::Row),
    /// A row of a binary `COPY … TO STDOUT` (its message, from the field
    /// count on), described by the columns of the query it was planned as
    /// ([`Decrypted::new`]'s `described_by`). Once decrypted, nothing of
    /// it is kept: its plaintext columns' values are copied into
    /// [`Decrypted`], so a row neither holds alive the socket read its
    /// message came in nor shares that read's reference count with the
    /// other rows of that read.
    Copy(Bytes),
}

impl Source {
    /// What a row keeps of it: a query's row, whose plaintext columns are
    /// read from it.
    fn into_kept(self) -> Option<tokio_postgres::Row> {
        match self {
            Self::Query(row) => Some(row),
            Self::Copy(_) => None,
        }
    }

    /// Whether the row of `columns` columns has a value, not NULL, at
    /// `index` (a row that cannot be read has none).
    pub(crate) fn has_value(&self, index: usize, columns: usize) -> bool {
        match self {
            Self::Query(row) => {
                matches!(row.try_get::<_, Option<RawValue<'_>>>(index), Ok(Some(_)))
            }
            Self::Copy(row) => Fields::of(row, columns).is_ok_and(|mut fields| {
                (0..index).all(|_| fields.next_value().is_ok())
                    && matches!(fields.next_value(), Ok(Some(_)))
            }),
        }
    }
}

impl From<tokio_postgres::Row> for Source {
    fn from(row: tokio_postgres::Row) -> Self {
        Self::Query(row)
    }
}

/// One value of an encrypted (or refused) column, after decryption, or
/// of a plaintext column of a `COPY` row.
enum DecryptedValue {
    /// A plaintext column's value in a [`Source::Copy`] row: where it is
    /// in [`Decrypted::copied`] (`None`: SQL NULL).
    InRow(Option<Range<usize>>),
    /// SQL NULL: stored as NULL, never encrypted.
    Null,
    /// The plaintext, in the binary format of the column's plaintext type:
    /// where it is in [`Decrypted::plaintexts`].
    Plaintext(Range<usize>),
    /// Why it could not be decrypted.
    Failed(Arc<DecryptError>),
}

/// The decrypted values of rows decrypted together (one row, or a batch of
/// a stream's): each row's values, one per column (`None` for a plaintext
/// column of a query's row, read from the row itself), every plaintext in
/// one buffer, the values of `COPY` rows' plaintext columns in another (not
/// zeroized: they arrived unencrypted), with what describes those rows'
/// columns. Shared by those rows, so that a row costs no allocation of its
/// own and one reference count; the plaintexts are zeroized when the last
/// of them is dropped.
pub(crate) struct Decrypted {
    /// How each column is read.
    plans: Arc<[ResultColumnPlan]>,
    /// The prepared query whose columns describe [`Source::Copy`] rows.
    described_by: Option<tokio_postgres::Statement>,
    values: Vec<Option<DecryptedValue>>,
    plaintexts: Zeroizing<Vec<u8>>,
    /// The values of `COPY` rows' plaintext columns.
    copied: Vec<u8>,
}

impl Decrypted {
    /// Room for `rows` rows read as `plans` say and `plaintext_bytes` of
    /// plaintext (a guess: the buffer grows, zeroizing what it leaves);
    /// `described_by` describes the columns of rows of a `COPY`.
    pub(crate) fn new(
        plans: Arc<[ResultColumnPlan]>,
        described_by: Option<tokio_postgres::Statement>,
        rows: usize,
        plaintext_bytes: usize,
    ) -> Self {
        Self {
            values: Vec::with_capacity(rows.saturating_mul(plans.len())),
            plans,
            described_by,
            plaintexts: Zeroizing::new(Vec::with_capacity(plaintext_bytes)),
            copied: Vec::new(),
        }
    }

    /// The bytes one column's value takes in a row, plaintext aside.
    pub(crate) const SLOT_BYTES: usize = std::mem::size_of::<Option<DecryptedValue>>();

    /// The bytes of values held: each column's value, plaintexts, and
    /// `COPY` rows' plaintext columns.
    pub(crate) fn values_len(&self) -> usize {
        self.values.len() * Self::SLOT_BYTES + self.plaintexts.len() + self.copied.len()
    }

    /// Decrypts the encrypted columns of `inner` as the plans say, with
    /// the ciphers `keys`; returns where the row's values start.
    ///
    /// # Errors
    /// When a column's raw value cannot be read (a `COPY` row of another
    /// width, or whose lengths do not fit): nothing of the row is kept
    /// (what it had decrypted is zeroized).
    pub(crate) fn push_row(
        &mut self,
        inner: &Source,
        encryption: &Encryption,
        catalog: &Catalog,
        keys: &RowCiphers,
    ) -> Result<usize, Error> {
        let first = self.values.len();
        let first_plaintext = self.plaintexts.len();
        let first_copied = self.copied.len();
        let pushed = match inner {
            Source::Query(row) => self.push_query_row(row, encryption, catalog, keys),
            Source::Copy(row) => self.push_copy_row(row, encryption, catalog, keys),
        };
        if let Err(error) = pushed {
            self.values.truncate(first);
            self.plaintexts[first_plaintext..].zeroize();
            self.plaintexts.truncate(first_plaintext);
            self.copied.truncate(first_copied);
            return Err(error);
        }
        Ok(first)
    }

    /// [`push_row`](Self::push_row) of a query's row: its plaintext
    /// columns are read from the row itself.
    fn push_query_row(
        &mut self,
        row: &tokio_postgres::Row,
        encryption: &Encryption,
        catalog: &Catalog,
        keys: &RowCiphers,
    ) -> Result<(), Error> {
        let Self {
            plans,
            values,
            plaintexts,
            ..
        } = self;
        for (index, plan) in plans.iter().enumerate() {
            let value = match &plan.decryption {
                ColumnDecryption::Plaintext => None,
                decryption => {
                    let raw = row.try_get::<_, Option<RawValue<'_>>>(index)?;
                    let cell = raw.map(|RawValue(cell)| cell);
                    Some(decrypt_value(
                        plaintexts, cell, decryption, plan, encryption, catalog, keys,
                    ))
                }
            };
            values.push(value);
        }
        Ok(())
    }

    /// [`push_row`](Self::push_row) of a `COPY` row: its values are
    /// located as they are read, a plaintext column's copied.
    fn push_copy_row(
        &mut self,
        row: &[u8],
        encryption: &Encryption,
        catalog: &Catalog,
        keys: &RowCiphers,
    ) -> Result<(), Error> {
        let Self {
            plans,
            values,
            plaintexts,
            copied,
            ..
        } = self;
        let mut fields = Fields::of(row, plans.len())?;
        for plan in plans.iter() {
            let at = fields
                .next_value()
                .map_err(|error| of_column(error, &plan.label))?;
            let value = match &plan.decryption {
                ColumnDecryption::Plaintext => DecryptedValue::InRow(at.map(|at| {
                    let start = copied.len();
                    copied.extend_from_slice(&row[at]);
                    start..copied.len()
                })),
                decryption => {
                    let cell = at.map(|at| &row[at]);
                    decrypt_value(
                        plaintexts, cell, decryption, plan, encryption, catalog, keys,
                    )
                }
            };
            values.push(Some(value));
        }
        fields.end()
    }
}

/// One encrypted (or refused) column's value; a plaintext is appended to
/// `plaintexts`.
fn decrypt_value(
    plaintexts: &mut Zeroizing<Vec<u8>>,
    raw: Option<&[u8]>,
    decryption: &ColumnDecryption,
    plan: &ResultColumnPlan,
    encryption: &Encryption,
    catalog: &Catalog,
    keys: &RowCiphers,
) -> DecryptedValue {
    match (raw, decryption) {
        // NULL stays NULL under encryption.
        (None, _) => DecryptedValue::Null,
        (Some(cell), ColumnDecryption::Decrypted { setting, .. }) => {
            let decrypted = match keys.iter().find(|(id, _)| *id == setting.key_id) {
                Some((_, Ok(cipher))) => {
                    decrypt_into(cipher, encryption, catalog, setting, cell, plaintexts)
                }
                Some((_, Err(error))) => Err(error.clone()),
                None => Err(Arc::new(DecryptError::Unusable {
                    reason: "its column key was not looked up".to_owned(),
                })),
            };
            match decrypted {
                Ok(plaintext) => {
                    tracing::trace!(column = %plan.label, "aepg cell decrypted");
                    DecryptedValue::Plaintext(plaintext)
                }
                Err(error) => {
                    tracing::debug!(
                        column = %plan.label,
                        error = %error,
                        "aepg cell not decrypted"
                    );
                    DecryptedValue::Failed(error)
                }
            }
        }
        (Some(_), ColumnDecryption::Refused { reason }) => {
            DecryptedValue::Failed(Arc::new(DecryptError::Unusable {
                reason: reason.to_string(),
            }))
        }
        (Some(_), _) => DecryptedValue::Failed(Arc::new(DecryptError::Unusable {
            reason: "no setting is known for it".to_owned(),
        })),
    }
}

/// A row of a result, like `tokio_postgres::Row`, whose encrypted columns
/// read as their plaintext types.
///
/// Encrypted cells are decrypted when the row arrives; a cell that fails
/// (tampered, from another column, key unavailable) fails only the
/// [`try_get`](Self::try_get) of that column, with an error naming it.
/// Rows decrypted together (a query's or a `copy_out`'s rows that had
/// arrived together, up to 512) share their buffers, a new one started
/// once a buffer holds 64 KiB of values (each column's slot counted), so a
/// kept row holds alive at most about 64 KiB of other rows' values. The
/// plaintexts are zeroized when the last row sharing their buffer is
/// dropped. With a zero key TTL every row has a buffer of its own.
pub struct Row {
    /// A query's row, whose plaintext columns are read from it (`None` for
    /// a `COPY` row, whose values are all in `decrypted`).
    inner: Option<tokio_postgres::Row>,
    /// The values of this row and of rows decrypted with it, and how their
    /// columns are read.
    decrypted: Arc<Decrypted>,
    /// Where this row's values start in `decrypted`.
    first: usize,
}

impl Row {
    /// Decrypts the encrypted columns of `inner` as `plans` say;
    /// `described_by` describes the columns of a row of a `COPY`.
    pub(crate) async fn decrypt(
        inner: impl Into<Source>,
        plans: Arc<[ResultColumnPlan]>,
        described_by: Option<tokio_postgres::Statement>,
        encryption: &Encryption,
        catalog: &Catalog,
        ciphers: &QueryCiphers,
    ) -> Result<Self, Error> {
        let inner = inner.into();
        let has_cell = |index| inner.has_value(index, plans.len());
        let keys = ciphers.for_row(&plans, has_cell, encryption, catalog).await;
        let mut decrypted = Decrypted::new(plans, described_by, 1, 0);
        let first = decrypted.push_row(&inner, encryption, catalog, &keys)?;
        Ok(Self::with_values(inner, Arc::new(decrypted), first))
    }

    /// A row whose values `decrypted` holds from `first` on.
    pub(crate) fn with_values(inner: Source, decrypted: Arc<Decrypted>, first: usize) -> Self {
        Self {
            inner: inner.into_kept(),
            decrypted,
            first,
        }
    }

    /// A row of a result that holds no cells (session control such as
    /// `SHOW`): every column passes through.
    pub(crate) fn plaintext(inner: tokio_postgres::Row) -> Self {
        let plans: Arc<[ResultColumnPlan]> = inner
            .columns()
            .iter()
            .map(|column| ResultColumnPlan {
                label: column.name().into(),
                decryption: ColumnDecryption::Plaintext,
                plaintext_type: None,
            })
            .collect();
        let decrypted = Decrypted {
            values: plans.iter().map(|_| None).collect(),
            plans,
            described_by: None,
            plaintexts: Zeroizing::new(Vec::new()),
            copied: Vec::new(),
        };
        Self::with_values(Source::Query(inner), Arc::new(decrypted), 0)
    }

    /// This row's value of the column at `position`: `None` for a plaintext
    /// column of a query's row (a `COPY` row's is `InRow`).
    fn value(&self, position: usize) -> Option<&DecryptedValue> {
        // Within this row's own values: a position past them panics rather
        // than reading the next row's.
        let decrypted = &*self.decrypted;
        decrypted.values[self.first..self.first + decrypted.plans.len()][position].as_ref()
    }

    /// How each column is read.
    fn plans(&self) -> &[ResultColumnPlan] {
        &self.decrypted.plans
    }

    /// The result's columns, as the server describes them (encrypted columns
    /// show the type `aepg.ciphertext` or `bytea`).
    pub fn columns(&self) -> &[tokio_postgres::Column] {
        match (&self.inner, &self.decrypted.described_by) {
            (Some(row), _) => row.columns(),
            (None, Some(query)) => query.columns(),
            // Never made: a COPY's rows are decrypted with the query that
            // describes them (`BatchDecryption`). Were one made, it would
            // show no columns rather than another query's.
            (None, None) => &[],
        }
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.columns().len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns().is_empty()
    }

    /// The PostgreSQL type a column's values read as: the plaintext type for
    /// an encrypted column.
    pub fn value_type<I: ColumnIndex>(&self, index: I) -> Option<&Type> {
        let position = index.__position(self.columns())?;
        match self.value(position) {
            None | Some(DecryptedValue::InRow(_)) => Some(self.columns()[position].type_()),
            Some(_) => self.plans()[position].plaintext_type.as_ref(),
        }
    }

    /// The value of a column, decrypted if the column is encrypted. Written
    /// as tokio-postgres's: `row.get::<_, i32>(0)`, `row.get::<_, &str>("ssn")`.
    ///
    /// # Panics
    /// If the column does not exist, cannot be decrypted, or does not
    /// convert to `T`. Use [`try_get`](Self::try_get) to handle these.
    #[track_caller]
    pub fn get<'a, I, T>(&'a self, index: I) -> T
    where
        I: ColumnIndex + fmt::Display,
        T: FromSql<'a>,
    {
        match self.try_get(index) {
            Ok(value) => value,
            Err(error) => panic!("error retrieving column: {error}"),
        }
    }

    /// The value of a column, decrypted if the column is encrypted.
    ///
    /// # Errors
    /// [`Error::NoSuchColumn`]; [`Error::Decrypt`] naming the column when its
    /// cell is tampered, from another column, or its key is unavailable;
    /// [`Error::ResultType`] when the value does not convert to `T`.
    pub fn try_get<'a, I, T>(&'a self, index: I) -> Result<T, Error>
    where
        I: ColumnIndex + fmt::Display,
        T: FromSql<'a>,
    {
        let position = index
            .__position(self.columns())
            .ok_or_else(|| Error::NoSuchColumn {
                column: index.to_string(),
            })?;
        let plan = &self.plans()[position];
        let wrong_type = |problem: ResultTypeProblem| Error::ResultType {
            column: plan.label.to_string(),
            sql_type: match &plan.decryption {
                ColumnDecryption::Decrypted { setting, .. } => setting.type_name(),
                _ => self.columns()[position].type_().name().to_owned(),
            },
            rust_type: std::any::type_name::<T>(),
            problem,
        };
        match self.value(position) {
            None => {
                let Some(row) = &self.inner else {
                    // Never made: a COPY row's every value is located.
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                };
                // As a COPY row's plaintext column and a decrypted value:
                // checked here, so that tokio-postgres's remaining error can
                // only be the value's conversion.
                if !T::accepts(row.columns()[position].type_()) {
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                }
                row.try_get(position).map_err(|error| {
                    let was_null = std::error::Error::source(&error)
                        .is_some_and(|source| source.is::<postgres_types::WasNull>());
                    wrong_type(if was_null {
                        ResultTypeProblem::Null
                    } else {
                        ResultTypeProblem::NotConvertible
                    })
                })
            }
            Some(DecryptedValue::InRow(at)) => {
                let Some(column) = self.columns().get(position) else {
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                };
                let ty = column.type_();
                if !T::accepts(ty) {
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                }
                match at {
                    None => T::from_sql_null(ty).map_err(|_| wrong_type(ResultTypeProblem::Null)),
                    Some(at) => T::from_sql(ty, &self.decrypted.copied[at.clone()])
                        .map_err(|_| wrong_type(ResultTypeProblem::NotConvertible)),
                }
            }
            Some(DecryptedValue::Null) => {
                T::from_sql_null(&Type::UNKNOWN).map_err(|_| wrong_type(ResultTypeProblem::Null))
            }
            Some(DecryptedValue::Failed(error)) => Err(Error::Decrypt {
                column: plan.label.to_string(),
                source: error.clone(),
            }),
            Some(DecryptedValue::Plaintext(range)) => {
                let Some(ty) = &plan.plaintext_type else {
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                };
                if !T::accepts(ty) {
                    return Err(wrong_type(ResultTypeProblem::NotAccepted));
                }
                let value = &self.decrypted.plaintexts[range.clone()];
                T::from_sql(ty, value).map_err(|_| wrong_type(ResultTypeProblem::NotConvertible))
            }
        }
    }
}

impl fmt::Debug for Row {
    /// Shows the columns, never the values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field(
                "columns",
                &self
                    .plans()
                    .iter()
                    .map(|plan| &*plan.label)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A stream of decrypted rows, from [`Client::query_raw`](crate::Client::query_raw).
pub struct RowStream<'a> {
    pub(crate) inner: Pin<Box<dyn Stream<Item = Result<Row, Error>> + Send + 'a>>,
}

impl Stream for RowStream<'_> {
    type Item = Result<Row, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}
