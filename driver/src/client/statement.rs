//! Prepared statements: the server's statement, the analysis of its text,
//! the catalog it was analyzed against, and how its result columns are
//! decrypted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use postgres_types::{Kind, Type};

use super::decryption::{plan_columns, ResultColumnPlan};
use crate::analysis::{ParameterTarget, StatementAnalysis};
use crate::catalog::Catalog;
use crate::error::CrossCheckProblem;
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
    /// The parameter types its caller declared (`prepare_typed`), kept so
    /// that preparing it again declares them again.
    pub(crate) declared: Option<Arc<[Type]>>,
    /// Set when the server no longer runs it as prepared (it was
    /// deallocated, or a table it reads changed shape): the text is
    /// analyzed and prepared again before its next use.
    invalidated: AtomicBool,
}

impl Statement {
    /// Checks `analysis` (of `sql`, against `catalog`) against the types
    /// the server inferred for `inner`'s parameters and its result columns,
    /// and plans result decryption.
    pub(crate) fn build(
        sql: &str,
        inner: tokio_postgres::Statement,
        catalog: Arc<Catalog>,
        analysis: StatementAnalysis,
        declared: Option<Arc<[Type]>>,
    ) -> Result<Self, Error> {
        cross_check(&analysis, inner.params(), &catalog)?;
        let columns = plan_columns(
            inner.columns(),
            &analysis.result_columns,
            analysis.touches_encrypted_table,
            &catalog,
        )?
        .into();
        Ok(Self(Arc::new(PreparedStatement {
            sql: sql.to_owned(),
            inner,
            catalog,
            analysis,
            columns,
            declared,
            invalidated: AtomicBool::new(false),
        })))
    }

    /// Whether the server no longer runs it as prepared.
    pub(crate) fn is_invalidated(&self) -> bool {
        self.0.invalidated.load(Ordering::SeqCst)
    }

    /// Notes that the server no longer runs it as prepared.
    pub(crate) fn invalidate(&self) {
        self.0.invalidated.store(true, Ordering::SeqCst);
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

/// The client pipeline's step 3 (docs/DESIGN.md): where the server types a
/// parameter as `aepg.ciphertext`, the analyzer must have mapped it to an
/// encrypted column; and a parameter mapped to one must be typed as bytes by
/// the server.
fn cross_check(
    analysis: &StatementAnalysis,
    server_types: &[Type],
    catalog: &Catalog,
) -> Result<(), Error> {
    if analysis.parameters.len() > server_types.len() {
        return Err(Error::ParameterCrossCheck {
            number: server_types.len() + 1,
            problem: CrossCheckProblem::UnknownToServer,
        });
    }
    let is_ciphertext = |ty: &Type| ty.oid() == catalog.ciphertext_type_oid();
    let holds_bytes = |ty: &Type| is_ciphertext(ty) || *ty == Type::BYTEA;
    for (index, ty) in server_types.iter().enumerate() {
        let target = analysis
            .parameters
            .get(index)
            .unwrap_or(&ParameterTarget::Plaintext);
        let element = match ty.kind() {
            Kind::Array(member) => Some(member),
            _ => None,
        };
        let refuse = |problem: CrossCheckProblem| Error::ParameterCrossCheck {
            number: index + 1,
            problem,
        };
        match target {
            ParameterTarget::Encrypted { column, usage, .. } => {
                let fits = if usage.is_array() {
                    element.is_some_and(holds_bytes)
                } else {
                    holds_bytes(ty)
                };
                if !fits {
                    return Err(refuse(CrossCheckProblem::NotCiphertext {
                        column: column.clone(),
                        server_type: ty.name().to_owned(),
                    }));
                }
            }
            _ => {
                if is_ciphertext(ty) || element.is_some_and(is_ciphertext) {
                    return Err(refuse(CrossCheckProblem::UnmappedCiphertext));
                }
            }
        }
    }
    // (On tables without encrypted columns, what unnest spreads is the
    // server's business, as any shape the analysis does not follow.)
    let unnested = if analysis.touches_encrypted_table {
        analysis.unnested.as_slice()
    } else {
        &[]
    };
    for unnested in unnested {
        let Some(ty) = unnested
            .number
            .checked_sub(1)
            .and_then(|index| server_types.get(index))
        else {
            continue; // Counted above: every analyzed parameter is known to the server.
        };
        let spreads_as_analyzed = match (ty.kind(), unnested.element) {
            (Kind::Array(member), None) => not_composite(member),
            (Kind::Array(member), Some(name)) => {
                member.schema() == "pg_catalog" && member.name() == name
            }
            _ => false,
        };
        if !spreads_as_analyzed {
            return Err(Error::ParameterCrossCheck {
                number: unnested.number,
                problem: CrossCheckProblem::NotUnnestable {
                    server_type: format!("{}.{}", ty.schema(), ty.name()),
                },
            });
        }
    }
    Ok(())
}

/// Whether `unnest` gives one column for an array of `ty`: not for a
/// composite type (one per field), nor a pseudo-type such as `record`.
fn not_composite(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Simple | Kind::Enum(_) | Kind::Range(_) | Kind::Multirange(_) => true,
        Kind::Domain(base) => not_composite(base),
        _ => false,
    }
}
