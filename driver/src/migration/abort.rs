//! Abandoning a migration: what it added is removed and the column is
//! left as it was before it began.

use super::backfill::{set_lock_timeout, Names};
use super::state::MigrationState;
use super::{release_run_lock, take_run_lock, MigrationOptions};
use crate::catalog::{CatalogAdmin, Change, Manifests};
use crate::names::ColumnName;
use crate::Error;

impl CatalogAdmin {
    /// Abandons the migration of `column`, if one is under way and has not
    /// swapped: drops its trigger and shadow column and forgets it, and
    /// publishes a new catalog generation (clients waiting for its swap go
    /// on with the column as it was). Returns whether there was one.
    ///
    /// The shadow column of a decryption held plaintext: dropping it does
    /// not erase it from the table's pages (`VACUUM FULL` does; see
    /// docs/OPERATIONS.md).
    ///
    /// # Errors
    /// Another run migrating the column right now; the table's lock not
    /// taken within the options' lock timeout; the key store's refusal (the
    /// manifests are signed again); database errors.
    pub async fn abort_migration(
        &self,
        client: &mut tokio_postgres::Client,
        column: &ColumnName,
        options: &MigrationOptions,
    ) -> Result<bool, Error> {
        let Some(state) = MigrationState::read(&*client, column).await? else {
            return Ok(false);
        };
        take_run_lock(client, column, state.direction).await?;
        let outcome = self.abort_locked(client, column, options).await;
        let _ = release_run_lock(client, column).await;
        outcome.map(|()| true)
    }

    async fn abort_locked(
        &self,
        client: &mut tokio_postgres::Client,
        column: &ColumnName,
        options: &MigrationOptions,
    ) -> Result<(), Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        set_lock_timeout(&change.transaction, options).await?;
        let found = change
            .transaction
            .query_opt(
                "SELECT c.oid, a.attnum
                 FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                 WHERE n.nspname OPERATOR(pg_catalog.=) $1
                   AND c.relname OPERATOR(pg_catalog.=) $2
                   AND a.attname OPERATOR(pg_catalog.=) $3
                   AND NOT a.attisdropped",
                &[&column.schema, &column.table, &column.column],
            )
            .await?;
        if let Some(row) = found {
            // Named after the column, never after the unsigned work state.
            let names = Names::new(column, row.try_get(0)?, row.try_get(1)?);
            change
                .transaction
                .batch_execute(&format!(
                    "DROP TRIGGER IF EXISTS {trigger} ON {table};
                     DROP FUNCTION IF EXISTS {function}();
                     ALTER TABLE ONLY {table} DROP COLUMN IF EXISTS {shadow};",
                    trigger = names.trigger,
                    table = names.table,
                    function = names.function,
                    shadow = names.shadow,
                ))
                .await?;
        }
        MigrationState::delete(&change.transaction, column).await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        tracing::info!(column = %column, "aepg migration abandoned");
        Ok(())
    }
}
