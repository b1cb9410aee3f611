//! Starting a migration, and filling its shadow column batch by batch.

use std::sync::Arc;

use postgres_protocol::escape::escape_identifier;
use postgres_types::ToSql;
use tokio_postgres::GenericClient;
use zeroize::Zeroizing;

use super::error::MigrationError;
use super::raw::{RawArray, RawValue};
use super::state::{MigrationState, Phase};
use super::{preflight, trigger, Direction, MigrationOptions, MigrationProgress, MigrationStage};
use crate::catalog::{Catalog, EncryptionSetting};
use crate::cell::CellCipher;
use crate::client::{decrypt_cell, Encryption, QueryCiphers};
use crate::names::ColumnName;
use crate::Error;

/// Adds the shadow column and its trigger, and records the migration: the
/// start of a migration, in one transaction.
pub(super) async fn start(
    client: &mut tokio_postgres::Client,
    column: &ColumnName,
    direction: Direction,
    setting: &EncryptionSetting,
    options: &MigrationOptions,
) -> Result<MigrationState, Error> {
    let transaction = client.transaction().await?;
    set_lock_timeout(&transaction, options).await?;
    let facts = preflight::check(&transaction, column, direction, setting).await?;
    let names = Names::new(column, facts.table_oid, facts.attnum);
    let taken: bool = transaction
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
                            WHERE attrelid OPERATOR(pg_catalog.=) $1
                              AND attname OPERATOR(pg_catalog.=) $2 AND NOT attisdropped)",
            &[&facts.table_oid, &names.shadow_name],
        )
        .await?
        .try_get(0)?;
    if taken {
        return Err(MigrationError::NotMigratable {
            column: Box::new(column.clone()),
            action: direction.past_participle(),
            reason: format!(
                "its table already has a column {:?}, the name its shadow column takes",
                names.shadow_name
            ),
        }
        .into());
    }
    trigger::check(&transaction, column, direction, &names, true).await?;
    let shadow_type = shadow_type(direction, setting, column)?;
    transaction
        .batch_execute(&format!(
            "ALTER TABLE ONLY {} ADD COLUMN {} {shadow_type}",
            names.table, names.shadow
        ))
        .await?;
    trigger::create(&transaction, &names).await?;
    let end_block: i64 = transaction
        .query_one(
            "SELECT pg_catalog.pg_relation_size($1::pg_catalog.oid)
                    OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::int8",
            &[&facts.table_oid],
        )
        .await?
        .try_get(0)?;
    let state = MigrationState {
        direction,
        setting_id: setting.cell.setting_id,
        shadow: names.shadow_name,
        phase: Phase::Backfill,
        next_block: 0,
        end_block,
        rows_done: 0,
    };
    state.insert(&transaction, column).await?;
    transaction.commit().await?;
    tracing::info!(column = %column, direction = direction.as_str(), "aepg migration started");
    Ok(state)
}

/// Bounds how long a statement of the migration waits for a table lock.
pub(super) async fn set_lock_timeout(
    client: &impl GenericClient,
    options: &MigrationOptions,
) -> Result<(), Error> {
    let millis = options.lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    client
        .batch_execute(&format!("SET LOCAL lock_timeout = {millis}"))
        .await?;
    Ok(())
}

/// The SQL type of the shadow column: cells (`bytea`) when encrypting or
/// re-encrypting, the setting's plaintext type when decrypting.
pub(super) fn shadow_type(
    direction: Direction,
    setting: &EncryptionSetting,
    column: &ColumnName,
) -> Result<String, Error> {
    if direction != Direction::Decrypt {
        return Ok("bytea".to_owned());
    }
    if let Some(named) = &setting.named_type {
        return Ok(match named.name().rsplit_once('.') {
            Some((schema, name)) => {
                format!("{}.{}", escape_identifier(schema), escape_identifier(name))
            }
            None => escape_identifier(named.name()),
        });
    }
    setting.cell.plaintext_type.sql_name().ok_or_else(|| {
        MigrationError::NotMigratable {
            column: Box::new(column.clone()),
            action: direction.past_participle(),
            reason: format!("its {} has a type aepg cannot name", setting.label()),
        }
        .into()
    })
}

/// The migration's objects, as SQL names them (quoted here, never by the
/// server). The shadow column and the trigger are named after the
/// column's `attnum`, never after what the (unsigned) work state says.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub(super) table_oid: u32,
    pub(super) attnum: i16,
    pub(super) table: String,
    pub(super) column: String,
    pub(super) shadow_name: String,
    pub(super) shadow: String,
    pub(super) function: String,
    pub(super) trigger_name: String,
    pub(super) trigger: String,
}

impl Names {
    pub(super) fn new(column: &ColumnName, table_oid: u32, attnum: i16) -> Self {
        let shadow_name = format!("aepg_shadow_{attnum}");
        // Last of the table's BEFORE triggers (they fire in name order),
        // so it sees the value the others leave; `trigger::check` refuses
        // tables with triggers named to sort after it.
        let trigger_name = format!("zzz_aepg_migrate_{attnum}");
        Self {
            table_oid,
            attnum,
            table: format!(
                "{}.{}",
                escape_identifier(&column.schema),
                escape_identifier(&column.table)
            ),
            column: escape_identifier(&column.column),
            shadow: escape_identifier(&shadow_name),
            function: format!(
                "aepg.{}",
                escape_identifier(&format!("migrate_{table_oid}_{attnum}"))
            ),
            trigger: escape_identifier(&trigger_name),
            shadow_name,
            trigger_name,
        }
    }

    /// The names of the migration under way in `state`, found again on the
    /// server, whose shadow column must be the one `state` names, of the
    /// type the migration writes.
    pub(super) async fn find(
        client: &impl GenericClient,
        column: &ColumnName,
        state: &MigrationState,
        setting: &EncryptionSetting,
    ) -> Result<Self, Error> {
        let damaged = |reason: String| MigrationError::Damaged {
            column: Box::new(column.clone()),
            reason,
        };
        let row = client
            .query_opt(
                "SELECT c.oid, a.attnum, s.atttypid::int8, s.atttypmod,
                        s.atttypid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($5)
                 FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                 LEFT JOIN pg_catalog.pg_attribute s
                   ON s.attrelid OPERATOR(pg_catalog.=) c.oid
                  AND s.attname OPERATOR(pg_catalog.=) $4 AND NOT s.attisdropped
                 WHERE n.nspname OPERATOR(pg_catalog.=) $1
                   AND c.relname OPERATOR(pg_catalog.=) $2
                   AND a.attname OPERATOR(pg_catalog.=) $3
                   AND NOT a.attisdropped",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &state.shadow,
                    &setting.named_type.as_ref().map(|named| named.name()),
                ],
            )
            .await?
            .ok_or_else(|| damaged("the column is gone from the database".to_owned()))?;
        let names = Self::new(column, row.try_get(0)?, row.try_get(1)?);
        if state.shadow != names.shadow_name {
            return Err(damaged(format!(
                "it names shadow column {:?}, not {:?}",
                state.shadow, names.shadow_name
            ))
            .into());
        }
        let shadow_type: Option<i64> = row.try_get(2)?;
        let typmod: Option<i32> = row.try_get(3)?;
        let expected = match state.direction {
            Direction::Encrypt | Direction::Rekey => shadow_type == Some(i64::from(BYTEA_OID)),
            Direction::Decrypt => match &setting.named_type {
                Some(_) => row.try_get::<_, Option<bool>>(4)?.unwrap_or(false),
                None => {
                    shadow_type == Some(i64::from(setting.cell.plaintext_type.oid))
                        && typmod == Some(setting.cell.plaintext_type.typmod)
                }
            },
        };
        if !expected {
            return Err(damaged(format!(
                "its shadow column {:?} is missing or of another type",
                names.shadow_name
            ))
            .into());
        }
        Ok(names)
    }
}

impl Names {
    /// Rows with a value and no shadow value yet: what is left to convert.
    pub(super) async fn remaining(&self, client: &impl GenericClient) -> Result<i64, Error> {
        Ok(client
            .query_one(
                &format!(
                    "SELECT count(*) FROM ONLY {table} WHERE {shadow} IS NULL AND {column} IS NOT NULL",
                    table = self.table,
                    shadow = self.shadow,
                    column = self.column,
                ),
                &[],
            )
            .await?
            .try_get(0)?)
    }
}

/// `pg_type.oid` of `bytea`.
const BYTEA_OID: u32 = 17;

/// Converts values of the column into values of its shadow column.
pub(super) struct Converter<'a> {
    pub(super) column: &'a ColumnName,
    pub(super) direction: Direction,
    pub(super) setting: &'a EncryptionSetting,
    pub(super) catalog: &'a Catalog,
    pub(super) encryption: &'a Encryption,
    /// The setting's column key: what encrypts (or decrypts) its cells.
    pub(super) cipher: Arc<CellCipher>,
    /// The successor key's cipher, which re-encrypts cells (a rotation's
    /// `Rekey`; `None` otherwise).
    pub(super) target: Option<Arc<CellCipher>>,
    pub(super) names: Names,
    /// The shadow column's type, for the update's array.
    pub(super) shadow_type: String,
    /// Whether the shadow column holds arrays (a decrypted array setting).
    pub(super) shadow_is_array: bool,
}

impl Converter<'_> {
    /// Converts `rows` (`ctid` as text, the column's value) and writes the
    /// results into their shadow column, by `ctid`: the rows must be locked
    /// by the transaction `client` runs. Returns how many rows it wrote.
    pub(super) async fn convert(
        &self,
        client: &impl GenericClient,
        rows: Vec<tokio_postgres::Row>,
    ) -> Result<i64, Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<String> = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        let ciphers = QueryCiphers::default();
        for row in rows {
            let id: String = row.try_get(0)?;
            let RawValue(value) = row.try_get(1)?;
            let converted = match self.direction {
                Direction::Encrypt => {
                    Zeroizing::new(self.cipher.encrypt(&self.setting.cell, &value)?)
                }
                Direction::Decrypt => self.decrypt(&value, &id, &ciphers).await?,
                Direction::Rekey => {
                    let plaintext = self.decrypt(&value, &id, &ciphers).await?;
                    let target = self
                        .target
                        .as_ref()
                        .ok_or_else(|| MigrationError::Damaged {
                            column: Box::new(self.column.clone()),
                            reason: "a re-encryption without a new column key".to_owned(),
                        })?;
                    Zeroizing::new(target.encrypt(&self.setting.cell, &plaintext)?)
                }
            };
            ids.push(id);
            values.push(Some(converted));
        }
        let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        if self.shadow_is_array {
            // An array of arrays is one array to PostgreSQL, which `unnest`
            // would take apart: one update per row, pipelined.
            let statement = client
                .prepare(&format!(
                    "UPDATE ONLY {table} SET {shadow} = $2 WHERE ctid = $1::text::tid",
                    table = self.names.table,
                    shadow = self.names.shadow,
                ))
                .await?;
            let values: Vec<RawValue> = values.into_iter().flatten().map(RawValue).collect();
            let params: Vec<[&(dyn ToSql + Sync); 2]> = ids
                .iter()
                .zip(&values)
                .map(|(id, value)| [id as &(dyn ToSql + Sync), value])
                .collect();
            let updates = params
                .iter()
                .map(|params| client.execute(&statement, params));
            futures_util::future::try_join_all(updates).await?;
            return Ok(count);
        }
        // The `= ANY` lets the server find the rows by their ctid (a TID
        // scan), the join pairs each with its value.
        let sql = format!(
            "UPDATE ONLY {table} AS t SET {shadow} = u.v
             FROM unnest($1::text[]::tid[], $2::{ty}[]) AS u(id, v)
             WHERE t.ctid = ANY ($1::text[]::tid[]) AND t.ctid = u.id",
            table = self.names.table,
            shadow = self.names.shadow,
            ty = self.shadow_type,
        );
        client.execute(&sql, &[&ids, &RawArray(values)]).await?;
        Ok(count)
    }

    /// The first bytes every shadow value must start with after the
    /// version and flags (the key id and setting id of a cell this run
    /// makes, docs/FORMAT.md); `None` when the shadow holds plaintext.
    fn cell_prefix(&self) -> Result<Option<Vec<u8>>, Error> {
        let key_id = match (self.direction, &self.target) {
            (Direction::Encrypt, _) => self.cipher.key_id(),
            (Direction::Rekey, Some(target)) => target.key_id(),
            (Direction::Rekey, None) => {
                return Err(MigrationError::Damaged {
                    column: Box::new(self.column.clone()),
                    reason: "a re-encryption without a new column key".to_owned(),
                }
                .into())
            }
            (Direction::Decrypt, _) => return Ok(None),
        };
        let mut prefix = key_id.to_be_bytes().to_vec();
        prefix.extend_from_slice(&self.setting.cell.setting_id.to_be_bytes());
        Ok(Some(prefix))
    }

    /// Clears every shadow value that is not a cell this run would make
    /// (under its key, of its setting), so the backfill or the swap makes
    /// it again, and returns how many it cleared. The shadow column is the
    /// server's to write, and a run may resume one begun under another key
    /// (the setting's key rotated since, a rotation begun again): the swap
    /// puts in only cells made here.
    pub(super) async fn forget_foreign_cells(
        &self,
        client: &impl GenericClient,
    ) -> Result<u64, Error> {
        let Some(prefix) = self.cell_prefix()? else {
            return Ok(0);
        };
        let forgotten = client
            .execute(
                &format!(
                    "UPDATE ONLY {table} SET {shadow} = NULL
                     WHERE {shadow} IS NOT NULL
                       AND pg_catalog.substr({shadow}, 3, 8) OPERATOR(pg_catalog.<>) $1",
                    table = self.names.table,
                    shadow = self.names.shadow,
                ),
                &[&prefix],
            )
            .await?;
        if forgotten > 0 {
            tracing::warn!(
                column = %self.column,
                rows = forgotten,
                "aepg migration: shadow values not made by this run are made again"
            );
        }
        Ok(forgotten)
    }

    /// Decrypts the cell of row `id` under the setting's key.
    async fn decrypt(
        &self,
        cell: &[u8],
        id: &str,
        ciphers: &QueryCiphers,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        decrypt_cell(self.encryption, self.catalog, self.setting, cell, ciphers)
            .await
            .map_err(|source| {
                MigrationError::Cell {
                    column: Box::new(self.column.clone()),
                    row: id.to_owned(),
                    reason: source.to_string(),
                }
                .into()
            })
    }

    /// The rows with a value but no shadow value yet, at most `limit`,
    /// locked.
    pub(super) fn dirty_rows_sql(&self, limit: usize) -> String {
        format!(
            "SELECT ctid::text, {column} FROM ONLY {table}
             WHERE {shadow} IS NULL AND {column} IS NOT NULL LIMIT {limit} FOR UPDATE",
            column = self.names.column,
            table = self.names.table,
            shadow = self.names.shadow,
        )
    }
}

/// One column's migration: how its values are converted, and where it is.
pub(super) struct ColumnWork<'a> {
    pub(super) converter: Converter<'a>,
    pub(super) state: MigrationState,
}

/// Reports progress to the caller's callback: rows done, of a total
/// counted when the run began.
pub(super) struct Reporter<'p> {
    pub(super) callback: &'p mut (dyn FnMut(&MigrationProgress) + Send),
    /// Rows done before this run, plus those left when it began.
    pub(super) rows_total: i64,
    /// Rows done by the columns of this run already finished (a key
    /// rotation migrates several).
    pub(super) rows_base: i64,
}

impl Reporter<'_> {
    pub(super) fn report(&mut self, stage: MigrationStage, rows_done: i64) {
        let rows_done = self.rows_base.saturating_add(rows_done);
        (self.callback)(&MigrationProgress {
            stage,
            rows_done: u64::try_from(rows_done).unwrap_or(0),
            rows_total: u64::try_from(self.rows_total.max(rows_done)).unwrap_or(0),
        });
    }
}

/// Blocks the walk's first batch covers; later batches adapt to the rows found.
const FIRST_STEP_BLOCKS: i64 = 64;

/// Catch-up passes before the swap.
const MAX_CATCH_UP_PASSES: usize = 8;

/// The most blocks one batch covers.
const MAX_STEP_BLOCKS: i64 = 1 << 20;

impl<'a> ColumnWork<'a> {
    /// The migration of `column` in `direction` under `setting`: the one
    /// under way, resumed (which must be the same migration), or a new one,
    /// started. `cipher` is the setting's key, `target` the successor key
    /// of a `Rekey`. Also returns whether it resumed one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open(
        client: &mut tokio_postgres::Client,
        column: &'a ColumnName,
        direction: Direction,
        setting: &'a EncryptionSetting,
        catalog: &'a Catalog,
        encryption: &'a Encryption,
        (cipher, target): (Arc<CellCipher>, Option<Arc<CellCipher>>),
        options: &MigrationOptions,
    ) -> Result<(Self, bool), Error> {
        let (state, resumed) = match MigrationState::read(&*client, column).await? {
            Some(state) => {
                super::check_resumable(&state, column, direction, setting)?;
                (state, true)
            }
            None => (
                start(client, column, direction, setting, options).await?,
                false,
            ),
        };
        let converter = Converter {
            column,
            direction,
            setting,
            catalog,
            encryption,
            cipher,
            target,
            names: Names::find(&*client, column, &state, setting).await?,
            shadow_type: shadow_type(direction, setting, column)?,
            shadow_is_array: direction == Direction::Decrypt
                && setting.named_type.is_none()
                && setting.cell.plaintext_type.is_array(),
        };
        Ok((Self { converter, state }, resumed))
    }

    /// Rows with a value and no shadow value yet: what is left to convert.
    pub(super) async fn remaining(&self, client: &impl GenericClient) -> Result<i64, Error> {
        self.converter.names.remaining(client).await
    }

    /// Walks the table's blocks from where the last run stopped, then
    /// catches up with the rows written behind the walk until a pass finds
    /// fewer than a batch.
    pub(super) async fn backfill(
        &mut self,
        client: &mut tokio_postgres::Client,
        options: &MigrationOptions,
        reporter: &mut Reporter<'_>,
    ) -> Result<(), Error> {
        let batch = options.batch_size.max(1);
        let select_range = format!(
            "SELECT ctid::text, {column} FROM ONLY {table}
             WHERE ctid >= $1::text::tid AND ctid < $2::text::tid
               AND {shadow} IS NULL AND {column} IS NOT NULL
             FOR UPDATE",
            column = self.converter.names.column,
            table = self.converter.names.table,
            shadow = self.converter.names.shadow,
        );
        let converter = &self.converter;
        trigger::check(
            &*client,
            converter.column,
            converter.direction,
            &converter.names,
            false,
        )
        .await?;
        // The walk ends where the table ended when it began, and never past
        // where it ends now (the work state is the server's to alter).
        let blocks: i64 = client
            .query_one(
                "SELECT pg_catalog.pg_relation_size($1::pg_catalog.oid)
                        OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::int8",
                &[&converter.names.table_oid],
            )
            .await?
            .try_get(0)?;
        self.state.end_block = self.state.end_block.min(blocks);
        let forgotten = converter.forget_foreign_cells(&*client).await?;
        if forgotten > 0 {
            // Made again by a new walk, not by the catch-up passes (nor
            // under the swap's lock).
            self.state.next_block = 0;
            self.state.end_block = blocks;
            self.state.rows_done = self
                .state
                .rows_done
                .saturating_sub(i64::try_from(forgotten).unwrap_or(i64::MAX));
            self.state.save_progress(&*client, converter.column).await?;
        }
        let mut step = FIRST_STEP_BLOCKS;
        while self.state.next_block < self.state.end_block {
            let from = self.state.next_block;
            let to = from.saturating_add(step).min(self.state.end_block);
            let transaction = client.transaction().await?;
            let rows = transaction
                .query(
                    &select_range,
                    &[&format!("({from},0)"), &format!("({to},0)")],
                )
                .await?;
            let done = self.converter.convert(&transaction, rows).await?;
            self.state.next_block = to;
            self.state.rows_done = self.state.rows_done.saturating_add(done);
            self.state
                .save_progress(&transaction, self.converter.column)
                .await?;
            transaction.commit().await?;
            reporter.report(MigrationStage::Backfill, self.state.rows_done);
            step = next_step(step, done, batch);
        }
        let select_dirty = self.converter.dirty_rows_sql(batch);
        // Each pass scans the table; writers may dirty rows as fast as they
        // are caught up with, so the passes stop after a few and the swap's
        // own pass, under the table's lock, takes the rest.
        for _ in 0..MAX_CATCH_UP_PASSES {
            let transaction = client.transaction().await?;
            let rows = transaction.query(&select_dirty, &[]).await?;
            let found = rows.len();
            let done = self.converter.convert(&transaction, rows).await?;
            self.state.rows_done = self.state.rows_done.saturating_add(done);
            self.state
                .save_progress(&transaction, self.converter.column)
                .await?;
            transaction.commit().await?;
            reporter.report(MigrationStage::CatchUp, self.state.rows_done);
            if found < batch {
                break;
            }
        }
        Ok(())
    }
}

/// The next batch's blocks: as many as should hold `batch` rows at the
/// density the last batch found, growing at most fourfold.
fn next_step(step: i64, done: i64, batch: usize) -> i64 {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let next = if done == 0 {
        step.saturating_mul(4)
    } else {
        (step.saturating_mul(batch) / done).min(step.saturating_mul(4))
    };
    next.clamp(1, MAX_STEP_BLOCKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_adapts_to_the_rows_it_finds() {
        assert_eq!(next_step(64, 0, 5000), 256);
        assert_eq!(next_step(64, 10_000, 5000), 32);
        assert_eq!(next_step(64, 5000, 5000), 64);
        assert_eq!(next_step(1, 100_000, 5000), 1);
        assert_eq!(next_step(MAX_STEP_BLOCKS, 0, 5000), MAX_STEP_BLOCKS);
    }
}
