//! Function calls: `COUNT` (which only tests for NULL, or compares for
//! `DISTINCT`), row constructors, aggregates and window functions. Any
//! other function is computed on plaintext, so ciphertext is refused as its
//! argument.

use sqlparser::ast::{
    DuplicateTreatment, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, WindowFrameBound, WindowSpec, WindowType,
};

use super::analyzer::Analyzer;
use super::names::{display_parts, object_name_parts};
use super::operand::Operand;
use super::scope::Scope;
use super::{rules, BoxedRefusal, Refusal};

/// Aggregates named as such in messages; any other function is refused on
/// ciphertext all the same.
const AGGREGATES: &[&str] = &[
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "max",
    "min",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "stddev",
    "string_agg",
    "sum",
    "variance",
    "xmlagg",
];

impl Analyzer<'_> {
    /// A function call, with its `FILTER`, `WITHIN GROUP` and `OVER` parts.
    pub(super) fn function(
        &mut self,
        function: &Function,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let Some(parts) = object_name_parts(&function.name) else {
            self.doubt_unsupported("a function name PostgreSQL does not have");
            return Ok(Operand::Computed);
        };
        let display = display_parts(&parts);
        let builtin = match parts.as_slice() {
            [name] => Some(name.as_str()),
            [schema, name] if schema == "pg_catalog" => Some(name.as_str()),
            _ => None,
        };
        if !matches!(function.parameters, FunctionArguments::None) {
            self.doubt_unsupported(format!("parametric function {display}"));
        }
        let windowed = function.over.is_some();
        let mut distinct = false;
        let mut operands = Vec::new();
        match &function.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(subquery) => {
                operands.push(self.subquery_operand(subquery, scope)?);
            }
            FunctionArguments::List(list) => {
                distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
                for argument in &list.args {
                    if let Some(operand) = self.function_argument(argument, builtin, scope)? {
                        operands.push(operand);
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(items) => {
                            for item in items {
                                self.order_by_expression(item, scope)?;
                            }
                        }
                        FunctionArgumentClause::Limit(limit) => {
                            self.input(limit, scope, "LIMIT")?
                        }
                        FunctionArgumentClause::IgnoreOrRespectNulls(_) => {}
                        _ => self.doubt_unsupported(format!("an argument clause of {display}")),
                    }
                }
            }
        }
        if windowed {
            if let Some(column) = operands.iter().find_map(Operand::ciphertext_column) {
                return Err(Box::new(Refusal::UnsupportedShape {
                    shape: format!(
                        "window function {display}() over encrypted column {}",
                        column.column
                    ),
                    table: column.column.table_name(),
                }));
            }
        }
        if builtin == Some("set_config") {
            // May set search_path: later statements may resolve differently.
            self.changes_session = true;
        }
        match builtin {
            Some("row") if !windowed => return Ok(Operand::Row(operands)),
            // COUNT(x) only tests x for NULL, as IS NOT NULL does.
            Some("count") => {
                if distinct {
                    for operand in &operands {
                        rules::require_groupable(operand, "COUNT(DISTINCT …)")?;
                    }
                }
            }
            _ => {
                let attempted = if builtin.is_some_and(|name| AGGREGATES.contains(&name)) {
                    format!("aggregate {display}()")
                } else {
                    format!("function {display}()")
                };
                for operand in &operands {
                    self.use_as_input(operand, &attempted)?;
                }
            }
        }
        for item in &function.within_group {
            self.order_by_expression(item, scope)?;
        }
        if let Some(filter) = &function.filter {
            self.condition(filter, scope)?;
        }
        if let Some(WindowType::WindowSpec(window)) = &function.over {
            self.window(window, scope)?;
        }
        Ok(Operand::Computed)
    }

    /// One argument of a function; `None` for `*`.
    fn function_argument(
        &mut self,
        argument: &FunctionArg,
        builtin: Option<&str>,
        scope: &Scope<'_>,
    ) -> Result<Option<Operand>, BoxedRefusal> {
        let argument = match argument {
            FunctionArg::Unnamed(argument) | FunctionArg::Named { arg: argument, .. } => argument,
            FunctionArg::ExprNamed { arg: argument, .. } => {
                self.doubt_unsupported("a function argument named by an expression");
                argument
            }
        };
        match argument {
            FunctionArgExpr::Expr(expr) => Ok(Some(self.expr(expr, scope)?)),
            // COUNT(*) counts rows; any other f(*) would see whole rows.
            FunctionArgExpr::Wildcard if builtin == Some("count") => Ok(None),
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {
                self.doubt_unsupported("* as a function argument");
                Ok(None)
            }
            FunctionArgExpr::QualifiedWildcard(name) => {
                let relation =
                    object_name_parts(name).and_then(|parts| scope.relation(&parts).cloned());
                if relation
                    .is_none_or(|relation| relation.has_ciphertext() || relation.columns.is_none())
                {
                    self.doubt_unsupported(format!("whole-row reference {name}.*"));
                }
                Ok(None)
            }
        }
    }

    /// A window definition (`OVER (…)` or `WINDOW w AS (…)`).
    pub(super) fn window(
        &mut self,
        window: &WindowSpec,
        scope: &Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        for partition in &window.partition_by {
            let operand = self.expr(partition, scope)?;
            rules::require_groupable(&operand, "PARTITION BY")?;
            rules::read(&mut self.bindings, &operand)?;
        }
        for item in &window.order_by {
            self.order_by_expression(item, scope)?;
        }
        if let Some(frame) = &window.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                if let WindowFrameBound::Preceding(Some(offset))
                | WindowFrameBound::Following(Some(offset)) = bound
                {
                    self.input(offset, scope, "a window frame")?;
                }
            }
        }
        Ok(())
    }
}
