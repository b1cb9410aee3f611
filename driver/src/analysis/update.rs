//! `UPDATE … SET … FROM … WHERE … RETURNING`, and the `SET` list it shares
//! with `INSERT … ON CONFLICT … DO UPDATE`.

use sqlparser::ast::{Assignment, AssignmentTarget, Update, UpdateTableFromKind};

use super::analyzer::Analyzer;
use super::names::object_name_parts;
use super::operand::{Operand, OutputColumn, SourceColumn};
use super::scope::{Relation, Scope};
use super::{rules, BoxedRefusal};

impl Analyzer<'_> {
    /// Walks an `UPDATE` inside `outer` (a CTE's scope, or none) and returns
    /// its `RETURNING` columns.
    pub(super) fn update(
        &mut self,
        update: &Update,
        outer: Option<&Scope<'_>>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        if update.on_cluster.is_some()
            || update.output.is_some()
            || update.or.is_some()
            || !update.order_by.is_empty()
            || update.limit.is_some()
            || update.settings.is_some()
            || !update.optimizer_hints.is_empty()
            || !update.table.joins.is_empty()
            || matches!(update.from, Some(UpdateTableFromKind::BeforeSet(_)))
        {
            self.doubt_unsupported("an UPDATE clause PostgreSQL does not have");
        }
        let target = self.target_relation(&update.table.relation);
        let mut level = Scope::inside(outer);
        level.add_target(target.clone());
        if let Some(UpdateTableFromKind::AfterSet(items) | UpdateTableFromKind::BeforeSet(items)) =
            &update.from
        {
            for item in items {
                self.add_from_item(item, &mut level)?;
            }
        }
        self.assignments(&update.assignments, &target, &level)?;
        if let Some(selection) = &update.selection {
            self.condition(selection, &level)?;
        }
        self.projection(update.returning.as_deref().unwrap_or_default(), &level)
    }

    /// A `SET` list: each value stored into its column of `target`.
    pub(super) fn assignments(
        &mut self,
        assignments: &[Assignment],
        target: &Relation,
        scope: &Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        for assignment in assignments {
            let names = match &assignment.target {
                AssignmentTarget::ColumnName(name) => std::slice::from_ref(name),
                AssignmentTarget::Tuple(names) => names.as_slice(),
            };
            let mut columns = Vec::with_capacity(names.len());
            for name in names {
                columns.push(match object_name_parts(name) {
                    Some(parts) => self.assignment_target(&parts, target)?,
                    None => {
                        self.doubt_unsupported(format!("target column {name}"));
                        None
                    }
                });
            }
            let value = self.expr(&assignment.value, scope)?;
            let values = match (&assignment.target, value) {
                (AssignmentTarget::ColumnName(_), value) => vec![value],
                // SET (a, b) = ($1, $2) / ROW($1, $2) / (SELECT x, y …)
                (AssignmentTarget::Tuple(_), Operand::Row(values))
                    if values.len() == columns.len() =>
                {
                    values
                }
                (AssignmentTarget::Tuple(_), value) => {
                    self.doubt_unsupported(
                        "a multiple-column assignment from a value that is not a row",
                    );
                    rules::read(&mut self.bindings, &value)?;
                    Vec::new()
                }
            };
            for (column, value) in columns.iter().zip(&values) {
                match column {
                    Some(column) => rules::store(&mut self.bindings, column, value)?,
                    None => rules::read(&mut self.bindings, value)?,
                }
            }
        }
        Ok(())
    }

    /// The column an assignment (or an `INSERT` column list entry) writes.
    /// `col.field` and `col[i]` write part of a column: a plaintext value
    /// computed into ciphertext, which is refused.
    pub(super) fn assignment_target(
        &mut self,
        parts: &[String],
        target: &Relation,
    ) -> Result<Option<SourceColumn>, BoxedRefusal> {
        let Some((column, subfield)) = parts.split_first() else {
            return Ok(None);
        };
        let Some(source) = self.target_column(target, column) else {
            return Ok(None);
        };
        if subfield.is_empty() {
            return Ok(Some(source));
        }
        self.use_as_input(
            &Operand::Column(source.clone()),
            "assigning a field or element of it",
        )?;
        Ok(Some(SourceColumn::Plaintext {
            label: source_label(&source, subfield),
            origin: None,
        }))
    }

    /// The column `name` of a target table, with a doubt if it has none.
    pub(super) fn target_column(&mut self, target: &Relation, name: &str) -> Option<SourceColumn> {
        let columns = target.columns.as_ref()?;
        let found = columns.iter().find(|column| column.name == name);
        if found.is_none() {
            self.doubt_unresolved(format!("target column {name}"));
        }
        found.map(|column| column.source.clone())
    }
}

fn source_label(source: &SourceColumn, subfield: &[String]) -> String {
    match source {
        SourceColumn::Plaintext { label, .. } | SourceColumn::ParameterElements { label, .. } => {
            format!("{label}.{}", subfield.join("."))
        }
        SourceColumn::Ciphertext(column) => column.column.to_string(),
    }
}
