//! What an expression yields, as far as encryption is concerned.
//!
//! The walker reduces every expression to an [`Operand`] before deciding
//! whether the context it appears in (a comparison, a store, a function
//! argument…) is allowed: `ssn` and `$1` matter, `lower(name) || 'x'` is just
//! a plaintext value.

use super::{ColumnEncryption, ColumnName};

/// A ciphertext column: one assigned to a column encryption setting, or an
/// `aepg.ciphertext` column of unknown setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CiphertextColumn {
    /// The table column the cells come from.
    pub(super) column: ColumnName,
    /// Its setting; `None` for a view column or a column whose assignment is
    /// missing, whose cells may be read but nothing more.
    pub(super) encryption: Option<ColumnEncryption>,
}

/// A column value as it flows through a statement: from a table, or through a
/// subquery, CTE or `RETURNING` list that passes it on unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SourceColumn {
    /// A plaintext column (or a derived column computed from plaintext).
    Plaintext {
        /// How to name it in messages (`public.patients.name`, `s.total`).
        label: String,
    },
    /// A ciphertext column.
    Ciphertext(CiphertextColumn),
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
}

impl OutputColumn {
    /// A column filled by one expression.
    pub(super) fn single(name: String, value: Operand) -> Self {
        Self {
            name,
            values: vec![value],
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
    /// What fills this column, for the client's decryption of results.
    pub(super) fn source(&self) -> super::ResultColumnSource {
        use super::ResultColumnSource;
        let mut settings = Vec::new();
        let mut plaintext = false;
        for value in &self.values {
            match value {
                Operand::Null => {}
                Operand::Column(SourceColumn::Ciphertext(column)) => {
                    settings.push(column.encryption.map(|encryption| encryption.setting_id));
                }
                _ => plaintext = true,
            }
        }
        match settings.split_first() {
            None => ResultColumnSource::Plaintext,
            Some((Some(first), rest))
                if !plaintext && rest.iter().all(|other| *other == Some(*first)) =>
            {
                ResultColumnSource::Encrypted { setting_id: *first }
            }
            Some(_) => ResultColumnSource::Ciphertext,
        }
    }
}
