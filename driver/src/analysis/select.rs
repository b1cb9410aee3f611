//! `SELECT`: its `FROM` list, `WHERE`, select list, `GROUP BY`, `HAVING`,
//! `DISTINCT`, `WINDOW` and `ORDER BY`.

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, NamedWindowExpr, OrderBy, OrderByKind, Select, SelectItem,
    SelectItemQualifiedWildcardKind, Value,
};

use super::analyzer::Analyzer;
use super::names::{fold_identifier, object_name_parts};
use super::operand::{Operand, OutputColumn};
use super::scope::{ColumnLookup, Relation, Scope};
use super::{rules, BoxedRefusal};

impl Analyzer<'_> {
    /// Walks a `SELECT` inside `outer` (its query's level, with the CTEs),
    /// with the `ORDER BY` of its query, and returns its result columns.
    pub(super) fn select(
        &mut self,
        select: &Select,
        outer: &Scope<'_>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        self.doubt_foreign_select_parts(select);
        let mut level = Scope::inside(Some(outer));
        for item in &select.from {
            self.add_from_item(item, &mut level)?;
        }
        if let Some(selection) = &select.selection {
            self.condition(selection, &level)?;
        }
        let outputs = self.projection(&select.projection, &level)?;
        match &select.group_by {
            GroupByExpr::All(_) => self.doubt_unsupported("GROUP BY ALL"),
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    self.doubt_unsupported("GROUP BY … WITH");
                }
                for expr in exprs {
                    self.group_item(expr, &level, &outputs, "GROUP BY")?;
                }
            }
        }
        if let Some(having) = &select.having {
            self.condition(having, &level)?;
        }
        match &select.distinct {
            None | Some(Distinct::All) => {}
            Some(Distinct::Distinct) => {
                for value in outputs.iter().flat_map(|output| &output.values) {
                    rules::require_groupable(value, "DISTINCT")?;
                }
            }
            Some(Distinct::On(exprs)) => {
                for expr in exprs {
                    self.group_item(expr, &level, &outputs, "DISTINCT ON")?;
                }
            }
        }
        for definition in &select.named_window {
            if let NamedWindowExpr::WindowSpec(window) = &definition.1 {
                self.window(window, &level)?;
            }
        }
        if let Some(order_by) = order_by {
            self.order_by(order_by, &outputs, Some(&level), outer)?;
        }
        Ok(outputs)
    }

    /// Parts of the `SELECT` syntax tree that other dialects fill; here
    /// they only say the text was not PostgreSQL's.
    fn doubt_foreign_select_parts(&mut self, select: &Select) {
        if select.into.is_some() {
            // SELECT INTO creates a table from the result, as CREATE TABLE AS.
            self.doubt_unsupported("SELECT INTO");
        }
        if select.top.is_some()
            || select.exclude.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.qualify.is_some()
            || select.value_table_mode.is_some()
            || select.select_modifiers.is_some()
            || !select.optimizer_hints.is_empty()
            || select.flavor != sqlparser::ast::SelectFlavor::Standard
        {
            self.doubt_unsupported("a SELECT clause PostgreSQL does not have");
        }
    }

    /// The select list (also `RETURNING`): each item as an unconsumed result column.
    pub(super) fn projection(
        &mut self,
        items: &[SelectItem],
        level: &Scope<'_>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        let mut outputs = Vec::with_capacity(items.len());
        for item in items {
            match item {
                SelectItem::UnnamedExpr(expr) => {
                    outputs.push(OutputColumn::single(
                        output_name(expr),
                        self.expr(expr, level)?,
                    ));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    outputs.push(OutputColumn::single(
                        fold_identifier(alias),
                        self.expr(expr, level)?,
                    ));
                }
                SelectItem::ExprWithAliases { .. } => self.doubt_unsupported("AS (alias, …)"),
                SelectItem::Wildcard(options) => {
                    if options.opt_ilike.is_some()
                        || options.opt_exclude.is_some()
                        || options.opt_except.is_some()
                        || options.opt_replace.is_some()
                        || options.opt_rename.is_some()
                        || options.opt_alias.is_some()
                    {
                        self.doubt_unsupported("* with options");
                    }
                    match level.star_columns() {
                        Some(columns) => {
                            outputs.extend(columns.into_iter().map(OutputColumn::expanded));
                        }
                        None => {
                            self.doubt_unresolved("* over a relation whose columns are unknown")
                        }
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) => {
                    match object_name_parts(name).and_then(|parts| level.relation(&parts).cloned())
                    {
                        Some(relation) => self.expand(&relation, &mut outputs),
                        None => self.doubt_unresolved(format!("{name}.*")),
                    }
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::Expr(_), _) => {
                    self.doubt_unsupported("(expression).*");
                }
            }
        }
        Ok(outputs)
    }

    /// `*` over one relation: each of its columns, read as it is.
    fn expand(&mut self, relation: &Relation, outputs: &mut Vec<OutputColumn>) {
        match &relation.columns {
            Some(columns) => outputs.extend(columns.iter().cloned().map(OutputColumn::expanded)),
            None => self.doubt_unresolved("* over a relation whose columns are unknown"),
        }
    }

    /// One `GROUP BY` / `DISTINCT ON` item: an input column or expression
    /// first, else a result column by name or position, as the server does.
    fn group_item(
        &mut self,
        expr: &Expr,
        level: &Scope<'_>,
        outputs: &[OutputColumn],
        clause: &str,
    ) -> Result<(), BoxedRefusal> {
        match expr {
            Expr::Value(value) => {
                if let Value::Number(position, _) = &value.value {
                    return self.result_column_check(position, outputs, |value| {
                        rules::require_groupable(value, clause)
                    });
                }
            }
            Expr::Identifier(ident) => {
                let name = fold_identifier(ident);
                if matches!(level.lookup_column(&name), ColumnLookup::NotFound) {
                    if let Some(output) = outputs.iter().find(|output| output.name == name) {
                        return output
                            .values
                            .iter()
                            .try_for_each(|value| rules::require_groupable(value, clause));
                    }
                }
            }
            Expr::Rollup(sets) | Expr::Cube(sets) | Expr::GroupingSets(sets) => {
                for expr in sets.iter().flatten() {
                    self.group_item(expr, level, outputs, clause)?;
                }
                return Ok(());
            }
            _ => {}
        }
        let operand = self.expr(expr, level)?;
        rules::require_groupable(&operand, clause)?;
        rules::read(&mut self.bindings, &operand)
    }

    /// `ORDER BY` of a query: a result column by position or name, or (for a
    /// plain `SELECT`, whose input columns are in `level`) any expression.
    pub(super) fn order_by(
        &mut self,
        order_by: &OrderBy,
        outputs: &[OutputColumn],
        level: Option<&Scope<'_>>,
        outer: &Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        if order_by.interpolate.is_some() {
            self.doubt_unsupported("ORDER BY … INTERPOLATE");
        }
        let items = match &order_by.kind {
            OrderByKind::Expressions(items) => items,
            OrderByKind::All(_) => {
                self.doubt_unsupported("ORDER BY ALL");
                return Ok(());
            }
        };
        let forbid = |value: &Operand| rules::forbid_ciphertext(value, "ORDER BY");
        for item in items {
            match &item.expr {
                Expr::Value(value) => {
                    if let Value::Number(position, _) = &value.value {
                        self.result_column_check(position, outputs, forbid)?;
                        continue;
                    }
                }
                Expr::Identifier(ident) => {
                    let name = fold_identifier(ident);
                    if let Some(output) = outputs.iter().find(|output| output.name == name) {
                        output.values.iter().try_for_each(forbid)?;
                        continue;
                    }
                }
                _ => {}
            }
            // Outside a plain SELECT only result columns can be named; an
            // expression then sees the enclosing scope only.
            self.order_by_expression(item, level.unwrap_or(outer))?;
        }
        Ok(())
    }

    /// Applies `check` to the result column at a 1-based `position`.
    fn result_column_check(
        &mut self,
        position: &str,
        outputs: &[OutputColumn],
        check: impl Fn(&Operand) -> Result<(), BoxedRefusal>,
    ) -> Result<(), BoxedRefusal> {
        let output = position
            .parse::<usize>()
            .ok()
            .and_then(|position| position.checked_sub(1))
            .and_then(|index| outputs.get(index));
        match output {
            Some(output) => output.values.iter().try_for_each(check),
            None => {
                self.doubt_unresolved(format!("result column position {position}"));
                Ok(())
            }
        }
    }
}

/// The name the server gives a result column that has no alias.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => fold_identifier(ident),
        Expr::CompoundIdentifier(idents) => idents.last().map(fold_identifier).unwrap_or_default(),
        Expr::Function(function) => object_name_parts(&function.name)
            .and_then(|parts| parts.last().cloned())
            .unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        Expr::Case { .. } => "case".to_owned(),
        Expr::Exists { .. } => "exists".to_owned(),
        _ => "?column?".to_owned(),
    }
}
