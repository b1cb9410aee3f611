//! Loading the catalog: read every row, verify every signature, resolve
//! columns to table oids, check pins.

use std::collections::BTreeMap;

use aepg_keystore::{KeyStoreError, KeyStoreRegistry, MasterKeyLocation};
use tokio_postgres::GenericClient;

use super::install::{catalog_id, require_installed};
use super::model::{Catalog, EncryptedColumn, EncryptionSetting, SkippedRecord};
use super::pin::{check_pins, PinnedColumn};
use crate::analysis::{ColumnInfo, ColumnName, TableInfo};
use crate::record::{ColumnAssignment, EncryptionSettingRecord, SignedRecord, WrappedColumnKey};
use crate::Error;

/// Loads and verifies the whole catalog.
///
/// A record whose signature does not verify is an attack on the catalog and
/// fails the load. A record under a master key this application does not
/// trust (or whose key store is unavailable) is skipped and listed in
/// [`Catalog::skipped`]; pinned columns must not depend on such records.
///
/// # Errors
/// A missing or too new catalog, a forged or malformed record, a pinned
/// column that is not encrypted as pinned, database errors.
pub async fn load_catalog(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    pins: &[PinnedColumn],
) -> Result<Catalog, Error> {
    let mut catalog = Catalog {
        version: require_installed(client).await?,
        id: catalog_id(client).await?,
        ..Catalog::default()
    };
    catalog.ciphertext_type_oid = client
        .query_one("SELECT 'aepg.ciphertext'::regtype::oid", &[])
        .await?
        .try_get(0)?;
    load_master_keys(client, &mut catalog).await?;
    load_column_keys(client, registry, &mut catalog).await?;
    load_settings(client, registry, &mut catalog).await?;
    load_assignments(client, registry, &mut catalog).await?;
    load_tables(client, &mut catalog).await?;
    check_pins(&catalog, pins)?;
    Ok(catalog)
}

async fn load_master_keys(client: &impl GenericClient, catalog: &mut Catalog) -> Result<(), Error> {
    for row in client
        .query("SELECT name, provider, key_path FROM aepg.master_keys", &[])
        .await?
    {
        let name: String = row.try_get(0)?;
        let location =
            MasterKeyLocation::new(row.try_get::<_, String>(1)?, row.try_get::<_, String>(2)?);
        catalog.master_keys.insert(name, location);
    }
    Ok(())
}

async fn load_column_keys(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    catalog: &mut Catalog,
) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT key_id, master_key_name, record, signature FROM aepg.column_key_values ORDER BY key_id, master_key_name",
            &[],
        )
        .await?;
    for row in rows {
        let key_id = id_column(row.try_get(0)?, "aepg.column_key_values")?;
        let master_key_name: String = row.try_get(1)?;
        let row_name = format!("aepg.column_key_values({key_id}, {master_key_name:?})");
        let value = SignedRecord::<WrappedColumnKey>::decode(row.try_get(2)?, row.try_get(3)?)?;
        let record = value.unverified();
        if record.key_id != key_id || record.master_key_name != master_key_name {
            return Err(malformed(&row_name, "row does not match its signed record"));
        }
        if catalog.master_keys.get(&master_key_name) != Some(&record.master_key) {
            return Err(malformed(
                &row_name,
                "master key location differs from aepg.master_keys",
            ));
        }
        let location = record.master_key.clone();
        match value.verify(registry, &location, &catalog.id).await {
            Ok(_) => catalog.column_keys.entry(key_id).or_default().push(value),
            Err(error) => skip_or_fail(
                catalog,
                format!("column key {key_id} under master key {master_key_name:?}"),
                error,
            )?,
        }
    }
    Ok(())
}

async fn load_settings(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    catalog: &mut Catalog,
) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT id, name, key_id, record, signature FROM aepg.encryption_settings ORDER BY id",
            &[],
        )
        .await?;
    for row in rows {
        let id = id_column(row.try_get(0)?, "aepg.encryption_settings")?;
        let name: String = row.try_get(1)?;
        let key_id = id_column(row.try_get(2)?, "aepg.encryption_settings")?;
        let row_name = format!("aepg.encryption_settings({id}, {name:?})");
        let signed =
            SignedRecord::<EncryptionSettingRecord>::decode(row.try_get(3)?, row.try_get(4)?)?;
        let record = signed.unverified();
        if record.setting.setting_id != id || record.key_id != key_id || record.name != name {
            return Err(malformed(&row_name, "row does not match its signed record"));
        }
        if !record.setting.plaintext_type.is_supported() {
            return Err(malformed(&row_name, "plaintext type is not supported"));
        }
        let what = format!("encryption setting {name:?}");
        match verify_under_key(&signed, key_id, registry, catalog).await {
            Ok(record) => {
                let setting = EncryptionSetting {
                    name,
                    cell: record.setting,
                    key_id,
                };
                catalog.settings.insert(id, setting);
            }
            Err(error) => skip_or_fail(catalog, what, error)?,
        }
    }
    Ok(())
}

async fn load_assignments(
    client: &impl GenericClient,
    registry: &KeyStoreRegistry,
    catalog: &mut Catalog,
) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT schema_name, table_name, column_name, setting_id, record, signature FROM aepg.column_assignments",
            &[],
        )
        .await?;
    for row in rows {
        let name = ColumnName {
            schema: row.try_get(0)?,
            table: row.try_get(1)?,
            column: row.try_get(2)?,
        };
        let setting_id = id_column(row.try_get(3)?, "aepg.column_assignments")?;
        let row_name = format!("aepg.column_assignments({name})");
        let signed = SignedRecord::<ColumnAssignment>::decode(row.try_get(4)?, row.try_get(5)?)?;
        let record = signed.unverified();
        if record.schema != name.schema
            || record.table != name.table
            || record.column != name.column
            || record.setting_id != setting_id
        {
            return Err(malformed(&row_name, "row does not match its signed record"));
        }
        let Some(key_id) = catalog
            .settings
            .get(&setting_id)
            .map(|setting| setting.key_id)
        else {
            catalog.skipped.push(SkippedRecord {
                what: format!("assignment of {name}"),
                reason: format!("its encryption setting {setting_id} was not loaded"),
            });
            continue;
        };
        match verify_under_key(&signed, key_id, registry, catalog).await {
            Ok(_) => {
                let column = EncryptedColumn {
                    name: name.clone(),
                    setting_id,
                    origin: None,
                };
                catalog.columns.insert(name, column);
            }
            Err(error) => skip_or_fail(catalog, format!("assignment of {name}"), error)?,
        }
    }
    Ok(())
}

/// Reads every user table's columns, so the analyzer can resolve names and
/// result columns can be traced to encrypted columns.
async fn load_tables(client: &impl GenericClient, catalog: &mut Catalog) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, c.oid, a.attnum, a.attname, a.atttypid = $1::oid,
                    c.relkind IN ('r', 'p')
             FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'aepg')
               AND n.nspname NOT LIKE 'pg_toast%'
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY n.nspname, c.relname, a.attnum",
            &[&catalog.ciphertext_type_oid],
        )
        .await?;
    let mut tables: BTreeMap<(String, String), TableInfo> = BTreeMap::new();
    for row in rows {
        let schema: String = row.try_get(0)?;
        let table: String = row.try_get(1)?;
        let table_oid: u32 = row.try_get(2)?;
        let attnum: i16 = row.try_get(3)?;
        let name = ColumnName {
            schema: schema.clone(),
            table: table.clone(),
            column: row.try_get(4)?,
        };
        let is_ciphertext: bool = row.try_get(5)?;
        let encryption = catalog.column_encryption(&name);
        let is_table: bool = row.try_get(6)?;
        if is_ciphertext {
            if is_table && !catalog.columns.contains_key(&name) {
                catalog.unassigned_table_columns.insert((table_oid, attnum));
            } else {
                catalog.ciphertext_origins.insert((table_oid, attnum));
            }
        }
        if let Some(column) = catalog.columns.get_mut(&name) {
            column.origin = Some((table_oid, attnum));
            catalog.by_origin.insert((table_oid, attnum), name.clone());
        }
        tables
            .entry((schema.clone(), table.clone()))
            .or_insert_with(|| TableInfo {
                schema,
                name: table,
                columns: Vec::new(),
            })
            .columns
            .push(ColumnInfo {
                name: name.column,
                encryption,
                is_ciphertext,
            });
    }
    catalog.tables = tables.into_iter().collect();
    Ok(())
}

/// Verifies a record signed by a master key of column key `key_id`: any of
/// the key's verified wrapped values names a master key that may sign.
async fn verify_under_key<'a, T: crate::record::CatalogRecord>(
    signed: &'a SignedRecord<T>,
    key_id: u32,
    registry: &KeyStoreRegistry,
    catalog: &Catalog,
) -> Result<&'a T, Error> {
    let Some(values) = catalog.column_keys.get(&key_id) else {
        return Err(Error::NotInCatalog {
            kind: "verified column encryption key",
            name: key_id.to_string(),
        });
    };
    let mut last_error = None;
    for value in values {
        match signed
            .verify(registry, &value.unverified().master_key, &catalog.id)
            .await
        {
            Ok(record) => return Ok(record),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or(Error::NotInCatalog {
        kind: "verified column encryption key",
        name: key_id.to_string(),
    }))
}

/// A forged signature fails the load; a key this application cannot use
/// only skips the record.
fn skip_or_fail(catalog: &mut Catalog, what: String, error: Error) -> Result<(), Error> {
    let skippable = matches!(
        &error,
        Error::NotInCatalog { .. }
            | Error::KeyStore(
                KeyStoreError::UntrustedKeyPath { .. }
                    | KeyStoreError::UnknownProvider { .. }
                    | KeyStoreError::KeyNotFound { .. }
                    | KeyStoreError::ProviderUnavailable { .. }
            )
    );
    if !skippable {
        return Err(error);
    }
    tracing::warn!(record = %what, reason = %error, "aepg catalog record skipped");
    catalog.skipped.push(SkippedRecord {
        what,
        reason: error.to_string(),
    });
    Ok(())
}

fn id_column(value: i32, table: &str) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| malformed(table, "negative id"))
}

fn malformed(row: &str, reason: &str) -> Error {
    Error::MalformedCatalogRow {
        row: row.to_owned(),
        reason: reason.to_owned(),
    }
}
