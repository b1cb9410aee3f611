//! Walking queries: `WITH`, set operations, `VALUES`, `LIMIT`; a `SELECT`
//! body is walked in `select`.
//!
//! A query yields its result columns unconsumed ([`OutputColumn`]): whoever
//! consumes them decides what they meet — read out at the top level, stored
//! by `INSERT … SELECT`, compared by `IN (SELECT …)`.

use sqlparser::ast::{
    LimitClause, OrderBy, Query, SetExpr, SetOperator, SetQuantifier, Values, With,
};

use super::analyzer::Analyzer;
use super::names::{alias_columns, fold_identifier};
use super::operand::{Operand, OutputColumn, SourceColumn};
use super::scope::{CommonTable, Scope, ScopeColumn};
use super::{rules, BoxedRefusal};

impl Analyzer<'_> {
    /// Walks a query inside `outer` and returns its result columns.
    pub(super) fn query(
        &mut self,
        query: &Query,
        outer: Option<&Scope<'_>>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        if !self.descend() {
            return Ok(Vec::new());
        }
        let outputs = self.query_at_depth(query, outer);
        self.ascend();
        outputs
    }

    fn query_at_depth(
        &mut self,
        query: &Query,
        outer: Option<&Scope<'_>>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        let mut level = Scope::inside(outer);
        if let Some(with) = &query.with {
            self.with_clause(with, &mut level)?;
        }
        if query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            self.doubt_unsupported("a query clause PostgreSQL does not have");
        }
        let outputs = self.set_expr(&query.body, &level, query.order_by.as_ref())?;
        match &query.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if let Some(limit) = limit {
                    self.input(limit, &level, "LIMIT")?;
                }
                if let Some(offset) = offset {
                    self.input(&offset.value, &level, "OFFSET")?;
                }
                if !limit_by.is_empty() {
                    self.doubt_unsupported("LIMIT … BY");
                }
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => {
                self.doubt_unsupported("LIMIT offset, count")
            }
        }
        if let Some(quantity) = query
            .fetch
            .as_ref()
            .and_then(|fetch| fetch.quantity.as_ref())
        {
            self.input(quantity, &level, "FETCH")?;
        }
        Ok(outputs)
    }

    /// Declares each CTE in `level`, visible to the CTEs after it and to
    /// the query body.
    fn with_clause(&mut self, with: &With, level: &mut Scope<'_>) -> Result<(), BoxedRefusal> {
        if with.recursive {
            // A recursive CTE refers to itself before its columns are known.
            self.doubt_unsupported("WITH RECURSIVE");
            self.recursive_names.extend(
                with.cte_tables
                    .iter()
                    .map(|cte| fold_identifier(&cte.alias.name)),
            );
        }
        for cte in &with.cte_tables {
            if cte.from.is_some() {
                self.doubt_unsupported("WITH … FROM");
            }
            let outputs = self.query(&cte.query, Some(level))?;
            let name = fold_identifier(&cte.alias.name);
            let columns = self.derived_columns(outputs, &name, &alias_columns(Some(&cte.alias)))?;
            level.add_common_table(CommonTable { name, columns });
        }
        Ok(())
    }

    /// The columns of a subquery or CTE named `label`, the first ones
    /// `renamed` by its alias.
    pub(super) fn derived_columns(
        &mut self,
        outputs: Vec<OutputColumn>,
        label: &str,
        renamed: &[String],
    ) -> Result<Vec<ScopeColumn>, BoxedRefusal> {
        self.doubt_server_order(
            outputs.iter().take(renamed.len()),
            outputs
                .iter()
                .any(|output| output.ciphertext_column().is_some()),
            "a column alias list",
        );
        let mut columns = Vec::with_capacity(outputs.len());
        for (position, output) in outputs.into_iter().enumerate() {
            let server_ordered = output.server_ordered;
            let name = renamed
                .get(position)
                .cloned()
                .unwrap_or_else(|| output.name.clone());
            let source = match self.pass_through(output, "a subquery or CTE")? {
                Some(source) => source,
                None => SourceColumn::Plaintext {
                    label: format!("{label}.{name}"),
                    origin: None,
                },
            };
            columns.push(ScopeColumn {
                name,
                source,
                server_ordered,
            });
        }
        Ok(columns)
    }

    fn set_expr(
        &mut self,
        body: &SetExpr,
        scope: &Scope<'_>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        if !self.descend() {
            return Ok(Vec::new());
        }
        let outputs = self.set_expr_at_depth(body, scope, order_by);
        self.ascend();
        outputs
    }

    fn set_expr_at_depth(
        &mut self,
        body: &SetExpr,
        scope: &Scope<'_>,
        order_by: Option<&OrderBy>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        let outputs = match body {
            SetExpr::Select(select) => return self.select(select, scope, order_by),
            SetExpr::Query(query) => self.query(query, Some(scope))?,
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let left = self.set_expr(left, scope, None)?;
                let right = self.set_expr(right, scope, None)?;
                self.set_operation(*op, *set_quantifier, left, right)?
            }
            SetExpr::Values(values) => self.values(values, scope)?,
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement) => self.data_modifying(statement, scope)?,
            SetExpr::Merge(_) => {
                self.doubt_unsupported("MERGE");
                Vec::new()
            }
            SetExpr::Table(table) => self.table_command(table, scope),
        };
        if let Some(order_by) = order_by {
            self.order_by(order_by, &outputs, None, scope)?;
        }
        Ok(outputs)
    }

    /// `UNION`/`INTERSECT`/`EXCEPT`: each result column takes the
    /// alternatives of both sides.
    fn set_operation(
        &mut self,
        operator: SetOperator,
        quantifier: SetQuantifier,
        left: Vec<OutputColumn>,
        right: Vec<OutputColumn>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        let name = match operator {
            SetOperator::Union => "UNION",
            SetOperator::Except => "EXCEPT",
            SetOperator::Intersect => "INTERSECT",
            SetOperator::Minus => {
                self.doubt_unsupported("MINUS");
                "MINUS"
            }
        };
        let all = match quantifier {
            SetQuantifier::All => true,
            SetQuantifier::None | SetQuantifier::Distinct => false,
            SetQuantifier::ByName | SetQuantifier::AllByName | SetQuantifier::DistinctByName => {
                self.doubt_unsupported(format!("{name} BY NAME"));
                false
            }
        };
        // INTERSECT ALL and EXCEPT ALL still match rows by value; only
        // UNION ALL merely concatenates.
        let compares = !(all && operator == SetOperator::Union);
        if left.len() != right.len() {
            self.doubt_unresolved(format!(
                "{name} of queries with different numbers of columns"
            ));
        }
        let mut combined = Vec::with_capacity(left.len());
        for (left, right) in left.into_iter().zip(right) {
            let mut values = left.values;
            values.extend(right.values);
            rules::combine(&values, name, compares)?;
            combined.push(OutputColumn {
                name: left.name,
                values,
                server_ordered: left.server_ordered || right.server_ordered,
            });
        }
        Ok(combined)
    }

    /// Doubts matching `outputs` by position (to other columns, values or
    /// names) when a position comes from the server's column order — a `*`
    /// over a table — and ciphertext is involved (among `outputs`, or, per
    /// `ciphertext_elsewhere`, on the other side). The server can rebuild a
    /// table with its columns reordered: a value would then meet another
    /// column than the one the application wrote it for, a plaintext one
    /// perhaps.
    pub(super) fn doubt_server_order<'o>(
        &mut self,
        outputs: impl Iterator<Item = &'o OutputColumn> + Clone,
        ciphertext_elsewhere: bool,
        matched_by: &str,
    ) {
        let server_ordered = outputs.clone().any(|output| output.server_ordered);
        let ciphertext = ciphertext_elsewhere
            || outputs
                .clone()
                .any(|output| output.ciphertext_column().is_some());
        if server_ordered && ciphertext {
            self.doubt_unsupported(format!(
                "{matched_by} matched by position to a *, whose column order is the server's \
                 (list the columns)"
            ));
        }
    }

    /// `VALUES (…), (…)`: each result column takes one alternative per row.
    fn values(
        &mut self,
        values: &Values,
        scope: &Scope<'_>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        if values.explicit_row {
            self.doubt_unsupported("VALUES ROW(…)");
        }
        let width = values.rows.first().map_or(0, |row| row.content.len());
        let mut columns: Vec<Vec<Operand>> = vec![Vec::with_capacity(values.rows.len()); width];
        for row in &values.rows {
            if row.content.len() != width {
                self.doubt_unresolved("VALUES lists of different lengths");
            }
            for (column, expr) in columns.iter_mut().zip(&row.content) {
                column.push(self.expr(expr, scope)?);
            }
        }
        let mut outputs = Vec::with_capacity(width);
        for (position, values) in columns.into_iter().enumerate() {
            rules::combine(&values, "VALUES", false)?;
            outputs.push(OutputColumn {
                name: format!("column{}", position + 1),
                values,
                server_ordered: false,
            });
        }
        Ok(outputs)
    }

    /// `TABLE name`: `SELECT * FROM name`.
    fn table_command(
        &mut self,
        table: &sqlparser::ast::Table,
        scope: &Scope<'_>,
    ) -> Vec<OutputColumn> {
        let Some(table_name) = &table.table_name else {
            self.doubt_unsupported("TABLE without a name");
            return Vec::new();
        };
        let parts: Vec<sqlparser::ast::Ident> = table
            .schema_name
            .iter()
            .chain(std::iter::once(table_name))
            .cloned()
            .collect();
        let name = sqlparser::ast::ObjectName::from(parts);
        let level = Scope::inside(Some(scope));
        let relation = self.named_relation(&name, None, &level);
        match relation.columns {
            Some(columns) => columns.into_iter().map(OutputColumn::expanded).collect(),
            None => {
                self.doubt_unresolved("TABLE over a relation whose columns are unknown");
                Vec::new()
            }
        }
    }
}
