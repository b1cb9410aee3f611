//! The catalog's part of a column key rotation: the setting's successor
//! key, created under the master keys of the key it replaces, with the
//! rotation's signed record; and the swap's change of the setting's signed
//! record to name the new key, which retires the old one (no setting names
//! it; `cek drop` deletes it once no cell does). The cells are re-encrypted
//! by the migration machinery
//! ([`CatalogAdmin::complete_key_rotation`](super::CatalogAdmin::complete_key_rotation)).

use aepg_keystore::{KeyStoreRegistry, MasterKeyLocation};
use tokio_postgres::GenericClient;

use super::admin::{require_signers, sign_under_key, signers_of_key, Change};
use super::error::{CatalogError, CatalogObject};
use super::model::{Catalog, EncryptionSetting};
use crate::names::ColumnName;
use crate::record::{EncryptionSettingRecord, KeyRotationRecord, SignedRecord};
use crate::support::id_to_sql;
use crate::Error;

/// A rotation under way, as its signed record in `aepg.key_rotations`
/// says, verified ([`KeyRotationRow::read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRotationRow {
    /// The key the setting named when the rotation began.
    pub(crate) from_key: u32,
    /// Its successor.
    pub(crate) to_key: u32,
}

impl KeyRotationRow {
    /// The rotation of `setting` under way, if any: its record verified
    /// under a master key of the setting's key, and checked against the
    /// catalog ([`check_successor`]).
    ///
    /// # Errors
    /// [`CatalogError::KeyRotation`] for a row whose record does not verify
    /// or names another setting or key; the key store's refusal; database
    /// errors.
    pub(crate) async fn read(
        client: &impl GenericClient,
        registry: &KeyStoreRegistry,
        catalog: &Catalog,
        setting: &EncryptionSetting,
    ) -> Result<Option<Self>, Error> {
        let Some(row) = client
            .query_opt(
                "SELECT record, signature, cosignature FROM aepg.key_rotations
                 WHERE setting_id = $1",
                &[&id_to_sql(setting.cell.setting_id, "setting id")?],
            )
            .await?
        else {
            return Ok(None);
        };
        let refuse = |reason: String| CatalogError::KeyRotation {
            setting: setting.name.clone(),
            reason: format!("{reason}; {RESET}"),
        };
        let canonical: Vec<u8> = row.try_get(0)?;
        let signatures = [row.try_get::<_, Vec<u8>>(1)?]
            .into_iter()
            .chain(row.try_get::<_, Option<Vec<u8>>>(2)?);
        let mut verified = None;
        let mut failures = Vec::new();
        for signature in signatures {
            let signed = SignedRecord::<KeyRotationRecord>::decode(&canonical, signature)
                .map_err(|error| refuse(format!("its record is malformed ({error})")))?;
            for (_, master_key) in signers_of_key(catalog, setting.key_id) {
                match signed.verify(registry, master_key, &catalog.id()).await {
                    Ok(record) => {
                        verified = Some(record.clone());
                        break;
                    }
                    Err(error) => failures.push(error.to_string()),
                }
            }
            if verified.is_some() {
                break;
            }
        }
        let Some(record) = verified else {
            return Err(refuse(format!(
                "its record does not verify under a master key of column key {} ({})",
                setting.key_id,
                failures.join("; ")
            ))
            .into());
        };
        if record.setting_id != setting.cell.setting_id {
            return Err(refuse(format!(
                "its record is of setting {}, not this one",
                record.setting_id
            ))
            .into());
        }
        let rotation = Self {
            from_key: record.from_key,
            to_key: record.to_key,
        };
        check_successor(catalog, setting, rotation)?;
        Ok(Some(rotation))
    }
}

/// What to do about a rotation's work state that does not check out.
const RESET: &str = "delete the setting's row from aepg.key_rotations and run `aepg rotate cek \
                     start` again: it makes a new key and re-encrypts what needs it";

/// The master keys of column key `key_id`, by name and location, sorted.
fn master_keys_of(catalog: &Catalog, key_id: u32) -> Vec<(&str, &MasterKeyLocation)> {
    let mut keys = signers_of_key(catalog, key_id);
    keys.sort_by(|a, b| a.0.cmp(b.0));
    keys
}

/// Checks that `rotation`, whose record verified, still holds for
/// `setting`: the setting names its old key (a record of an earlier
/// rotation does not), and the new key is a verified key under the same
/// master keys that no setting names yet.
///
/// # Errors
/// [`CatalogError::KeyRotation`] saying what is wrong and what to do.
fn check_successor(
    catalog: &Catalog,
    setting: &EncryptionSetting,
    rotation: KeyRotationRow,
) -> Result<(), CatalogError> {
    let refuse = |reason: String| CatalogError::KeyRotation {
        setting: setting.name.clone(),
        reason: format!("{reason}; {RESET}"),
    };
    if setting.key_id != rotation.from_key {
        return Err(refuse(format!(
            "the rotation replaces column key {}, but the setting's signed record names key {}",
            rotation.from_key, setting.key_id
        )));
    }
    if !catalog.column_keys.contains_key(&rotation.to_key) {
        return Err(refuse(format!(
            "the new column key {} has no wrapped value this administrator can verify",
            rotation.to_key
        )));
    }
    if master_keys_of(catalog, rotation.to_key) != master_keys_of(catalog, rotation.from_key) {
        return Err(refuse(format!(
            "the new column key {} is not wrapped under the master keys of key {}",
            rotation.to_key, rotation.from_key
        )));
    }
    if let Some(user) = catalog
        .settings()
        .values()
        .find(|other| other.key_id == rotation.to_key)
    {
        return Err(refuse(format!(
            "the new column key {} is the key of {} already",
            rotation.to_key,
            user.label()
        )));
    }
    Ok(())
}

impl Change<'_> {
    /// Begins the rotation of `setting`'s column key: creates its successor
    /// under every master key of the current key (so that whoever can use
    /// the one can use the other, and the setting's assignments stay
    /// verifiable) and records the rotation, signed by those master keys.
    /// Returns it.
    ///
    /// # Errors
    /// A master key of the current key this administrator cannot use
    /// ([`CatalogError::SignersMissing`]); the key store's refusal.
    pub(crate) async fn begin_key_rotation(
        &self,
        registry: &KeyStoreRegistry,
        setting: &EncryptionSetting,
    ) -> Result<KeyRotationRow, Error> {
        let master_keys = require_signers(&self.transaction, &self.catalog, setting.key_id).await?;
        if master_keys.is_empty() {
            return Err(CatalogError::NotFound {
                object: CatalogObject::ColumnKey,
                name: setting.key_id.to_string(),
            }
            .into());
        }
        let to_key = self.new_column_key(registry, &master_keys).await?;
        let record = KeyRotationRecord {
            setting_id: setting.cell.setting_id,
            from_key: setting.key_id,
            to_key,
        };
        let signed = sign_under_key(
            &self.transaction,
            registry,
            &self.catalog,
            setting.key_id,
            &record,
        )
        .await?;
        self.transaction
            .execute(
                "INSERT INTO aepg.key_rotations
                     (setting_id, from_key_id, to_key_id, record, signature, cosignature)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &id_to_sql(setting.cell.setting_id, "setting id")?,
                    &id_to_sql(setting.key_id, "column key id")?,
                    &id_to_sql(to_key, "column key id")?,
                    &signed.canonical,
                    &signed.signature(),
                    &signed.cosignature(),
                ],
            )
            .await?;
        Ok(KeyRotationRow {
            from_key: setting.key_id,
            to_key,
        })
    }

    /// The swap's change to the catalog: setting `setting_id`, whose
    /// `columns` were re-encrypted under `rotation.to_key`, names that key
    /// from now on (its record signed again), and the rotation is over. The
    /// old key is retired, not deleted: a client that had not heard of the
    /// swap may have written a last cell under it, which `cek drop` finds.
    ///
    /// # Errors
    /// [`CatalogError::KeyRotation`] for a rotation that no longer checks
    /// out, or a column assigned to the setting (a table's, not a view's)
    /// that is not among `columns`: its cells would stay under the old key.
    pub(crate) async fn finish_key_rotation(
        &mut self,
        registry: &KeyStoreRegistry,
        setting_id: u32,
        rotation: KeyRotationRow,
        columns: &[&ColumnName],
    ) -> Result<(), Error> {
        let setting = self
            .catalog
            .settings()
            .get(&setting_id)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound {
                object: CatalogObject::EncryptionSetting,
                name: setting_id.to_string(),
            })?;
        // Read and verified again under the catalog's lock.
        if KeyRotationRow::read(&self.transaction, registry, &self.catalog, &setting).await?
            != Some(rotation)
        {
            return Err(CatalogError::Unsettled.into());
        }
        let sql_setting = id_to_sql(setting_id, "setting id")?;
        // Every row, verified or not: a column the server assigned without a
        // signature is not re-encrypted, and is worth a look.
        let assigned = self
            .transaction
            .query(
                "SELECT a.schema_name, a.table_name, a.column_name,
                        COALESCE(c.relkind OPERATOR(pg_catalog.=) 'v', false)
                 FROM aepg.column_assignments a
                 LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) a.schema_name
                 LEFT JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
                  AND c.relname OPERATOR(pg_catalog.=) a.table_name
                 WHERE a.setting_id = $1",
                &[&sql_setting],
            )
            .await?;
        for row in assigned {
            let column = ColumnName::new(
                row.try_get::<_, String>(0)?,
                row.try_get::<_, String>(1)?,
                row.try_get::<_, String>(2)?,
            );
            let is_view: bool = row.try_get(3)?;
            if !is_view && !columns.contains(&&column) {
                let reason = if self.catalog.assignments.contains_key(&column) {
                    format!(
                        "column {column} is assigned to it but was not re-encrypted (assigned \
                         since the rotation's run began?): run `aepg rotate cek complete` again"
                    )
                } else {
                    format!(
                        "an assignment row puts column {column} under it, but does not verify \
                         (`aepg verify` says why): its cells would stay under the old key; \
                         repair or delete that row first"
                    )
                };
                return Err(CatalogError::KeyRotation {
                    setting: setting.name.clone(),
                    reason,
                }
                .into());
            }
        }
        let record = EncryptionSettingRecord {
            name: setting.name.clone(),
            setting: setting.cell,
            key_id: rotation.to_key,
            named_type: setting.named_type.clone(),
        };
        let signed = sign_under_key(
            &self.transaction,
            registry,
            &self.catalog,
            rotation.to_key,
            &record,
        )
        .await?;
        let from_key = id_to_sql(rotation.from_key, "column key id")?;
        let updated = self
            .transaction
            .execute(
                "UPDATE aepg.encryption_settings
                 SET key_id = $2, record = $3, signature = $4, cosignature = $5
                 WHERE id = $1 AND key_id = $6",
                &[
                    &sql_setting,
                    &id_to_sql(rotation.to_key, "column key id")?,
                    &signed.canonical,
                    &signed.signature(),
                    &signed.cosignature(),
                    &from_key,
                ],
            )
            .await?;
        if updated != 1 {
            return Err(CatalogError::Unsettled.into());
        }
        self.transaction
            .execute(
                "DELETE FROM aepg.key_rotations WHERE setting_id = $1",
                &[&sql_setting],
            )
            .await?;
        Ok(())
    }
}
