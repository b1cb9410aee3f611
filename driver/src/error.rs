//! The error type of the `aepg` crate, which wraps the error of each layer.
//!
//! The pure layers have their own errors: [`CellError`] (cells),
//! [`RecordError`] (signed catalog records), [`UnsupportedType`] (plaintext
//! types), [`Refusal`] (SQL analysis). The catalog's content problems are
//! [`CatalogError`]; what the client adds (parameters, results, decryption)
//! lives here. Messages name the setting, key, record or column involved;
//! they never carry key material or the plaintext of an encrypted value.

use std::fmt;
use std::sync::Arc;

use aepg_keystore::KeyStoreError;

use crate::analysis::Refusal;
use crate::catalog::CatalogError;
use crate::cell::{CellError, CoercionProblem, UnsupportedType};
use crate::record::RecordError;

/// Everything that can go wrong in aepg.
///
/// Messages name the setting, key, record or column involved; they never
/// carry key material or the plaintext of an encrypted value. Causes are
/// kept as typed sources ([`std::error::Error::source`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cell could not be made or read.
    #[error(transparent)]
    Cell(#[from] CellError),
    /// A catalog record could not be decoded, verified or opened.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A key store refused or failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// A plaintext type aepg cannot encrypt.
    #[error(transparent)]
    UnsupportedType(#[from] UnsupportedType),
    /// The catalog is missing, damaged, rolled back or not what the
    /// application expects.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The database returned an error, or the connection failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// A column cannot be encrypted or decrypted in place, or its
    /// migration stopped.
    #[error(transparent)]
    Migration(Box<crate::migration::MigrationError>),
    /// The statement was refused by SQL analysis.
    #[error("statement refused: {0}")]
    Refused(#[from] Refusal),
    /// The server's view of a parameter disagrees with the analysis.
    #[error("statement refused: parameter ${number} {problem}")]
    ParameterCrossCheck {
        /// The parameter number (1-based).
        number: usize,
        /// What disagrees.
        problem: CrossCheckProblem,
    },
    /// `batch_execute` text that would send a value to an encrypted column:
    /// the simple query protocol has no parameters to encrypt.
    #[error("statement refused: batch_execute cannot send parameters, and ${number} is bound for encrypted column {column}")]
    ParameterInBatch {
        /// The parameter number (1-based).
        number: usize,
        /// The encrypted column.
        column: Box<crate::ColumnName>,
    },
    /// `simple_query` text that touches a table with encrypted columns: the
    /// simple protocol returns values as text, which aepg cannot decrypt.
    #[error("statement refused: simple_query returns values as text, which aepg cannot decrypt, and the statement touches {table}, which has encrypted columns: use query")]
    TextResults {
        /// The table with encrypted columns.
        table: Box<crate::names::TableName>,
    },
    /// A `COPY` that [`Client::copy_in`](crate::Client::copy_in) or
    /// [`Client::copy_out`](crate::Client::copy_out) does not run.
    #[error("COPY refused: {reason}")]
    CopyRefused {
        /// Why, and what is allowed.
        reason: String,
    },
    /// A row given to a COPY writer has another number of values than the
    /// COPY has columns.
    #[error("a COPY row has {given} values for {expected} columns")]
    CopyRowLength {
        /// The COPY's columns.
        expected: usize,
        /// The values given.
        given: usize,
    },
    /// A value given to a COPY writer for a plaintext column does not fit
    /// its type.
    #[error("value for COPY column {column} ({sql_type}) does not fit: {problem}")]
    CopyValue {
        /// The column, as the COPY names it.
        column: String,
        /// Its type, as the server reports it.
        sql_type: String,
        /// Why (never the value).
        problem: ParameterProblem,
    },
    /// The server's binary `COPY` data is malformed: a row of another
    /// width than the statement's, a length that does not fit, a header
    /// aepg does not read, data after the trailer. A malformed row fails
    /// alone (the rows after it are still read); a malformed header, data
    /// that ends without its trailer or follows it, ends the stream.
    #[error("the server's COPY data is malformed: {reason}")]
    CopyData {
        /// What is wrong (never a value).
        reason: String,
    },
    /// A session reset asked for inside a transaction block.
    #[error("the session is inside a transaction block: end it before the session is reset or the connection reused")]
    SessionInTransaction,
    /// The session is set so that aepg cannot read SQL as the server does.
    #[error("statement refused: this session cannot be analyzed safely: {reason}")]
    UnsafeSession {
        /// What is set (never a value of the statement).
        reason: String,
    },
    /// A parameter's Rust value does not fit the encrypted column's type.
    #[error(
        "parameter ${number} for encrypted column {column} ({sql_type}) does not fit: {problem}"
    )]
    ParameterType {
        /// The parameter number (1-based).
        number: usize,
        /// The column.
        column: Box<crate::ColumnName>,
        /// The column's plaintext type.
        sql_type: String,
        /// Why it does not fit (never the value).
        problem: ParameterProblem,
    },
    /// A value given to [`Client::encrypt_for`](crate::Client::encrypt_for)
    /// does not fit the encrypted column's type.
    #[error("value for encrypted column {column} ({sql_type}) does not fit: {problem}")]
    Value {
        /// The column.
        column: Box<crate::ColumnName>,
        /// The column's plaintext type.
        sql_type: String,
        /// Why (never the value).
        problem: ParameterProblem,
    },
    /// Wrong number of parameters.
    #[error("statement expects {expected} parameters, {given} given")]
    ParameterCount {
        /// Parameters in the statement.
        expected: usize,
        /// Parameters given.
        given: usize,
    },
    /// A parameter bound for an encrypted column could not be encrypted:
    /// its column key is unavailable.
    #[error("cannot encrypt for column {column}: {source}")]
    Encrypt {
        /// The encrypted column.
        column: Box<crate::ColumnName>,
        /// Why (the key store's refusal, an unknown key).
        source: DecryptError,
    },
    /// A result value of an encrypted column could not be decrypted.
    #[error("cannot decrypt column {column}: {source}")]
    Decrypt {
        /// The result column (`schema.table.column` when its origin is
        /// known, else its name in the result).
        column: String,
        /// Why: a cell that was tampered with or comes from another column,
        /// a key that is unavailable, a setting the catalog lacks.
        source: Arc<DecryptError>,
    },
    /// `query_one`/`query_opt` got a number of rows it does not allow.
    #[error("query returned {got} rows, expected {expected}")]
    RowCount {
        /// What was expected.
        expected: RowCountExpectation,
        /// How many rows came (at least this many, once past what was allowed).
        got: usize,
    },
    /// The analysis and the server disagree on a statement's result columns.
    #[error("statement refused: {problem}")]
    ResultMismatch {
        /// What disagrees.
        problem: ResultProblem,
    },
    /// A result column does not exist.
    #[error("no result column {column}")]
    NoSuchColumn {
        /// The index or name asked for.
        column: String,
    },
    /// A result value cannot be converted to the requested Rust type.
    #[error("column {column} holds {sql_type}, which cannot be read as {rust_type}: {problem}")]
    ResultType {
        /// The column.
        column: String,
        /// Its plaintext type.
        sql_type: String,
        /// The Rust type asked for.
        rust_type: &'static str,
        /// Why (never the value).
        problem: ResultTypeProblem,
    },
}

impl From<crate::migration::MigrationError> for Error {
    fn from(error: crate::migration::MigrationError) -> Self {
        Self::Migration(Box::new(error))
    }
}

impl Error {
    /// The server's error, if the server sent one: its SQLSTATE, message,
    /// and fields. The fields (`detail`, `where`, `hint`) may quote values
    /// of the statement; aepg's `Display` and `Debug` never show them.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Self::Database(error) => error.as_db_error(),
            _ => None,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.as_db_error().map(tokio_postgres::error::DbError::code)
    }

    /// Why a value could not be decrypted, for an [`Error::Decrypt`].
    pub fn decrypt_error(&self) -> Option<&DecryptError> {
        match self {
            Self::Decrypt { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Database(DatabaseError(error))
    }
}

/// An error from the database or the connection, shown without the fields
/// a server fills from a statement's values.
///
/// A server error's `detail`, `where` and `hint` can quote parameter values
/// (`unnamed portal parameter $1 = '…'`), so they are never part of this
/// error's `Display`, `Debug` or source chain. [`as_db_error`](Self::as_db_error)
/// hands them out for a caller that asks on purpose.
pub struct DatabaseError(tokio_postgres::Error);

impl DatabaseError {
    /// The server's error, with every field.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.0.as_db_error()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The tokio-postgres error, with every field.
    pub fn into_inner(self) -> tokio_postgres::Error {
        self.0
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "database error: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
            None => {
                write!(f, "database error: {}", self.0)?;
                // tokio-postgres says "error connecting to server" and keeps
                // the I/O cause as its source: say it.
                if let Some(cause) = std::error::Error::source(&self.0) {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => f
                .debug_struct("DatabaseError")
                .field("severity", &db.severity())
                .field("code", &db.code().code())
                .field("message", &db.message())
                .field("schema", &db.schema())
                .field("table", &db.table())
                .field("column", &db.column())
                .field("constraint", &db.constraint())
                .finish_non_exhaustive(),
            None => f.debug_tuple("DatabaseError").field(&self.0).finish(),
        }
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_db_error() {
            // The server's error prints its detail: kept out of the chain.
            Some(_) => None,
            None => std::error::Error::source(&self.0),
        }
    }
}

/// How the server's view of a parameter disagrees with the analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrossCheckProblem {
    /// The server types it `aepg.ciphertext` (or an array of it) but the
    /// analysis found no encrypted column for it.
    UnmappedCiphertext,
    /// The analysis maps it to an encrypted column, but the server types it
    /// as something that cannot hold cells.
    NotCiphertext {
        /// The encrypted column.
        column: crate::ColumnName,
        /// The type the server inferred.
        server_type: String,
    },
    /// It appears in the text, but the server does not see it.
    UnknownToServer,
    /// It is an argument of `unnest(…)`, which the analysis counted as one
    /// column, but the server types it as something `unnest` spreads
    /// otherwise (an array of a composite type: a column per field), or
    /// not as the built-in type its cast names.
    NotUnnestable {
        /// The type the server inferred, schema-qualified.
        server_type: String,
    },
}

impl fmt::Display for CrossCheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnmappedCiphertext => f.write_str(
                "goes into an encrypted column (the server types it aepg.ciphertext) but the \
                 analysis could not tell which: refusing to send it as plaintext",
            ),
            Self::NotCiphertext {
                column,
                server_type,
            } => write!(
                f,
                "is bound for encrypted column {column}, but the server types it {server_type}: \
                 the column's type or the name's resolution changed on the server"
            ),
            Self::UnknownToServer => {
                f.write_str("appears in the text but the server does not see it")
            }
            Self::NotUnnestable { server_type } => write!(
                f,
                "is unnested as one column, but the server types it {server_type}: unnest \
                 takes arrays of built-in or other non-composite types here"
            ),
        }
    }
}

/// Why a parameter's value does not fit its encrypted column.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParameterProblem {
    /// The Rust type cannot be encoded as the column's type.
    WrongType {
        /// The Rust type.
        rust_type: String,
        /// The column's plaintext type.
        sql_type: String,
    },
    /// The value failed to encode (the encoder's own message is not kept:
    /// it may quote the value).
    NotEncodable,
    /// Longer than `varchar(n)` or `char(n)` allows.
    TooLong {
        /// The longest value allowed, in characters.
        max_characters: usize,
    },
    /// Not one of the labels of the column's enum type.
    NotALabel,
    /// The column's type modifier would change a value that the statement
    /// also compares as given.
    ChangedByTypmod,
    /// Outside the type's range (or rounding would take it there).
    OutOfRange,
    /// Too large for `numeric(p,s)`, or an infinity, which it cannot hold.
    NumericOverflow {
        /// The column's precision.
        precision: i32,
        /// The column's scale.
        scale: i32,
    },
    /// `= ANY($n)` needs an array, and NULL was given.
    NullArray,
    /// The encoded array could not be read back.
    MalformedArray,
    /// The column's type has no array type.
    NoArrayType,
    /// The value is too long to encrypt.
    TooLongToEncrypt,
    /// Larger than one PostgreSQL value may be (1 GB).
    TooLarge,
    /// The caller declared the parameter as another type than the column's
    /// plaintext type (`prepare_typed`).
    DeclaredType {
        /// The declared type.
        declared: String,
    },
    /// The encoded value is not a valid value of the column's type: a Rust
    /// value of another type, passed through a wrapper that accepts every
    /// SQL type.
    InvalidEncoding {
        /// What is wrong with the encoding (never the value).
        reason: &'static str,
    },
}

impl fmt::Display for ParameterProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongType {
                rust_type,
                sql_type,
            } => write!(
                f,
                "cannot convert between the Rust type `{rust_type}` and the Postgres type `{sql_type}`"
            ),
            Self::NotEncodable => f.write_str("the value cannot be encoded as this type"),
            Self::TooLong { max_characters } => {
                write!(f, "longer than {max_characters} characters")
            }
            Self::NumericOverflow { precision, scale } => CoercionProblem::NumericOverflow {
                precision: *precision,
                scale: *scale,
            }
            .fmt(f),
            Self::NotALabel => f.write_str("the value is not one of the enum's labels"),
            Self::ChangedByTypmod => CoercionProblem::ChangedByTypmod.fmt(f),
            Self::OutOfRange => CoercionProblem::OutOfRange.fmt(f),
            Self::NullArray => f.write_str("= ANY needs an array, not NULL"),
            Self::MalformedArray => f.write_str("the encoded array cannot be read"),
            Self::NoArrayType => f.write_str("this type has no array type"),
            Self::TooLongToEncrypt => f.write_str("the value is too long to encrypt"),
            Self::TooLarge => f.write_str("the value is larger than the 1 GB PostgreSQL takes"),
            Self::DeclaredType { declared } => {
                write!(f, "it is declared {declared}, which the column does not hold")
            }
            Self::InvalidEncoding { reason } => write!(
                f,
                "the value's encoding is not one of the column's type ({reason}): a value of \
                 another Rust type, passed through a wrapper that accepts every type?"
            ),
        }
    }
}

impl From<CoercionProblem> for ParameterProblem {
    fn from(problem: CoercionProblem) -> Self {
        match problem {
            CoercionProblem::TooLong { max_characters } => Self::TooLong { max_characters },
            CoercionProblem::NumericOverflow { precision, scale } => {
                Self::NumericOverflow { precision, scale }
            }
            CoercionProblem::InvalidEncoding(reason) => Self::InvalidEncoding { reason },
            CoercionProblem::ChangedByTypmod => Self::ChangedByTypmod,
            CoercionProblem::OutOfRange => Self::OutOfRange,
        }
    }
}

/// Why a cell of a result could not be decrypted, or a column key could
/// not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The cell is malformed, was altered, or failed authentication.
    #[error(transparent)]
    Cell(CellError),
    /// The cell belongs to another setting than the column's: it was copied
    /// from another column.
    #[error(
        "ciphertext from another column: the cell belongs to {found}, the column to {expected}"
    )]
    FromAnotherSetting {
        /// The column's setting (`"patients_ssn" (deterministic)`).
        expected: String,
        /// The setting the cell's header names.
        found: String,
    },
    /// The column key's wrapped values cannot be opened: the key store is
    /// down, refuses, or the master key is not trusted — now, or at the
    /// last attempt, within the failure backoff
    /// ([`EncryptionConfig::key_failure_backoff`](crate::EncryptionConfig::key_failure_backoff)).
    #[error("column key {key_id} is unavailable: {source}")]
    KeyUnavailable {
        /// The column key.
        key_id: u32,
        /// The key store's or record's error, shared by the uses the
        /// failure backoff answered with it.
        source: Arc<RecordError>,
    },
    /// The catalog has no verified setting or key for the cell.
    #[error("the cell names {what}, which the verified catalog does not have")]
    Unknown {
        /// What (`encryption setting 7`, `column key 3`).
        what: String,
    },
    /// The column is encrypted, but this client cannot use its records.
    #[error("{reason}")]
    Unusable {
        /// Why (a record missing, forged or under an untrusted master key).
        reason: String,
    },
}

/// What `query_one` and `query_opt` allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowCountExpectation {
    /// `query_one`.
    ExactlyOne,
    /// `query_opt`.
    AtMostOne,
}

impl fmt::Display for RowCountExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ExactlyOne => "exactly one",
            Self::AtMostOne => "at most one",
        })
    }
}

/// How the server's result columns disagree with the analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultProblem {
    /// A different number of result columns.
    ColumnCount {
        /// Columns the analysis sees.
        expected: usize,
        /// Columns the server returns.
        found: usize,
    },
    /// A result column comes from another table column than the one the
    /// analysis resolved: a name now means another relation on the server.
    Redirected {
        /// The result column.
        column: String,
        /// What the analysis resolved.
        expected: String,
    },
    /// A result column the catalog makes encrypted comes typed as something
    /// that cannot hold cells: the column was altered on the server.
    NotCiphertext {
        /// The result column.
        column: String,
        /// The type the server reports.
        server_type: String,
    },
}

impl fmt::Display for ResultProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ColumnCount { expected, found } => write!(
                f,
                "the analysis sees {expected} result columns, the server {found}; \
                 the catalog's view of a table is out of date (refresh the catalog)"
            ),
            Self::Redirected { column, expected } => write!(
                f,
                "result column {column} does not come from {expected}, where the analysis \
                 resolved it: the name resolves to another relation on the server"
            ),
            Self::NotCiphertext {
                column,
                server_type,
            } => write!(
                f,
                "result column {column} is encrypted, but the server types it {server_type}: \
                 the column was altered on the server"
            ),
        }
    }
}

/// Why a result value cannot be read as the requested Rust type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultTypeProblem {
    /// The value is NULL and the Rust type is not an `Option`.
    Null,
    /// The Rust type does not accept the column's type.
    NotAccepted,
    /// The value does not convert.
    NotConvertible,
}

impl fmt::Display for ResultTypeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "the value is NULL; read it as an Option",
            Self::NotAccepted => "the Rust type does not accept it",
            Self::NotConvertible => "the value does not convert",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `Result` in aepg carries an `Error`: it stays within clippy's
    /// large-error threshold, so results stay cheap to move.
    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<Error>() <= 128);
        assert!(std::mem::size_of::<Refusal>() <= 120);
    }
}
