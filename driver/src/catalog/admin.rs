//! Key and setting administration: the writes that build the catalog.

use aepg_keystore::{ColumnKey, KeyStoreRegistry, MasterKeyLocation, MIN_MASTER_KEY_BITS};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::GenericClient;

use super::install::{catalog_id, require_installed};
use super::load::load_catalog;
use super::model::Catalog;
use crate::analysis::ColumnName;
use crate::cell::{CellSetting, EncryptionMode, PaddingPolicy, PlaintextType};
use crate::record::{ColumnAssignment, EncryptionSettingRecord, SignedRecord, WrappedColumnKey};
use crate::Error;

/// A new column encryption setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEncryptionSetting {
    /// Unique name (`"patients_ssn"`).
    pub name: String,
    /// The plaintext type (see [`PlaintextType::parse`]).
    pub plaintext_type: PlaintextType,
    /// Deterministic or randomized.
    pub mode: EncryptionMode,
    /// Padding; `None` takes the type's default (`block16` for variable-length types).
    pub padding: Option<PaddingPolicy>,
    /// The column encryption key.
    pub key_id: u32,
}

/// Writes the catalog: master keys, column keys, settings, assignments.
///
/// Every record it writes is signed by a column master key through the key
/// store registry, so it needs the master keys' private halves.
///
/// ```no_run
/// # async fn demo(mut plain: tokio_postgres::Client, registry: aepg::keystore::KeyStoreRegistry) -> Result<(), aepg::Error> {
/// use aepg::analysis::ColumnName;
/// use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting};
/// use aepg::cell::{EncryptionMode, PlaintextType};
/// use aepg::keystore::MasterKeyLocation;
///
/// install(&mut plain).await?;
/// let admin = CatalogAdmin::new(registry);
/// admin.register_master_key(&plain, "cmk1", &MasterKeyLocation::new("local", "cmk1.pem")).await?;
/// let cmk = MasterKeyLocation::new("local", "cmk1.pem");
/// let key_id = admin.create_column_key(&plain, "cmk1", &cmk).await?;
/// let setting = NewEncryptionSetting {
///     name: "ssn".into(),
///     plaintext_type: PlaintextType::parse("text")?,
///     mode: EncryptionMode::Deterministic,
///     padding: None,
///     key_id,
/// };
/// admin.create_setting(&plain, &setting).await?;
/// plain.batch_execute("CREATE TABLE patients (id int, ssn aepg.ciphertext)").await?;
/// let column = ColumnName { schema: "public".into(), table: "patients".into(), column: "ssn".into() };
/// admin.assign_column(&plain, &column, "ssn").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CatalogAdmin {
    registry: KeyStoreRegistry,
}

impl CatalogAdmin {
    /// An administrator using the master keys of `registry`.
    pub fn new(registry: KeyStoreRegistry) -> Self {
        Self { registry }
    }

    /// Registers a column master key under `name`, after checking that the
    /// key store has it and that it is large enough. Re-registering the same
    /// location under the same name is a no-op.
    ///
    /// # Errors
    /// The key store's refusal; [`Error::AlreadyInCatalog`] if `name` names
    /// another location.
    pub async fn register_master_key(
        &self,
        client: &impl GenericClient,
        name: &str,
        location: &MasterKeyLocation,
    ) -> Result<(), Error> {
        require_installed(client).await?;
        let info = self.registry.describe(location).await?;
        if info.bits < MIN_MASTER_KEY_BITS {
            return Err(aepg_keystore::KeyStoreError::KeyTooSmall {
                key_path: location.key_path.clone(),
                bits: info.bits,
                minimum: MIN_MASTER_KEY_BITS,
            }
            .into());
        }
        let existing = client
            .query_opt(
                "INSERT INTO aepg.master_keys (name, provider, key_path) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
                 RETURNING provider, key_path",
                &[&name, &location.provider, &location.key_path],
            )
            .await?;
        match existing {
            Some(row)
                if row.try_get::<_, &str>(0)? == location.provider
                    && row.try_get::<_, &str>(1)? == location.key_path =>
            {
                Ok(())
            }
            _ => Err(Error::AlreadyInCatalog {
                kind: "column master key",
                name: name.to_owned(),
            }),
        }
    }

    /// Creates a column encryption key: 32 random bytes, wrapped and signed
    /// by the master key `master_key_name`, which must be registered at
    /// `location`. Returns its id.
    ///
    /// The location is the caller's, not the catalog's: the catalog is not
    /// trusted, and a repointed `aepg.master_keys` row must not make the
    /// administrator wrap a new key under a master key someone else chose.
    ///
    /// # Errors
    /// An unknown master key or one registered elsewhere, the key store's
    /// refusal, database errors.
    pub async fn create_column_key(
        &self,
        client: &impl GenericClient,
        master_key_name: &str,
        location: &MasterKeyLocation,
    ) -> Result<u32, Error> {
        require_installed(client).await?;
        if &self.master_key(client, master_key_name).await? != location {
            return Err(Error::MalformedCatalogRow {
                row: format!("aepg.master_keys({master_key_name:?})"),
                reason: format!(
                    "it does not name {location}, where the caller expects this master key"
                ),
            });
        }
        let location = location.clone();
        let key_id: i32 = client
            .query_one("SELECT nextval('aepg.column_key_ids')::integer", &[])
            .await?
            .try_get(0)?;
        let key_id_u32 = u32::try_from(key_id).map_err(|_| Error::MalformedCatalogRow {
            row: "aepg.column_key_ids".to_owned(),
            reason: "negative id".to_owned(),
        })?;
        let column_key = ColumnKey::generate()?;
        let catalog = catalog_id(client).await?;
        let sealed = SignedRecord::<WrappedColumnKey>::seal(
            &self.registry,
            &catalog,
            master_key_name,
            &location,
            key_id_u32,
            &column_key,
        )
        .await?;
        // One statement, so a crash cannot leave a key without its value.
        client
            .execute(
                "WITH new_key AS (INSERT INTO aepg.column_keys (id) VALUES ($1))
                 INSERT INTO aepg.column_key_values (key_id, master_key_name, record, signature)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &key_id,
                    &master_key_name,
                    &sealed.canonical_bytes(),
                    &sealed.signature(),
                ],
            )
            .await?;
        Ok(key_id_u32)
    }

    /// Creates a column encryption setting, signed by the master key of its
    /// column key. Returns its id.
    ///
    /// # Errors
    /// An unsupported type, an unknown or unverifiable column key, a name in
    /// use, the key store's refusal, database errors.
    pub async fn create_setting(
        &self,
        client: &impl GenericClient,
        new: &NewEncryptionSetting,
    ) -> Result<u32, Error> {
        if !new.plaintext_type.is_supported() {
            return Err(Error::UnsupportedType {
                name: format!("type oid {}", new.plaintext_type.oid),
            });
        }
        let catalog = self.load(client).await?;
        if catalog.setting_by_name(&new.name).is_some() {
            return Err(Error::AlreadyInCatalog {
                kind: "column encryption setting",
                name: new.name.clone(),
            });
        }
        let signer = signer_of_key(&catalog, new.key_id)?;
        let id: i32 = client
            .query_one(
                "SELECT nextval('aepg.encryption_setting_ids')::integer",
                &[],
            )
            .await?
            .try_get(0)?;
        let record = EncryptionSettingRecord {
            name: new.name.clone(),
            setting: CellSetting {
                setting_id: u32::try_from(id).map_err(|_| Error::MalformedCatalogRow {
                    row: "aepg.encryption_setting_ids".to_owned(),
                    reason: "negative id".to_owned(),
                })?,
                mode: new.mode,
                plaintext_type: new.plaintext_type,
                padding: new
                    .padding
                    .unwrap_or_else(|| new.plaintext_type.default_padding()),
            },
            key_id: new.key_id,
        };
        let key_id = record.key_id as i32;
        let setting_id = record.setting.setting_id;
        let signed = SignedRecord::sign(record, &catalog.id(), &self.registry, &signer).await?;
        client
            .execute(
                "INSERT INTO aepg.encryption_settings (id, name, key_id, record, signature) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &new.name, &key_id, &signed.canonical_bytes(), &signed.signature()],
            )
            .await?;
        Ok(setting_id)
    }

    /// Assigns a column to a setting. The column must be of type
    /// `aepg.ciphertext` and hold no values yet (encrypting existing data is
    /// a migration, not an assignment). Re-assigning a column to the setting
    /// it has is a no-op.
    ///
    /// # Errors
    /// A missing, non-ciphertext or non-empty column; an unknown setting; a
    /// column assigned to another setting; the key store's refusal.
    pub async fn assign_column(
        &self,
        client: &impl GenericClient,
        column: &ColumnName,
        setting_name: &str,
    ) -> Result<(), Error> {
        let catalog = self.load(client).await?;
        let setting = catalog
            .setting_by_name(setting_name)
            .ok_or_else(|| Error::NotInCatalog {
                kind: "column encryption setting",
                name: setting_name.to_owned(),
            })?;
        let setting_id = setting.cell.setting_id;
        if let Some(existing) = catalog.columns.get(column) {
            return if existing.setting_id == setting_id {
                Ok(())
            } else {
                Err(Error::AlreadyInCatalog {
                    kind: "column assignment for",
                    name: column.to_string(),
                })
            };
        }
        check_column_assignable(client, column).await?;
        let signer = signer_of_key(&catalog, setting.key_id)?;
        let record = ColumnAssignment {
            schema: column.schema.clone(),
            table: column.table.clone(),
            column: column.column.clone(),
            setting_id,
        };
        let signed = SignedRecord::sign(record, &catalog.id(), &self.registry, &signer).await?;
        client
            .execute(
                "INSERT INTO aepg.column_assignments (schema_name, table_name, column_name, setting_id, record, signature)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &(setting_id as i32),
                    &signed.canonical_bytes(),
                    &signed.signature(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Loads and verifies the catalog: everything there is to list.
    ///
    /// # Errors
    /// As [`load_catalog`].
    pub async fn load(&self, client: &impl GenericClient) -> Result<Catalog, Error> {
        load_catalog(client, &self.registry, &[]).await
    }

    async fn master_key(
        &self,
        client: &impl GenericClient,
        name: &str,
    ) -> Result<MasterKeyLocation, Error> {
        let row = client
            .query_opt(
                "SELECT provider, key_path FROM aepg.master_keys WHERE name = $1",
                &[&name],
            )
            .await?
            .ok_or_else(|| Error::NotInCatalog {
                kind: "column master key",
                name: name.to_owned(),
            })?;
        Ok(MasterKeyLocation::new(
            row.try_get::<_, String>(0)?,
            row.try_get::<_, String>(1)?,
        ))
    }
}

/// The master key that signs records about column key `key_id`: the first
/// one it is (verifiably) wrapped under.
fn signer_of_key(catalog: &Catalog, key_id: u32) -> Result<MasterKeyLocation, Error> {
    catalog
        .column_keys
        .get(&key_id)
        .and_then(|values| values.first())
        .map(|value| value.unverified().master_key.clone())
        .ok_or_else(|| Error::NotInCatalog {
            kind: "column encryption key",
            name: key_id.to_string(),
        })
}

async fn check_column_assignable(
    client: &impl GenericClient,
    column: &ColumnName,
) -> Result<(), Error> {
    let refuse = |reason: String| Error::ColumnNotAssignable {
        column: column.to_string(),
        reason,
    };
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod), a.atttypid = 'aepg.ciphertext'::regtype
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
               AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')",
            &[&column.schema, &column.table, &column.column],
        )
        .await?
        .ok_or_else(|| refuse("no such column in a table".to_owned()))?;
    let type_name: String = row.try_get(0)?;
    if !row.try_get::<_, bool>(1)? {
        return Err(refuse(format!(
            "its type is {type_name}; an encrypted column must be declared as aepg.ciphertext"
        )));
    }
    // Identifiers are quoted here, not by the (untrusted) server.
    let has_values_query = format!(
        "SELECT EXISTS (SELECT 1 FROM {}.{} WHERE {} IS NOT NULL)",
        escape_identifier(&column.schema),
        escape_identifier(&column.table),
        escape_identifier(&column.column)
    );
    if client
        .query_one(&has_values_query, &[])
        .await?
        .try_get::<_, bool>(0)?
    {
        return Err(refuse(
            "it already holds values; encrypt existing data with a column migration".to_owned(),
        ));
    }
    Ok(())
}
