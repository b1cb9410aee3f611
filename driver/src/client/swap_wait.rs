//! Statements on a table whose column is in the final swap of an in-place
//! migration wait for it: before the swap the column holds plaintext, after
//! it ciphertext, and a statement analyzed in between could send the wrong
//! one. The wait lasts the migration's grace period and swap, a few
//! seconds; inside a transaction block it would hold locks the swap needs,
//! so there the statement is refused instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::executor::Executor;
use crate::analysis::{Refusal, StatementAnalysis};
use crate::catalog::{Catalog, CatalogError};
use crate::names::TableName;
use crate::Error;

/// How often a waiting statement looks at the catalog again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

impl Executor<'_> {
    /// Waits until no table `sql` uses has a column in a final swap, and
    /// returns the catalog to analyze against then (with `analyzed`
    /// redone), or `None` when `sql` touches no such table.
    ///
    /// # Errors
    /// [`CatalogError::Swapping`] inside a transaction block or past the
    /// configured wait; the catalog's errors.
    pub(super) async fn after_swaps(
        &self,
        sql: &str,
        catalog: &Arc<Catalog>,
        analyzed: &Result<StatementAnalysis, Refusal>,
    ) -> Result<Option<Arc<Catalog>>, Error> {
        let Some(table) = swapping_table(sql, catalog, analyzed) else {
            return Ok(None);
        };
        let refuse = |table: &TableName| -> Error {
            CatalogError::Swapping {
                table: table.to_string(),
            }
            .into()
        };
        if self.in_transaction() {
            return Err(refuse(&table));
        }
        let deadline = Instant::now() + self.state.encryption.migration_swap_wait();
        let mut table = table;
        let mut waiting_on = catalog.generation();
        loop {
            if Instant::now() >= deadline {
                return Err(refuse(&table));
            }
            tracing::debug!(table = %table, "aepg statement waits for a migration's swap");
            tokio::time::sleep(POLL_INTERVAL).await;
            // A look at the generation; the catalog is loaded again only
            // when it moved.
            let generation: i64 = self
                .client
                .query_one("SELECT generation FROM aepg.catalog_version", &[])
                .await?
                .try_get(0)?;
            if u64::try_from(generation).unwrap_or(0) == waiting_on {
                continue;
            }
            let current = self.state.encryption.refresh_catalog(self.client).await?;
            waiting_on = current.generation();
            match current
                .swapping_tables()
                .iter()
                .find(|swapping| sql_mentions(sql, swapping))
            {
                Some(still) => table = still.clone(),
                None => return Ok(Some(current)),
            }
        }
    }
}

/// A table with a column in a final swap that `sql` uses: one the analysis
/// found, or, when the analysis refused the text, one it names.
fn swapping_table(
    sql: &str,
    catalog: &Catalog,
    analyzed: &Result<StatementAnalysis, Refusal>,
) -> Option<TableName> {
    let swapping = catalog.swapping_tables();
    if swapping.is_empty() {
        return None;
    }
    match analyzed {
        Ok(analysis) => analysis
            .encrypted_tables
            .iter()
            .find(|table| swapping.contains(*table))
            .cloned(),
        Err(_) => swapping
            .iter()
            .find(|table| sql_mentions(sql, table))
            .cloned(),
    }
}

/// Whether `sql` contains the table's name, in any case: an
/// over-approximation (a longer name, a string) costs only a wait.
fn sql_mentions(sql: &str, table: &TableName) -> bool {
    sql.to_lowercase().contains(&table.name.to_lowercase())
}
