//! Rotating a setting's column key: a new key under the same master keys,
//! every cell of the setting's columns re-encrypted under it in a shadow
//! column, batch by batch and resumably, while applications keep using
//! the old key; then one swap, for all the setting's columns at once,
//! after which the setting names the new key and the old one is retired
//! (`cek drop` deletes it once no cell names it).
//!
//! Until the swap every client reads and writes under the old key, so
//! equality on a deterministic column (`=`, `IN`, joins between columns of
//! the setting, `UNIQUE`) compares cells under one key only, and nothing is
//! missed; the swap changes every column and the setting's record in one
//! transaction. docs/DESIGN_NOTES.md ("Column key rotation") says why this
//! and not mixed keys.

use std::sync::Arc;

use tokio_postgres::GenericClient;

use postgres_protocol::escape::escape_identifier;

use super::backfill::{ColumnWork, Names, Reporter};
use super::state::Phase;
use super::swap::{self, SettingChange};
use super::{release_run_lock, take_run_lock, Direction, MigrationOptions, MigrationProgress};
use crate::catalog::{
    Catalog, CatalogAdmin, CatalogError, CatalogObject, Change, EncryptionSetting, KeyRotationRow,
    Manifests,
};
use crate::client::{Encryption, EncryptionConfig};
use crate::names::ColumnName;
use crate::support::id_to_sql;
use crate::Error;

/// What a step of a column key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRotationReport {
    /// The column key the setting named when the rotation began.
    pub from_key: u32,
    /// The column key that replaces it.
    pub to_key: u32,
    /// The table columns re-encrypted (the setting's views' columns hold no
    /// cells of their own).
    pub columns: Vec<ColumnName>,
    /// Cells re-encrypted, by this run and the runs it resumed.
    pub rows_converted: u64,
    /// Whether this step began the rotation (made the new key).
    pub began: bool,
    /// The catalog generation the swap published: `Some` only for the
    /// [`complete`](CatalogAdmin::complete_key_rotation) that swapped.
    pub generation: Option<u64>,
}

/// Where a column key rotation is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRotationStatus {
    /// The column key being replaced.
    pub from_key: u32,
    /// Its successor.
    pub to_key: u32,
    /// Each table column of the setting.
    pub columns: Vec<KeyRotationColumn>,
}

/// One column of a rotation under way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyRotationColumn {
    /// The column.
    pub column: ColumnName,
    /// `"not started"`, `"backfill"` or `"swapping"`.
    pub phase: &'static str,
    /// Cells re-encrypted so far.
    pub rows_done: u64,
    /// Cells left to re-encrypt (the application keeps writing: an
    /// estimate of the work left, exact when it is quiet).
    pub rows_left: u64,
}

impl CatalogAdmin {
    /// Begins, or resumes, the rotation of setting `setting`'s column key:
    /// makes the new key (under every master key of the current one) the
    /// first time, and re-encrypts every cell of the setting's table
    /// columns under it into shadow columns. Applications keep using the
    /// old key meanwhile; [`complete_key_rotation`](Self::complete_key_rotation)
    /// switches them over. Safe to kill and re-run at any point.
    ///
    /// `client` must be a connection of the tables' owner, used for nothing
    /// else meanwhile; `progress` is called after every batch.
    ///
    /// # Errors
    /// An unknown setting; a column of it that cannot be migrated in place
    /// ([`MigrationError`]) or is being encrypted or decrypted; a master key
    /// of the setting's key this administrator cannot use; a work state the
    /// verified catalog does not bear out ([`CatalogError::KeyRotation`]);
    /// the key store's refusal; database errors. Nothing is lost on any
    /// error: re-run the call.
    pub async fn start_key_rotation(
        &self,
        client: &mut tokio_postgres::Client,
        setting: &str,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<KeyRotationReport, Error> {
        self.rotate_key(client, setting, options, progress, false)
            .await
    }

    /// Finishes the rotation of setting `setting`'s column key: whatever
    /// [`start_key_rotation`](Self::start_key_rotation) left (or all of
    /// it, when it was not run), then the swap: clients wait for the
    /// setting's tables for the options' grace period, and one transaction
    /// converts the last rows, gives every column its re-encrypted cells,
    /// and signs the setting's record naming the new key. The old key is
    /// retired (no setting names it); [`drop_column_key`](Self::drop_column_key)
    /// deletes it once no cell does. Returns at once, with no generation,
    /// when no rotation of the setting is under way.
    ///
    /// # Errors
    /// As [`start_key_rotation`](Self::start_key_rotation), and
    /// [`MigrationError::LockTimeout`] when the tables stay locked by
    /// others: the columns are in use again as before, re-run the call.
    pub async fn complete_key_rotation(
        &self,
        client: &mut tokio_postgres::Client,
        setting: &str,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<KeyRotationReport, Error> {
        self.rotate_key(client, setting, options, progress, true)
            .await
    }

    /// The rotation of setting `setting`'s column key under way, if any.
    ///
    /// # Errors
    /// An unknown setting; a work state the verified catalog does not bear
    /// out; database errors.
    pub async fn key_rotation_status(
        &self,
        client: &tokio_postgres::Client,
        setting: &str,
    ) -> Result<Option<KeyRotationStatus>, Error> {
        let catalog = self.load(client).await?;
        let setting = setting_named(&catalog, setting)?;
        let Some(rotation) =
            KeyRotationRow::read(client, &self.registry, &catalog, &setting).await?
        else {
            require_no_leftovers(client, &setting).await?;
            return Ok(None);
        };
        let mut columns = Vec::new();
        for column in table_columns(client, &catalog, &setting).await? {
            let state = super::state::MigrationState::read(client, &column).await?;
            let (phase, rows_done, left) = match &state {
                Some(state) if state.direction == Direction::Rekey => {
                    // The shadow as named from the column, not as the
                    // (unsigned) work state says.
                    let names = Names::find(client, &column, state, &setting).await?;
                    (
                        state.phase.as_str(),
                        state.rows_done,
                        names.remaining(client).await?,
                    )
                }
                _ => {
                    let sql = format!(
                        "SELECT count(*) FROM ONLY {}.{} WHERE {} IS NOT NULL",
                        escape_identifier(&column.schema),
                        escape_identifier(&column.table),
                        escape_identifier(&column.column)
                    );
                    (
                        "not started",
                        0,
                        client.query_one(&sql, &[]).await?.try_get(0)?,
                    )
                }
            };
            columns.push(KeyRotationColumn {
                column,
                phase,
                rows_done: u64::try_from(rows_done).unwrap_or(0),
                rows_left: u64::try_from(left).unwrap_or(0),
            });
        }
        Ok(Some(KeyRotationStatus {
            from_key: rotation.from_key,
            to_key: rotation.to_key,
            columns,
        }))
    }

    async fn rotate_key(
        &self,
        client: &mut tokio_postgres::Client,
        setting_name: &str,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
        complete: bool,
    ) -> Result<KeyRotationReport, Error> {
        let catalog = self.load(&*client).await?;
        let setting = setting_named(&catalog, setting_name)?;
        let (catalog, setting, rotation, began) =
            match KeyRotationRow::read(&*client, &self.registry, &catalog, &setting).await? {
                Some(rotation) => (catalog, setting, rotation, false),
                None if complete => {
                    require_no_leftovers(&*client, &setting).await?;
                    return Ok(KeyRotationReport {
                        from_key: setting.key_id,
                        to_key: setting.key_id,
                        columns: Vec::new(),
                        rows_converted: 0,
                        began: false,
                        generation: None,
                    });
                }
                None => {
                    let rotation = self.begin_rotation(client, &setting).await?;
                    let catalog = self.load(&*client).await?;
                    let setting = setting_named(&catalog, setting_name)?;
                    (catalog, setting, rotation, true)
                }
            };
        let columns = table_columns(&*client, &catalog, &setting).await?;
        for (index, column) in columns.iter().enumerate() {
            if let Err(error) = take_run_lock(client, column, Direction::Rekey).await {
                for taken in &columns[..index] {
                    let _ = release_run_lock(client, taken).await;
                }
                return Err(error);
            }
        }
        let outcome = self
            .rotate_locked(
                client, &catalog, &setting, rotation, &columns, options, progress, complete,
            )
            .await;
        // The locks also go with the session, when this run is killed.
        for column in &columns {
            let _ = release_run_lock(client, column).await;
        }
        let (rows_converted, generation) = outcome?;
        Ok(KeyRotationReport {
            from_key: rotation.from_key,
            to_key: rotation.to_key,
            columns,
            rows_converted,
            began,
            generation,
        })
    }

    /// The first step, one catalog change: the new key, and the rotation's
    /// work state. Refused while a column of the setting is being
    /// encrypted or decrypted under it.
    async fn begin_rotation(
        &self,
        client: &mut tokio_postgres::Client,
        setting: &EncryptionSetting,
    ) -> Result<KeyRotationRow, Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        // The setting and its rotations as they are under the catalog's
        // lock: a concurrent run may have begun (or swapped) one since.
        let setting = &setting_named(&change.catalog, &setting.name)?;
        let begun: bool = change
            .transaction
            .query_one(
                "SELECT EXISTS (SELECT FROM aepg.key_rotations WHERE setting_id = $1)",
                &[&id_to_sql(setting.cell.setting_id, "setting id")?],
            )
            .await?
            .try_get(0)?;
        if begun {
            return Err(CatalogError::KeyRotation {
                setting: setting.name.clone(),
                reason: "another run began a rotation of it just now: run the command again"
                    .to_owned(),
            }
            .into());
        }
        let busy: Option<String> = change
            .transaction
            .query_one(
                "SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I.%I (%s)', schema_name,
                            table_name, column_name, direction), ', ')
                 FROM aepg.column_migrations
                 WHERE setting_id = $1 AND direction OPERATOR(pg_catalog.<>) 'rekey'",
                &[&id_to_sql(setting.cell.setting_id, "setting id")?],
            )
            .await?
            .try_get(0)?;
        if let Some(busy) = busy {
            return Err(CatalogError::KeyRotation {
                setting: setting.name.clone(),
                reason: format!(
                    "columns are being migrated under it: {busy}; finish (or abort) those first"
                ),
            }
            .into());
        }
        let rotation = change.begin_key_rotation(&self.registry, setting).await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        tracing::info!(
            setting = %setting.name,
            from_key = rotation.from_key,
            to_key = rotation.to_key,
            "aepg column key rotation started"
        );
        Ok(rotation)
    }

    /// The backfill of every column, and for `complete` the swap, under
    /// the columns' run locks. Returns the cells converted and the swap's
    /// generation.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_locked(
        &self,
        client: &mut tokio_postgres::Client,
        catalog: &Catalog,
        setting: &Arc<EncryptionSetting>,
        rotation: KeyRotationRow,
        columns: &[ColumnName],
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
        complete: bool,
    ) -> Result<(u64, Option<u64>), Error> {
        let encryption = Encryption::new(EncryptionConfig::new(self.registry.clone()));
        let catalog = Arc::new(catalog.clone());
        // Both keys first: a key store that says no stops the run before it
        // changed anything.
        let key = |key_id: u32| {
            let encryption = &encryption;
            let catalog = &catalog;
            async move {
                encryption.cipher(catalog, key_id).await.map_err(|source| {
                    CatalogError::KeyRotation {
                        setting: setting.name.clone(),
                        reason: format!("column key {key_id} cannot be used: {source}"),
                    }
                })
            }
        };
        let ciphers = (key(rotation.from_key).await?, key(rotation.to_key).await?);
        let mut works = Vec::with_capacity(columns.len());
        for column in columns {
            let (work, _) = ColumnWork::open(
                client,
                column,
                Direction::Rekey,
                setting,
                &catalog,
                &encryption,
                (ciphers.0.clone(), Some(ciphers.1.clone())),
                options,
            )
            .await?;
            works.push(work);
        }
        let mut reporter = Reporter {
            callback: progress,
            rows_total: 0,
            rows_base: 0,
        };
        for work in &works {
            reporter.rows_total = reporter
                .rows_total
                .saturating_add(work.state.rows_done)
                .saturating_add(work.remaining(&*client).await?);
        }
        let swapping = works.iter().any(|work| work.state.phase == Phase::Swapping);
        let backfilling = works.iter().any(|work| work.state.phase == Phase::Backfill);
        if swapping && (!complete || backfilling) {
            // A `complete` stopped in its grace or swap: clients wait for
            // these tables until a swap, which this step does not do (or
            // does only after a backfill of another column).
            swap::set_phases(self, client, &mut works, Phase::Backfill).await?;
        }
        for work in &mut works {
            if work.state.phase == Phase::Backfill {
                work.backfill(client, options, &mut reporter).await?;
            }
            reporter.rows_base = reporter.rows_base.saturating_add(work.state.rows_done);
        }
        let generation = if complete {
            Some(
                swap::finish(
                    self,
                    client,
                    &mut works,
                    options,
                    &mut reporter,
                    SettingChange::Rekey {
                        setting_id: setting.cell.setting_id,
                        rotation,
                    },
                )
                .await?,
            )
        } else {
            None
        };
        let rows = works
            .iter()
            .fold(0_i64, |sum, work| sum.saturating_add(work.state.rows_done));
        Ok((u64::try_from(rows).unwrap_or(0), generation))
    }
}

/// The setting named `name` in the verified catalog.
fn setting_named(catalog: &Catalog, name: &str) -> Result<Arc<EncryptionSetting>, Error> {
    catalog.setting_by_name(name).cloned().ok_or_else(|| {
        CatalogError::NotFound {
            object: CatalogObject::EncryptionSetting,
            name: name.to_owned(),
        }
        .into()
    })
}

/// The columns a verified assignment puts under `setting` that hold cells
/// of their own: all but views' (a materialized view's, or a partitioned
/// table's, is refused by the migration's checks).
async fn table_columns(
    client: &impl GenericClient,
    catalog: &Catalog,
    setting: &EncryptionSetting,
) -> Result<Vec<ColumnName>, Error> {
    let mut columns = Vec::new();
    for (column, setting_id) in &catalog.assignments {
        if *setting_id != setting.cell.setting_id {
            continue;
        }
        let is_view: bool = client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                     WHERE n.nspname OPERATOR(pg_catalog.=) $1
                       AND c.relname OPERATOR(pg_catalog.=) $2
                       AND c.relkind OPERATOR(pg_catalog.=) 'v')",
                &[&column.schema, &column.table],
            )
            .await?
            .try_get(0)?;
        if !is_view {
            columns.push(column.clone());
        }
    }
    Ok(columns)
}

/// Refuses a setting with re-encryptions under way but no rotation
/// recorded (its row deleted): they are not finished or undone silently.
async fn require_no_leftovers(
    client: &impl GenericClient,
    setting: &EncryptionSetting,
) -> Result<(), Error> {
    let columns: Option<String> = client
        .query_one(
            "SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I.%I', schema_name, table_name,
                        column_name), ', ')
             FROM aepg.column_migrations
             WHERE setting_id = $1 AND direction OPERATOR(pg_catalog.=) 'rekey'",
            &[&id_to_sql(setting.cell.setting_id, "setting id")?],
        )
        .await?
        .try_get(0)?;
    match columns {
        None => Ok(()),
        Some(columns) => Err(CatalogError::KeyRotation {
            setting: setting.name.clone(),
            reason: format!(
                "columns {columns} are being re-encrypted, but no rotation is recorded: run \
                 `aepg rotate cek start` (it makes a new key and re-encrypts them), or \
                 `aepg column abort` for each"
            ),
        }
        .into()),
    }
}
