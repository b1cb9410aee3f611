//! Walking expressions: each is reduced to an [`Operand`] after the rules
//! for everything inside it have been applied.

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CaseWhen, Expr, Ident, InTarget, JsonPathElem, OrderByExpr,
    Subscript, Value,
};

use super::analyzer::Analyzer;
use super::names::{display_parts, fold_identifier, parameter_number};
use super::operand::Operand;
use super::scope::{ColumnLookup, Scope};
use super::{rules, BoxedRefusal};

/// Whether `op` makes an operand chain whose operands are all plain inputs.
fn is_chained_operator(op: &BinaryOperator) -> bool {
    !matches!(
        op,
        BinaryOperator::Eq | BinaryOperator::NotEq | BinaryOperator::And | BinaryOperator::Or
    )
}

impl Analyzer<'_> {
    /// Walks `expr` in `scope` and says what it yields.
    pub(super) fn expr(&mut self, expr: &Expr, scope: &Scope<'_>) -> Result<Operand, BoxedRefusal> {
        if !self.descend() {
            return Ok(Operand::Computed);
        }
        let operand = self.expr_at_depth(expr, scope);
        self.ascend();
        operand
    }

    /// Walks a condition (`WHERE`, `ON`, `HAVING`, `FILTER`, `CASE WHEN`).
    /// `AND`/`OR` chains are walked iteratively: generated queries chain
    /// thousands of conditions, far deeper than the walk may recurse.
    pub(super) fn condition(
        &mut self,
        condition: &Expr,
        scope: &Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        let mut pending = vec![condition];
        while let Some(next) = pending.pop() {
            match next {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And | BinaryOperator::Or,
                    right,
                } => {
                    pending.push(right);
                    pending.push(left);
                }
                Expr::Nested(inner) => pending.push(inner),
                leaf => {
                    let operand = self.expr(leaf, scope)?;
                    self.use_as_input(&operand, "use as a condition")?;
                }
            }
        }
        Ok(())
    }

    /// An expression used as the input of `attempted` (a function, an
    /// operator, a cast…): ciphertext is refused there.
    pub(super) fn input(
        &mut self,
        expr: &Expr,
        scope: &Scope<'_>,
        attempted: &str,
    ) -> Result<(), BoxedRefusal> {
        let operand = self.expr(expr, scope)?;
        self.use_as_input(&operand, attempted)
    }

    /// An `ORDER BY` expression (of a query, a window or an aggregate).
    pub(super) fn order_by_expression(
        &mut self,
        item: &OrderByExpr,
        scope: &Scope<'_>,
    ) -> Result<(), BoxedRefusal> {
        if item.with_fill.is_some() {
            self.doubt_unsupported("ORDER BY … WITH FILL");
        }
        self.input(&item.expr, scope, "ORDER BY")
    }

    /// Every arm is a single call in tail position: in unoptimized builds
    /// each `?` or temporary in an arm would add to this frame, which is on
    /// the stack once per nesting level.
    fn expr_at_depth(&mut self, expr: &Expr, scope: &Scope<'_>) -> Result<Operand, BoxedRefusal> {
        match expr {
            Expr::Identifier(ident) => Ok(self.identifier(ident, scope)),
            Expr::CompoundIdentifier(idents) => self.compound_identifier(idents, scope),
            Expr::Value(value) => Ok(self.value(&value.value)),
            Expr::TypedString(_) => Ok(Operand::Literal),
            Expr::Nested(inner) => self.expr(inner, scope),
            Expr::Tuple(items) => self.row(items, scope),
            Expr::BinaryOp { left, op, right } => {
                self.binary_operation(expr, left, op, right, scope)
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => self.null_test(inner, scope),
            Expr::IsDistinctFrom(left, right) => {
                self.equality(left, right, "IS DISTINCT FROM", scope)
            }
            Expr::IsNotDistinctFrom(left, right) => {
                self.equality(left, right, "IS NOT DISTINCT FROM", scope)
            }
            Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner) => {
                self.computed_from(&[inner], scope, "IS [NOT] TRUE/FALSE/UNKNOWN")
            }
            Expr::IsJson { expr: inner, .. } => self.computed_from(&[inner], scope, "IS JSON"),
            Expr::IsNormalized { expr: inner, .. } => {
                self.computed_from(&[inner], scope, "IS NORMALIZED")
            }
            Expr::In {
                expr: left,
                target,
                negated,
                ..
            } => self.in_expression(left, target, *negated, scope),
            Expr::Between {
                expr: inner,
                low,
                high,
                ..
            } => self.computed_from(&[inner, low, high], scope, "BETWEEN"),
            Expr::Like {
                expr: inner,
                pattern,
                escape_char,
                ..
            } => self.pattern_match(inner, pattern, escape_char.as_deref(), "LIKE", scope),
            Expr::ILike {
                expr: inner,
                pattern,
                escape_char,
                ..
            } => self.pattern_match(inner, pattern, escape_char.as_deref(), "ILIKE", scope),
            Expr::SimilarTo {
                expr: inner,
                pattern,
                escape_char,
                ..
            } => self.pattern_match(inner, pattern, escape_char.as_deref(), "SIMILAR TO", scope),
            Expr::RLike {
                expr: inner,
                pattern,
                ..
            } => self.computed_from(&[inner, pattern], scope, "regular expression match"),
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => self.quantified(left, compare_op, right, "ANY", scope),
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => self.quantified(left, compare_op, right, "ALL", scope),
            Expr::UnaryOp { op, expr: inner } => self.unary_operation(op, inner, scope),
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => self.cast(inner, data_type, scope),
            Expr::Convert {
                expr: inner,
                styles,
                ..
            } => self.computed_with_list(inner, styles, scope, "CONVERT"),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => self.computed_from(&[timestamp, time_zone], scope, "AT TIME ZONE"),
            Expr::Extract { expr: inner, .. } => self.computed_from(&[inner], scope, "EXTRACT"),
            Expr::Ceil { expr: inner, .. } => self.computed_from(&[inner], scope, "CEIL"),
            Expr::Floor { expr: inner, .. } => self.computed_from(&[inner], scope, "FLOOR"),
            Expr::Position { expr: inner, r#in } => {
                self.computed_from(&[inner, r#in], scope, "POSITION")
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => self.computed_with_optional(
                inner,
                &[substring_from, substring_for],
                scope,
                "SUBSTRING",
            ),
            Expr::Trim {
                expr: inner,
                trim_what,
                trim_characters,
                ..
            } => self.trim(
                inner,
                trim_what.as_deref(),
                trim_characters.as_deref(),
                scope,
            ),
            Expr::Overlay {
                expr: inner,
                overlay_what,
                overlay_from,
                overlay_for,
            } => self.overlay(inner, overlay_what, overlay_from, overlay_for, scope),
            Expr::Collate { expr: inner, .. } => self.computed_from(&[inner], scope, "COLLATE"),
            Expr::Interval(interval) => self.computed_from(&[&interval.value], scope, "INTERVAL"),
            Expr::Array(array) => self.inputs(&array.elem, scope, "ARRAY[…]"),
            Expr::Function(function) => self.function(function, scope),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(
                operand.as_deref(),
                conditions,
                else_result.as_deref(),
                scope,
            ),
            Expr::Exists { subquery, .. } => self.exists(subquery, scope),
            Expr::Subquery(subquery) => self.subquery_operand(subquery, scope),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.field_access(root, access_chain, scope)
            }
            Expr::JsonAccess { value, path } => self.json_access(value, &path.path, scope),
            Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
                Ok(self.unsupported_expression("grouping sets outside GROUP BY"))
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                Ok(self.unsupported_expression("* in an expression"))
            }
            Expr::Prefixed { .. }
            | Expr::Struct { .. }
            | Expr::Named { .. }
            | Expr::Dictionary(_)
            | Expr::Map(_)
            | Expr::MatchAgainst { .. }
            | Expr::OuterJoin(_)
            | Expr::Prior(_)
            | Expr::Lambda(_)
            | Expr::MemberOf(_) => {
                Ok(self.unsupported_expression("an expression syntax PostgreSQL does not have"))
            }
        }
    }

    fn unsupported_expression(&mut self, shape: &str) -> Operand {
        self.doubt_unsupported(shape);
        Operand::Computed
    }

    fn row(&mut self, items: &[Expr], scope: &Scope<'_>) -> Result<Operand, BoxedRefusal> {
        Ok(Operand::Row(self.exprs(items, scope)?))
    }

    /// `IS [NOT] NULL`: NULL stays NULL under encryption, so any column may
    /// be tested; a parameter tested is NULL whether sent encrypted or not,
    /// so its other uses bind it (`ssn = $1 OR $1 IS NULL` encrypts `$1`;
    /// unbound, it is plaintext).
    fn null_test(&mut self, inner: &Expr, scope: &Scope<'_>) -> Result<Operand, BoxedRefusal> {
        self.expr(inner, scope)?;
        Ok(Operand::Computed)
    }

    fn unary_operation(
        &mut self,
        op: &sqlparser::ast::UnaryOperator,
        inner: &Expr,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.computed_from(&[inner], scope, &format!("operator {op}"))
    }

    fn cast(
        &mut self,
        inner: &Expr,
        data_type: &sqlparser::ast::DataType,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.computed_from(&[inner], scope, &format!("cast to {data_type}"))
    }

    fn computed_with_list(
        &mut self,
        inner: &Expr,
        list: &[Expr],
        scope: &Scope<'_>,
        attempted: &str,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(inner, scope, attempted)?;
        self.inputs(list, scope, attempted)
    }

    fn trim(
        &mut self,
        inner: &Expr,
        what: Option<&Expr>,
        characters: Option<&[Expr]>,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(inner, scope, "TRIM")?;
        if let Some(what) = what {
            self.input(what, scope, "TRIM")?;
        }
        self.inputs(characters.unwrap_or_default(), scope, "TRIM")
    }

    fn overlay(
        &mut self,
        inner: &Expr,
        what: &Expr,
        from: &Expr,
        length: &Option<Box<Expr>>,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(what, scope, "OVERLAY")?;
        self.input(from, scope, "OVERLAY")?;
        self.computed_with_optional(inner, &[length], scope, "OVERLAY")
    }

    fn field_access(
        &mut self,
        root: &Expr,
        access_chain: &[AccessExpr],
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(root, scope, "field or element access")?;
        for access in access_chain {
            match access {
                // `.field` names a field, not a column.
                AccessExpr::Dot(_) => {}
                AccessExpr::Subscript(Subscript::Index { index }) => {
                    self.input(index, scope, "array subscript")?;
                }
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride,
                }) => {
                    for bound in [lower_bound, upper_bound, stride].into_iter().flatten() {
                        self.input(bound, scope, "array slice")?;
                    }
                }
            }
        }
        Ok(Operand::Computed)
    }

    fn json_access(
        &mut self,
        value: &Expr,
        path: &[JsonPathElem],
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(value, scope, "JSON access")?;
        for element in path {
            if let JsonPathElem::Bracket { key } | JsonPathElem::ColonBracket { key } = element {
                self.input(key, scope, "JSON access")?;
            }
        }
        Ok(Operand::Computed)
    }

    fn exprs(&mut self, exprs: &[Expr], scope: &Scope<'_>) -> Result<Vec<Operand>, BoxedRefusal> {
        exprs.iter().map(|expr| self.expr(expr, scope)).collect()
    }

    /// Walks `exprs` as inputs of `attempted`; the result is computed.
    fn inputs(
        &mut self,
        exprs: &[Expr],
        scope: &Scope<'_>,
        attempted: &str,
    ) -> Result<Operand, BoxedRefusal> {
        for expr in exprs {
            self.input(expr, scope, attempted)?;
        }
        Ok(Operand::Computed)
    }

    fn computed_from(
        &mut self,
        exprs: &[&Expr],
        scope: &Scope<'_>,
        attempted: &str,
    ) -> Result<Operand, BoxedRefusal> {
        for expr in exprs {
            self.input(expr, scope, attempted)?;
        }
        Ok(Operand::Computed)
    }

    fn computed_with_optional(
        &mut self,
        expr: &Expr,
        optional: &[&Option<Box<Expr>>],
        scope: &Scope<'_>,
        attempted: &str,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(expr, scope, attempted)?;
        for expr in optional.iter().copied().flatten() {
            self.input(expr, scope, attempted)?;
        }
        Ok(Operand::Computed)
    }

    fn pattern_match(
        &mut self,
        expr: &Expr,
        pattern: &Expr,
        escape: Option<&Expr>,
        operator: &str,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        self.input(expr, scope, operator)?;
        self.input(pattern, scope, operator)?;
        if let Some(escape) = escape {
            self.input(escape, scope, operator)?;
        }
        Ok(Operand::Computed)
    }

    fn identifier(&mut self, ident: &Ident, scope: &Scope<'_>) -> Operand {
        // DEFAULT is reserved: unquoted, it can never be a column.
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") {
            return Operand::Default;
        }
        let name = fold_identifier(ident);
        let lookup = scope.lookup_column(&name);
        self.resolved(lookup, &name)
    }

    /// `alias.column`, `table.column`, `schema.table.column`.
    fn compound_identifier(
        &mut self,
        idents: &[Ident],
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let parts: Vec<String> = idents.iter().map(fold_identifier).collect();
        let Some((column, qualifier)) = parts.split_last() else {
            return Ok(Operand::Computed);
        };
        if qualifier.is_empty() {
            let lookup = scope.lookup_column(column);
            return Ok(self.resolved(lookup, column));
        }
        let lookup = scope.lookup_qualified(qualifier, column);
        if let (ColumnLookup::NotFound, [first]) = (&lookup, qualifier) {
            // With no relation of that name, `a.b` is field `b` of column `a`.
            if let ColumnLookup::Found(source) = scope.lookup_column(first) {
                self.use_as_input(&Operand::Column(source), "field access")?;
                return Ok(Operand::Computed);
            }
        }
        Ok(self.resolved(lookup, &display_parts(&parts)))
    }

    /// The operand a column lookup gives; what does not resolve is a doubt
    /// (a refusal if the statement touches encrypted tables).
    fn resolved(&mut self, lookup: ColumnLookup, display: &str) -> Operand {
        match lookup {
            ColumnLookup::Found(source) => Operand::Column(source),
            ColumnLookup::WholeRow { has_ciphertext } => {
                if has_ciphertext {
                    self.doubt_unsupported(format!("whole-row reference {display}"));
                }
                Operand::Computed
            }
            ColumnLookup::Ambiguous => {
                self.doubt_unresolved(format!("ambiguous column reference {display}"));
                Operand::Computed
            }
            ColumnLookup::Shadowing(outer) => {
                self.doubt_unresolved(format!(
                    "column {display} of an inner query, which shadows encrypted column {outer} \
                     of an outer query (qualify it)"
                ));
                Operand::Computed
            }
            ColumnLookup::Unknown | ColumnLookup::NotFound => {
                self.doubt_unresolved(format!("column {display}"));
                Operand::Computed
            }
        }
    }

    fn value(&mut self, value: &Value) -> Operand {
        match value {
            Value::Null => Operand::Null,
            Value::Placeholder(placeholder) => match parameter_number(placeholder) {
                Some(number) => Operand::Parameter(number),
                None => {
                    self.doubt_unsupported(format!("parameter placeholder {placeholder}"));
                    Operand::Computed
                }
            },
            _ => Operand::Literal,
        }
    }

    fn binary_operation(
        &mut self,
        whole: &Expr,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        match op {
            BinaryOperator::And | BinaryOperator::Or => {
                self.condition(whole, scope)?;
                Ok(Operand::Computed)
            }
            BinaryOperator::Eq => self.equality(left, right, "=", scope),
            BinaryOperator::NotEq => self.equality(left, right, "<>", scope),
            _ => self.operator_chain(whole, scope),
        }
    }

    /// An operator other than equality and its operands, which are inputs
    /// (ciphertext refused, parameters plaintext). Chains like `a + b + c`
    /// are walked iteratively, left to right: generated queries build them
    /// far deeper than the walk may recurse.
    fn operator_chain(&mut self, chain: &Expr, scope: &Scope<'_>) -> Result<Operand, BoxedRefusal> {
        let mut pending = vec![(chain, None::<&BinaryOperator>)];
        while let Some((next, applied_by)) = pending.pop() {
            match (next, applied_by) {
                (Expr::BinaryOp { left, op, right }, _) if is_chained_operator(op) => {
                    pending.push((right, Some(op)));
                    pending.push((left, Some(op)));
                }
                (operand, Some(op)) => {
                    let operand = self.expr(operand, scope)?;
                    self.use_as_input(&operand, &format!("operator {op}"))?;
                }
                (other, None) => {
                    let operand = self.expr(other, scope)?;
                    self.use_as_input(&operand, "an operator")?;
                }
            }
        }
        Ok(Operand::Computed)
    }

    fn equality(
        &mut self,
        left: &Expr,
        right: &Expr,
        operator: &str,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let left = self.expr(left, scope)?;
        let right = self.expr(right, scope)?;
        rules::compare_for_equality(&mut self.bindings, &left, &right, operator)?;
        Ok(Operand::Computed)
    }

    /// `x [NOT] IN (…)`: `x` compared for equality with each item, or with
    /// the subquery's column.
    fn in_expression(
        &mut self,
        left: &Expr,
        target: &InTarget,
        negated: bool,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let operator = if negated { "NOT IN" } else { "IN" };
        let left = self.expr(left, scope)?;
        match target {
            InTarget::List(items) => {
                for item in items {
                    let right = self.expr(item, scope)?;
                    rules::compare_for_equality(&mut self.bindings, &left, &right, operator)?;
                }
            }
            InTarget::Subquery(subquery) => {
                let right = self.subquery_operand(subquery, scope)?;
                rules::compare_for_equality(&mut self.bindings, &left, &right, operator)?;
            }
            InTarget::Unnest(_) | InTarget::Table { .. } => {
                self.doubt_unsupported("IN UNNEST / IN table");
                self.use_as_input(&left, operator)?;
            }
        }
        Ok(Operand::Computed)
    }

    /// `left op ANY(…)` / `left op ALL(…)`.
    fn quantified(
        &mut self,
        left: &Expr,
        compare_op: &BinaryOperator,
        right: &Expr,
        quantifier: &str,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let operator = format!("{compare_op} {quantifier}");
        // Only equality survives encryption: `= ANY`, `<> ALL` and their
        // (odd but harmless) `<> ANY` / `= ALL` siblings.
        let equality = matches!(compare_op, BinaryOperator::Eq | BinaryOperator::NotEq);
        let left = self.expr(left, scope)?;
        let mut right = right;
        while let Expr::Nested(inner) = right {
            right = inner;
        }
        let elements: Vec<Operand> = match right {
            Expr::Subquery(subquery) => vec![self.subquery_operand(subquery, scope)?],
            Expr::Array(array) => self.exprs(&array.elem, scope)?,
            array => {
                let array = self.expr(array, scope)?;
                if equality {
                    rules::compare_with_array(&mut self.bindings, &left, &array, &operator)?;
                } else {
                    self.use_as_input(&left, &operator)?;
                    self.use_as_input(&array, &operator)?;
                }
                return Ok(Operand::Computed);
            }
        };
        for element in &elements {
            if equality {
                rules::compare_for_equality(&mut self.bindings, &left, element, &operator)?;
            } else {
                self.use_as_input(&left, &operator)?;
                self.use_as_input(element, &operator)?;
            }
        }
        Ok(Operand::Computed)
    }

    /// `CASE`: its results are computed values, so ciphertext is refused there.
    fn case(
        &mut self,
        subject: Option<&Expr>,
        branches: &[CaseWhen],
        else_result: Option<&Expr>,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let subject = subject
            .map(|subject| self.expr(subject, scope))
            .transpose()?;
        for branch in branches {
            match &subject {
                // `CASE x WHEN v` compares x = v.
                Some(subject) => {
                    let value = self.expr(&branch.condition, scope)?;
                    rules::compare_for_equality(
                        &mut self.bindings,
                        subject,
                        &value,
                        "CASE … WHEN",
                    )?;
                }
                None => self.condition(&branch.condition, scope)?,
            }
            self.input(&branch.result, scope, "a CASE result")?;
        }
        if let Some(else_result) = else_result {
            self.input(else_result, scope, "a CASE result")?;
        }
        Ok(Operand::Computed)
    }
}
