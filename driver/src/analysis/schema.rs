//! The view of the database schema the analyzer works with.

use crate::cell::EncryptionMode;

/// How one column is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnEncryption {
    /// Its column encryption setting.
    pub setting_id: u32,
    /// The setting's mode.
    pub mode: EncryptionMode,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Its name as stored in the catalog (case preserved).
    pub name: String,
    /// `Some` if the column is assigned to a column encryption setting.
    pub encryption: Option<ColumnEncryption>,
    /// Whether the column's type is `aepg.ciphertext`. A ciphertext column
    /// without an `encryption` (a view column, a column whose assignment is
    /// missing) holds cells of unknown setting: it may be read, but no
    /// parameter may be stored into or compared with it.
    pub is_ciphertext: bool,
}

/// One table (or view) with its columns in definition order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in `attnum` order, dropped columns left out.
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    /// Whether any column is encrypted.
    pub fn has_encrypted_columns(&self) -> bool {
        self.columns
            .iter()
            .any(|column| column.encryption.is_some() || column.is_ciphertext)
    }
}

/// Resolves table names the way the server would.
pub trait SchemaView {
    /// The table `schema.name`, or `name` looked up along the search path
    /// when `schema` is `None`. Names are already case-folded as PostgreSQL
    /// does (unquoted identifiers lower-cased, quoted ones kept).
    fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<TableInfo>;

    /// Every table named `name`, in any schema, that has encrypted columns,
    /// qualified (`public.patients`). An unqualified name that resolves to
    /// anything but such a table is refused: otherwise a table of the same
    /// name earlier on the search path (or a search path changed behind the
    /// client's back) would receive plaintext meant for the encrypted one.
    fn encrypted_tables_named(&self, name: &str) -> Vec<String> {
        let _ = name;
        Vec::new()
    }
}
