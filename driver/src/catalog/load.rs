//! Loading the catalog: read every row, verify every signature, decide which
//! columns are encrypted (what signed records say, never less), resolve them
//! to the server's tables, check pins.
//!
//! A record that cannot be trusted — forged, altered, malformed, or under a
//! master key this application does not trust — is left out and listed in
//! [`Catalog::skipped`]; the columns that depend on it become unusable (fail
//! closed), and only they. What fails the whole load: no manifest signed by
//! a trusted master key, a manifest newer than the catalog's generation,
//! pins that do not hold, database errors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use aepg_keystore::{KeyStoreRegistry, MasterKeyLocation};
use futures_util::TryFutureExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

use super::error::CatalogError;
use super::install::{supported_version, CATALOG_STATE_QUERY};
use super::looked_up::{LookedUpTable, LookedUpTables};
use super::model::{
    is_user_schema, Catalog, ColumnState, EncryptedColumn, EncryptionSetting, SkipReason,
    SkippedRecord, VerifiedManifest,
};
use super::pin::Pins;
use crate::analysis::{ColumnInfo, ColumnProtection, TableInfo};
use crate::names::{ColumnName, TableName};
use crate::record::{
    CatalogId, CatalogRecord, ColumnAssignment, ColumnManifest, EncryptionSettingRecord,
    RecordError, SignedRecord, WrappedColumnKey,
};
use crate::support::{generation_from_sql, id_from_sql};
use crate::Error;

/// Loads and verifies the whole catalog, and checks `pins`.
///
/// # Errors
/// A missing, too old or too new catalog; no manifest signed by a trusted
/// master key (when the registry trusts any); a manifest newer than the
/// catalog's generation; pins that do not hold; database errors.
pub async fn load_catalog(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    pins: &Pins,
) -> Result<Catalog, Error> {
    let catalog = load_verified(client, registry, true).await?;
    pins.check(&catalog)?;
    Ok(catalog)
}

/// [`load_catalog`] without pins; `require_manifest: false` lets an
/// administrator load a catalog whose first manifest is still to be signed.
///
/// Two round trips (more if it starts over). The first asks, in one statement that cannot fail
/// where nothing is installed, whether the catalog is there. The second
/// reads everything else, pipelined: the server runs the statements in
/// order, so the catalog's identity and generation, read first and last,
/// tell whether an administrator committed a change in between (the reads
/// are separate statements); if one did, the load starts over, so a
/// catalog is never a mix of two generations.
pub(crate) async fn load_verified(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    require_manifest: bool,
) -> Result<Catalog, Error> {
    let presence = client.query_typed_one(PRESENCE_QUERY, &[]).await?;
    if !presence.try_get::<_, bool>(0)? {
        return Err(CatalogError::NotInstalled.into());
    }
    let ciphertext_type_oid: u32 = presence
        .try_get::<_, Option<u32>>(1)?
        .ok_or(CatalogError::NotInstalled)?;
    for _ in 0..MAX_LOAD_ATTEMPTS {
        let no_parameters: &[(&(dyn ToSql + Sync), Type)] = &[];
        let read = |sql| client.query_typed(sql, no_parameters).map_err(Error::from);
        let relation_parameters: &[(&(dyn ToSql + Sync), Type)] =
            &[(&ciphertext_type_oid, Type::OID)];
        let (
            version,
            before,
            master_keys,
            manifests,
            column_keys,
            settings,
            assignments,
            migrations,
            relations,
            after,
        ) = futures_util::join!(
            client
                .query_typed_opt(VERSION_QUERY, no_parameters)
                .map_err(Error::from),
            catalog_state(client),
            read(MASTER_KEYS_QUERY),
            read(MANIFESTS_QUERY),
            read(COLUMN_KEYS_QUERY),
            read(SETTINGS_QUERY),
            read(ASSIGNMENTS_QUERY),
            read(MIGRATIONS_QUERY),
            client
                .query_typed(RELATIONS_QUERY, relation_parameters)
                .map_err(Error::from),
            catalog_state(client),
        );
        // The version speaks first: the other reads of a catalog this
        // library does not read may fail for want of a column.
        let version = supported_version(version?.map(|row| row.try_get(0)).transpose()?)?;
        // Then each read's error in the order they were sent: inside a
        // transaction block the first failure aborts the rest, and it is
        // the one that says why.
        let (id, generation) = before?;
        let (master_keys, manifests, column_keys) = (master_keys?, manifests?, column_keys?);
        let (settings, assignments, migrations) = (settings?, assignments?, migrations?);
        let relations = relations?;
        if after? != (id, generation) {
            continue;
        }
        let mut loader = Loader::new(registry, version, id, generation, ciphertext_type_oid);
        loader.master_keys(master_keys)?;
        loader.manifests(manifests, require_manifest).await?;
        loader.column_keys(column_keys).await?;
        loader.settings(settings).await?;
        loader.assignments(assignments).await?;
        loader.migrations(migrations)?;
        let relations = server_relations(relations)?;
        return Ok(loader.finish(relations));
    }
    Err(CatalogError::Unsettled.into())
}

/// Whether the catalog's tables exist, and the ciphertext type's oid (NULL
/// where it does not), in one statement that reads no table of aepg's.
const PRESENCE_QUERY: &str = "SELECT pg_catalog.to_regclass('aepg.catalog_version') IS NOT NULL, \
     pg_catalog.to_regtype('aepg.ciphertext')::pg_catalog.oid";
/// The installed catalog version.
const VERSION_QUERY: &str = "SELECT version FROM aepg.catalog_version";
/// The catalog's tables, read by every load.
const MASTER_KEYS_QUERY: &str = "SELECT name, provider, key_path FROM aepg.master_keys";
const MANIFESTS_QUERY: &str = "SELECT master_key_name, generation, record, signature \
     FROM aepg.manifests ORDER BY master_key_name";
const COLUMN_KEYS_QUERY: &str = "SELECT key_id, master_key_name, record, signature \
     FROM aepg.column_key_values ORDER BY key_id, master_key_name";
const SETTINGS_QUERY: &str = "SELECT id, name, key_id, record, signature, cosignature \
     FROM aepg.encryption_settings ORDER BY id";
const ASSIGNMENTS_QUERY: &str = "SELECT schema_name, table_name, column_name, setting_id, \
     record, signature, cosignature FROM aepg.column_assignments";
const MIGRATIONS_QUERY: &str = "SELECT schema_name, table_name, column_name, direction \
     FROM aepg.column_migrations WHERE phase OPERATOR(pg_catalog.=) 'swapping'";

/// How often a load starts over because the catalog changed during it.
const MAX_LOAD_ATTEMPTS: usize = 4;

/// The catalog's identity and generation.
async fn catalog_state(client: &impl GenericClient) -> Result<(CatalogId, u64), Error> {
    let state = client.query_typed_one(CATALOG_STATE_QUERY, &[]).await?;
    Ok((
        CatalogId::from_slice(state.try_get(0)?)?,
        generation_from_sql(state.try_get(1)?)?,
    ))
}

/// The loader's state between steps.
struct Loader<'r> {
    registry: &'r KeyStoreRegistry,
    catalog: Catalog,
    /// Verified assignments: column → setting id.
    assignments: BTreeMap<ColumnName, u32>,
    /// Columns named by a record that was left out: why they cannot be used.
    unusable: BTreeMap<ColumnName, String>,
    /// Columns in the final swap of a migration, which no statement may
    /// use until it is over: why.
    swapping: BTreeMap<ColumnName, String>,
}

impl<'r> Loader<'r> {
    fn new(
        registry: &'r KeyStoreRegistry,
        version: i32,
        id: CatalogId,
        generation: u64,
        ciphertext_type_oid: u32,
    ) -> Self {
        Self {
            registry,
            catalog: Catalog {
                version,
                id,
                generation,
                master_keys: BTreeMap::new(),
                manifests: Vec::new(),
                column_keys: BTreeMap::new(),
                settings: BTreeMap::new(),
                columns: BTreeMap::new(),
                by_origin: HashMap::new(),
                unassigned_origins: Default::default(),
                attributes: HashMap::new(),
                tables: HashMap::new(),
                encrypted_table_names: HashMap::new(),
                assignments: BTreeMap::new(),
                ciphertext_type_oid,
                skipped: Vec::new(),
                swapping_tables: BTreeSet::new(),
                looked_up: LookedUpTables::default(),
            },
            assignments: BTreeMap::new(),
            unusable: BTreeMap::new(),
            swapping: BTreeMap::new(),
        }
    }

    fn master_keys(&mut self, rows: Vec<Row>) -> Result<(), Error> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut keys = Vec::new();
        for row in rows {
            // An index row with a NULL cannot match any signed record.
            let (Some(name), Some(provider), Some(key_path)) = (
                row.try_get::<_, Option<String>>(0)?,
                row.try_get::<_, Option<String>>(1)?,
                row.try_get::<_, Option<String>>(2)?,
            ) else {
                continue;
            };
            *seen.entry(name.clone()).or_default() += 1;
            keys.push((name, MasterKeyLocation::new(provider, key_path)));
        }
        // Two locations under one name: no record can be trusted to either.
        for (name, location) in keys {
            if seen.get(&name) == Some(&1) {
                self.catalog.master_keys.insert(name, location);
            }
        }
        Ok(())
    }

    async fn manifests(&mut self, rows: Vec<Row>, require_manifest: bool) -> Result<(), Error> {
        let mut rejected = Vec::new();
        let mut verified: Vec<VerifiedManifest> = Vec::new();
        for row in rows {
            let name: Option<String> = row.try_get(0).unwrap_or(None);
            let what = match &name {
                Some(name) => format!("manifest of master key {name:?}"),
                None => "a manifest".to_owned(),
            };
            let Some(name) = name else {
                rejected.push(format!("{what}: its row names no master key"));
                self.skip(what, Skip::tampered("its row names no master key"));
                continue;
            };
            match self.manifest(&row, &name).await {
                Ok(manifest) => verified.push(manifest),
                Err(skip) => {
                    rejected.push(format!("{what}: {}", skip.reason));
                    self.skip(what, skip);
                }
            }
        }
        // One manifest per master key: several (an older one replayed
        // beside the current one, say) leave none of them trusted.
        for manifest in &verified {
            let twins = verified
                .iter()
                .filter(|other| {
                    other.master_key_name == manifest.master_key_name
                        || other.master_key == manifest.master_key
                })
                .count();
            if twins == 1 {
                self.catalog.manifests.push(manifest.clone());
            } else {
                let what = format!("manifest of master key {:?}", manifest.master_key_name);
                let reason = "several manifests claim this master key";
                rejected.push(format!("{what}: {reason}"));
                self.skip(what, Skip::tampered(reason));
            }
        }
        if require_manifest && self.catalog.manifests.is_empty() && self.registry.trusts_any_key() {
            return Err(CatalogError::NoManifest { rejected }.into());
        }
        for manifest in &self.catalog.manifests {
            if manifest.generation > self.catalog.generation {
                // Only the generation counter itself can have moved back.
                return Err(CatalogError::GenerationRollback {
                    seen: manifest.generation,
                    found: self.catalog.generation,
                }
                .into());
            }
        }
        Ok(())
    }

    async fn manifest(
        &self,
        row: &tokio_postgres::Row,
        name: &str,
    ) -> Result<VerifiedManifest, Skip> {
        let signed = decode::<ColumnManifest>(row, 2)?;
        let record = signed.unverified();
        let generation: i64 = row.try_get(1).map_err(Skip::unreadable)?;
        if record.master_key_name != name
            || generation_from_sql(generation).ok() != Some(record.generation)
        {
            return Err(Skip::tampered("its row does not match its signed record"));
        }
        if self.catalog.master_keys.get(name) != Some(&record.master_key) {
            return Err(Skip::tampered(
                "its master key's location differs from aepg.master_keys",
            ));
        }
        let record = signed
            .verify(self.registry, &record.master_key, &self.catalog.id)
            .await
            .map_err(|error| Skip::unverified(error, &record.master_key))?;
        Ok(VerifiedManifest {
            master_key_name: record.master_key_name.clone(),
            master_key: record.master_key.clone(),
            generation: record.generation,
            columns: record.columns.clone(),
        })
    }

    async fn column_keys(&mut self, rows: Vec<Row>) -> Result<(), Error> {
        let mut verified: Vec<SignedRecord<WrappedColumnKey>> = Vec::new();
        for row in rows {
            let (Some(key_id), Some(master_key_name)) = (
                row.try_get::<_, Option<i32>>(0).unwrap_or(None),
                row.try_get::<_, Option<String>>(1).unwrap_or(None),
            ) else {
                self.skip(
                    "a column key value".to_owned(),
                    Skip::tampered("its row has no key id or master key"),
                );
                continue;
            };
            let what = column_key_label(key_id, &master_key_name);
            match self.column_key(&row, key_id, &master_key_name).await {
                Ok(value) => verified.push(value),
                Err(skip) => self.skip(what, skip),
            }
        }
        // One wrapped value per column key and master key.
        for value in &verified {
            let record = value.unverified();
            let twins = verified
                .iter()
                .filter(|other| {
                    let other = other.unverified();
                    other.key_id == record.key_id && other.master_key == record.master_key
                })
                .count();
            if twins == 1 {
                self.catalog
                    .column_keys
                    .entry(record.key_id)
                    .or_default()
                    .push(value.clone());
            } else {
                self.skip(
                    column_key_label(record.key_id, &record.master_key_name),
                    Skip::tampered("several wrapped values claim this key and master key"),
                );
            }
        }
        Ok(())
    }

    async fn column_key(
        &self,
        row: &tokio_postgres::Row,
        key_id: i32,
        master_key_name: &str,
    ) -> Result<SignedRecord<WrappedColumnKey>, Skip> {
        let value = decode::<WrappedColumnKey>(row, 2)?;
        let record = value.unverified();
        if id_from_sql(key_id, "column key id").ok() != Some(record.key_id)
            || record.master_key_name != master_key_name
        {
            return Err(Skip::tampered("its row does not match its signed record"));
        }
        if self.catalog.master_keys.get(master_key_name) != Some(&record.master_key) {
            return Err(Skip::tampered(
                "its master key's location differs from aepg.master_keys",
            ));
        }
        value
            .verify(self.registry, &record.master_key, &self.catalog.id)
            .await
            .map_err(|error| Skip::unverified(error, &record.master_key))?;
        Ok(value)
    }

    async fn settings(&mut self, rows: Vec<Row>) -> Result<(), Error> {
        let mut verified: Vec<EncryptionSetting> = Vec::new();
        for row in rows {
            let (Some(id), Some(name)) = (
                row.try_get::<_, Option<i32>>(0).unwrap_or(None),
                row.try_get::<_, Option<String>>(1).unwrap_or(None),
            ) else {
                self.skip(
                    "an encryption setting".to_owned(),
                    Skip::tampered("its row has no id or name"),
                );
                continue;
            };
            let what = format!("encryption setting {name:?}");
            match self.setting(&row, id, &name).await {
                Ok(setting) => verified.push(setting),
                Err(skip) => self.skip(what, skip),
            }
        }
        // Ids and names are unique: two signed records claiming one (an id
        // sequence restarted under the administrator, say) are both left out.
        for setting in &verified {
            let twins = verified
                .iter()
                .filter(|other| {
                    other.cell.setting_id == setting.cell.setting_id || other.name == setting.name
                })
                .count();
            if twins == 1 {
                self.catalog
                    .settings
                    .insert(setting.cell.setting_id, Arc::new(setting.clone()));
            } else {
                self.skip(
                    format!("encryption setting {:?}", setting.name),
                    Skip::tampered("several signed settings claim its id or name"),
                );
            }
        }
        Ok(())
    }

    async fn setting(
        &self,
        row: &tokio_postgres::Row,
        id: i32,
        name: &str,
    ) -> Result<EncryptionSetting, Skip> {
        let key_id: i32 = row.try_get(2).map_err(Skip::unreadable)?;
        let signed = decode_cosigned::<EncryptionSettingRecord>(row, 3)?;
        let record = signed[0].unverified();
        if id_from_sql(id, "setting id").ok() != Some(record.setting.setting_id)
            || id_from_sql(key_id, "column key id").ok() != Some(record.key_id)
            || record.name != name
        {
            return Err(Skip::tampered("its row does not match its signed record"));
        }
        if !record.setting.plaintext_type.is_supported() {
            return Err(Skip::tampered("its plaintext type is not supported"));
        }
        let record = self.verify_under_key(&signed, record.key_id).await?;
        Ok(EncryptionSetting {
            name: record.name.clone(),
            cell: record.setting,
            key_id: record.key_id,
            named_type: record.named_type.clone(),
        })
    }

    async fn assignments(&mut self, rows: Vec<Row>) -> Result<(), Error> {
        let mut claimed: BTreeMap<ColumnName, usize> = BTreeMap::new();
        for row in rows {
            let (Some(schema), Some(table), Some(column)) = (
                row.try_get::<_, Option<String>>(0).unwrap_or(None),
                row.try_get::<_, Option<String>>(1).unwrap_or(None),
                row.try_get::<_, Option<String>>(2).unwrap_or(None),
            ) else {
                self.skip(
                    "a column assignment".to_owned(),
                    Skip::tampered("its row names no column"),
                );
                continue;
            };
            let name = ColumnName::new(schema, table, column);
            *claimed.entry(name.clone()).or_default() += 1;
            let what = format!("assignment of {name}");
            match self.assignment(&row, &name).await {
                Ok(setting_id) => {
                    self.assignments.insert(name, setting_id);
                }
                Err(skip) => {
                    // Fail closed: a column a tampered record calls encrypted
                    // is never treated as plaintext. A record this
                    // application cannot check (another application's master
                    // key) is only left out, unless a manifest lists it.
                    if skip.kind == SkipReason::Tampered {
                        self.unusable.insert(
                            name,
                            format!("its assignment record was tampered with ({})", skip.reason),
                        );
                    }
                    self.skip(what, skip);
                }
            }
        }
        // One assignment per column: several leave it unusable.
        for (name, count) in claimed {
            if count > 1 {
                self.assignments.remove(&name);
                self.unusable.insert(
                    name.clone(),
                    "several assignment records claim it".to_owned(),
                );
                self.skip(
                    format!("assignment of {name}"),
                    Skip::tampered("several assignment records claim this column"),
                );
            }
        }
        Ok(())
    }

    /// Notes the columns in the final swap of a migration (the work state
    /// `aepg column encrypt|decrypt` and `aepg rotate cek` keep). The rows
    /// are not signed: they only ever make a column unusable, never usable.
    fn migrations(&mut self, rows: Vec<Row>) -> Result<(), Error> {
        for row in rows {
            let column = ColumnName::new(
                row.try_get::<_, String>(0)?,
                row.try_get::<_, String>(1)?,
                row.try_get::<_, String>(2)?,
            );
            let what = match row.try_get::<_, &str>(3)? {
                "encrypt" => "it is being encrypted in place (`aepg column encrypt`)",
                "decrypt" => "it is being decrypted in place (`aepg column decrypt`)",
                _ => "its column key is being replaced (`aepg rotate cek complete`)",
            };
            let reason = format!("{what} and its final swap is under way: retry in a few seconds");
            self.swapping.insert(column, reason);
        }
        Ok(())
    }

    async fn assignment(&self, row: &tokio_postgres::Row, name: &ColumnName) -> Result<u32, Skip> {
        let setting_id: i32 = row.try_get(3).map_err(Skip::unreadable)?;
        let signed = decode_cosigned::<ColumnAssignment>(row, 4)?;
        let record = signed[0].unverified();
        if record.schema != name.schema
            || record.table != name.table
            || record.column != name.column
            || id_from_sql(setting_id, "setting id").ok() != Some(record.setting_id)
        {
            return Err(Skip::tampered("its row does not match its signed record"));
        }
        let Some(key_id) = self
            .catalog
            .settings
            .get(&record.setting_id)
            .map(|setting| setting.key_id)
        else {
            return Err(Skip {
                kind: SkipReason::Dependency,
                reason: format!(
                    "its encryption setting {} was not loaded",
                    record.setting_id
                ),
            });
        };
        let record = self.verify_under_key(&signed, key_id).await?;
        Ok(record.setting_id)
    }

    /// Verifies a record signed by a master key of column key `key_id`: any
    /// of its signatures (two while a master key is rotated) that verifies
    /// under a master key of one of the key's verified wrapped values.
    ///
    /// When none does, a master key that could not be used (untrusted, its
    /// store down) explains it before a signature that failed: a record
    /// signed by a key this application lacks is not a forgery.
    async fn verify_under_key<'a, T: CatalogRecord>(
        &self,
        signed: &'a [SignedRecord<T>],
        key_id: u32,
    ) -> Result<&'a T, Skip> {
        let values = self
            .catalog
            .column_keys
            .get(&key_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut failures = Vec::new();
        for signed in signed {
            for value in values {
                let master_key = &value.unverified().master_key;
                match signed
                    .verify(self.registry, master_key, &self.catalog.id)
                    .await
                {
                    Ok(record) => return Ok(record),
                    Err(error) => failures.push(Skip::unverified(error, master_key)),
                }
            }
        }
        let unverifiable = failures
            .iter()
            .position(|skip| skip.kind == SkipReason::Unverifiable);
        Err(match unverifiable {
            Some(index) => failures.swap_remove(index),
            None => failures.pop().unwrap_or_else(|| Skip {
                kind: SkipReason::Dependency,
                reason: self.why_key_not_loaded(key_id),
            }),
        })
    }

    /// Why column key `key_id` is missing: the reasons its wrapped values
    /// were left out, which name their master keys.
    fn why_key_not_loaded(&self, key_id: u32) -> String {
        let prefix = format!("column key {key_id} under ");
        let reasons: Vec<String> = self
            .catalog
            .skipped
            .iter()
            .filter(|skipped| skipped.what.starts_with(&prefix))
            .map(|skipped| format!("{}: {}", skipped.what, skipped.reason))
            .collect();
        if reasons.is_empty() {
            format!("its column key {key_id} was not loaded")
        } else {
            format!(
                "its column key {key_id} was not loaded ({})",
                reasons.join("; ")
            )
        }
    }

    fn skip(&mut self, what: String, skip: Skip) {
        tracing::warn!(record = %what, reason = %skip.reason, "aepg catalog record left out");
        self.catalog.skipped.push(SkippedRecord {
            what,
            kind: skip.kind,
            reason: skip.reason,
        });
    }

    /// Decides which columns are encrypted and builds the analysis's view
    /// of the tables.
    fn finish(mut self, relations: Vec<ServerRelation>) -> Catalog {
        let signed = self.signed_columns();
        let mut tables = HashMap::new();
        let mut present: HashMap<ColumnName, (u32, i16, bool)> = HashMap::new();
        for relation in &relations {
            for column in &relation.columns {
                let name = relation.name.column(column.name.clone());
                present.insert(
                    name.clone(),
                    (relation.oid, column.attnum, column.is_ciphertext),
                );
                self.catalog
                    .attributes
                    .insert(name, (relation.oid, column.attnum));
            }
        }
        // Every signed column: usable, or why not.
        for (name, listed_setting) in &signed {
            let origin = present.get(name).copied();
            let state = self.column_state(name, *listed_setting, origin);
            if let Some((oid, attnum, _)) = origin {
                self.catalog.by_origin.insert((oid, attnum), name.clone());
            }
            self.catalog.columns.insert(
                name.clone(),
                EncryptedColumn {
                    name: name.clone(),
                    state,
                    origin: origin.map(|(oid, attnum, _)| (oid, attnum)),
                },
            );
        }
        for relation in relations {
            let columns = relation
                .columns
                .iter()
                .map(|column| {
                    let name = relation.name.column(column.name.clone());
                    let protection = match self.catalog.columns.get(&name) {
                        Some(encrypted) => self.protection(encrypted),
                        None if column.is_ciphertext => {
                            self.catalog
                                .unassigned_origins
                                .insert((relation.oid, column.attnum));
                            ColumnProtection::Unusable {
                                reason: format!(
                                    "it is aepg.ciphertext, but no verified assignment names it{}",
                                    left_out_note(&self.catalog.skipped)
                                )
                                .into(),
                            }
                        }
                        None => ColumnProtection::Plaintext,
                    };
                    ColumnInfo {
                        name: column.name.clone(),
                        protection,
                    }
                })
                .collect();
            let mut info = TableInfo::new(relation.name.clone(), columns);
            info.damage = relation.damage.map(Into::into);
            tables.insert(relation.name, info);
        }
        // A signed table or column the server lacks: the analysis could not
        // map values to its columns, so no statement may use the table.
        for name in signed.keys() {
            if present.contains_key(name) {
                continue;
            }
            let table = name.table_name();
            let info = tables
                .entry(table.clone())
                .or_insert_with(|| TableInfo::new(table.clone(), Vec::new()));
            if info.damage.is_none() {
                info.damage = Some(if info.columns.is_empty() {
                    "a signed record makes it encrypted, but it is missing from the database (renamed or dropped)"
                        .into()
                } else {
                    format!(
                        "a signed record makes its column {:?} encrypted, but the table has no such column",
                        name.column
                    )
                    .into()
                });
            }
        }
        for info in tables.values() {
            if info.has_encrypted_columns() {
                self.catalog
                    .encrypted_table_names
                    .entry(info.name.name.clone())
                    .or_default()
                    .push(info.name.clone());
            }
        }
        for names in self.catalog.encrypted_table_names.values_mut() {
            names.sort();
        }
        self.catalog.swapping_tables = self.swapping.keys().map(ColumnName::table_name).collect();
        self.catalog.tables = tables;
        self.catalog.assignments = self.assignments;
        self.catalog
    }

    /// Every column a signed record makes encrypted, with the setting the
    /// manifests agree on (`None` when they disagree or only an
    /// assignment names it), plus columns whose records were left out.
    fn signed_columns(&self) -> BTreeMap<ColumnName, Option<u32>> {
        let mut signed: BTreeMap<ColumnName, Option<u32>> = BTreeMap::new();
        let mut disagreeing = Vec::new();
        for manifest in &self.catalog.manifests {
            for (column, setting_id) in &manifest.columns {
                match signed.get(column) {
                    Some(Some(listed)) if listed != setting_id => disagreeing.push(column.clone()),
                    Some(_) => {}
                    None => {
                        signed.insert(column.clone(), Some(*setting_id));
                    }
                }
            }
        }
        for column in disagreeing {
            signed.insert(column, None);
        }
        let others = self.unusable.keys().chain(self.swapping.keys());
        for column in self.assignments.keys().chain(others) {
            signed.entry(column.clone()).or_insert(None);
        }
        signed
    }

    fn column_state(
        &self,
        name: &ColumnName,
        listed_setting: Option<u32>,
        origin: Option<(u32, i16, bool)>,
    ) -> ColumnState {
        let unusable = |reason: String| ColumnState::Unusable {
            reason: reason.into(),
        };
        if let Some(reason) = self.swapping.get(name) {
            return unusable(reason.clone());
        }
        let listed = self
            .catalog
            .manifests
            .iter()
            .any(|manifest| manifest.columns.contains_key(name));
        let Some(&setting_id) = self.assignments.get(name) else {
            return unusable(match (self.unusable.get(name), self.skipped_assignment(name)) {
                (Some(reason), _) => reason.clone(),
                (None, Some(reason)) => format!(
                    "a signed manifest lists it as encrypted, but its assignment record cannot be used ({reason})"
                ),
                (None, None) => {
                    "a signed manifest lists it as encrypted, but its assignment record is missing"
                        .to_owned()
                }
            });
        };
        if listed && listed_setting != Some(setting_id) {
            return unusable(format!(
                "its assignment names setting {setting_id}, which the signed manifests do not agree with"
            ));
        }
        let Some(setting) = self.catalog.settings.get(&setting_id) else {
            return unusable(format!(
                "its encryption setting {setting_id} was not loaded"
            ));
        };
        if !self.catalog.column_keys.contains_key(&setting.key_id) {
            return unusable(format!(
                "the column key {} of its setting {:?} was not loaded",
                setting.key_id, setting.name
            ));
        }
        match origin {
            None => unusable("the column is missing from the database".to_owned()),
            Some((_, _, false)) => unusable(
                "its type on the server is not aepg.ciphertext: the column was altered".to_owned(),
            ),
            Some((_, _, true)) => ColumnState::Usable { setting_id },
        }
    }

    /// Why the assignment of `name` was left out, if it was.
    fn skipped_assignment(&self, name: &ColumnName) -> Option<&str> {
        let what = format!("assignment of {name}");
        self.catalog
            .skipped
            .iter()
            .find(|skipped| skipped.what == what)
            .map(|skipped| skipped.reason.as_str())
    }

    fn protection(&self, column: &EncryptedColumn) -> ColumnProtection {
        match &column.state {
            ColumnState::Usable { setting_id } => match self.catalog.settings.get(setting_id) {
                Some(setting) => ColumnProtection::Encrypted(setting.encryption()),
                None => ColumnProtection::Unusable {
                    reason: "its setting was not loaded".into(),
                },
            },
            ColumnState::Unusable { reason } => ColumnProtection::Unusable {
                reason: reason.clone(),
            },
        }
    }
}

/// What an unassigned ciphertext column's message adds when records could
/// not be checked: the assignment may be among them.
pub(crate) fn left_out_note(skipped: &[SkippedRecord]) -> String {
    let unverifiable: Vec<&SkippedRecord> = skipped
        .iter()
        .filter(|skipped| skipped.kind == SkipReason::Unverifiable)
        .collect();
    let reasons: std::collections::BTreeSet<&str> = unverifiable
        .iter()
        .map(|skipped| skipped.reason.as_str())
        .collect();
    if reasons.is_empty() {
        return String::new();
    }
    // A few reasons are enough to act on; the server controls how many
    // records there are.
    const SHOWN: usize = 3;
    let mut shown: Vec<&str> = reasons.iter().copied().take(SHOWN).collect();
    if reasons.len() > SHOWN {
        shown.push("…");
    }
    format!(
        " ({} catalog records could not be checked: {})",
        unverifiable.len(),
        shown.join("; ")
    )
}

/// Why a record was left out.
struct Skip {
    kind: SkipReason,
    reason: String,
}

impl Skip {
    fn tampered(reason: &str) -> Self {
        Self {
            kind: SkipReason::Tampered,
            reason: reason.to_owned(),
        }
    }

    fn unreadable(error: tokio_postgres::Error) -> Self {
        Self {
            kind: SkipReason::Tampered,
            reason: format!("its row cannot be read ({error})"),
        }
    }

    fn from_record(error: RecordError) -> Self {
        Self {
            kind: if error.is_forgery() {
                SkipReason::Tampered
            } else {
                SkipReason::Unverifiable
            },
            reason: error.to_string(),
        }
    }

    /// A record whose check under `master_key` failed: forged, or the key
    /// could not be used (named, with why: missing, untrusted, store down).
    fn unverified(error: RecordError, master_key: &MasterKeyLocation) -> Self {
        if error.is_forgery() {
            return Self::from_record(error);
        }
        Self {
            kind: SkipReason::Unverifiable,
            reason: format!("master key {master_key} cannot be used: {error}"),
        }
    }
}

/// Decodes the record and signature in columns `first` and `first + 1`.
fn decode<T: CatalogRecord>(
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<SignedRecord<T>, Skip> {
    let canonical: &[u8] = row.try_get(first).map_err(Skip::unreadable)?;
    let signature: Vec<u8> = row.try_get(first + 1).map_err(Skip::unreadable)?;
    SignedRecord::decode(canonical, signature).map_err(Skip::from_record)
}

/// How a wrapped value is named among the records left out.
pub(crate) fn column_key_label(key_id: impl std::fmt::Display, master_key_name: &str) -> String {
    format!("column key {key_id} under master key {master_key_name:?}")
}

/// Decodes the record and signature in columns `first` and `first + 1`,
/// and the second signature in `first + 2` when there is one: the record
/// once per signature.
fn decode_cosigned<T: CatalogRecord + Clone>(
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<Vec<SignedRecord<T>>, Skip> {
    let signed = decode::<T>(row, first)?;
    let cosignature: Option<Vec<u8>> = row.try_get(first + 2).map_err(Skip::unreadable)?;
    let mut records = vec![signed];
    if let Some(cosignature) = cosignature {
        let cosigned = records[0].with_signature(cosignature);
        records.push(cosigned);
    }
    Ok(records)
}

/// A table, view or foreign table as the server describes it.
#[derive(Debug)]
struct ServerRelation {
    name: TableName,
    oid: u32,
    /// In `attnum` order.
    columns: Vec<ServerColumn>,
    /// Why the description cannot be trusted (the server listed the
    /// relation under two oids, one oid under two names, or a column
    /// twice): no statement may use it.
    damage: Option<String>,
}

#[derive(Debug)]
struct ServerColumn {
    name: String,
    attnum: i16,
    is_ciphertext: bool,
}

/// The columns of the server's relations (tables, views, foreign tables)
/// that the filter selects (after a `WITH` clause it may use), `$1` the
/// ciphertext type's oid; temporary ones excepted (they belong to other
/// sessions). Operators qualified: the session's search path is the
/// server's to set, and must not re-pair what this query reads. The schemas [`server_relations`] leaves out are left
/// out here already: the system catalogs' two thousand columns made this
/// one statement most of a cold start's catalog load (docs/BENCHMARKS.md).
/// `starts_with` needs PostgreSQL 11 or later.
macro_rules! relations_query {
    ($with:literal, $filter:literal) => {
        concat!(
            $with,
            "SELECT n.nspname, c.relname, c.oid, a.attnum, a.attname,
        a.atttypid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
 FROM pg_catalog.pg_class c
 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
 WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog.\"char\"[])
   AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema,aepg}'::pg_catalog.name[])
   AND NOT pg_catalog.starts_with(n.nspname, 'pg_toast')
   AND NOT pg_catalog.starts_with(n.nspname, 'pg_temp_')
   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
   AND ",
            $filter,
            "
 ORDER BY n.nspname, c.relname, a.attnum"
        )
    };
}

/// What every load reads: the relations with encrypted columns, by type
/// (`aepg.ciphertext`, also a migration's shadow column) or by an
/// assignment row. Columns of the type are found through the dependency
/// each has on it (`pg_depend`'s index on what is depended on), and both
/// lists are read by `pg_class`'s oid index: nothing here reads every
/// table or column of the database (with 2,000 other tables: 0.2 ms,
/// where filtering a scan of `pg_class` took 1.5 ms and reading every
/// column 10). The rows only choose what to read: a signed column's table
/// the server leaves out is kept, damaged
/// ([`Loader::finish`]); a ciphertext column whose dependency row a
/// superuser deleted is read when a statement names its table, unusable,
/// and its cells are refused by their type.
/// Other tables are read when a statement first names them
/// ([`look_up_tables`]): reading all of them made a load grow with the
/// schema (with 2,000 tables of 10 columns, a cold start ran at 0.11 of
/// plain's speed, against 0.50 without them).
const RELATIONS_QUERY: &str = relations_query!(
    "",
    "c.oid OPERATOR(pg_catalog.=) ANY (pg_catalog.array_cat(
       ARRAY(SELECT d.objid FROM pg_catalog.pg_depend d
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid
           AND d.refobjid OPERATOR(pg_catalog.=) $1::pg_catalog.oid),
       ARRAY(SELECT r.oid FROM aepg.column_assignments s
         JOIN pg_catalog.pg_namespace rn
           ON rn.nspname OPERATOR(pg_catalog.=) s.schema_name::pg_catalog.name
         JOIN pg_catalog.pg_class r
           ON r.relnamespace OPERATOR(pg_catalog.=) rn.oid
          AND r.relname OPERATOR(pg_catalog.=) s.table_name::pg_catalog.name)))"
);

/// The relations of the names in `$2` (schemas) and `$3` (names), read when
/// a statement names them.
const NAMED_RELATIONS_QUERY: &str = relations_query!(
    "WITH named (schema_name, table_name) AS
     (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]),
                               pg_catalog.unnest($3::pg_catalog.text[])))
",
    "c.oid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT r.oid FROM named s
         JOIN pg_catalog.pg_namespace rn
           ON rn.nspname OPERATOR(pg_catalog.=) s.schema_name::pg_catalog.name
         JOIN pg_catalog.pg_class r
           ON r.relnamespace OPERATOR(pg_catalog.=) rn.oid
          AND r.relname OPERATOR(pg_catalog.=) s.table_name::pg_catalog.name))"
);

/// Reads the tables `names` (schema-qualified) that the analysis of a
/// statement looked for and `catalog` does not know yet, and keeps them
/// with it: each is found, or known absent. Their `aepg.ciphertext`
/// columns (a table given one since the load) are unusable; a table a
/// signed record names is never taken from here.
///
/// # Errors
/// Database errors.
pub(crate) async fn look_up_tables(
    client: &impl GenericClient,
    catalog: &Catalog,
    names: &[TableName],
) -> Result<(), Error> {
    let names: Vec<TableName> = names
        .iter()
        .filter(|name| is_user_schema(&name.schema) && !catalog.tables.contains_key(name))
        .cloned()
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let epoch = catalog.looked_up.epoch();
    let schemas: Vec<&str> = names.iter().map(|name| name.schema.as_str()).collect();
    let tables: Vec<&str> = names.iter().map(|name| name.name.as_str()).collect();
    let rows = client
        .query_typed(
            NAMED_RELATIONS_QUERY,
            &[
                (&catalog.ciphertext_type_oid, Type::OID),
                (&schemas, Type::TEXT_ARRAY),
                (&tables, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    // The load's relations, by oid: a lookup never speaks for them.
    let loaded: HashSet<u32> = catalog.attributes.values().map(|(oid, _)| *oid).collect();
    let found = server_relations(rows)?
        .into_iter()
        .filter(|relation| {
            // Signed columns belong to the load's tables only.
            !loaded.contains(&relation.oid)
                && !relation.columns.iter().any(|column| {
                    catalog
                        .columns
                        .contains_key(&relation.name.column(column.name.clone()))
                })
        })
        .map(|relation| looked_up_table(catalog, relation))
        .collect();
    catalog.looked_up.record(epoch, &names, found);
    Ok(())
}

/// What the analyzer sees of a table read on demand: its ciphertext
/// columns unusable (no verified assignment names them), the rest
/// plaintext.
fn looked_up_table(catalog: &Catalog, relation: ServerRelation) -> LookedUpTable {
    let attnums = relation
        .columns
        .iter()
        .map(|column| (column.name.clone(), column.attnum))
        .collect();
    let columns = relation
        .columns
        .into_iter()
        .map(|column| {
            if column.is_ciphertext {
                ColumnInfo::unusable(
                    column.name,
                    format!(
                        "it is aepg.ciphertext, but no verified assignment names it{}",
                        left_out_note(&catalog.skipped)
                    ),
                )
            } else {
                ColumnInfo::plaintext(column.name)
            }
        })
        .collect();
    let mut info = TableInfo::new(relation.name, columns);
    info.damage = relation.damage.map(Into::into);
    LookedUpTable {
        info,
        oid: relation.oid,
        attnums,
    }
}

/// The relations in the rows of [`RELATIONS_QUERY`] or
/// [`NAMED_RELATIONS_QUERY`], leaving out schemas that are not the
/// application's.
fn server_relations(rows: Vec<Row>) -> Result<Vec<ServerRelation>, Error> {
    let mut described = Vec::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.try_get(0)?;
        if !is_user_schema(&schema) {
            continue;
        }
        described.push(DescribedColumn {
            table: TableName::new(schema, row.try_get::<_, String>(1)?),
            oid: row.try_get(2)?,
            column: ServerColumn {
                attnum: row.try_get(3)?,
                name: row.try_get(4)?,
                is_ciphertext: row.try_get(5)?,
            },
        });
    }
    Ok(group_relations(described))
}

/// One row of a relations query.
struct DescribedColumn {
    table: TableName,
    oid: u32,
    column: ServerColumn,
}

/// The columns grouped by relation, whatever order the server sent them
/// in: a relation listed twice apart must not read as two relations, the
/// last of which lacks a signed column (it would hide it from the
/// analysis). A relation described inconsistently (two oids, an oid
/// shared with another name, a column name or `attnum` twice) is damaged.
fn group_relations(described: Vec<DescribedColumn>) -> Vec<ServerRelation> {
    let mut relations: BTreeMap<TableName, ServerRelation> = BTreeMap::new();
    let mut names_by_oid: HashMap<u32, TableName> = HashMap::new();
    let mut shared_oids = Vec::new();
    for DescribedColumn { table, oid, column } in described {
        match names_by_oid.get(&oid) {
            Some(named) if *named != table => shared_oids.push(oid),
            Some(_) => {}
            None => {
                names_by_oid.insert(oid, table.clone());
            }
        }
        let relation = relations
            .entry(table.clone())
            .or_insert_with(|| ServerRelation {
                name: table,
                oid,
                columns: Vec::new(),
                damage: None,
            });
        if relation.oid != oid {
            relation
                .damage
                .get_or_insert_with(|| "the server lists it under two oids".to_owned());
            shared_oids.push(oid);
            continue;
        }
        if relation
            .columns
            .iter()
            .any(|known| known.name == column.name || known.attnum == column.attnum)
        {
            relation.damage.get_or_insert_with(|| {
                format!("the server lists its column {:?} twice", column.name)
            });
            continue;
        }
        relation.columns.push(column);
    }
    for relation in relations.values_mut() {
        if shared_oids.contains(&relation.oid) {
            relation.damage.get_or_insert_with(|| {
                "the server lists its oid under another name too".to_owned()
            });
        }
        relation.columns.sort_by_key(|column| column.attnum);
    }
    relations.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(table: &str, oid: u32, attnum: i16, column: &str) -> DescribedColumn {
        DescribedColumn {
            table: TableName::new("public", table),
            oid,
            column: ServerColumn {
                attnum,
                name: column.to_owned(),
                is_ciphertext: column == "ssn",
            },
        }
    }

    fn columns(relation: &ServerRelation) -> Vec<&str> {
        relation
            .columns
            .iter()
            .map(|column| column.name.as_str())
            .collect()
    }

    #[test]
    fn a_relation_listed_twice_apart_is_one_relation() {
        // A lying server lists `people` again after `orders`, without its
        // signed column: read in order, the second listing replaced the
        // first and hid `ssn` from the analysis.
        let relations = group_relations(vec![
            described("people", 10, 2, "ssn"),
            described("orders", 20, 1, "id"),
            described("people", 10, 1, "id"),
        ]);
        assert_eq!(relations.len(), 2);
        let people = relations
            .iter()
            .find(|relation| relation.name.name == "people")
            .expect("people");
        assert_eq!(columns(people), ["id", "ssn"], "in attnum order");
        assert!(people.damage.is_none());
    }

    #[test]
    fn an_inconsistent_relation_is_damaged() {
        let twice = group_relations(vec![
            described("people", 10, 1, "id"),
            described("people", 10, 2, "ssn"),
            described("people", 10, 3, "ssn"),
        ]);
        assert!(twice[0]
            .damage
            .as_deref()
            .is_some_and(|why| why.contains("twice")));
        assert_eq!(columns(&twice[0]), ["id", "ssn"]);

        let two_oids = group_relations(vec![
            described("people", 10, 1, "id"),
            described("people", 11, 2, "ssn"),
        ]);
        assert!(two_oids[0]
            .damage
            .as_deref()
            .is_some_and(|why| why.contains("two oids")));

        let shared = group_relations(vec![
            described("people", 10, 2, "ssn"),
            described("decoy", 10, 2, "note"),
        ]);
        assert!(shared.iter().all(|relation| relation.damage.is_some()));
    }
}
