//! Subqueries used as values (`= (SELECT …)`, `IN (SELECT …)`, `EXISTS`),
//! and what a result column passes on to whoever consumes it.

use sqlparser::ast::Query;

use super::analyzer::Analyzer;
use super::operand::{Operand, OutputColumn, SourceColumn};
use super::scope::Scope;
use super::BoxedRefusal;

impl Analyzer<'_> {
    /// A subquery used as a value: a column passed through unchanged keeps
    /// its identity (so `ssn = (SELECT ssn FROM …)` is a same-setting
    /// comparison); anything else is computed. Several columns make a row.
    pub(super) fn subquery_operand(
        &mut self,
        subquery: &Query,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let outputs = self.query(subquery, Some(scope))?;
        if outputs.len() > 1 {
            self.doubt_server_order(outputs.iter(), false, "a row compared or assigned");
        }
        let mut operands = Vec::with_capacity(outputs.len());
        for output in outputs {
            operands.push(match self.pass_through(output, "a subquery")? {
                Some(source) => Operand::Column(source),
                None => Operand::Computed,
            });
        }
        Ok(match <[Operand; 1]>::try_from(operands) {
            Ok([single]) => single,
            Err(operands) => Operand::Row(operands),
        })
    }

    /// The column a result column passes through unchanged, if it does;
    /// otherwise its values are consumed as plaintext and `None` says it is
    /// computed. A parameter in a subquery's select list is plaintext: the
    /// server types it there, before it meets any column.
    pub(super) fn pass_through(
        &mut self,
        output: OutputColumn,
        context: &str,
    ) -> Result<Option<SourceColumn>, BoxedRefusal> {
        if let Some(column) = output.ciphertext_column() {
            return Ok(Some(SourceColumn::Ciphertext(column.clone())));
        }
        if let [Operand::Column(source)] = output.values.as_slice() {
            return Ok(Some(source.clone()));
        }
        for value in &output.values {
            self.use_as_input(value, &format!("a row value in {context}"))?;
        }
        Ok(None)
    }

    /// `EXISTS (…)`: the subquery's result columns are only read.
    pub(super) fn exists(
        &mut self,
        subquery: &Query,
        scope: &Scope<'_>,
    ) -> Result<Operand, BoxedRefusal> {
        let outputs = self.query(subquery, Some(scope))?;
        self.read_outputs(&outputs)?;
        Ok(Operand::Computed)
    }
}
