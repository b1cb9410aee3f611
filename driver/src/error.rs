//! The error type of the `aepg` crate.

use aepg_keystore::KeyStoreError;

use crate::analysis::Refusal;
use crate::cell::EncryptionMode;

/// Everything that can go wrong in aepg.
///
/// Messages name the setting, key, record or column involved; they never
/// carry key material or the plaintext of an encrypted value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cell is shorter than the smallest valid cell.
    #[error("encrypted cell is {len} bytes, shorter than the 38 bytes of any valid cell")]
    CellTooShort {
        /// Its length.
        len: usize,
    },
    /// A cell has a format version this library does not know.
    #[error("encrypted cell has format version {version:#04x}; this library reads version 0x01")]
    UnsupportedCellVersion {
        /// The version byte found.
        version: u8,
    },
    /// A cell's flags byte has bits this library does not know.
    #[error("encrypted cell has unknown flags {flags:#04x}")]
    UnknownCellFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// The cell was made under another column encryption setting.
    #[error("ciphertext from another column: cell belongs to encryption setting {found}, expected {expected}")]
    CellFromAnotherSetting {
        /// The setting the cell was read under.
        expected: u32,
        /// The setting its header names.
        found: u32,
    },
    /// The cell's mode flag disagrees with its setting.
    #[error(
        "encrypted cell's mode does not match encryption setting {setting_id}, which is {expected}"
    )]
    CellModeMismatch {
        /// The setting.
        setting_id: u32,
        /// The setting's mode.
        expected: EncryptionMode,
    },
    /// The cell names another column encryption key than the one offered.
    #[error("encrypted cell was made with column key {found}, not with column key {expected}")]
    CellKeyMismatch {
        /// The key offered.
        expected: u32,
        /// The key the header names.
        found: u32,
    },
    /// Authentication failed: the cell was altered, truncated or extended.
    #[error("encrypted cell of setting {setting_id} failed authentication under column key {key_id}: it was altered or damaged")]
    CellAuthenticationFailed {
        /// The setting.
        setting_id: u32,
        /// The key.
        key_id: u32,
    },
    /// The decrypted value does not end in valid padding.
    #[error("encrypted cell of setting {setting_id} has invalid padding")]
    CellPaddingInvalid {
        /// The setting.
        setting_id: u32,
    },
    /// The plaintext is too long to be encrypted.
    #[error("a value of {len} bytes is too long to encrypt")]
    PlaintextTooLong {
        /// Its length.
        len: usize,
    },
    /// A catalog record's bytes are not a valid canonical encoding.
    #[error("malformed {kind} record: {reason}")]
    MalformedRecord {
        /// The kind of record expected.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A catalog record's signature does not verify under its master key.
    #[error("{kind} record is not signed by column master key {master_key}: refusing to use it")]
    RecordSignatureInvalid {
        /// The kind of record.
        kind: &'static str,
        /// The master key location that should have signed it.
        master_key: String,
    },
    /// A key store refused or failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// A plaintext type aepg cannot encrypt.
    #[error("type {name:?} cannot be encrypted; supported: bool, int2, int4, int8, float4, float8, numeric, text, varchar(n), bytea, uuid, date, timestamp, timestamptz, json, jsonb")]
    UnsupportedType {
        /// The type as given.
        name: String,
    },
    /// The database returned an error, or the connection failed.
    #[error("database error: {}", describe_database_error(.0))]
    Database(#[from] tokio_postgres::Error),
    /// The database has no aepg catalog.
    #[error("the aepg catalog is not installed in this database (run install first)")]
    CatalogNotInstalled,
    /// The database's catalog is newer than this library.
    #[error("the aepg catalog in this database has version {found}; this library knows versions up to {supported}: upgrade aepg")]
    CatalogTooNew {
        /// The installed version.
        found: i32,
        /// The newest version this library knows.
        supported: i32,
    },
    /// The database's catalog is not the one the application expects.
    #[error("the aepg catalog in this database is {found}, not the expected {expected}")]
    CatalogMismatch {
        /// The identity the application expects.
        expected: String,
        /// The identity found.
        found: String,
    },
    /// A catalog row disagrees with its signed record, or cannot be read.
    #[error("catalog row {row} is malformed: {reason}")]
    MalformedCatalogRow {
        /// Which row (table and key).
        row: String,
        /// What is wrong.
        reason: String,
    },
    /// A named catalog object does not exist.
    #[error("{kind} {name} does not exist in the aepg catalog")]
    NotInCatalog {
        /// What kind of object (`column master key`, `column encryption key`, …).
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A catalog object exists already.
    #[error("{kind} {name} already exists in the aepg catalog")]
    AlreadyInCatalog {
        /// What kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A column cannot be assigned to a setting.
    #[error("column {column} cannot be encrypted: {reason}")]
    ColumnNotAssignable {
        /// The column (`schema.table.column`).
        column: String,
        /// Why.
        reason: String,
    },
    /// A column the application pinned is not encrypted as pinned.
    #[error("pinned column {column} is not encrypted as expected: {reason}")]
    PinnedColumnMismatch {
        /// The column (`schema.table.column`).
        column: String,
        /// What differs.
        reason: String,
    },
    /// The statement was refused by SQL analysis.
    #[error("statement refused: {0}")]
    Refused(#[from] Refusal),
    /// The server's view of a parameter disagrees with the analysis.
    #[error("statement refused: parameter ${number} {reason}")]
    ParameterCrossCheck {
        /// The parameter number (1-based).
        number: usize,
        /// What disagrees.
        reason: String,
    },
    /// A parameter's Rust type does not fit the encrypted column's type.
    #[error(
        "parameter ${number} for encrypted column {column} ({sql_type}) does not fit: {reason}"
    )]
    ParameterType {
        /// The parameter number (1-based).
        number: usize,
        /// The column.
        column: String,
        /// The column's plaintext type.
        sql_type: String,
        /// Why it does not fit (never the value).
        reason: String,
    },
    /// Wrong number of parameters.
    #[error("statement expects {expected} parameters, {given} given")]
    ParameterCount {
        /// Parameters in the statement.
        expected: usize,
        /// Parameters given.
        given: usize,
    },
    /// A result value of an encrypted column could not be decrypted.
    #[error("cannot decrypt column {column}: {reason}")]
    Decrypt {
        /// The result column (`schema.table.column` when its origin is known, else its name).
        column: String,
        /// Why (a cell error: tampered, from another column, key unavailable).
        reason: String,
    },
    /// `query_one`/`query_opt` got a number of rows it does not allow.
    #[error("query returned {got} rows, expected {expected}")]
    RowCount {
        /// What was expected (`exactly one`, `at most one`).
        expected: &'static str,
        /// How many rows came.
        got: usize,
    },
    /// The analysis and the server disagree on a statement's result columns.
    #[error(
        "statement refused: the analysis sees {expected} result columns, the server {found}; \
         the catalog's view of a table is out of date (refresh the catalog)"
    )]
    ResultShapeMismatch {
        /// Columns the analysis sees.
        expected: usize,
        /// Columns the server returns.
        found: usize,
    },
    /// A result column does not exist.
    #[error("no result column {column}")]
    NoSuchColumn {
        /// The index or name asked for.
        column: String,
    },
    /// A decrypted value cannot be converted to the requested Rust type.
    #[error("column {column} holds {sql_type}, which cannot be read as {rust_type}: {reason}")]
    ResultType {
        /// The column.
        column: String,
        /// Its plaintext type.
        sql_type: String,
        /// The Rust type asked for.
        rust_type: &'static str,
        /// Why (never the value).
        reason: String,
    },
}

/// tokio-postgres displays server errors as a bare "db error"; say what the
/// server said (its message and SQLSTATE), which never holds a plaintext of
/// an encrypted column: the server never had one.
fn describe_database_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
