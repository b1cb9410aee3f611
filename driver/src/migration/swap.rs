//! The end of a migration: clients are told to stop using the column, and
//! after a grace period one transaction converts the last rows, swaps the
//! column's values for its shadow's and signs the new catalog.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::backfill::{set_lock_timeout, Backfill};
use super::error::MigrationError;
use super::state::{MigrationState, Phase};
use super::{preflight, trigger, Direction, MigrationStage};
use crate::catalog::{CatalogAdmin, CatalogError, CatalogObject, Change, Manifests};
use crate::Error;

/// Publishes the swapping phase (unless a run before did), waits out the
/// grace period and swaps, trying again while the table's lock is held by
/// others. Returns the catalog generation that the swap published.
pub(super) async fn finish(
    admin: &CatalogAdmin,
    backfill: &mut Backfill<'_>,
) -> Result<u64, Error> {
    let column = backfill.converter.column;
    if backfill.state.phase == Phase::Backfill {
        // A new catalog generation: clients reload the catalog, in which
        // the column is now one they refuse to use.
        let change = Change::begin(&mut *backfill.client, admin, Manifests::Required).await?;
        MigrationState::set_phase(&change.transaction, column, Phase::Swapping).await?;
        let signers = change.signers();
        change.commit(&admin.registry, signers).await?;
        backfill.state.phase = Phase::Swapping;
    }
    loop {
        let age = MigrationState::phase_age(&*backfill.client, column).await?;
        let Some(left) = backfill
            .options
            .grace
            .checked_sub(age)
            .filter(|left| !left.is_zero())
        else {
            break;
        };
        backfill.report(MigrationStage::Grace);
        tokio::time::sleep(left).await;
    }
    let attempts = backfill.options.swap_attempts.max(1);
    let mut failure = None;
    for attempt in 1..=attempts {
        backfill.report(MigrationStage::Swap);
        match swap(admin, backfill).await {
            Ok(generation) => {
                tracing::info!(column = %column, generation, "aepg migration swapped");
                return Ok(generation);
            }
            Err(error) if lock_not_available(&error) && attempt < attempts => {
                tracing::debug!(column = %column, attempt, "aepg swap: table lock not available");
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
        _ => MigrationError::LockTimeout {
            column: Box::new(column.clone()),
            table: backfill.converter.names.table.clone(),
            attempts,
        }
        .into(),
    };
    // Clients may use the column again until a re-run swaps: the rows
    // written meanwhile are caught up with then. Best effort: on a lost
    // connection the column stays refused until the re-run.
    let reverted = async {
        let change = Change::begin(&mut *backfill.client, admin, Manifests::Required).await?;
        MigrationState::set_phase(&change.transaction, column, Phase::Backfill).await?;
        let signers = change.signers();
        change.commit(&admin.registry, signers).await
    }
    .await;
    if let Err(revert) = reverted {
        tracing::warn!(
            column = %column,
            error = %revert,
            "aepg: the column stays refused to clients until the migration is run again"
        );
    }
    Err(error)
}

/// Whether the server gave up waiting for a lock (`lock_timeout`).
fn lock_not_available(error: &Error) -> bool {
    matches!(error, Error::Database(database)
        if database.as_db_error().is_some_and(|db| *db.code() == SqlState::LOCK_NOT_AVAILABLE))
}

/// The swap, in one transaction: lock the table, convert the rows written
/// since the backfill, give the column the shadow's values and type, drop
/// the shadow and its trigger, sign the assignment (or delete it), and
/// publish the new catalog generation.
async fn swap(admin: &CatalogAdmin, backfill: &mut Backfill<'_>) -> Result<u64, Error> {
    let converter = &backfill.converter;
    let column = converter.column;
    let names = &converter.names;
    let mut change = Change::begin(&mut *backfill.client, admin, Manifests::Required).await?;
    // Every signature first: no key store's latency under the table's lock.
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
    }
    let signers = change.signers();
    let manifests = change.sign_manifests(&admin.registry, signers).await?;
    set_lock_timeout(&change.transaction, backfill.options).await?;
    change
        .transaction
        .batch_execute(&format!(
            "LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE",
            names.table
        ))
        .await?;
    // What the backfill relied on, checked again now that no one can write:
    // the trigger fired for every write, and nothing new depends on the
    // column's type.
    trigger::check(
        &change.transaction,
        column,
        converter.direction,
        names,
        false,
    )
    .await?;
    preflight::check_dependents(
        &change.transaction,
        column,
        converter.direction,
        converter.setting,
        names.table_oid,
        names.attnum,
    )
    .await?;
    let batch = backfill.options.batch_size.max(1);
    let select_dirty = converter.dirty_rows_sql(batch);
    loop {
        let rows = change.transaction.query(&select_dirty, &[]).await?;
        let found = rows.len();
        let done = converter.convert(&change.transaction, rows).await?;
        backfill.state.rows_done = backfill.state.rows_done.saturating_add(done);
        if found < batch {
            break;
        }
    }
    let new_type = match converter.direction {
        Direction::Encrypt => "aepg.ciphertext",
        Direction::Decrypt => converter.shadow_type.as_str(),
    };
    change
        .transaction
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
    MigrationState::delete(&change.transaction, column).await?;
    change.commit_signed(manifests).await
}
