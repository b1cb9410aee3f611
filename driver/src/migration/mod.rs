//! Column migrations: encrypting a column that holds plaintext, or
//! decrypting an encrypted one, in place and online; and rotating a
//! setting's column key, which re-encrypts all its columns the same way
//! and swaps them in one transaction ([`CatalogAdmin::start_key_rotation`]).
//!
//! A migration adds a shadow column and a trigger, fills the shadow column
//! batch by batch (the trigger clears a row's shadow value whenever the
//! column changes under it, so a catch-up pass finds the rows written
//! meanwhile), then swaps: clients are told to stop using the column, and
//! after a grace period one short transaction takes the table's lock,
//! converts the last rows, changes the column's type to the shadow's
//! values, drops the shadow, and signs the new catalog. Every step is
//! recorded in `aepg.column_migrations`, so a run that was killed is
//! resumed by running it again. `docs/OPERATIONS.md` is the runbook.

mod abort;
mod backfill;
mod error;
mod key_rotation;
mod preflight;
mod raw;
mod state;
mod swap;
mod trigger;

use std::sync::Arc;
use std::time::Duration;

pub use error::MigrationError;
pub use key_rotation::{KeyRotationColumn, KeyRotationReport, KeyRotationStatus};

use crate::catalog::{Catalog, CatalogAdmin, CatalogError, CatalogObject, EncryptionSetting};
use crate::client::{Encryption, EncryptionConfig};
use crate::names::ColumnName;
use crate::Error;
use backfill::{ColumnWork, Reporter};
use state::{MigrationState, Phase};
use swap::SettingChange;

/// Which way a column is migrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// Plaintext values become cells of a setting.
    Encrypt,
    /// Cells become plaintext values again.
    Decrypt,
    /// Cells under the setting's column key become cells under its
    /// successor (a column key rotation, [`CatalogAdmin::complete_key_rotation`]).
    Rekey,
}

impl Direction {
    /// `"encrypt"`, `"decrypt"` or `"rekey"`, as the work state records it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Rekey => "rekey",
        }
    }

    fn past_participle(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypted",
            Self::Decrypt => "decrypted",
            Self::Rekey => "re-encrypted under a new column key",
        }
    }
}

/// How a migration runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationOptions {
    /// Rows converted per transaction (default 5,000).
    pub batch_size: usize,
    /// How long clients are given, after they are told the column is being
    /// swapped, before the swap (default 5 s). Clients that hear catalog
    /// announcements stop at once; a client that does not (its connection
    /// not driven by aepg) learns it at its next catalog check, so raise
    /// this to its catalog TTL.
    pub grace: Duration,
    /// How long the swap waits for the table's lock before it lets go and
    /// tries again (default 2 s): a swap queued behind a long transaction
    /// would block every other session on the table meanwhile.
    pub lock_timeout: Duration,
    /// How many times the swap tries to take the lock (default 10).
    pub swap_attempts: u32,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            grace: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
            swap_attempts: 10,
        }
    }
}

impl MigrationOptions {
    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Sets [`grace`](Self::grace).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`lock_timeout`](Self::lock_timeout).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets [`swap_attempts`](Self::swap_attempts) (at least 1).
    pub fn swap_attempts(mut self, attempts: u32) -> Self {
        self.swap_attempts = attempts.max(1);
        self
    }
}

/// The stage a migration is in, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationStage {
    /// Converting rows in the order they lie in the table.
    Backfill,
    /// Converting the rows written since they were passed.
    CatchUp,
    /// Clients were told to stop using the column; waiting out the grace.
    Grace,
    /// The final transaction.
    Swap,
}

impl MigrationStage {
    /// `"backfill"`, `"catch-up"`, `"grace"`, `"swap"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backfill => "backfill",
            Self::CatchUp => "catch-up",
            Self::Grace => "grace",
            Self::Swap => "swap",
        }
    }
}

/// Where a migration is, reported after every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationProgress {
    /// The stage.
    pub stage: MigrationStage,
    /// Rows converted so far, by this run and the runs it resumes.
    pub rows_done: u64,
    /// Rows there were to convert when this run began, plus those done
    /// before it (an estimate: the application keeps writing).
    pub rows_total: u64,
}

/// What a migration did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Rows converted, by this run and the runs it resumed.
    pub rows_converted: u64,
    /// Whether this run resumed one that had stopped.
    pub resumed: bool,
    /// Whether the column was migrated already (nothing was done).
    pub already_done: bool,
    /// The catalog generation the swap published (0 when already done).
    pub generation: u64,
}

impl MigrationReport {
    fn already_done() -> Self {
        Self {
            rows_converted: 0,
            resumed: false,
            already_done: true,
            generation: 0,
        }
    }
}

impl CatalogAdmin {
    /// Encrypts `column`, a column of plaintext values of `setting`'s type,
    /// in place, while applications keep reading and writing it (see the
    /// [module](crate::migration) documentation). Resumes a run that
    /// stopped; returns at once for a column already encrypted under
    /// `setting`.
    ///
    /// `client` must be a connection of the table's owner, used for
    /// nothing else meanwhile; `progress` is called after every batch.
    ///
    /// # Errors
    /// [`MigrationError`] for a column that cannot be migrated (its type,
    /// dependent objects, another migration of it); the key store's
    /// refusal; database errors. Nothing is lost on any error: re-run the
    /// call.
    pub async fn encrypt_column(
        &self,
        client: &mut tokio_postgres::Client,
        column: &ColumnName,
        setting: &str,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<MigrationReport, Error> {
        let catalog = self.load(&*client).await?;
        let setting =
            catalog
                .setting_by_name(setting)
                .cloned()
                .ok_or_else(|| CatalogError::NotFound {
                    object: CatalogObject::EncryptionSetting,
                    name: setting.to_owned(),
                })?;
        // The swap signs the assignment under every master key of the
        // setting's column key: refused now rather than after the backfill.
        crate::catalog::require_signers(&*client, &catalog, setting.key_id).await?;
        // Its cells would be made under the key the rotation replaces, in a
        // column the rotation's swap does not re-encrypt.
        let rotating: bool = client
            .query_one(
                "SELECT EXISTS (SELECT FROM aepg.key_rotations WHERE setting_id = $1)",
                &[&crate::support::id_to_sql(
                    setting.cell.setting_id,
                    "setting id",
                )?],
            )
            .await?
            .try_get(0)?;
        if rotating {
            return Err(CatalogError::KeyRotation {
                setting: setting.name.clone(),
                reason: format!(
                    "its key is being rotated, so no column is encrypted under it until \
                     `aepg rotate cek complete --setting {}` has run",
                    setting.name
                ),
            }
            .into());
        }
        if let Some(existing) = catalog.assignments.get(column) {
            if MigrationState::read(&*client, column).await?.is_none() {
                return if *existing == setting.cell.setting_id {
                    Ok(MigrationReport::already_done())
                } else {
                    Err(CatalogError::AlreadyExists {
                        object: CatalogObject::ColumnAssignment,
                        name: column.to_string(),
                    }
                    .into())
                };
            }
        }
        self.migrate(
            client,
            catalog,
            column,
            Direction::Encrypt,
            setting,
            options,
            progress,
        )
        .await
    }

    /// Decrypts `column`, an encrypted column, in place: the reverse of
    /// [`encrypt_column`](Self::encrypt_column), after which the column
    /// holds plaintext values of its setting's type and is no longer in the
    /// catalog. Returns at once for a column that is not encrypted and has
    /// no migration under way.
    ///
    /// # Errors
    /// As [`encrypt_column`](Self::encrypt_column); a cell that does not
    /// decrypt stops the migration and names its row.
    pub async fn decrypt_column(
        &self,
        client: &mut tokio_postgres::Client,
        column: &ColumnName,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<MigrationReport, Error> {
        let catalog = self.load(&*client).await?;
        let under_way = MigrationState::read(&*client, column).await?;
        let setting_id = match (catalog.assignments.get(column), &under_way) {
            (Some(setting_id), _) => *setting_id,
            (None, None) => return Ok(MigrationReport::already_done()),
            // The work state is unsigned: it never says how to decrypt.
            (None, Some(_)) => {
                return Err(MigrationError::Damaged {
                    column: Box::new(column.clone()),
                    reason: "a migration is recorded, but no verified assignment makes the column \
                             encrypted; run `aepg column abort`"
                        .to_owned(),
                }
                .into())
            }
        };
        let setting = catalog
            .settings()
            .get(&setting_id)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound {
                object: CatalogObject::EncryptionSetting,
                name: setting_id.to_string(),
            })?;
        self.migrate(
            client,
            catalog,
            column,
            Direction::Decrypt,
            setting,
            options,
            progress,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn migrate(
        &self,
        client: &mut tokio_postgres::Client,
        catalog: Catalog,
        column: &ColumnName,
        direction: Direction,
        setting: Arc<EncryptionSetting>,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<MigrationReport, Error> {
        take_run_lock(client, column, direction).await?;
        let outcome = self
            .run_migration(
                client, catalog, column, direction, setting, options, progress,
            )
            .await;
        // The lock also goes with the session, when this run is killed.
        let _ = release_run_lock(client, column).await;
        outcome
    }

    /// [`migrate`](Self::migrate), under the run's lock.
    #[allow(clippy::too_many_arguments)]
    async fn run_migration(
        &self,
        client: &mut tokio_postgres::Client,
        catalog: Catalog,
        column: &ColumnName,
        direction: Direction,
        setting: Arc<EncryptionSetting>,
        options: &MigrationOptions,
        progress: &mut (dyn FnMut(&MigrationProgress) + Send),
    ) -> Result<MigrationReport, Error> {
        let encryption = Encryption::new(EncryptionConfig::new(self.registry.clone()));
        let catalog = Arc::new(catalog);
        // The key first: a key store that says no stops the run before it
        // changed anything.
        let cipher = encryption
            .cipher(&catalog, setting.key_id)
            .await
            .map_err(|source| Error::Encrypt {
                column: Box::new(column.clone()),
                source,
            })?;
        let (mut work, resumed) = ColumnWork::open(
            client,
            column,
            direction,
            &setting,
            &catalog,
            &encryption,
            (cipher, None),
            options,
        )
        .await?;
        let mut reporter = Reporter {
            callback: progress,
            rows_total: 0,
            rows_base: 0,
        };
        if work.state.phase == Phase::Backfill {
            reporter.rows_total = work
                .state
                .rows_done
                .saturating_add(work.remaining(&*client).await?);
            work.backfill(client, options, &mut reporter).await?;
        }
        let mut works = [work];
        let generation = swap::finish(
            self,
            client,
            &mut works,
            options,
            &mut reporter,
            SettingChange::None,
        )
        .await?;
        let [work] = works;
        Ok(MigrationReport {
            rows_converted: u64::try_from(work.state.rows_done).unwrap_or(0),
            resumed,
            already_done: false,
            generation,
        })
    }
}

/// A stopped migration may be resumed only by the same command.
pub(super) fn check_resumable(
    state: &MigrationState,
    column: &ColumnName,
    direction: Direction,
    setting: &EncryptionSetting,
) -> Result<(), Error> {
    if state.direction == direction && state.setting_id == setting.cell.setting_id {
        return Ok(());
    }
    let found = match state.direction {
        Direction::Encrypt => format!("encrypted under setting {}", state.setting_id),
        Direction::Decrypt => "decrypted".to_owned(),
        Direction::Rekey => format!(
            "re-encrypted under a new column key (a rotation of setting {}: `aepg rotate cek`)",
            state.setting_id
        ),
    };
    Err(MigrationError::Conflict {
        column: Box::new(column.clone()),
        found,
    }
    .into())
}

/// The advisory lock's first key: `aepg` in ASCII.
const RUN_LOCK_CLASS: i32 = 0x6165_7067;

/// Takes the session lock that keeps two runs from migrating one column at
/// once.
async fn take_run_lock(
    client: &tokio_postgres::Client,
    column: &ColumnName,
    direction: Direction,
) -> Result<(), Error> {
    let taken: bool = client
        .query_one(
            "SELECT pg_catalog.pg_try_advisory_lock($1, pg_catalog.hashtext($2))",
            &[&RUN_LOCK_CLASS, &column.to_string()],
        )
        .await?
        .try_get(0)?;
    if taken {
        return Ok(());
    }
    Err(MigrationError::Conflict {
        column: Box::new(column.clone()),
        found: format!("{} by another run right now", direction.past_participle()),
    }
    .into())
}

async fn release_run_lock(
    client: &tokio_postgres::Client,
    column: &ColumnName,
) -> Result<(), Error> {
    client
        .execute(
            "SELECT pg_catalog.pg_advisory_unlock($1, pg_catalog.hashtext($2))",
            &[&RUN_LOCK_CLASS, &column.to_string()],
        )
        .await?;
    Ok(())
}
