//! The view of the database schema the analyzer works with.

use std::sync::Arc;

use crate::cell::EncryptionMode;
use crate::names::TableName;

/// How one column is encrypted, as its signed records say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnEncryption {
    /// Its column encryption setting.
    pub setting_id: u32,
    /// The setting's name, for messages.
    pub setting_name: Arc<str>,
    /// The setting's mode.
    pub mode: EncryptionMode,
}

impl std::fmt::Display for ColumnEncryption {
    /// `setting "patients_ssn" (deterministic)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "setting {:?} ({})", self.setting_name, self.mode)
    }
}

/// What protects one column.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnProtection {
    /// Nothing: a plaintext column.
    Plaintext,
    /// Encrypted under a verified setting.
    Encrypted(ColumnEncryption),
    /// Ciphertext this client cannot use: an `aepg.ciphertext` column
    /// without a verified assignment, or a column a signed record lists as
    /// encrypted whose records are missing, untrusted or forged. It may be
    /// read (and fails to decrypt), tested for `NULL` and counted; nothing
    /// may be stored into it or compared with it.
    Unusable {
        /// Why, for messages.
        reason: Arc<str>,
    },
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnInfo {
    /// Its name as stored in the catalog (case preserved).
    pub name: String,
    /// What protects it.
    pub protection: ColumnProtection,
}

impl ColumnInfo {
    /// A plaintext column.
    pub fn plaintext(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            protection: ColumnProtection::Plaintext,
        }
    }

    /// An encrypted column.
    pub fn encrypted(name: impl Into<String>, encryption: ColumnEncryption) -> Self {
        Self {
            name: name.into(),
            protection: ColumnProtection::Encrypted(encryption),
        }
    }

    /// A ciphertext column this client cannot use, and why.
    pub fn unusable(name: impl Into<String>, reason: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            protection: ColumnProtection::Unusable {
                reason: reason.into(),
            },
        }
    }

    /// Whether its values are ciphertext (usable or not).
    pub fn is_ciphertext(&self) -> bool {
        !matches!(self.protection, ColumnProtection::Plaintext)
    }

    /// Its encryption, when it is usable.
    pub fn encryption(&self) -> Option<&ColumnEncryption> {
        match &self.protection {
            ColumnProtection::Encrypted(encryption) => Some(encryption),
            _ => None,
        }
    }
}

/// One table (or view) with its columns in definition order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableInfo {
    /// Its name.
    pub name: TableName,
    /// Columns in `attnum` order, dropped columns left out.
    pub columns: Vec<ColumnInfo>,
    /// Why no statement may use it, when a signed record makes it encrypted
    /// but the server's table does not match (it is missing, or lacks a
    /// signed column): the analysis could not map values to its columns.
    pub damage: Option<Arc<str>>,
}

impl TableInfo {
    /// A table with these columns and no damage.
    pub fn new(name: TableName, columns: Vec<ColumnInfo>) -> Self {
        Self {
            name,
            columns,
            damage: None,
        }
    }

    /// Whether any column holds ciphertext, or the table is damaged.
    pub fn has_encrypted_columns(&self) -> bool {
        self.damage.is_some() || self.columns.iter().any(ColumnInfo::is_ciphertext)
    }
}

/// Resolves table names the way the server would.
pub trait SchemaView {
    /// The table `schema.name`, or `name` looked up along the search path
    /// when `schema` is `None`. Names are already case-folded as PostgreSQL
    /// does (unquoted identifiers lower-cased, quoted ones kept).
    fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<TableInfo>;

    /// [`resolve_table`](Self::resolve_table) for a scan that only asks
    /// whether a word may name an encrypted table (the words of a text the
    /// parser could not read, string literals among them): a view that
    /// reads tables on demand reads none for it, as every table with
    /// encrypted columns is known without, and such words are not table
    /// names to send to the server.
    fn resolve_if_known(&self, schema: Option<&str>, name: &str) -> Option<TableInfo> {
        self.resolve_table(schema, name)
    }

    /// Every table named `name`, in any schema, that has encrypted columns
    /// by a signed record or by its column types, including signed tables
    /// the server no longer has. An unqualified name that resolves to
    /// anything but such a table is refused: otherwise a table of the same
    /// name earlier on the search path (or a search path changed behind the
    /// client's back, or a renamed table) would receive plaintext meant for
    /// the encrypted one.
    fn encrypted_tables_named(&self, name: &str) -> Vec<TableName>;

    /// Whether the database has any encrypted column at all: statements the
    /// analyzer cannot see into (`DO` blocks, SQL-level `EXECUTE`) are then
    /// refused, whatever tables they name.
    fn has_encrypted_columns(&self) -> bool;
}
