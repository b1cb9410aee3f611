//! `DELETE FROM … USING … WHERE … RETURNING`.

use sqlparser::ast::{Delete, FromTable};

use super::analyzer::Analyzer;
use super::operand::OutputColumn;
use super::scope::Scope;
use super::BoxedRefusal;

impl Analyzer<'_> {
    /// Walks a `DELETE` inside `outer` (a CTE's scope, or none) and returns
    /// its `RETURNING` columns.
    pub(super) fn delete(
        &mut self,
        delete: &Delete,
        outer: Option<&Scope<'_>>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        let items = match &delete.from {
            FromTable::WithFromKeyword(items) => items,
            FromTable::WithoutKeyword(items) => {
                self.doubt_unsupported("DELETE without FROM");
                items
            }
        };
        if !delete.tables.is_empty()
            || delete.on_cluster.is_some()
            || delete.output.is_some()
            || !delete.order_by.is_empty()
            || delete.limit.is_some()
            || delete.settings.is_some()
            || !delete.optimizer_hints.is_empty()
        {
            self.doubt_unsupported("a DELETE clause PostgreSQL does not have");
        }
        let mut level = Scope::inside(outer);
        match items.as_slice() {
            [item] if item.joins.is_empty() => {
                let target = self.target_relation(&item.relation);
                level.add_target(target);
            }
            _ => {
                self.doubt_unsupported("DELETE from several tables");
                for item in items {
                    self.add_from_item(item, &mut level)?;
                }
            }
        }
        for item in delete.using.iter().flatten() {
            self.add_from_item(item, &mut level)?;
        }
        if let Some(selection) = &delete.selection {
            self.condition(selection, &level)?;
        }
        self.projection(delete.returning.as_deref().unwrap_or_default(), &level)
    }
}
