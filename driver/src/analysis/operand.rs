//! What an expression yields, as far as encryption is concerned.
//!
//! The walker reduces every expression to an [`Operand`] before deciding
//! whether the context it appears in (a comparison, a store, a function
//! argument…) is allowed: `ssn` and `$1` matter, `lower(name) || 'x'` is just
//! a plaintext value.

use std::sync::Arc;

use super::scope::ScopeColumn;
use super::{ColumnEncryption, ColumnName, ColumnProtection, ResultColumn, ResultColumnSource};

/// A ciphertext column: one assigned to a column encryption setting, or one
/// this client cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CiphertextColumn {
    /// The table column the cells come from.
    pub(super) column: ColumnName,
    /// Its setting, or why it cannot be used (its cells may be read, fail
    /// to decrypt, and nothing more).
    pub(super) encryption: Result<ColumnEncryption, Arc<str>>,
}

impl CiphertextColumn {
    /// The ciphertext column `column` protected by `protection`, or `None`
    /// for a plaintext column.
    pub(super) fn of(column: ColumnName, protection: &ColumnProtection) -> Option<Self> {
        let encryption = match protection {
            ColumnProtection::Plaintext => return None,
            ColumnProtection::Encrypted(encryption) => Ok(encryption.clone()),
            ColumnProtection::Unusable { reason } => Err(reason.clone()),
        };
        Some(Self { column, encryption })
    }

    /// Its setting, when usable.
    pub(super) fn encryption(&self) -> Option<&ColumnEncryption> {
        self.encryption.as_ref().ok()
    }
}

/// A column value as it flows through a statement: from a table, or through a
/// subquery, CTE or `RETURNING` list that passes it on unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SourceColumn {
    /// A plaintext column (or a derived column computed from plaintext).
    Plaintext {
        /// How to name it in messages (`public.patients.name`, `s.total`).
        label: String,
        /// The table or view column, when it is one.
        origin: Option<ColumnName>,
    },
    /// A ciphertext column.
    Ciphertext(CiphertextColumn),
    /// The elements of an array parameter, one per row: a column of
    /// `unnest($n, …)` in `FROM`. Stored into or compared with an
    /// encrypted column, `$n` is an array of cells; anywhere else it is a
    /// plaintext array.
    ParameterElements {
        /// How to name it in messages (`u.ssn`).
        label: String,
        /// The parameter.
        number: usize,
    },
}

impl SourceColumn {
    /// Whether the values are ciphertext (of a known setting or not).
    pub(super) fn is_ciphertext(&self) -> bool {
        matches!(self, Self::Ciphertext(_))
    }
}

/// What one expression yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Operand {
    /// A bare `$n`, possibly in parentheses.
    Parameter(usize),
    /// The `NULL` literal: carries no value, so it may meet any column.
    Null,
    /// `DEFAULT` in `VALUES` or `SET`.
    Default,
    /// Any other literal (`'x'`, `42`, `DATE '2024-01-01'`): plaintext typed
    /// into the statement text, which must never meet an encrypted column.
    Literal,
    /// A bare column reference.
    Column(SourceColumn),
    /// A row constructor `(a, b)` / `ROW(a, b)`, compared element by element.
    Row(Vec<Operand>),
    /// Anything computed (a function or operator result, a subquery that
    /// does not pass a column through): a plaintext value whose inputs have
    /// already been checked.
    Computed,
}

impl Operand {
    /// The column this operand is, if it is a bare ciphertext column.
    pub(super) fn ciphertext_column(&self) -> Option<&CiphertextColumn> {
        match self {
            Self::Column(SourceColumn::Ciphertext(column)) => Some(column),
            _ => None,
        }
    }
}

/// One column of a query's result: the alternatives that can fill it (one for
/// a plain `SELECT`, one per row of `VALUES`, one per branch of a `UNION`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct OutputColumn {
    /// Its name as the server would give it (`ssn`, `count`, `?column?`).
    pub(super) name: String,
    /// What can fill it; never empty.
    pub(super) values: Vec<Operand>,
    /// Whether its position comes from the server's column order, through
    /// a `*`: whoever matches it by position must not trust that position
    /// where ciphertext is involved.
    pub(super) server_ordered: bool,
}

impl OutputColumn {
    /// A column filled by one expression.
    pub(super) fn single(name: String, value: Operand) -> Self {
        Self {
            name,
            values: vec![value],
            server_ordered: false,
        }
    }

    /// A column a `*` expands to, in its relation's order.
    pub(super) fn expanded(column: ScopeColumn) -> Self {
        Self {
            name: column.name,
            values: vec![Operand::Column(column.source)],
            server_ordered: column.server_ordered,
        }
    }

    /// The ciphertext column among the alternatives, if any. Set operations
    /// and `VALUES` have already refused mixing it with anything but `NULL`
    /// or columns of the same setting, so the first one stands for all.
    pub(super) fn ciphertext_column(&self) -> Option<&CiphertextColumn> {
        self.values.iter().find_map(Operand::ciphertext_column)
    }
}

impl OutputColumn {
    /// What this column is, for the client's decryption of results.
    pub(super) fn result_column(&self) -> ResultColumn {
        let origin = match self.values.as_slice() {
            [Operand::Column(SourceColumn::Ciphertext(column))] => Some(column.column.clone()),
            [Operand::Column(SourceColumn::Plaintext { origin, .. })] => origin.clone(),
            _ => None,
        };
        ResultColumn {
            origin,
            source: self.source(),
        }
    }

    fn source(&self) -> ResultColumnSource {
        let mut settings = Vec::new();
        let mut plaintext = false;
        for value in &self.values {
            match value {
                Operand::Null => {}
                Operand::Column(SourceColumn::Ciphertext(column)) => {
                    settings.push(column.encryption());
                }
                _ => plaintext = true,
            }
        }
        match settings.split_first() {
            None => ResultColumnSource::Plaintext,
            Some((Some(first), rest))
                if !plaintext
                    && rest.iter().all(|other| {
                        other.is_some_and(|other| other.setting_id == first.setting_id)
                    }) =>
            {
                ResultColumnSource::Encrypted((*first).clone())
            }
            Some(_) => ResultColumnSource::Unusable,
        }
    }
}
