//! The end of a migration: clients are told to stop using the column (or
//! the columns, for a key rotation), and after a grace period one
//! transaction converts the last rows, swaps each column's values for its
//! shadow's and signs the new catalog.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::backfill::{set_lock_timeout, ColumnWork, Reporter};
use super::error::MigrationError;
use super::state::{MigrationState, Phase};
use super::{preflight, trigger, Direction, MigrationOptions, MigrationStage};
use crate::catalog::{
    CatalogAdmin, CatalogError, CatalogObject, Change, KeyRotationRow, Manifests,
};
use crate::names::ColumnName;
use crate::Error;

/// What the swap also changes in the catalog, besides each column's
/// assignment.
#[derive(Clone, Copy, Debug)]
pub(super) enum SettingChange {
    /// Nothing.
    None,
    /// The setting's record names its successor column key from now on, and
    /// the key it named is retired (a column key rotation).
    Rekey {
        /// The setting.
        setting_id: u32,
        /// Its key and the successor.
        rotation: KeyRotationRow,
    },
}

/// Publishes the swapping phase of every column in `works` (unless a run
/// before did), waits out the grace period and swaps them all in one
/// transaction, trying again while a table's lock is held by others.
/// Returns the catalog generation that the swap published.
pub(super) async fn finish(
    admin: &CatalogAdmin,
    client: &mut tokio_postgres::Client,
    works: &mut [ColumnWork<'_>],
    options: &MigrationOptions,
    reporter: &mut Reporter<'_>,
    setting_change: SettingChange,
) -> Result<u64, Error> {
    let rows_done = |works: &[ColumnWork<'_>]| {
        works
            .iter()
            .fold(0_i64, |sum, work| sum.saturating_add(work.state.rows_done))
    };
    reporter.rows_base = 0;
    if works.iter().any(|work| work.state.phase == Phase::Backfill) {
        // A new catalog generation: clients reload the catalog, in which
        // the columns are now ones they wait for.
        set_phases(admin, client, works, Phase::Swapping).await?;
    }
    loop {
        let mut left = Duration::ZERO;
        for work in works.iter() {
            let age = MigrationState::phase_age(&*client, work.converter.column).await?;
            left = left.max(options.grace.saturating_sub(age));
        }
        if left.is_zero() {
            break;
        }
        reporter.report(MigrationStage::Grace, rows_done(works));
        tokio::time::sleep(left).await;
    }
    let attempts = options.swap_attempts.max(1);
    let mut failure = None;
    for attempt in 1..=attempts {
        reporter.report(MigrationStage::Swap, rows_done(works));
        // A swap that fails rolls back the rows it converted.
        let counted: Vec<i64> = works.iter().map(|work| work.state.rows_done).collect();
        let outcome = swap(admin, client, works, options, setting_change).await;
        if outcome.is_err() {
            for (work, rows) in works.iter_mut().zip(counted) {
                work.state.rows_done = rows;
            }
        }
        match outcome {
            Ok(generation) => {
                for work in works.iter() {
                    tracing::info!(column = %work.converter.column, generation, "aepg migration swapped");
                }
                return Ok(generation);
            }
            Err(error) if lock_not_available(&error) && attempt < attempts => {
                tracing::debug!(attempt, "aepg swap: a table's lock is not available");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let error = match failure {
        Some(error) if !lock_not_available(&error) => error,
        Some(error) if works.is_empty() => error,
        _ => {
            let first = works.first().map(|work| work.converter.column.clone());
            MigrationError::LockTimeout {
                column: Box::new(first.unwrap_or_else(|| ColumnName::new("", "", ""))),
                table: works
                    .iter()
                    .map(|work| work.converter.names.table.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                attempts,
            }
            .into()
        }
    };
    // Clients may use the columns again until a re-run swaps: the rows
    // written meanwhile are caught up with then. Best effort: on a lost
    // connection the columns stay refused until the re-run.
    if let Err(revert) = set_phases(admin, client, works, Phase::Backfill).await {
        tracing::warn!(
            error = %revert,
            "aepg: the migrated columns stay refused to clients until the migration is run again"
        );
    }
    Err(error)
}

/// Moves every column of `works` to `phase`, in one catalog change.
pub(super) async fn set_phases(
    admin: &CatalogAdmin,
    client: &mut tokio_postgres::Client,
    works: &mut [ColumnWork<'_>],
    phase: Phase,
) -> Result<(), Error> {
    let change = Change::begin(client, admin, Manifests::Required).await?;
    for work in works.iter() {
        MigrationState::set_phase(&change.transaction, work.converter.column, phase).await?;
    }
    let signers = change.signers();
    change.commit(&admin.registry, signers).await?;
    for work in works.iter_mut() {
        work.state.phase = phase;
    }
    Ok(())
}

/// Whether the server gave up waiting for a lock (`lock_timeout`).
fn lock_not_available(error: &Error) -> bool {
    matches!(error, Error::Database(database)
        if database.as_db_error().is_some_and(|db| *db.code() == SqlState::LOCK_NOT_AVAILABLE))
}

/// The swap, in one transaction: lock the tables, convert the rows written
/// since the backfill, give each column the shadow's values and type, drop
/// the shadows and their triggers, sign the assignments (or delete them)
/// and the setting's change, and publish the new catalog generation.
async fn swap(
    admin: &CatalogAdmin,
    client: &mut tokio_postgres::Client,
    works: &mut [ColumnWork<'_>],
    options: &MigrationOptions,
    setting_change: SettingChange,
) -> Result<u64, Error> {
    let mut change = Change::begin(client, admin, Manifests::Required).await?;
    // Every signature first: no key store's latency under the tables' locks.
    for work in works.iter() {
        let converter = &work.converter;
        let column = converter.column;
        match converter.direction {
            Direction::Encrypt => {
                // The setting as the catalog is now: the one the cells were
                // made under, checked again under the catalog's lock.
                let setting = change
                    .catalog
                    .settings()
                    .get(&converter.setting.cell.setting_id)
                    .filter(|setting| setting.key_id == converter.setting.key_id)
                    .cloned()
                    .ok_or_else(|| CatalogError::NotFound {
                        object: CatalogObject::EncryptionSetting,
                        name: converter.setting.name.clone(),
                    })?;
                if change.catalog.assignments.contains_key(column) {
                    return Err(CatalogError::AlreadyExists {
                        object: CatalogObject::ColumnAssignment,
                        name: column.to_string(),
                    }
                    .into());
                }
                change.assign(&admin.registry, column, &setting).await?;
            }
            Direction::Decrypt => change.unassign(column).await?,
            Direction::Rekey => {}
        }
    }
    if let SettingChange::Rekey {
        setting_id,
        rotation,
    } = setting_change
    {
        let columns: Vec<&ColumnName> = works.iter().map(|work| work.converter.column).collect();
        change
            .finish_key_rotation(&admin.registry, setting_id, rotation, &columns)
            .await?;
    }
    let signers = change.signers();
    let manifests = change.sign_manifests(&admin.registry, signers).await?;
    set_lock_timeout(&change.transaction, options).await?;
    // One statement, in one order, for every table: two swaps never wait
    // for each other's locks in a cycle.
    let mut tables: Vec<&str> = works
        .iter()
        .map(|work| work.converter.names.table.as_str())
        .collect();
    tables.sort_unstable();
    tables.dedup();
    if !tables.is_empty() {
        change
            .transaction
            .batch_execute(&format!(
                "LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE",
                tables.join(", ")
            ))
            .await?;
    }
    for work in works.iter_mut() {
        swap_column(&change.transaction, work, options).await?;
    }
    change.commit_signed(manifests).await
}

/// One column's part of the swap, under its table's lock: what the
/// backfill relied on checked again, the last rows converted, the column
/// given the shadow's values and type, the shadow and trigger dropped and
/// the work state deleted.
async fn swap_column(
    transaction: &tokio_postgres::Transaction<'_>,
    work: &mut ColumnWork<'_>,
    options: &MigrationOptions,
) -> Result<(), Error> {
    let converter = &work.converter;
    let column = converter.column;
    let names = &converter.names;
    // The trigger fired for every write, nothing new depends on the
    // column's type, and the shadow holds only cells made by this run.
    trigger::check(transaction, column, converter.direction, names, false).await?;
    converter.forget_foreign_cells(transaction).await?;
    preflight::check_dependents(
        transaction,
        column,
        converter.direction,
        converter.setting,
        names.table_oid,
        names.attnum,
    )
    .await?;
    let batch = options.batch_size.max(1);
    let select_dirty = converter.dirty_rows_sql(batch);
    loop {
        let rows = transaction.query(&select_dirty, &[]).await?;
        let found = rows.len();
        let done = converter.convert(transaction, rows).await?;
        work.state.rows_done = work.state.rows_done.saturating_add(done);
        if found < batch {
            break;
        }
    }
    let new_type = match converter.direction {
        Direction::Encrypt | Direction::Rekey => "aepg.ciphertext",
        Direction::Decrypt => converter.shadow_type.as_str(),
    };
    transaction
        .batch_execute(&format!(
            "DROP TRIGGER {trigger} ON {table};
             DROP FUNCTION {function}();
             ALTER TABLE ONLY {table}
                 ALTER COLUMN {column} TYPE {new_type} USING {shadow}::{new_type},
                 DROP COLUMN {shadow};",
            trigger = names.trigger,
            table = names.table,
            function = names.function,
            column = names.column,
            shadow = names.shadow,
        ))
        .await?;
    MigrationState::delete(transaction, column).await?;
    Ok(())
}
