//! `unnest($1, $2, …)` in `FROM`: arrays bound as parameters, read back one
//! row per element. It is how Rust applications load many rows in one
//! statement without COPY:
//!
//! ```sql
//! INSERT INTO patients (id, ssn, note)
//! SELECT * FROM unnest($1::int[], $2, $3) AS u(id, ssn, note)
//! ```
//!
//! Each bare `$n` argument becomes a column of
//! [`SourceColumn::ParameterElements`]; what the statement then does with
//! that column decides what `$n` is, as for a bare `$n` anywhere: stored
//! into an encrypted column, an array of cells for it
//! ([`ParameterUse::StoreEach`](super::ParameterUse::StoreEach)); compared
//! with one (`JOIN … ON ssn = u.ssn`), an array of cells to compare
//! ([`ParameterUse::CompareAny`](super::ParameterUse::CompareAny));
//! anything else, a plaintext array. Any other argument (`$1::int[]`,
//! `ARRAY[…]`, a column) is checked as a function input and yields a
//! plaintext column, which cannot be stored into an encrypted column.

use sqlparser::ast::{Expr, TableAlias};

use super::analyzer::Analyzer;
use super::names::{alias_columns, alias_name};
use super::operand::{Operand, SourceColumn};
use super::scope::{Relation, Scope, ScopeColumn};
use super::BoxedRefusal;

/// The relation name PostgreSQL gives an unaliased `unnest(…)`, and the
/// column name of each array without a column alias (but see below).
const UNNEST: &str = "unnest";

impl Analyzer<'_> {
    /// The relation of `unnest(arrays) [WITH ORDINALITY] [AS alias(…)]`,
    /// whose array expressions see the `FROM` items before it (`level`).
    pub(super) fn unnest(
        &mut self,
        arrays: &[Expr],
        alias: Option<&TableAlias>,
        with_ordinality: bool,
        level: &Scope<'_>,
    ) -> Result<Relation, BoxedRefusal> {
        let relation_name = alias_name(alias).unwrap_or_else(|| UNNEST.to_owned());
        let renamed = alias_columns(alias);
        // One array and no column list: the alias names the column too
        // (`unnest($1) AS ssn`), as for any function returning a scalar.
        let default_name = match arrays {
            [_] => relation_name.as_str(),
            _ => UNNEST,
        };
        let mut columns = Vec::with_capacity(arrays.len() + usize::from(with_ordinality));
        for (position, array) in arrays.iter().enumerate() {
            let name = renamed
                .get(position)
                .cloned()
                .unwrap_or_else(|| default_name.to_owned());
            let label = format!("{relation_name}.{name}");
            let source = match self.expr(array, level)? {
                Operand::Parameter(number) => SourceColumn::ParameterElements { label, number },
                other => {
                    self.use_as_input(&other, "an argument of unnest")?;
                    SourceColumn::Plaintext {
                        label,
                        origin: None,
                    }
                }
            };
            columns.push(ScopeColumn {
                name,
                source,
                server_ordered: false,
            });
        }
        if with_ordinality {
            let name = renamed
                .get(arrays.len())
                .cloned()
                .unwrap_or_else(|| "ordinality".to_owned());
            columns.push(ScopeColumn {
                source: SourceColumn::Plaintext {
                    label: format!("{relation_name}.{name}"),
                    origin: None,
                },
                name,
                server_ordered: false,
            });
        }
        if renamed.len() > columns.len() {
            self.doubt_unresolved(format!(
                "more column aliases than columns of {relation_name}"
            ));
        }
        Ok(Relation::derived(Some(relation_name), columns))
    }
}
