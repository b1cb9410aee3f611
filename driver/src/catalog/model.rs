//! The verified, in-memory catalog.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use aepg_keystore::MasterKeyLocation;
use postgres_types::Type;

use super::looked_up::{LookedUpTables, Lookup};
use crate::analysis::{ColumnEncryption, SchemaView, TableInfo};
use crate::cell::{CellSetting, NamedType};
use crate::names::{ColumnName, TableName};
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
    /// For an enum or `citext`, the type by name (its values are text).
    pub named_type: Option<NamedType>,
}

impl EncryptionSetting {
    /// The plaintext type as SQL writes it (a named type by its name).
    pub fn type_name(&self) -> String {
        match &self.named_type {
            Some(named) => named.name().to_owned(),
            None => self.cell.plaintext_type.display_name(),
        }
    }

    /// The type `ToSql`/`FromSql` see for its values; `None` for an
    /// unsupported oid (which a verified catalog never holds).
    pub fn sql_type(&self) -> Option<Type> {
        match &self.named_type {
            Some(named) => Some(named.sql_type()),
            None => Type::from_oid(self.cell.plaintext_type.oid),
        }
    }

    /// The type of arrays of its values, for `= ANY($n)`; `None` when its
    /// values are arrays already.
    pub fn sql_array_type(&self) -> Option<Type> {
        match &self.named_type {
            Some(named) => Some(named.sql_array_type()),
            None => self
                .cell
                .plaintext_type
                .array_oid()
                .and_then(Type::from_oid),
        }
    }

    /// What the analysis knows of it.
    pub fn encryption(&self) -> ColumnEncryption {
        ColumnEncryption {
            setting_id: self.cell.setting_id,
            setting_name: self.name.as_str().into(),
            mode: self.cell.mode,
        }
    }

    /// `"patients_ssn" (deterministic)`, for messages.
    pub fn label(&self) -> String {
        format!("setting {:?} ({})", self.name, self.cell.mode)
    }
}

/// Whether this client can encrypt and decrypt an encrypted column.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnState {
    /// Its assignment, setting and column key verified, and the server's
    /// column is of type `aepg.ciphertext`.
    Usable {
        /// Its setting.
        setting_id: u32,
    },
    /// A signed record makes it encrypted, but this client cannot use it:
    /// nothing is stored into it or compared with it, and reading it fails.
    Unusable {
        /// Why.
        reason: Arc<str>,
    },
}

/// A column that signed records make encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedColumn {
    /// The column.
    pub name: ColumnName,
    /// Whether this client can use it.
    pub state: ColumnState,
    /// Its relation's oid and its `attnum`, when the server has the column.
    pub origin: Option<(u32, i16)>,
}

impl EncryptedColumn {
    /// Its setting, when usable.
    pub fn setting_id(&self) -> Option<u32> {
        match self.state {
            ColumnState::Usable { setting_id } => Some(setting_id),
            ColumnState::Unusable { .. } => None,
        }
    }
}

/// A manifest whose signature verified under a master key this application
/// trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The signing master key's name in the catalog.
    pub master_key_name: String,
    /// Where the signing master key lives.
    pub master_key: MasterKeyLocation,
    /// The catalog generation it was signed at.
    pub generation: u64,
    /// Every encrypted column it lists, with its setting id.
    pub columns: BTreeMap<ColumnName, u32>,
}

/// Why a record was left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its master key is not trusted by this application, or its key store
    /// is unavailable: the record cannot be checked here.
    Unverifiable,
    /// Its signature does not verify, it does not decode, or its row
    /// disagrees with it: someone altered the catalog.
    Tampered,
    /// A record it depends on was left out.
    Dependency,
}

/// A record the loader left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    /// What was skipped (`column key 3 under master key "old"`).
    pub what: String,
    /// The kind of reason.
    pub kind: SkipReason,
    /// Why, in words.
    pub reason: String,
}

/// The catalog as one client pool sees it: every record in it was verified
/// against its column master key when loaded, and the set of encrypted
/// columns is what the signed manifests and assignments say, never less.
#[derive(Clone, Debug, PartialEq)]
pub struct Catalog {
    pub(crate) version: i32,
    pub(crate) id: CatalogId,
    pub(crate) generation: u64,
    pub(crate) master_keys: BTreeMap<String, MasterKeyLocation>,
    pub(crate) manifests: Vec<VerifiedManifest>,
    pub(crate) column_keys: BTreeMap<u32, Vec<SignedRecord<WrappedColumnKey>>>,
    pub(crate) settings: BTreeMap<u32, Arc<EncryptionSetting>>,
    pub(crate) columns: BTreeMap<ColumnName, EncryptedColumn>,
    pub(crate) by_origin: HashMap<(u32, i16), ColumnName>,
    /// Columns of type `aepg.ciphertext` (of tables and views) that no
    /// signed record names: their cells are never decrypted.
    pub(crate) unassigned_origins: HashSet<(u32, i16)>,
    /// Every loaded column's relation oid and `attnum`, to check that a
    /// result column comes from where the analysis resolved it.
    pub(crate) attributes: HashMap<ColumnName, (u32, i16)>,
    /// The tables with encrypted columns (signed, or by type), and signed
    /// tables the server lacks (damaged).
    pub(crate) tables: HashMap<TableName, TableInfo>,
    /// The other tables, read when a statement first names them.
    pub(crate) looked_up: LookedUpTables,
    /// Names of tables with encrypted columns (signed or by type), for the
    /// search-path shadowing check.
    pub(crate) encrypted_table_names: HashMap<String, Vec<TableName>>,
    /// Verified assignments: column → setting id.
    pub(crate) assignments: BTreeMap<ColumnName, u32>,
    pub(crate) ciphertext_type_oid: u32,
    pub(crate) skipped: Vec<SkippedRecord>,
    /// Tables with a column in the final swap of a migration (unsigned:
    /// it only ever makes statements wait or fail).
    pub(crate) swapping_tables: BTreeSet<TableName>,
}

impl Catalog {
    /// Whether `other` holds exactly what this catalog holds (the same
    /// state loaded twice).
    pub(crate) fn same_as(&self, other: &Catalog) -> bool {
        self == other
    }

    /// The catalog's identity: what every signature in it covers. An
    /// application can pin it ([`EncryptionConfig::expect_catalog`](crate::EncryptionConfig::expect_catalog)).
    pub fn id(&self) -> CatalogId {
        self.id
    }

    /// The tables with a column in the final swap of an in-place
    /// migration: statements on them wait for it to end.
    pub fn swapping_tables(&self) -> &BTreeSet<TableName> {
        &self.swapping_tables
    }

    /// The installed catalog version.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The catalog generation the server reported when this was loaded;
    /// every administrative change raises it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Column master keys by name, as the (unsigned) `aepg.master_keys`
    /// table lists them.
    pub fn master_keys(&self) -> &BTreeMap<String, MasterKeyLocation> {
        &self.master_keys
    }

    /// The manifests that verified under a trusted master key.
    pub fn manifests(&self) -> &[VerifiedManifest] {
        &self.manifests
    }

    /// The generation of the verified manifest of master key `name`.
    pub fn manifest_generation(&self, name: &str) -> Option<u64> {
        self.manifests
            .iter()
            .find(|manifest| manifest.master_key_name == name)
            .map(|manifest| manifest.generation)
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
    pub fn settings(&self) -> &BTreeMap<u32, Arc<EncryptionSetting>> {
        &self.settings
    }

    /// The setting named `name`.
    pub fn setting_by_name(&self, name: &str) -> Option<&Arc<EncryptionSetting>> {
        self.settings.values().find(|setting| setting.name == name)
    }

    /// Every column signed records make encrypted, usable or not, sorted by name.
    pub fn columns(&self) -> impl Iterator<Item = &EncryptedColumn> + '_ {
        self.columns.values()
    }

    /// The encrypted column `name`.
    pub fn column(&self, name: &ColumnName) -> Option<&EncryptedColumn> {
        self.columns.get(name)
    }

    /// The encrypted column at `table_oid`/`attnum`, as a result column's
    /// origin names it.
    pub fn column_at(&self, table_oid: u32, attnum: i16) -> Option<&EncryptedColumn> {
        self.by_origin
            .get(&(table_oid, attnum))
            .and_then(|name| self.columns.get(name))
    }

    /// Whether the column at `table_oid`/`attnum` is of type
    /// `aepg.ciphertext` but no signed record names it.
    pub fn is_unassigned_ciphertext_column(&self, table_oid: u32, attnum: i16) -> bool {
        self.unassigned_origins.contains(&(table_oid, attnum))
    }

    /// The oid and `attnum` of the column `name`, as loaded (or as read
    /// when a statement first named its table).
    pub fn attribute(&self, name: &ColumnName) -> Option<(u32, i16)> {
        self.attributes
            .get(name)
            .copied()
            .or_else(|| self.looked_up.attribute(name))
    }

    /// Whether the table `name` has encrypted or ciphertext columns, or is
    /// a damaged signed table.
    pub(crate) fn has_encrypted_table(&self, name: &TableName) -> bool {
        match self.tables.get(name) {
            Some(table) => table.has_encrypted_columns(),
            None => self.looked_up.has_encrypted_columns(name),
        }
    }

    /// The oid of the `aepg.ciphertext` domain in this database.
    pub fn ciphertext_type_oid(&self) -> u32 {
        self.ciphertext_type_oid
    }

    /// Records left out: under a master key this application does not
    /// trust, whose key store is unavailable, or tampered with. Columns that
    /// depend on them are unusable (fail closed) when a signed record makes
    /// them encrypted.
    pub fn skipped(&self) -> &[SkippedRecord] {
        &self.skipped
    }

    /// A view of the tables that resolves unqualified names along
    /// `search_path` (as `current_schemas(true)` reports it), where the
    /// session's temporary schema holds `temp_tables`.
    ///
    /// It knows the tables with encrypted columns and the tables a client
    /// of this catalog already read on demand; an analysis against it
    /// that names any other table is provisional, and
    /// [`CatalogSchemaView::missing`] lists what to read first (the client
    /// does so before every statement it analyzes).
    pub fn schema_view<'a>(
        &'a self,
        search_path: &'a [String],
        temp_tables: &'a [String],
    ) -> CatalogSchemaView<'a> {
        CatalogSchemaView {
            catalog: self,
            search_path,
            temp_tables,
            missing: RefCell::new(Vec::new()),
        }
    }

    /// The setting of a usable encrypted column.
    pub(crate) fn usable_setting(&self, name: &ColumnName) -> Option<&Arc<EncryptionSetting>> {
        self.columns
            .get(name)
            .and_then(EncryptedColumn::setting_id)
            .and_then(|id| self.settings.get(&id))
    }
}

/// [`SchemaView`] over a [`Catalog`] with one connection's search path.
///
/// A table without encrypted columns that no statement named before is
/// not known yet: the view resolves it as missing and lists it in
/// [`missing`](Self::missing), to be read from the server and the
/// statement analyzed again.
#[derive(Clone, Debug)]
pub struct CatalogSchemaView<'a> {
    catalog: &'a Catalog,
    search_path: &'a [String],
    temp_tables: &'a [String],
    missing: RefCell<Vec<TableName>>,
}

impl CatalogSchemaView<'_> {
    /// The tables the analysis looked for that were not read yet: its
    /// result is provisional while this is not empty.
    pub fn missing(&self) -> Vec<TableName> {
        self.missing.borrow().clone()
    }

    /// The table `schema.name`: the load's, or one read on demand. A name
    /// not read yet is noted as missing when `record`.
    fn lookup(&self, schema: &str, name: &str, record: bool) -> Lookup {
        let table = TableName::new(schema, name);
        if let Some(info) = self.catalog.tables.get(&table) {
            return Lookup::Found(info.clone());
        }
        if !is_user_schema(schema) {
            // Never read: the system's, aepg's own, other sessions'
            // temporary ones.
            return Lookup::Absent;
        }
        let known = self.catalog.looked_up.get(&table);
        if record && matches!(known, Lookup::Unknown) {
            let mut missing = self.missing.borrow_mut();
            if !missing.contains(&table) {
                missing.push(table);
            }
        }
        known
    }

    /// [`SchemaView::resolve_table`], noting names not read yet when
    /// `record`. An unqualified name resolves to nothing while a schema
    /// ahead of its table on the search path is not read yet (a table of
    /// that name there would come first); the walk goes on to note the
    /// names further on, so one lookup reads them all.
    fn resolve(&self, schema: Option<&str>, name: &str, record: bool) -> Option<TableInfo> {
        match schema {
            // `pg_temp.x` names the session's temporary table, whose columns
            // this client does not know.
            Some("pg_temp") => None,
            Some(schema) => match self.lookup(schema, name, record) {
                Lookup::Found(info) => Some(info),
                Lookup::Absent | Lookup::Unknown => None,
            },
            None => {
                let mut unknown_ahead = false;
                for schema in self.search_path {
                    if is_temp_schema(schema) {
                        // A temporary table of the session hides every
                        // table of its name; its columns are unknown here.
                        if self.temp_tables.iter().any(|table| table == name) {
                            return None;
                        }
                        continue;
                    }
                    match self.lookup(schema, name, record) {
                        Lookup::Found(info) => return (!unknown_ahead).then_some(info),
                        Lookup::Unknown => unknown_ahead = true,
                        Lookup::Absent => {}
                    }
                }
                None
            }
        }
    }
}

/// Whether tables of `schema` are the application's: not the system
/// catalogs, aepg's, TOAST or temporary schemas.
pub(crate) fn is_user_schema(schema: &str) -> bool {
    !(is_temp_schema(schema)
        || schema.starts_with("pg_toast")
        || ["pg_catalog", "information_schema", "aepg"].contains(&schema))
}

/// Whether `schema` is a session's temporary schema.
pub(crate) fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with("pg_temp_") || schema.starts_with("pg_toast_temp_")
}

impl SchemaView for CatalogSchemaView<'_> {
    fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<TableInfo> {
        self.resolve(schema, name, true)
    }

    fn resolve_if_known(&self, schema: Option<&str>, name: &str) -> Option<TableInfo> {
        self.resolve(schema, name, false)
    }

    fn encrypted_tables_named(&self, name: &str) -> Vec<TableName> {
        self.catalog
            .encrypted_table_names
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn has_encrypted_columns(&self) -> bool {
        !self.catalog.encrypted_table_names.is_empty()
    }
}
