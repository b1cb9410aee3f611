//! Rotating a column master key: every column key under the old master key
//! gets a second wrapped value under the new one, and every record signed
//! by the old one a second signature by the new one ([`start`]); then the
//! old key's values, signatures, manifest and registration go
//! ([`complete`]). No cell is re-encrypted: the column keys stay the same.
//!
//! Each step is one catalog change (one transaction, one new generation):
//! killed at any point it leaves the catalog as it was, and re-running it
//! finishes it. Between the steps, clients holding either master key work.
//!
//! [`start`]: CatalogAdmin::start_master_key_rotation
//! [`complete`]: CatalogAdmin::complete_master_key_rotation

use aepg_keystore::MasterKeyLocation;
use tokio_postgres::GenericClient;

use super::admin::{sign_each, CatalogAdmin, Change, Manifests};
use super::error::{CatalogError, CatalogObject};
use super::load::column_key_label;
use super::model::{Catalog, EncryptionSetting};
use crate::names::ColumnName;
use crate::record::{ColumnAssignment, EncryptionSettingRecord, SignedRecord, WrappedColumnKey};
use crate::support::{id_from_sql, id_to_sql};
use crate::Error;

/// What a step of a master key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MasterKeyRotationReport {
    /// Column keys wrapped under the new master key by this step
    /// ([`start`](CatalogAdmin::start_master_key_rotation)), or whose value
    /// under the old master key it removed
    /// ([`complete`](CatalogAdmin::complete_master_key_rotation)).
    pub column_keys: usize,
    /// Settings and column assignments signed again.
    pub records_signed: usize,
    /// The catalog generation this step published; `None` when there was
    /// nothing left to do (a completed rotation run again).
    pub generation: Option<u64>,
}

impl CatalogAdmin {
    /// Starts rotating master key `from` to master key `to`, which must be
    /// registered ([`register_master_key`](Self::register_master_key)) at
    /// `to_location`, the caller's location for it: each column key under
    /// `from` is unwrapped and wrapped again under `to`, each setting and
    /// assignment of those keys is signed by both, and both sign the
    /// manifests. Clients holding either key keep working; no cell changes.
    /// Run again, it wraps the column keys created under `from` since.
    ///
    /// # Errors
    /// [`CatalogError::MasterKeyRotation`] saying why (the same key twice,
    /// an unregistered `to`, a column key already under a third master
    /// key); [`CatalogError::MasterKeyElsewhere`]; the key store's refusal
    /// (this administrator must hold both keys), naming the key.
    pub async fn start_master_key_rotation(
        &self,
        client: &mut impl GenericClient,
        from: &str,
        to: &str,
        to_location: &MasterKeyLocation,
    ) -> Result<MasterKeyRotationReport, Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        let refuse = |reason: String| refusal(from, to, reason);
        let from_location = registered(&change.catalog, from, to)?.clone();
        check_new_key(&change.catalog, from, to, to_location)?;
        // A column key rotation's record is signed by the master keys its
        // key had when it began: one begun under the old key alone would
        // not verify once `complete` removes it.
        let key_rotations: i64 = change
            .transaction
            .query_one("SELECT count(*) FROM aepg.key_rotations", &[])
            .await?
            .try_get(0)?;
        if key_rotations > 0 {
            return Err(refuse(
                "a column key rotation is under way (`aepg status` names it): complete it \
                 (`aepg rotate cek complete`) first"
                    .to_owned(),
            )
            .into());
        }
        if let Err(error) = self.registry.describe(&from_location).await {
            return Err(refuse(format!(
                "this administrator cannot use {from:?} ({error}): start unwraps the column \
                 keys under it, so it needs both master keys"
            ))
            .into());
        }
        let keys = keys_under(&change.catalog, from);
        // A row under the old key that does not verify would never be
        // rewrapped, and completing would leave its column key behind.
        for key_id in raw_keys_under(&change.transaction, from).await? {
            if !keys.contains(&key_id) {
                let what = column_key_label(key_id, from);
                let why = change
                    .catalog
                    .skipped
                    .iter()
                    .find(|skipped| skipped.what == what)
                    .map_or("its row cannot be read", |skipped| skipped.reason.as_str());
                return Err(refuse(format!(
                    "the value of column key {key_id} under {from:?} does not verify ({why}): \
                     repair the key store, or restore the row from a backup; do not delete it, \
                     it may be the key's only wrapping"
                ))
                .into());
            }
        }
        let mut column_keys = 0;
        for &key_id in &keys {
            let values = &change.catalog.column_keys[&key_id];
            let names: Vec<&str> = values
                .iter()
                .map(|value| value.unverified().master_key_name.as_str())
                .collect();
            if let Some(third) = names.iter().find(|name| **name != from && **name != to) {
                return Err(refuse(format!(
                    "column key {key_id} is also wrapped under master key {third:?}: complete \
                     that rotation first"
                ))
                .into());
            }
            if names.contains(&to) {
                continue;
            }
            let old = values
                .iter()
                .find(|value| value.unverified().master_key_name == from)
                .ok_or_else(|| refuse(format!("column key {key_id} has no value under it")))?;
            let column_key = old.open(&self.registry, &change.catalog.id()).await?;
            let sealed = SignedRecord::<WrappedColumnKey>::seal(
                &self.registry,
                &change.catalog.id(),
                to,
                to_location,
                key_id,
                &column_key,
            )
            .await?;
            // A row for this key and `to` that did not verify is replaced.
            change
                .transaction
                .execute(
                    "INSERT INTO aepg.column_key_values (key_id, master_key_name, record, signature)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key_id, master_key_name)
                     DO UPDATE SET record = EXCLUDED.record, signature = EXCLUDED.signature",
                    &[
                        &id_to_sql(key_id, "column key id")?,
                        &to,
                        &sealed.canonical_bytes(),
                        &sealed.signature(),
                    ],
                )
                .await?;
            column_keys += 1;
        }
        let signers = [&from_location, to_location];
        let records_signed = self
            .sign_records(&change, (from, to), &keys, &signers)
            .await?;
        let signers = change.signers();
        let generation = change.commit(&self.registry, signers).await?;
        Ok(MasterKeyRotationReport {
            column_keys,
            records_signed,
            generation: Some(generation),
        })
    }

    /// Completes rotating master key `from` to master key `to` (registered
    /// at `to_location`): once every column key under `from` is also under
    /// `to`, the settings and assignments are signed by `to` alone, and
    /// `from`'s wrapped values, manifest and registration are deleted.
    /// Afterwards a client needs only `to`, and `from` can be destroyed
    /// (and should leave the applications' trusted keys). Needs `to` only.
    /// Run again after it finished, it does nothing.
    ///
    /// # Errors
    /// [`CatalogError::MasterKeyRotation`] saying why (a column key not yet
    /// under `to`: run start again); [`CatalogError::MasterKeyElsewhere`];
    /// the key store's refusal.
    pub async fn complete_master_key_rotation(
        &self,
        client: &mut impl GenericClient,
        from: &str,
        to: &str,
        to_location: &MasterKeyLocation,
    ) -> Result<MasterKeyRotationReport, Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        let refuse = |reason: String| refusal(from, to, reason);
        check_new_key(&change.catalog, from, to, to_location)?;
        // Done only when no row names the old key any more: its
        // registration alone is an unsigned row the server could delete.
        let named: bool = change
            .transaction
            .query_one(
                "SELECT EXISTS (SELECT FROM aepg.master_keys WHERE name = $1)
                     OR EXISTS (SELECT FROM aepg.column_key_values WHERE master_key_name = $1)
                     OR EXISTS (SELECT FROM aepg.manifests WHERE master_key_name = $1)",
                &[&from],
            )
            .await?
            .try_get(0)?;
        if !named {
            return Ok(MasterKeyRotationReport {
                column_keys: 0,
                records_signed: 0,
                generation: None,
            });
        }
        // The old key's column keys by their rows too, not only those this
        // administrator can verify: it may no longer hold the old key.
        let mut keys = keys_under(&change.catalog, from);
        for key_id in raw_keys_under(&change.transaction, from).await? {
            if !keys.contains(&key_id) {
                keys.push(key_id);
            }
        }
        for &key_id in &keys {
            let names: Vec<&str> = change
                .catalog
                .column_keys
                .get(&key_id)
                .into_iter()
                .flatten()
                .map(|value| value.unverified().master_key_name.as_str())
                .collect();
            if !names.contains(&to) {
                return Err(refuse(format!(
                    "column key {key_id} is not wrapped under {to:?} yet (created since the \
                     rotation started?): run `aepg rotate cmk start` again"
                ))
                .into());
            }
            if let Some(third) = names.iter().find(|name| **name != from && **name != to) {
                return Err(refuse(format!(
                    "column key {key_id} is also wrapped under master key {third:?}: complete \
                     that rotation first"
                ))
                .into());
            }
        }
        check_nothing_left_behind(&change, from, to, &keys).await?;
        // Without the old key's manifest, the new key's must be current: a
        // change made since by an administrator without the new key would
        // otherwise be lost with the old manifest.
        let manifest = |name: &str| {
            change
                .catalog
                .manifests
                .iter()
                .find(|manifest| manifest.master_key_name == name)
                .map(|manifest| manifest.generation)
        };
        if manifest(from).is_none() {
            // The old manifest's generation by its row: unsigned, but only
            // ever a reason to refuse.
            let old_generation: Option<i64> = change
                .transaction
                .query_opt(
                    "SELECT generation FROM aepg.manifests WHERE master_key_name = $1",
                    &[&from],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            let newer = old_generation
                .and_then(|generation| u64::try_from(generation).ok())
                .is_some_and(|old| manifest(to).is_none_or(|new| new < old));
            if newer {
                return Err(refuse(format!(
                    "the manifest of {to:?} is older than {from:?}'s: a change was made without \
                     {to:?}, and only {from:?}'s manifest has it; complete with both master \
                     keys (keep {from:?} until complete succeeds)"
                ))
                .into());
            }
        }
        let records_signed = self
            .sign_records(&change, (from, to), &keys, &[to_location])
            .await?;
        // Rows under `from` that did not verify go too: nothing may keep
        // the old key registered.
        change
            .transaction
            .execute(
                "WITH values_gone AS (DELETE FROM aepg.column_key_values WHERE master_key_name = $1),
                      manifest_gone AS (DELETE FROM aepg.manifests WHERE master_key_name = $1)
                 SELECT 1",
                &[&from],
            )
            .await?;
        change
            .transaction
            .execute("DELETE FROM aepg.master_keys WHERE name = $1", &[&from])
            .await?;
        let mut signers = change.signers();
        signers.remove(from);
        let generation = change.commit(&self.registry, signers).await?;
        Ok(MasterKeyRotationReport {
            column_keys: keys.len(),
            records_signed,
            generation: Some(generation),
        })
    }

    /// Signs again, under each of `signers` (one or two master keys), every
    /// verified setting of the column keys `keys` and every verified
    /// assignment to those settings, rewriting their rows from the verified
    /// records. Returns how many records it signed.
    async fn sign_records(
        &self,
        change: &Change<'_>,
        (from, to): (&str, &str),
        keys: &[u32],
        signers: &[&MasterKeyLocation],
    ) -> Result<usize, Error> {
        let catalog = &change.catalog;
        let settings: Vec<&EncryptionSetting> = catalog
            .settings
            .values()
            .filter(|setting| keys.contains(&setting.key_id))
            .map(AsRef::as_ref)
            .collect();
        let mut signed = 0;
        for setting in &settings {
            let record = EncryptionSettingRecord {
                name: setting.name.clone(),
                setting: setting.cell,
                key_id: setting.key_id,
                named_type: setting.named_type.clone(),
            };
            let signatures = sign_each(&self.registry, catalog, &record, signers).await?;
            change
                .transaction
                .execute(
                    "UPDATE aepg.encryption_settings
                     SET record = $2, signature = $3, cosignature = $4 WHERE id = $1",
                    &[
                        &id_to_sql(setting.cell.setting_id, "setting id")?,
                        &signatures.canonical,
                        &signatures.signature(),
                        &signatures.cosignature(),
                    ],
                )
                .await?;
            signed += 1;
        }
        let assignments = catalog.assignments.iter().filter(|(_, setting_id)| {
            settings
                .iter()
                .any(|setting| setting.cell.setting_id == **setting_id)
        });
        for (column, &setting_id) in assignments {
            if !listed_as(catalog, column, setting_id) {
                return Err(refusal(
                    from,
                    to,
                    format!(
                        "the assignment of {column} to setting {setting_id} disagrees with the \
                         signed manifests (replayed or altered?): a rotation would sign it \
                         again, so repair it first (aepg verify, aepg column status)"
                    ),
                )
                .into());
            }
            let record = assignment_record(column, setting_id);
            let signatures = sign_each(&self.registry, catalog, &record, signers).await?;
            change
                .transaction
                .execute(
                    "UPDATE aepg.column_assignments
                     SET setting_id = $4, record = $5, signature = $6, cosignature = $7
                     WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                    &[
                        &column.schema,
                        &column.table,
                        &column.column,
                        &id_to_sql(setting_id, "setting id")?,
                        &signatures.canonical,
                        &signatures.signature(),
                        &signatures.cosignature(),
                    ],
                )
                .await?;
            signed += 1;
        }
        Ok(signed)
    }
}

/// The assignment record of `column` to `setting_id`.
fn assignment_record(column: &ColumnName, setting_id: u32) -> ColumnAssignment {
    ColumnAssignment {
        schema: column.schema.clone(),
        table: column.table.clone(),
        column: column.column.clone(),
        setting_id,
    }
}

/// The column keys with a verified value under master key `name`.
fn keys_under(catalog: &Catalog, name: &str) -> Vec<u32> {
    catalog
        .column_keys
        .iter()
        .filter(|(_, values)| {
            values
                .iter()
                .any(|value| value.unverified().master_key_name == name)
        })
        .map(|(key_id, _)| *key_id)
        .collect()
}

/// The column keys a row of `aepg.column_key_values` puts under master key
/// `name`, whether or not the row verifies.
async fn raw_keys_under(
    transaction: &tokio_postgres::Transaction<'_>,
    name: &str,
) -> Result<Vec<u32>, Error> {
    let mut keys = Vec::new();
    for row in transaction
        .query(
            "SELECT DISTINCT key_id FROM aepg.column_key_values
             WHERE master_key_name = $1 AND key_id IS NOT NULL",
            &[&name],
        )
        .await?
    {
        keys.push(id_from_sql(row.try_get(0)?, "column key id")?);
    }
    Ok(keys)
}

/// Whether the newest verified manifests (an older one is a master key's
/// that an earlier change could not sign) list `column` under
/// `setting_id`, and none under another setting.
fn listed_as(catalog: &Catalog, column: &ColumnName, setting_id: u32) -> bool {
    let newest = catalog
        .manifests
        .iter()
        .map(|manifest| manifest.generation)
        .max();
    let listings: Vec<Option<u32>> = catalog
        .manifests
        .iter()
        .filter(|manifest| Some(manifest.generation) == newest)
        .map(|manifest| manifest.columns.get(column).copied())
        .collect();
    !listings.is_empty() && listings.iter().all(|listed| *listed == Some(setting_id))
}

/// Before the old key goes, every setting row of the column keys `keys`
/// and every assignment row of those settings must be one this
/// administrator verified: a row it could not verify may be one only the
/// old key vouches for, lost with it. Rows are found by their (unsigned)
/// ids, so a row the server moved elsewhere is not missed either way:
/// its signed record no longer matches it, and the loader left it out.
async fn check_nothing_left_behind(
    change: &Change<'_>,
    from: &str,
    to: &str,
    keys: &[u32],
) -> Result<(), Error> {
    let catalog = &change.catalog;
    let sql_keys = keys
        .iter()
        .map(|key_id| id_to_sql(*key_id, "column key id"))
        .collect::<Result<Vec<i32>, _>>()?;
    let mut unverified = Vec::new();
    let settings = change
        .transaction
        .query(
            "SELECT id, name FROM aepg.encryption_settings WHERE key_id = ANY($1)",
            &[&sql_keys],
        )
        .await?;
    let mut setting_ids = Vec::new();
    for row in &settings {
        let id: Option<i32> = row.try_get(0)?;
        let name: Option<String> = row.try_get(1)?;
        setting_ids.extend(id);
        let verified = id
            .and_then(|id| u32::try_from(id).ok())
            .and_then(|id| catalog.settings.get(&id))
            .is_some_and(|setting| Some(&setting.name) == name.as_ref());
        if !verified {
            unverified.push(format!("encryption setting {name:?}"));
        }
    }
    let assignments = change
        .transaction
        .query(
            "SELECT schema_name, table_name, column_name, setting_id
             FROM aepg.column_assignments WHERE setting_id = ANY($1)",
            &[&setting_ids],
        )
        .await?;
    for row in &assignments {
        let column = ColumnName::new(
            row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
            row.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
            row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
        );
        let setting_id: Option<i32> = row.try_get(3)?;
        let verified = catalog.assignments.get(&column).copied()
            == setting_id.and_then(|id| u32::try_from(id).ok());
        if !verified {
            unverified.push(format!("assignment of {column}"));
        }
    }
    if unverified.is_empty() {
        return Ok(());
    }
    Err(refusal(
        from,
        to,
        format!(
            "{} of its column keys do not verify here, and {from:?} may be the only key that \
             vouches for them: {}; repair them (aepg verify says why), or complete with both \
             master keys",
            unverified.len(),
            unverified.join(", ")
        ),
    )
    .into())
}

/// The registered location of the master key being retired.
fn registered<'c>(
    catalog: &'c Catalog,
    from: &str,
    to: &str,
) -> Result<&'c MasterKeyLocation, Error> {
    catalog.master_keys.get(from).ok_or_else(|| {
        CatalogError::NotFound {
            object: CatalogObject::MasterKey,
            name: format!("{from:?} (to rotate to {to:?})"),
        }
        .into()
    })
}

/// Checks that the new master key differs from the old one and is
/// registered where the caller expects it.
fn check_new_key(
    catalog: &Catalog,
    from: &str,
    to: &str,
    to_location: &MasterKeyLocation,
) -> Result<(), Error> {
    if from == to {
        return Err(refusal(from, to, "they are the same master key".to_owned()).into());
    }
    match catalog.master_keys.get(to) {
        None => Err(refusal(
            from,
            to,
            format!("{to:?} is not registered: register it first (`aepg cmk register {to}`)"),
        )
        .into()),
        Some(registered) if registered != to_location => Err(CatalogError::MasterKeyElsewhere {
            name: to.to_owned(),
            registered: registered.clone(),
            expected: to_location.clone(),
        }
        .into()),
        Some(location) if catalog.master_keys.get(from) == Some(location) => Err(refusal(
            from,
            to,
            "both names are registered at the same location".to_owned(),
        )
        .into()),
        Some(_) => Ok(()),
    }
}

fn refusal(from: &str, to: &str, reason: String) -> CatalogError {
    CatalogError::MasterKeyRotation {
        from: from.to_owned(),
        to: to.to_owned(),
        reason,
    }
}
