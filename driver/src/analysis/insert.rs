//! `INSERT`: values (or a query's result columns) stored positionally into
//! the target columns, `ON CONFLICT … DO UPDATE`, and `RETURNING`.

use sqlparser::ast::{ConflictTarget, Insert, OnConflictAction, OnInsert, TableObject};

use super::analyzer::Analyzer;
use super::names::{fold_identifier, object_name_parts};
use super::operand::{OutputColumn, SourceColumn};
use super::scope::{Relation, Scope};
use super::{rules, BoxedRefusal};

impl Analyzer<'_> {
    /// Walks an `INSERT` inside `outer` (a CTE's scope, or none) and returns
    /// its `RETURNING` columns.
    pub(super) fn insert(
        &mut self,
        insert: &Insert,
        outer: Option<&Scope<'_>>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        self.doubt_foreign_insert_parts(insert);
        let alias = insert
            .table_alias
            .as_ref()
            .map(|alias| fold_identifier(&alias.alias));
        let target = match &insert.table {
            TableObject::TableName(name) => self.target_table(name, alias),
            TableObject::TableFunction(_) | TableObject::TableQuery(_) => {
                self.doubt_unsupported("INSERT into something that is not a table");
                Relation::opaque(alias)
            }
        };
        let target_columns = self.insert_columns(insert, &target)?;
        if let Some(source) = &insert.source {
            let outputs = self.query(source, outer)?;
            let target_has_ciphertext = target_columns
                .iter()
                .flatten()
                .any(SourceColumn::is_ciphertext);
            self.doubt_server_order(outputs.iter(), target_has_ciphertext, "INSERT … SELECT");
            // The server refuses a count that differs either way, so a
            // difference means this walk miscounted the query's columns.
            if target.columns.is_some() && outputs.len() != target_columns.len() {
                self.doubt_unresolved("INSERT with another number of values than target columns");
            }
            for (position, output) in outputs.iter().enumerate() {
                let target_column = target_columns.get(position).and_then(Option::as_ref);
                for value in &output.values {
                    match target_column {
                        Some(column) => rules::store(&mut self.bindings, column, value)?,
                        // Unknown target: a doubt is already recorded.
                        None => rules::read(&mut self.bindings, value)?,
                    }
                }
            }
        }
        match &insert.on {
            None => {}
            Some(OnInsert::OnConflict(on_conflict)) => {
                let mut level = Scope::inside(outer);
                level.add_target(target.clone());
                if let Some(ConflictTarget::Columns { columns, predicate }) =
                    &on_conflict.conflict_target
                {
                    for column in columns {
                        self.target_column(&target, &fold_identifier(column));
                    }
                    if let Some(predicate) = predicate {
                        self.condition(predicate, &level)?;
                    }
                }
                if let OnConflictAction::DoUpdate(update) = &on_conflict.action {
                    // EXCLUDED holds the row proposed for insertion.
                    level.add_relation(target.qualified_copy("excluded"));
                    self.assignments(&update.assignments, &target, &level)?;
                    if let Some(selection) = &update.selection {
                        self.condition(selection, &level)?;
                    }
                }
            }
            Some(_) => self.doubt_unsupported("an ON clause PostgreSQL does not have"),
        }
        let mut level = Scope::inside(outer);
        level.add_target(target);
        self.projection(insert.returning.as_deref().unwrap_or_default(), &level)
    }

    /// The target column of each value position: the listed columns, or
    /// every column in table order (refused for a table with encrypted
    /// columns). `None` where the column is unknown.
    fn insert_columns(
        &mut self,
        insert: &Insert,
        target: &Relation,
    ) -> Result<Vec<Option<SourceColumn>>, BoxedRefusal> {
        if insert.columns.is_empty() {
            let has_ciphertext = target
                .columns
                .iter()
                .flatten()
                .any(|column| matches!(column.source, SourceColumn::Ciphertext(_)));
            if has_ciphertext && insert.source.is_some() {
                // Which value lands in which column would follow the
                // server's column order, which no signature covers: a
                // reordered table would receive a plaintext in the place of
                // a ciphertext.
                self.doubt_unsupported(
                    "INSERT without a column list, into a table with encrypted columns: \
                     the server's column order is not signed, so list the columns",
                );
            }
            return Ok(target
                .columns
                .iter()
                .flatten()
                .map(|column| Some(column.source.clone()))
                .collect());
        }
        insert
            .columns
            .iter()
            .map(|name| match object_name_parts(name) {
                Some(parts) => self.assignment_target(&parts, target),
                None => {
                    self.doubt_unsupported(format!("target column {name}"));
                    Ok(None)
                }
            })
            .collect()
    }

    fn doubt_foreign_insert_parts(&mut self, insert: &Insert) {
        if insert.or.is_some()
            || insert.ignore
            || insert.overwrite
            || insert.partitioned.is_some()
            || !insert.after_columns.is_empty()
            || insert.has_table_keyword
            || insert.replace_into
            || insert.priority.is_some()
            || insert.insert_alias.is_some()
            || insert.settings.is_some()
            || insert.format_clause.is_some()
            || insert.multi_table_insert_type.is_some()
            || !insert.multi_table_into_clauses.is_empty()
            || !insert.multi_table_when_clauses.is_empty()
            || insert.multi_table_else_clause.is_some()
            || insert.output.is_some()
            || insert.by_name
            || !insert.assignments.is_empty()
            || !insert.optimizer_hints.is_empty()
        {
            self.doubt_unsupported("an INSERT clause PostgreSQL does not have");
        }
    }
}
