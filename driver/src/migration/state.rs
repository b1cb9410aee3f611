//! The work state of one column migration: its row in
//! `aepg.column_migrations`, which a re-run resumes from.

use tokio_postgres::GenericClient;

use super::error::MigrationError;
use super::Direction;
use crate::names::ColumnName;
use crate::support::id_from_sql;
use crate::Error;

/// Where a migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Converting rows batch by batch; clients use the column as before.
    Backfill,
    /// Clients refuse the column; the swap follows.
    Swapping,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Backfill => "backfill",
            Self::Swapping => "swapping",
        }
    }
}

/// One row of `aepg.column_migrations`. Unsigned: a server can alter it, so
/// nothing in it is trusted beyond where to resume (a forged position only
/// leaves rows for the catch-up pass, which scans the whole table).
#[derive(Clone, Debug)]
pub(crate) struct MigrationState {
    pub(crate) direction: Direction,
    pub(crate) setting_id: u32,
    pub(crate) shadow: String,
    pub(crate) phase: Phase,
    pub(crate) next_block: i64,
    pub(crate) end_block: i64,
    pub(crate) rows_done: i64,
}

impl MigrationState {
    /// The state of `column`'s migration, if one is under way.
    pub(crate) async fn read(
        client: &impl GenericClient,
        column: &ColumnName,
    ) -> Result<Option<Self>, Error> {
        let Some(row) = client
            .query_opt(
                "SELECT direction, setting_id, shadow_name, phase, next_block, end_block, rows_done
                 FROM aepg.column_migrations
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[&column.schema, &column.table, &column.column],
            )
            .await?
        else {
            return Ok(None);
        };
        let damaged = |reason: String| MigrationError::Damaged {
            column: Box::new(column.clone()),
            reason,
        };
        let direction = match row.try_get::<_, &str>(0)? {
            "encrypt" => Direction::Encrypt,
            "decrypt" => Direction::Decrypt,
            "rekey" => Direction::Rekey,
            other => return Err(damaged(format!("unknown direction {other:?}")).into()),
        };
        let phase = match row.try_get::<_, &str>(3)? {
            "backfill" => Phase::Backfill,
            "swapping" => Phase::Swapping,
            other => return Err(damaged(format!("unknown phase {other:?}")).into()),
        };
        Ok(Some(Self {
            direction,
            setting_id: id_from_sql(row.try_get(1)?, "setting id")?,
            shadow: row.try_get(2)?,
            phase,
            next_block: row.try_get::<_, i64>(4)?.max(0),
            end_block: row.try_get::<_, i64>(5)?.max(0),
            rows_done: row.try_get::<_, i64>(6)?.max(0),
        }))
    }

    /// Records it as new.
    pub(crate) async fn insert(
        &self,
        client: &impl GenericClient,
        column: &ColumnName,
    ) -> Result<(), Error> {
        client
            .execute(
                "INSERT INTO aepg.column_migrations
                     (schema_name, table_name, column_name, direction, setting_id, shadow_name,
                      phase, next_block, end_block)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &self.direction.as_str(),
                    &crate::support::id_to_sql(self.setting_id, "setting id")?,
                    &self.shadow,
                    &self.phase.as_str(),
                    &self.next_block,
                    &self.end_block,
                ],
            )
            .await?;
        Ok(())
    }

    /// Records the backfill's progress.
    pub(crate) async fn save_progress(
        &self,
        client: &impl GenericClient,
        column: &ColumnName,
    ) -> Result<(), Error> {
        let updated = client
            .execute(
                "UPDATE aepg.column_migrations SET next_block = $4, rows_done = $5
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &self.next_block,
                    &self.rows_done,
                ],
            )
            .await?;
        one_row(updated, column)
    }

    /// Moves it to `phase`, from now.
    pub(crate) async fn set_phase(
        client: &impl GenericClient,
        column: &ColumnName,
        phase: Phase,
    ) -> Result<(), Error> {
        let updated = client
            .execute(
                "UPDATE aepg.column_migrations SET phase = $4, phase_at = pg_catalog.now()
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &phase.as_str(),
                ],
            )
            .await?;
        one_row(updated, column)
    }

    /// How long ago (by the server's clock) it entered its phase.
    pub(crate) async fn phase_age(
        client: &impl GenericClient,
        column: &ColumnName,
    ) -> Result<std::time::Duration, Error> {
        let seconds: f64 = client
            .query_opt(
                "SELECT pg_catalog.date_part('epoch', pg_catalog.now() - phase_at)::float8
                 FROM aepg.column_migrations
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[&column.schema, &column.table, &column.column],
            )
            .await?
            .ok_or_else(|| gone(column))?
            .try_get(0)?;
        Ok(std::time::Duration::from_secs_f64(seconds.clamp(0.0, 1e9)))
    }

    /// Deletes it: the migration is over.
    pub(crate) async fn delete(
        client: &impl GenericClient,
        column: &ColumnName,
    ) -> Result<(), Error> {
        client
            .execute(
                "DELETE FROM aepg.column_migrations
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[&column.schema, &column.table, &column.column],
            )
            .await?;
        Ok(())
    }
}

/// The error for a work state deleted under a running migration.
fn gone(column: &ColumnName) -> MigrationError {
    MigrationError::Damaged {
        column: Box::new(column.clone()),
        reason: "its work state was deleted while the migration ran".to_owned(),
    }
}

fn one_row(updated: u64, column: &ColumnName) -> Result<(), Error> {
    if updated == 1 {
        Ok(())
    } else {
        Err(gone(column).into())
    }
}
