//! Walking `FROM` (and `UPDATE … FROM`, `DELETE … USING`): tables, CTEs,
//! subqueries and joins become relations of a [`Scope`]; join conditions are
//! checked as comparisons.

use sqlparser::ast::{
    JoinConstraint, JoinOperator, ObjectName, TableAlias, TableFactor, TableWithJoins,
};

use super::analyzer::Analyzer;
use super::names::{alias_columns, alias_name, display_parts, object_name_parts};
use super::operand::Operand;
use super::scope::{Relation, Scope, ScopeColumn};
use super::{rules, BoxedRefusal};

/// The columns `*` expands to over one `FROM` item, in order; `None` when
/// some are unknown.
type StarColumns = Option<Vec<ScopeColumn>>;

impl Analyzer<'_> {
    /// Adds one `FROM` item (a relation and the joins hanging off it) to `level`.
    pub(super) fn add_from_item(
        &mut self,
        item: &TableWithJoins,
        level: &mut Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        let star = self.join_tree(item, level)?;
        level.add_star_item(star);
        Ok(())
    }

    /// Adds the relations of one `FROM` item to `level` and returns what `*`
    /// expands to over it.
    fn join_tree(
        &mut self,
        item: &TableWithJoins,
        level: &mut Scope<'_>,
    ) -> Result<StarColumns, BoxedRefusal> {
        // Parenthesized joins nest.
        if !self.descend() {
            return Ok(None);
        }
        let added = self.join_tree_at_depth(item, level);
        self.ascend();
        added
    }

    fn join_tree_at_depth(
        &mut self,
        item: &TableWithJoins,
        level: &mut Scope<'_>,
    ) -> Result<StarColumns, BoxedRefusal> {
        let left_start = level.relation_count();
        let mut star = self.table_factor(&item.relation, level)?;
        for join in &item.joins {
            let right_start = level.relation_count();
            let right = self.table_factor(&join.relation, level)?;
            if join.global {
                self.doubt_unsupported("GLOBAL JOIN");
            }
            let (constraint, right_wins) = match &join.join_operator {
                JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                | JoinOperator::Left(constraint)
                | JoinOperator::LeftOuter(constraint)
                | JoinOperator::FullOuter(constraint)
                | JoinOperator::CrossJoin(constraint) => (constraint, false),
                JoinOperator::Right(constraint) | JoinOperator::RightOuter(constraint) => {
                    (constraint, true)
                }
                _ => {
                    self.doubt_unsupported("a join kind PostgreSQL does not have");
                    star = None;
                    continue;
                }
            };
            let merged = self.join_constraint(constraint, level, left_start, right_start)?;
            star = joined_star(star, right, &merged, right_wins);
            if matches!(constraint, JoinConstraint::Natural) {
                // Which columns merge, and so where every column lands, is
                // decided by the server's column names.
                if let Some(columns) = star.as_mut() {
                    for column in columns {
                        column.server_ordered = true;
                    }
                }
            }
        }
        Ok(star)
    }

    /// `ON`, `USING` or `NATURAL` between the relations from `left_start`
    /// and those from `right_start`; returns the column names merged.
    fn join_constraint(
        &mut self,
        constraint: &JoinConstraint,
        level: &mut Scope<'_>,
        left_start: usize,
        right_start: usize,
    ) -> Result<Vec<String>, BoxedRefusal> {
        let mut merged = Vec::new();
        match constraint {
            JoinConstraint::None => {}
            JoinConstraint::On(condition) => self.condition(condition, level)?,
            JoinConstraint::Using(names) => {
                for name in names {
                    match object_name_parts(name).as_deref() {
                        Some([column]) => {
                            self.join_column(column, level, left_start, right_start)?;
                            merged.push(column.clone());
                        }
                        _ => self.doubt_unresolved(format!("join column {name}")),
                    }
                }
            }
            JoinConstraint::Natural => {
                let left = level.column_names_in(left_start..right_start);
                let right = level.column_names_in(right_start..level.relation_count());
                let (Some(left), Some(right)) = (left, right) else {
                    self.doubt_unsupported(
                        "NATURAL JOIN with a relation whose columns are unknown",
                    );
                    return Ok(merged);
                };
                // The server merges the common columns in the left side's order.
                for column in left.iter().filter(|column| right.contains(column)) {
                    if !merged.contains(column) {
                        self.join_column(column, level, left_start, right_start)?;
                        merged.push(column.clone());
                    }
                }
            }
            JoinConstraint::UsingAlias(..) => {
                self.doubt_unsupported("JOIN … USING (…) AS");
            }
        }
        Ok(merged)
    }

    /// `USING (column)`: the left and right columns are compared for equality.
    fn join_column(
        &mut self,
        column: &str,
        level: &mut Scope<'_>,
        left_start: usize,
        right_start: usize,
    ) -> Result<(), BoxedRefusal> {
        let left = level.columns_in(left_start..right_start, column);
        let right = level.columns_in(right_start..level.relation_count(), column);
        // An earlier USING merged same-named columns of the left side into one.
        let left_is_one = left.len() == 1 || (!left.is_empty() && level.is_merged(column));
        match (left.first(), right.as_slice()) {
            (Some(left), [right]) if left_is_one => {
                rules::compare_for_equality(
                    &mut self.bindings,
                    &Operand::Column(left.clone()),
                    &Operand::Column(right.clone()),
                    "JOIN … USING",
                )?;
                level.merge_column(column.to_owned());
            }
            _ => self.doubt_unresolved(format!("join column {column}")),
        }
        Ok(())
    }

    /// Adds one relation (or, for a parenthesized join, several) to `level`
    /// and returns what `*` expands to over it.
    fn table_factor(
        &mut self,
        factor: &TableFactor,
        level: &mut Scope<'_>,
    ) -> Result<StarColumns, BoxedRefusal> {
        let relation = match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance: _,
            } => {
                if args.is_some() {
                    self.doubt_unsupported(format!("function {name} in FROM"));
                    let fallback = object_name_parts(name).and_then(|parts| parts.last().cloned());
                    level.add_relation(Relation::opaque(alias_name(alias.as_ref()).or(fallback)));
                    return Ok(None);
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_directives.is_empty()
                {
                    // TABLESAMPLE and the clauses of other dialects hold
                    // expressions this walk does not enter.
                    self.doubt_unsupported("a table clause this analyzer does not support");
                }
                self.named_relation(name, alias.as_ref(), level)
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if *lateral {
                    // A LATERAL subquery sees the relations before it, which
                    // this walk does not offer it.
                    self.doubt_unsupported("LATERAL subquery");
                }
                if sample.is_some() {
                    self.doubt_unsupported("TABLESAMPLE on a subquery");
                }
                let outputs = self.query(subquery, level.outer())?;
                let name = alias_name(alias.as_ref());
                let label = name.as_deref().unwrap_or("subquery");
                let columns =
                    self.derived_columns(outputs, label, &alias_columns(alias.as_ref()))?;
                Relation::derived(name, columns)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    self.doubt_unsupported("an alias on a parenthesized join");
                }
                return self.join_tree(table_with_joins, level);
            }
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset,
                with_offset_alias: _,
                with_ordinality,
            } => {
                if *with_offset {
                    self.doubt_unsupported("WITH OFFSET, which PostgreSQL does not have");
                }
                self.unnest(array_exprs, alias.as_ref(), *with_ordinality, level)?
            }
            TableFactor::Function { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::JsonTable { alias, .. }
            | TableFactor::OpenJsonTable { alias, .. }
            | TableFactor::XmlTable { alias, .. } => {
                self.doubt_unsupported("a function call in FROM");
                Relation::opaque(alias_name(alias.as_ref()))
            }
            TableFactor::Pivot { alias, .. }
            | TableFactor::Unpivot { alias, .. }
            | TableFactor::MatchRecognize { alias, .. }
            | TableFactor::SemanticView { alias, .. } => {
                self.doubt_unsupported("a FROM item PostgreSQL does not have");
                Relation::opaque(alias_name(alias.as_ref()))
            }
            TableFactor::UnpivotExpr { .. } => {
                self.doubt_unsupported("a FROM item PostgreSQL does not have");
                Relation::opaque(None)
            }
        };
        let star = relation.columns.clone();
        level.add_relation(relation);
        Ok(star)
    }

    /// A table or CTE named in `FROM`.
    pub(super) fn named_relation(
        &mut self,
        name: &ObjectName,
        alias: Option<&TableAlias>,
        level: &Scope<'_>,
    ) -> Relation {
        let Some(parts) = object_name_parts(name) else {
            self.doubt_unsupported(format!("table name {name}"));
            return Relation::opaque(alias_name(alias));
        };
        let alias_name = alias_name(alias);
        let renamed = alias_columns(alias);
        if let [single] = parts.as_slice() {
            if let Some(common_table) = level.common_table(single) {
                let mut relation = Relation::derived(
                    Some(alias_name.unwrap_or_else(|| single.clone())),
                    common_table.columns.clone(),
                );
                self.rename_columns(&mut relation, &renamed);
                return relation;
            }
        }
        match self.resolve_table(&parts) {
            Some(table) => {
                let mut relation = Relation::from_table(&table, alias_name);
                self.rename_columns(&mut relation, &renamed);
                relation
            }
            None => {
                self.doubt_unresolved(format!("table {}", display_parts(&parts)));
                Relation::opaque(alias_name.or_else(|| parts.last().cloned()))
            }
        }
    }

    /// Renames the first columns of `relation`, as `AS alias(a, b)` does:
    /// by position, so not over the server's column order where the
    /// relation has ciphertext.
    fn rename_columns(&mut self, relation: &mut Relation, renamed: &[String]) {
        if renamed.is_empty() {
            return;
        }
        if let Some(columns) = &relation.columns {
            let server_ordered = columns
                .iter()
                .take(renamed.len())
                .any(|column| column.server_ordered);
            if server_ordered && relation.has_ciphertext() {
                self.doubt_unsupported(
                    "a column alias list over a table with encrypted columns, whose column \
                     order is the server's (name the columns in a subquery)",
                );
            }
        }
        relation.rename_columns(renamed);
    }

    /// The relation an `INSERT`, `UPDATE` or `DELETE` writes to.
    pub(super) fn target_relation(&mut self, factor: &TableFactor) -> Relation {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: _,
        } = factor
        else {
            self.doubt_unsupported("a target that is not a plain table");
            return Relation::opaque(None);
        };
        if !with_hints.is_empty()
            || !partitions.is_empty()
            || !index_directives.is_empty()
            || alias
                .as_ref()
                .is_some_and(|alias| !alias.columns.is_empty())
        {
            self.doubt_unsupported("a target that is not a plain table");
        }
        self.target_table(name, alias_name(alias.as_ref()))
    }

    /// The table `name` as a target (never a CTE), known as `alias` if given.
    pub(super) fn target_table(&mut self, name: &ObjectName, alias: Option<String>) -> Relation {
        let Some(parts) = object_name_parts(name) else {
            self.doubt_unsupported(format!("table name {name}"));
            return Relation::opaque(alias);
        };
        match self.resolve_table(&parts) {
            Some(table) => Relation::from_table(&table, alias),
            None => {
                self.doubt_unresolved(format!("table {}", display_parts(&parts)));
                Relation::opaque(alias.or_else(|| parts.last().cloned()))
            }
        }
    }
}

/// What `*` expands to over `left JOIN right`: the merged columns first
/// (taken from the right side for a `RIGHT JOIN`, as the server does), then
/// the other columns of each side.
fn joined_star(
    left: StarColumns,
    right: StarColumns,
    merged: &[String],
    right_wins: bool,
) -> StarColumns {
    let (left, right) = (left?, right?);
    let named =
        |side: &[ScopeColumn], name: &str| side.iter().find(|column| column.name == name).cloned();
    let mut columns: Vec<ScopeColumn> = merged
        .iter()
        .filter_map(|name| {
            if right_wins {
                named(&right, name)
            } else {
                named(&left, name)
            }
        })
        .collect();
    for side in [&left, &right] {
        columns.extend(
            side.iter()
                .filter(|column| !merged.contains(&column.name))
                .cloned(),
        );
    }
    Some(columns)
}
