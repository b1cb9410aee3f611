//! Prepared statements: the server's statement, the analysis of its text,
//! and how its result columns are decrypted.

use std::sync::Arc;

use postgres_types::{Kind, Type};

use super::decryption::{is_ciphertext, plan_columns, ResultColumnPlan};
use crate::analysis::{ParameterTarget, ParameterUse, StatementAnalysis};
use crate::catalog::Catalog;
use crate::Error;

/// A statement prepared through aepg, reusable across executions on the
/// client (and its transactions) that prepared it.
#[derive(Clone, Debug)]
pub struct Statement(pub(crate) Arc<PreparedStatement>);

#[derive(Debug)]
pub(crate) struct PreparedStatement {
    pub(crate) sql: String,
    pub(crate) inner: tokio_postgres::Statement,
    /// The catalog the analysis was made against; a newer catalog means
    /// analyzing again.
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) analysis: StatementAnalysis,
    pub(crate) columns: Arc<[ResultColumnPlan]>,
    /// Whether running it may change the search path or session settings.
    pub(crate) changes_session: bool,
}

impl Statement {
    /// Checks `analysis` (of `sql`, against `catalog`) against the types
    /// the server inferred for `inner`'s parameters, and plans result
    /// decryption.
    pub(crate) fn build(
        sql: &str,
        inner: tokio_postgres::Statement,
        catalog: Arc<Catalog>,
        analysis: StatementAnalysis,
    ) -> Result<Self, Error> {
        cross_check(&analysis, inner.params(), &catalog)?;
        let found = inner.columns().len();
        if analysis.touches_encrypted_table
            && !analysis.result_columns.is_empty()
            && analysis.result_columns.len() != found
        {
            // The catalog's view of a table is stale (a column added since it
            // was loaded): which result columns hold cells cannot be told.
            return Err(Error::ResultShapeMismatch {
                expected: analysis.result_columns.len(),
                found,
            });
        }
        let columns = plan_columns(inner.columns(), &analysis.result_columns, &catalog).into();
        Ok(Self(Arc::new(PreparedStatement {
            changes_session: super::session::may_change_session(sql),
            sql: sql.to_owned(),
            inner,
            catalog,
            analysis,
            columns,
        })))
    }

    /// The statement's text.
    pub fn sql(&self) -> &str {
        &self.0.sql
    }

    /// The parameter types as the server inferred them (encrypted targets
    /// show `aepg.ciphertext` or `bytea`).
    pub fn params(&self) -> &[Type] {
        self.0.inner.params()
    }

    /// The result columns as the server describes them.
    pub fn columns(&self) -> &[tokio_postgres::Column] {
        self.0.inner.columns()
    }

    /// Where each parameter goes.
    pub fn analysis(&self) -> &StatementAnalysis {
        &self.0.analysis
    }
}

/// DESIGN.md §6 step 3: where the server types a parameter as
/// `aepg.ciphertext`, the analyzer must have mapped it to an encrypted
/// column; and a parameter mapped to one must be typed as bytes by the server.
fn cross_check(
    analysis: &StatementAnalysis,
    server_types: &[Type],
    catalog: &Catalog,
) -> Result<(), Error> {
    if analysis.parameters.len() > server_types.len() {
        return Err(Error::ParameterCrossCheck {
            number: server_types.len() + 1,
            reason: "appears in the text but the server does not see it".to_owned(),
        });
    }
    let holds_bytes = |ty: &Type| is_ciphertext(ty, catalog) || *ty == Type::BYTEA;
    for (index, ty) in server_types.iter().enumerate() {
        let target = analysis
            .parameters
            .get(index)
            .unwrap_or(&ParameterTarget::Plaintext);
        let element = match ty.kind() {
            Kind::Array(member) => Some(member),
            _ => None,
        };
        let refuse = |reason: String| Error::ParameterCrossCheck {
            number: index + 1,
            reason,
        };
        match target {
            ParameterTarget::Plaintext => {
                if is_ciphertext(ty, catalog)
                    || element.is_some_and(|member| is_ciphertext(member, catalog))
                {
                    return Err(refuse(
                        "goes into an encrypted column (the server types it aepg.ciphertext) but the analysis \
                         could not tell which: refusing to send it as plaintext"
                            .to_owned(),
                    ));
                }
            }
            ParameterTarget::Encrypted { column, usage, .. } => {
                let fits = match usage {
                    ParameterUse::Store | ParameterUse::Compare => holds_bytes(ty),
                    ParameterUse::CompareAny => element.is_some_and(holds_bytes),
                };
                if !fits {
                    return Err(refuse(format!(
                        "is bound for encrypted column {column}, but the server types it {}",
                        ty.name()
                    )));
                }
            }
        }
    }
    Ok(())
}
