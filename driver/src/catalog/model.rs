//! The verified, in-memory catalog.

use std::collections::{BTreeMap, HashMap, HashSet};

use aepg_keystore::MasterKeyLocation;

use crate::analysis::{ColumnEncryption, ColumnName, SchemaView, TableInfo};
use crate::cell::{CellSetting, PlaintextType};
use crate::record::{CatalogId, SignedRecord, WrappedColumnKey};

/// A column encryption setting whose signed record verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionSetting {
    /// Its name in the catalog.
    pub name: String,
    /// Mode, type, padding and id, as signed.
    pub cell: CellSetting,
    /// The column encryption key new cells are made with.
    pub key_id: u32,
}

impl EncryptionSetting {
    /// The plaintext type as SQL writes it.
    pub fn type_name(&self) -> String {
        type_name(self.cell.plaintext_type)
    }
}

pub(crate) fn type_name(plaintext_type: PlaintextType) -> String {
    plaintext_type
        .sql_name()
        .unwrap_or_else(|| format!("type oid {}", plaintext_type.oid))
}

/// An encrypted column whose signed assignment verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedColumn {
    /// The column.
    pub name: ColumnName,
    /// Its setting.
    pub setting_id: u32,
    /// Its table's oid and its `attnum`, when the column exists.
    pub origin: Option<(u32, i16)>,
}

/// A record the loader left out, and why (untrusted or unavailable master key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    /// What was skipped (`column key 3 under master key "old"`).
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The catalog as one client pool sees it: every record in it was verified
/// against its column master key when loaded.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub(crate) version: i32,
    pub(crate) id: CatalogId,
    pub(crate) master_keys: BTreeMap<String, MasterKeyLocation>,
    pub(crate) column_keys: BTreeMap<u32, Vec<SignedRecord<WrappedColumnKey>>>,
    pub(crate) settings: BTreeMap<u32, EncryptionSetting>,
    pub(crate) columns: HashMap<ColumnName, EncryptedColumn>,
    pub(crate) by_origin: HashMap<(u32, i16), ColumnName>,
    /// Columns of type `aepg.ciphertext` of views (and assigned table
    /// columns), by origin: decrypted by their cell header.
    pub(crate) ciphertext_origins: HashSet<(u32, i16)>,
    /// Table columns of type `aepg.ciphertext` without a verified
    /// assignment: their cells are never trusted (a deleted assignment must
    /// not let cells move between columns unnoticed).
    pub(crate) unassigned_table_columns: HashSet<(u32, i16)>,
    pub(crate) tables: HashMap<(String, String), TableInfo>,
    pub(crate) ciphertext_type_oid: u32,
    pub(crate) skipped: Vec<SkippedRecord>,
}

impl Catalog {
    /// The catalog's identity: what every signature in it covers. An
    /// application can pin it ([`EncryptionConfig::expect_catalog`](crate::EncryptionConfig::expect_catalog)).
    pub fn id(&self) -> CatalogId {
        self.id
    }

    /// The installed catalog version.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Column master keys by name.
    pub fn master_keys(&self) -> &BTreeMap<String, MasterKeyLocation> {
        &self.master_keys
    }

    /// Ids of the column encryption keys with at least one verified wrapped
    /// value, with the names of the master keys wrapping each.
    pub fn column_keys(&self) -> impl Iterator<Item = (u32, Vec<&str>)> + '_ {
        self.column_keys.iter().map(|(id, values)| {
            let names = values
                .iter()
                .map(|value| value.unverified().master_key_name.as_str())
                .collect();
            (*id, names)
        })
    }

    /// Verified column encryption settings by id.
    pub fn settings(&self) -> &BTreeMap<u32, EncryptionSetting> {
        &self.settings
    }

    /// The setting named `name`.
    pub fn setting_by_name(&self, name: &str) -> Option<&EncryptionSetting> {
        self.settings.values().find(|setting| setting.name == name)
    }

    /// Verified encrypted columns, sorted by name.
    pub fn columns(&self) -> Vec<&EncryptedColumn> {
        let mut columns: Vec<&EncryptedColumn> = self.columns.values().collect();
        columns.sort_by_key(|column| column.name.to_string());
        columns
    }

    /// The encrypted column at `table_oid`/`attnum`, as a result column's
    /// origin names it.
    pub fn column_at(&self, table_oid: u32, attnum: i16) -> Option<&EncryptedColumn> {
        self.by_origin
            .get(&(table_oid, attnum))
            .and_then(|name| self.columns.get(name))
    }

    /// Whether the table column at `table_oid`/`attnum` is of type
    /// `aepg.ciphertext` but has no verified assignment (deleted, or under a
    /// master key this application does not trust).
    pub fn is_unassigned_ciphertext_column(&self, table_oid: u32, attnum: i16) -> bool {
        self.unassigned_table_columns.contains(&(table_oid, attnum))
    }

    /// Whether the column at `table_oid`/`attnum` (of a view) is
    /// of type `aepg.ciphertext`. The server describes result columns with
    /// the domain's base type, `bytea`, so this is how a view's encrypted
    /// column is recognized.
    pub fn is_ciphertext_column(&self, table_oid: u32, attnum: i16) -> bool {
        self.ciphertext_origins.contains(&(table_oid, attnum))
    }

    /// The oid of the `aepg.ciphertext` domain in this database.
    pub fn ciphertext_type_oid(&self) -> u32 {
        self.ciphertext_type_oid
    }

    /// Records left out because their master key is not trusted by this
    /// application or its key store is unavailable. Columns under them are
    /// treated as ciphertext of unknown setting: readable as bytes only, and
    /// no parameter is ever sent to them.
    pub fn skipped(&self) -> &[SkippedRecord] {
        &self.skipped
    }

    /// A view of the tables that resolves unqualified names along `search_path`.
    pub fn schema_view<'a>(&'a self, search_path: &'a [String]) -> CatalogSchemaView<'a> {
        CatalogSchemaView {
            catalog: self,
            search_path,
        }
    }

    pub(crate) fn column_encryption(&self, name: &ColumnName) -> Option<ColumnEncryption> {
        let column = self.columns.get(name)?;
        let setting = self.settings.get(&column.setting_id)?;
        Some(ColumnEncryption {
            setting_id: column.setting_id,
            mode: setting.cell.mode,
        })
    }
}

/// [`SchemaView`] over a [`Catalog`] with one connection's search path.
#[derive(Clone, Copy, Debug)]
pub struct CatalogSchemaView<'a> {
    catalog: &'a Catalog,
    search_path: &'a [String],
}

impl SchemaView for CatalogSchemaView<'_> {
    fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<TableInfo> {
        let lookup = |schema: &str| {
            self.catalog
                .tables
                .get(&(schema.to_owned(), name.to_owned()))
                .cloned()
        };
        match schema {
            Some(schema) => lookup(schema),
            None => self.search_path.iter().find_map(|schema| lookup(schema)),
        }
    }

    fn encrypted_tables_named(&self, name: &str) -> Vec<String> {
        let mut tables: Vec<String> = self
            .catalog
            .tables
            .values()
            .filter(|table| table.name == name && table.has_encrypted_columns())
            .map(|table| format!("{}.{}", table.schema, table.name))
            .collect();
        tables.sort();
        tables
    }
}
